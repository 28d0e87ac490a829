//! `prune`: deletes old logins in bounded batches (each its own short transaction, so
//! Fail2ban's `record` calls keep getting through), and writes down expired notifies.

use super::{App, Run};
use crate::cli::Prune;
use crate::detect;
use crate::error::{Error, Result};
use crate::model::{Span, Timestamp};
use crate::store::{self, LevelEdit};

const BATCH: u32 = 10_000;

impl Run for Prune {
    fn run(&self, app: &App) -> Result<()> {
        let cfg = app.config()?;
        let older_than = match &self.older_than {
            Some(s) => Span::parse("older-than", s)?,
            None => cfg.retention,
        };
        let lookback = cfg.detection.lookback();
        if self.older_than.is_some() && older_than.millis() < lookback.millis() && !self.force {
            return Err(Error::Usage(format!(
                "--older-than {older_than} is shorter than what detection looks back over \
                 ({lookback}: detection.window {}, detection.spread_window {}): logins inside \
                 it are the evidence that raises accounts, and pruning them would lower or \
                 hide a compromise; add --force to delete them anyway",
                cfg.detection.window, cfg.detection.spread_window
            )));
        }
        let now = Timestamp::now();
        let mut store = store::open(&cfg)?;
        let before = now.minus(older_than);
        let mut total = 0;
        loop {
            let n = store.prune_batch(before, BATCH)?;
            total += n;
            if n < u64::from(BATCH) {
                break;
            }
        }
        let mut cleared = 0;
        for account in store.flagged()? {
            if let Some(t) = detect::quiet_expiry(&cfg, &account.state, now) {
                let edit = LevelEdit {
                    at: now,
                    transition: &t,
                    actor: "prune",
                    count_from: None,
                };
                store.change_level(&account.user, &edit)?;
                cleared += 1;
            }
        }
        store.set_meta("last_prune", &now.millis().to_string())?;
        println!(
            "pruned {total} login{} older than {older_than}; {cleared} notify level{} cleared after {}",
            if total == 1 { "" } else { "s" },
            if cleared == 1 { "" } else { "s" },
            cfg.detection.notify_quiet
        );
        Ok(())
    }
}
