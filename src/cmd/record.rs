//! The hot path: Fail2ban runs this once per new (user, address) pair and waits for it
//! under its global action lock. No network, no external command, one transaction.
//!
//! A valid login is never dropped: if the config or the database fails, it goes to the
//! spool and `record` exits 0, so Fail2ban's retry cannot add it twice. Only input
//! that can never become valid exits 2, and is counted beside the spool.

use std::path::Path;

use super::{text, App, Run};
use crate::actions;
use crate::cli::Record;
use crate::config::Config;
use crate::detect::Engine;
use crate::error::{one_line, Error, Invalid, Result};
use crate::model::{ClientAddr, Deadline, Label, MessageCount, SaslUser, Source, Timestamp};
use crate::ownership::Ownership;
use crate::spool::{self, Rejections, Spool};
use crate::store::{self, LoginEvent};

impl Record {
    /// Validates every field before anything is opened, so bad input writes nothing.
    /// `stream` validates each of its lines here too.
    pub(super) fn event(&self) -> Result<LoginEvent, Invalid> {
        let source = Source::parse(text("source", self.source.as_deref())?)?;
        if !source.is_recorded() {
            return Err(Invalid::new(
                "source",
                format!("{source} is computed by f2b-mailguard, not recorded"),
            ));
        }
        let jail = Label::parse("jail", text("jail", self.jail.as_deref())?)?;
        if jail.as_str().is_empty() {
            return Err(Invalid::new("jail", "is empty"));
        }
        let user = SaslUser::parse(text("user", self.user.as_deref())?)?;
        let addr = ClientAddr::parse(text("ip", self.ip.as_deref())?)?;
        let time = match self.time.as_deref() {
            Some(t) => Timestamp::parse("time", text("time", Some(t))?)?,
            None => Timestamp::now(),
        };
        let fid = match self.fid.as_deref() {
            Some(f) => Some(Label::fid(text("fid", Some(f))?)?),
            None => None,
        };
        let count = match self.count.as_deref() {
            Some(c) => MessageCount::parse(text("count", Some(c))?)?,
            None => MessageCount::ONE,
        };
        Ok(LoginEvent {
            time,
            source,
            user,
            addr,
            jail,
            fid,
            count,
        })
    }
}

impl Run for Record {
    fn run(&self, app: &App) -> Result<()> {
        let event = match self.event() {
            Ok(event) => event,
            Err(invalid) => return Err(reject(app, invalid)),
        };
        let cfg = match app.config() {
            Ok(cfg) => cfg,
            Err(e) => return keep(&app.spool_database(), std::slice::from_ref(&event), &e),
        };
        if event.counted_in_band(&cfg) {
            return Ok(());
        }
        let live = match store_live(app, &cfg, &event) {
            Ok(live) => live,
            Err(e) => return keep(&cfg.local_base(), std::slice::from_ref(&event), &e),
        };
        if live.queued > 0 {
            // Mail, postmap, postsuper, doveadm: never under Fail2ban's lock.
            actions::worker::spawn(app.config_path.as_deref(), app.db_arg.as_deref());
        }
        if live.behind {
            let user = event.user.as_str().to_owned();
            return keep(
                &cfg.local_base(),
                std::slice::from_ref(&event),
                &Error::Behind { user },
            );
        }
        Ok(())
    }
}

/// What `store_live` did with the login.
struct Live {
    /// Actions queued, by the drain and the login.
    queued: usize,
    /// Not stored: its account's earlier logins still wait in the spool.
    behind: bool,
}

/// Stores what waits in the spool, then this login.
fn store_live(app: &App, cfg: &Config, event: &LoginEvent) -> Result<Live> {
    // Opened here so detection can count owners; a missing or damaged
    // database is a warning and no owners, never a lost login.
    let owners = Ownership::open_or_warn(cfg);
    let mut store = store::open_for_record(cfg)?;
    let engine = Engine::new(cfg, &owners);
    // Older logins first, for at most `record_wait`. A failed drain spools this login
    // too, without a second wait that could outlast Fail2ban's action timeout.
    let spools = spool::spools(&cfg.local_base(), app.db_from_config());
    let drained = spool::drain_waiting(
        &spools,
        store.as_mut(),
        &engine,
        Deadline::after(cfg.record_wait),
    )?;
    if drained.waiting.contains(&event.user) {
        return Ok(Live {
            queued: drained.queued,
            behind: true,
        });
    }
    let recorded = store.record(event, &engine)?;
    // The login is committed: the exit releases the connection's files, locks and
    // mappings as a crash right after the commit would, which SQLite is built
    // for. Closing it first (finalizing, freeing the page cache and schema,
    // unmapping the shared memory, closing the files) is work the exit does anyway
    // (BENCHMARKS.md, `record`).
    std::mem::forget(store);
    Ok(Live {
        queued: drained.queued + recorded.queued,
        behind: false,
    })
}

/// Keeps valid logins that could not be stored; Ok once all are in the spool.
pub(super) fn keep(db: &Path, events: &[LoginEvent], cause: &Error) -> Result<()> {
    let spool = Spool::beside(db);
    for event in events {
        if let Err(e) = spool.keep(event) {
            return Err(Error::NotKept {
                cause: one_line(cause),
                spool: one_line(&e),
            });
        }
    }
    let what = match events.len() {
        1 => "the login is".to_string(),
        n => format!("{n} logins are"),
    };
    eprintln!(
        "f2b-mailguard: {}; {what} kept in {} and stored once this is fixed",
        one_line(cause),
        spool.path().display()
    );
    Ok(())
}

/// Counts a refused login where `status` and `check` look, even with a broken config.
pub(super) fn reject(app: &App, invalid: Invalid) -> Error {
    let counted =
        Rejections::beside(&app.spool_database()).note(Timestamp::now(), &invalid.to_string());
    match counted {
        Ok(()) => invalid.into(),
        // Still exit 2: the input is what is wrong.
        Err(e) => Error::Usage(format!("{invalid} (not counted: {})", one_line(&e))),
    }
}
