//! `run-actions`: run what `record` queued, retrying failures, and converge this
//! server. `--follow` keeps doing so: soon after any server changes a level (a
//! shared PostgreSQL store notifies it; one run per `COALESCE` at most), and every
//! minute anyway.

use std::time::{Duration, Instant};

use super::{App, Run};
use crate::actions::{converge, worker};
use crate::cli::RunActions;
use crate::config::Config;
use crate::detect::Engine;
use crate::error::{one_line, Error, Result};
use crate::model::Deadline;
use crate::ownership::{Ownership, Watched};
use crate::store::Store;
use crate::{spool, store};

/// As the timer: retries and convergence at least this often.
const EVERY: Duration = Duration::from_secs(60);
/// At most one run per this much time, however often any role notifies the channel:
/// what comes during the gap is the same news, and one run covers it.
const COALESCE: Duration = Duration::from_secs(5);
/// After losing the database, how soon to try again (the login spool and the timer
/// do not depend on it).
const RECONNECT: Duration = Duration::from_secs(5);

impl Run for RunActions {
    fn run(&self, app: &App) -> Result<()> {
        let cfg = app.config()?;
        if !self.follow {
            let owners = Ownership::open_or_warn(&cfg);
            return once(app, &cfg, store::open(&cfg)?.as_mut(), &owners);
        }
        if cfg.database.sqlite().is_some() {
            return Err(Error::Usage(format!(
                "run-actions --follow needs a shared PostgreSQL database; {} is SQLite, whose \
                 own `record` starts the worker (use the timer for retries)",
                cfg.database
            )));
        }
        let mut owners = Watched::open_or_warn(&cfg);
        loop {
            if let Err(e) = follow(app, &cfg, &mut owners) {
                eprintln!(
                    "f2b-mailguard: {}; connecting again in {} s",
                    one_line(&e),
                    RECONNECT.as_secs()
                );
            }
            std::thread::sleep(RECONNECT);
        }
    }
}

/// Listens, then runs once per change heard or minute passed, until the connection fails.
fn follow(app: &App, cfg: &Config, owners: &mut Watched) -> Result<()> {
    let mut store = store::open(cfg)?;
    // Before the first run: a change made during it is heard, never missed.
    store.listen()?;
    let mut why = "started";
    loop {
        println!("run-actions ({why})");
        let started = Instant::now();
        owners.refresh(cfg);
        // A failing action or Postfix is retried at the next run; the database failing
        // shows in the wait, which then reconnects.
        if let Err(e) = once(app, cfg, store.as_mut(), owners.owners()) {
            eprintln!("f2b-mailguard: {}", one_line(&e));
        }
        why = if store.wait_change(EVERY)? {
            if let Some(gap) = (started + COALESCE).checked_duration_since(Instant::now()) {
                std::thread::sleep(gap);
                // Heard during the gap: covered by the run that follows.
                store.wait_change(Duration::ZERO)?;
            }
            "a level changed"
        } else {
            "every minute"
        };
    }
}

fn once(app: &App, cfg: &Config, store: &mut dyn Store, owners: &Ownership) -> Result<()> {
    // The timer's run stores what `record` kept while the config or database failed,
    // before running the actions those logins queue.
    let spools = spool::spools(&cfg.local_base(), app.db_from_config());
    let drained = spool::drain_waiting(&spools, store, &Engine::new(cfg, owners), Deadline::NONE)?;
    if drained.logins > 0 {
        println!("spool: {} login(s) stored", drained.logins);
    }
    let s = worker::run(cfg, store)?;
    println!(
        "actions: {} done, {} skipped, {} to retry, {} failed for good",
        s.done, s.skipped, s.retrying, s.failed
    );
    // Every run, whoever decided: this server's Postfix and Dovecot follow the database.
    let Some(c) = converge::run(cfg, store)? else {
        println!("this server: another worker is converging it");
        return Ok(());
    };
    println!("{c}");
    if c.problems.is_empty() {
        return Ok(());
    }
    Err(Error::External(format!(
        "this server: {} (retried at the next run)",
        c.problems.join("; ")
    )))
}
