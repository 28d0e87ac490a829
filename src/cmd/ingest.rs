//! `ingest`: the backtest. Replays logins from stdin into a scratch database, using
//! the log times, with every action off, and reports which accounts would have been
//! flagged, when (log time) each level was reached, and why.
//!
//! Input, one event per line, in log-time order, either
//!   `TIME USER ADDRESS`   as printed by `fail2ban-regex -o '<time> <F-USER> <ip>' LOG FILTER`
//!   `{"time": 1795418066.0, "user": "...", "ip": "...", "source": "smtp", "count": 1,
//!     "fid": "..."}`      (JSON lines; source, count and fid optional)
//!
//! Each event is replayed as `record` would store and judge it, in the order given, so
//! a backtest says what the live path does. A JSON line is one `record` call, its
//! `fid` Fail2ban's ticket id: a line repeating an earlier call (time, source,
//! address, count and fid) is skipped, by `record`'s rule. Live, the rate jail reads
//! the same Postfix line as the smtp jail: a `TIME USER ADDRESS` smtp line stands for
//! both calls, the login, then one message with the line as its ticket id.

use std::borrow::Cow;
use std::io::BufRead;
use std::sync::mpsc::SyncSender;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{App, Run};
use crate::cli::Ingest;
use crate::config::Config;
use crate::detect::leak::Leak;
use crate::detect::replay::{self, Pushed, Replay};
use crate::detect::Seen;
use crate::error::{Error, Invalid, Result};
use crate::files::same_file;
use crate::model::display::shown;
use crate::model::WhitelistEntry;
use crate::model::{
    ClientAddr, DatabaseLocation, Label, Level, MessageCount, SaslUser, Source, Timestamp,
};
use crate::ownership::Ownership;
use crate::store::{self, Imported};

#[derive(Deserialize)]
struct JsonLogin {
    time: serde_json::Value,
    user: String,
    ip: String,
    source: Option<String>,
    count: Option<u32>,
    fid: Option<String>,
}

/// An input event: whose it is, the event, and its Fail2ban ticket id if given.
type Event = (SaslUser, Seen, Option<Label>);

/// One input line's event.
fn parse_line(line: &str, default_source: Source) -> std::result::Result<Event, Invalid> {
    if !line.starts_with('{') {
        let mut f = line.split_whitespace();
        return match (f.next(), f.next(), f.next(), f.next()) {
            (Some(t), Some(u), Some(i), None) => {
                let (user, seen) = event(default_source, MessageCount::ONE, t, u, i)?;
                Ok((user, seen, None))
            }
            _ => Err(Invalid::new("line", "is not TIME USER ADDRESS")),
        };
    }
    let j: JsonLogin = serde_json::from_str(line)
        .map_err(|e| Invalid::new("line", format!("not a JSON login: {e}")))?;
    let time: Cow<str> = match &j.time {
        serde_json::Value::Number(n) => n.to_string().into(),
        serde_json::Value::String(s) => s.as_str().into(),
        _ => return Err(Invalid::new("time", "must be a number")),
    };
    let source = j
        .source
        .as_deref()
        .map(Source::parse)
        .transpose()?
        .unwrap_or(default_source);
    let count = match j.count {
        Some(n) => MessageCount::parse(&n.to_string())?,
        None => MessageCount::ONE,
    };
    let (user, seen) = event(source, count, &time, &j.user, &j.ip)?;
    let fid = j.fid.as_deref().map(Label::fid).transpose()?;
    Ok((user, seen, fid))
}

/// Validates one event's fields, in the order their errors are reported.
fn event(
    source: Source,
    count: MessageCount,
    time: &str,
    user: &str,
    ip: &str,
) -> std::result::Result<(SaslUser, Seen), Invalid> {
    if !source.is_recorded() {
        return Err(Invalid::new(
            "source",
            format!("{source} is computed by f2b-mailguard, not recorded"),
        ));
    }
    let time = Timestamp::parse("time", time)?;
    let user = SaslUser::parse(user)?;
    let addr = ClientAddr::parse(ip)?;
    Ok((
        user,
        Seen {
            source,
            addr,
            time,
            count: count.get(),
            events: 1,
            message: None,
        },
    ))
}

/// Replayed events on their way to the store, in batches: a message per event would
/// cost more than storing it.
struct Batcher {
    out: SyncSender<Imported>,
    events: Vec<(usize, Seen, Option<Label>)>,
}

const EVENTS_PER_MESSAGE: usize = 4096;

impl Batcher {
    /// False once the store takes no more.
    fn replayed(&mut self, pushed: Pushed, user: SaslUser, seen: Seen, fid: Option<Label>) -> bool {
        let Pushed::Replayed { account, new } = pushed else {
            return true;
        };
        // Announced before any batch holding its events is sent.
        if new && self.out.send(Imported::Account(user)).is_err() {
            return false;
        }
        self.events.push((account, seen, fid));
        self.events.len() < EVENTS_PER_MESSAGE || self.send()
    }

    fn send(&mut self) -> bool {
        let batch = std::mem::replace(&mut self.events, Vec::with_capacity(EVENTS_PER_MESSAGE));
        batch.is_empty() || self.out.send(Imported::Events(batch)).is_ok()
    }
}

/// What the replay read and how each account ended.
struct ReplayRun {
    events: u64,
    skipped: u64,
    accounts: Vec<(SaslUser, replay::Replayed)>,
}

/// Reads stdin, replays it and hands the store every event, then the outcome. None
/// if the store stopped taking them (its error says why).
fn replay_input(
    cfg: &Config,
    whitelist: &[WhitelistEntry],
    default_source: Source,
    out: SyncSender<Imported>,
) -> Result<Option<ReplayRun>> {
    // The backtest counts owners as record does, from the same databases.
    let owners = Ownership::open_or_warn(cfg);
    let mut replay = Replay::new(cfg, &owners, whitelist);
    let mut batcher = Batcher {
        out,
        events: Vec::with_capacity(EVENTS_PER_MESSAGE),
    };
    let (mut events, mut skipped) = (0u64, 0u64);
    let mut input = std::io::stdin().lock();
    let mut buf = String::new();
    for n in 1.. {
        buf.clear();
        if input
            .read_line(&mut buf)
            .map_err(|e| Error::io("stdin", e))?
            == 0
        {
            break;
        }
        let line = buf.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line, default_source).map_err(Invalid::in_line) {
            Ok(ev) => {
                events += 1;
                // The Postfix line the smtp jail reads is also one message for the
                // rate jail: a `TIME USER ADDRESS` line stands for both calls, its line
                // number telling its message from another in the same second.
                let (user, ev, fid) = ev;
                let message = (ev.source == Source::Smtp && !line.starts_with('{'))
                    .then(|| Label::of_line(n))
                    .map(|fid| {
                        let seen = Seen {
                            source: Source::Rate,
                            count: 1,
                            ..ev
                        };
                        (seen, Some(fid))
                    });
                for (ev, fid) in std::iter::once((ev, fid)).chain(message) {
                    let pushed = replay.push(&user, ev, fid.as_ref().map(Label::as_str));
                    if !batcher.replayed(pushed, user.clone(), ev, fid) {
                        return Ok(None);
                    }
                }
            }
            Err(e) => {
                if skipped < 5 {
                    eprintln!("f2b-mailguard: line {n}: {e}; skipped");
                }
                skipped += 1;
            }
        }
    }
    if !batcher.send() {
        return Ok(None);
    }
    let accounts = replay.finish();
    let outcome = accounts.iter().map(|(_, r)| r.clone()).collect();
    if batcher.out.send(Imported::Outcome(outcome)).is_err() {
        return Ok(None);
    }
    Ok(Some(ReplayRun {
        events,
        skipped,
        accounts,
    }))
}

#[derive(Serialize)]
struct Report {
    events: u64,
    skipped: u64,
    accounts: Vec<Account>,
    /// Summed over the accounts that reached block.
    contained: Contained,
}

#[derive(Serialize)]
struct Account {
    user: SaslUser,
    highest: Level,
    levels: Vec<Reached>,
    /// Accounts that reached block: the messages accepted before containment.
    #[serde(skip_serializing_if = "Option::is_none")]
    contained: Option<Contained>,
}

/// Messages accepted before containment: the messages in the detection window when
/// the account first rose (see `detect::leak::Leak`) and those after, up to block.
#[derive(Serialize, Default, Clone, Copy)]
struct Contained {
    accounts: u64,
    /// Stopped at block (quarantine off, or warn mode's would-be block).
    without_quarantine: u64,
    /// Stopped at the rise from ok (notify in enforce mode with quarantine).
    with_quarantine: u64,
}

impl Contained {
    fn of(leak: &Leak) -> Option<Self> {
        leak.blocked.then(|| Self {
            accounts: 1,
            without_quarantine: leak.without_quarantine(),
            with_quarantine: leak.with_quarantine(),
        })
    }

    fn add(&mut self, other: Self) {
        self.accounts += other.accounts;
        self.without_quarantine += other.without_quarantine;
        self.with_quarantine += other.with_quarantine;
    }
}

#[derive(Serialize)]
struct Reached {
    level: Level,
    time: f64,
    reason: String,
}

impl Run for Ingest {
    fn run(&self, app: &App) -> Result<()> {
        let default_source = Source::parse(&self.source)?;
        let scratch =
            match app.db.clone()? {
                Some(DatabaseLocation::Sqlite(path)) => path,
                Some(DatabaseLocation::Postgres(_)) | None => return Err(Error::Usage(
                    "ingest writes a scratch SQLite database: give --db PATH (never the live one)"
                        .into(),
                )),
            };
        let scratch = &scratch;
        let live = Config::load(app.config_path.as_deref())?.database;
        if live.sqlite().is_some_and(|live| same_file(scratch, live)) {
            return Err(Error::Usage(format!(
                "{} is the live database; ingest needs a scratch one",
                scratch.display()
            )));
        }
        let cfg = app.config()?;
        let mut store = store::open(&cfg)?;
        store.check_whole()?;
        let jail = Label::parse("jail", "ingest")?;
        let whitelist = store.whitelist()?;
        // A backtest never acts. The replay reads and evaluates on one thread while
        // the store writes what it replayed on this one.
        let started = Instant::now();
        let (sender, receiver) = std::sync::mpsc::sync_channel(16);
        let (imported, replayed) = std::thread::scope(|s| {
            let replaying = s.spawn(|| replay_input(&cfg, &whitelist, default_source, sender));
            let mut items = receiver.into_iter();
            let imported = store.import(&jail, &mut items);
            // Unblocks the replay if the store stopped early.
            drop(items);
            let replayed = match replaying.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            (imported, replayed)
        });
        let replayed = replayed?;
        imported?;
        let Some(ReplayRun {
            events,
            skipped,
            accounts: mut replayed,
        }) = replayed
        else {
            return Err(Error::StoreState {
                path: scratch.clone(),
                reason: "the store stopped taking the backtest's events".into(),
            });
        };
        let took = started.elapsed().as_secs_f64();
        eprintln!(
            "f2b-mailguard: ingested {events} events in {took:.2} s ({:.0}/s); {skipped} line(s) skipped",
            events as f64 / took.max(1e-9)
        );
        replayed.sort_by(|a, b| a.0.cmp(&b.0));

        let accounts: Vec<Account> = replayed
            .into_iter()
            .filter_map(|(user, r)| {
                let levels: Vec<Reached> = r
                    .changes
                    .iter()
                    .filter(|(_, t)| t.to > t.from)
                    .map(|(at, t)| Reached {
                        level: t.to,
                        time: at.secs_f64(),
                        reason: t.reason.clone(),
                    })
                    .collect();
                let highest = levels.iter().map(|r| r.level).max()?;
                Some(Account {
                    user,
                    highest,
                    levels,
                    contained: Contained::of(&r.leak),
                })
            })
            .collect();
        let mut contained = Contained::default();
        for c in accounts.iter().filter_map(|a| a.contained) {
            contained.add(c);
        }
        let report = Report {
            events,
            skipped,
            accounts,
            contained,
        };
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        } else if report.accounts.is_empty() {
            println!("no account would have been flagged");
        } else {
            println!(
                "{:<34} {:<7} {:<20} WHY",
                "ACCOUNT", "LEVEL", "REACHED (UTC)"
            );
            for a in &report.accounts {
                for (i, r) in a.levels.iter().enumerate() {
                    let who = if i == 0 { a.user.shown() } else { "".into() };
                    let when = Timestamp::from_millis((r.time * 1000.0) as i64).rfc3339();
                    println!(
                        "{:<34} {:<7} {:<20} {}",
                        who,
                        r.level.as_str(),
                        &when[..19],
                        shown(&r.reason)
                    );
                }
            }
            print_contained(&report);
        }
        Ok(())
    }
}

/// Per account that reached block, the messages accepted before containment.
fn print_contained(report: &Report) {
    let total = report.contained;
    if total.accounts == 0 {
        return;
    }
    println!(
        "\nMessages accepted before containment ({} account(s) reached block):",
        total.accounts
    );
    println!(
        "{:<34} {:>18} {:>18}",
        "ACCOUNT", "WITHOUT QUARANTINE", "WITH QUARANTINE"
    );
    for a in &report.accounts {
        if let Some(c) = a.contained {
            println!(
                "{:<34} {:>18} {:>18}",
                a.user.shown(),
                c.without_quarantine,
                c.with_quarantine
            );
        }
    }
    println!(
        "{:<34} {:>18} {:>18}",
        "total", total.without_quarantine, total.with_quarantine
    );
}
