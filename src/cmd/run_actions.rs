//! `run-actions`: run what `record` queued, retrying failures.

use super::App;
use crate::actions::worker;
use crate::error::Result;
use crate::store;

pub fn run(app: &App) -> Result<()> {
    let cfg = app.config()?;
    let mut store = store::open(&cfg)?;
    let s = worker::run(&cfg, store.as_mut())?;
    println!(
        "actions: {} done, {} skipped, {} to retry, {} failed for good",
        s.done, s.skipped, s.retrying, s.failed
    );
    Ok(())
}
