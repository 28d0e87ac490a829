//! `run-actions`: run what `record` queued, retrying failures.

use super::App;
use crate::actions::worker;
use crate::detect::Engine;
use crate::error::Result;
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
    Ok(())
}
