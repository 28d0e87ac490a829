//! `run-actions`: run what `record` queued, retrying failures.

use super::App;
use crate::actions::{converge, worker};
use crate::detect::Engine;
use crate::error::{Error, Result};
use crate::ownership::Ownership;
use crate::{spool, store};

pub fn run(app: &App) -> Result<()> {
    let cfg = app.config()?;
    let mut store = store::open(&cfg)?;
    // The timer's run stores what `record` kept while the config or database failed,
    // before running the actions those logins queue.
    let spools = spool::spools(&cfg.local_base(), app.db_from_config());
    let drained = spool::drain_waiting(
        &spools,
        store.as_mut(),
        &Engine::new(&cfg, &Ownership::open_or_warn(&cfg)),
    )?;
    if drained.logins > 0 {
        println!("spool: {} login(s) stored", drained.logins);
    }
    let s = worker::run(&cfg, store.as_mut())?;
    println!(
        "actions: {} done, {} skipped, {} to retry, {} failed for good",
        s.done, s.skipped, s.retrying, s.failed
    );
    // Every run, whoever decided: this server's Postfix and Dovecot follow the database.
    let Some(c) = converge::run(&cfg, store.as_mut())? else {
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
