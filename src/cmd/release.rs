//! `release USER`: the admin's way back. Unblocks sending, releases (or purges) held
//! mail, cancels pending actions, and sets the account to ok with counting restarted
//! now, so the old evidence cannot re-block it at the next login.

use super::{text, App, Run};
use crate::actions::postfix;
use crate::cli::Release;
use crate::detect::Transition;
use crate::error::{Error, Result};
use crate::model::{Label, Level, LogTime, SaslUser};
use crate::store;

/// Who released: the admin behind sudo if any, for the audit trail.
fn actor() -> String {
    let name = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    match Label::parse("actor", &name) {
        Ok(l) if !l.as_str().is_empty() => format!("admin:{}", l.as_str()),
        _ => "admin".into(),
    }
}

impl Run for Release {
    fn run(&self, app: &App) -> Result<()> {
        let user = SaslUser::parse(text("user", Some(&self.user))?)?;
        let cfg = app.config()?;
        let mut store = store::open(&cfg)?;
        let account = store
            .account(&user)?
            .ok_or_else(|| Error::Usage(format!("no login of {} is recorded", user.shown())))?;
        let state = account.state;
        if state.level == Level::Ok {
            println!("{} is not flagged; nothing to release", user.shown());
            return Ok(());
        }
        let now = LogTime::now();
        // Undo in Postfix first: if that fails, the account stays recorded as blocked
        // and running release again retries.
        if state.level >= Level::Block && state.enforced {
            let still: Vec<SaslUser> = store
                .blocked()?
                .into_iter()
                .filter(|u| *u != user)
                .collect();
            let map = postfix::write_sasl_map(&cfg, &still).map_err(Error::Usage)?;
            println!("sending unblocked ({map})");
            let held = postfix::release_held(&cfg, &user, self.purge_held).map_err(Error::Usage)?;
            println!("{held}");
        }
        let cancelled = store.cancel_pending(&user, now)?;
        if cancelled > 0 {
            println!("{cancelled} pending action(s) cancelled");
        }
        let how = if self.purge_held {
            "held mail purged"
        } else {
            "held mail released"
        };
        let transition = Transition {
            from: state.level,
            to: Level::Ok,
            enforced: false,
            reason: format!("released ({how}); counting restarts now"),
        };
        store.change_level(&user, now, &transition, &actor(), Some(now))?;
        println!(
            "{}: {} -> ok",
            user.shown(),
            state.level.describe(state.enforced)
        );
        Ok(())
    }
}
