//! `release USER`: the admin's way back. Unblocks sending, releases (or purges) held
//! mail, cancels pending actions, and sets the account to ok with counting restarted
//! now, so the old evidence cannot re-block it at the next login.

use super::{user_named, App, Run};
use crate::actions::converge;
use crate::actions::local::Local;
use crate::cli::Release;
use crate::detect::{PostfixAnswer, Transition};
use crate::error::{Error, Result};
use crate::model::{Label, Level, Mode, Timestamp};
use crate::store::{self, Account, LevelEdit};

/// Who released, for the audit trail: the admin behind sudo if any, else the login
/// name, else the name of the user id we run as (root has no USER under some
/// shells, cron and systemd units).
fn actor() -> String {
    let name = ["SUDO_USER", "LOGNAME", "USER"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|n| !n.is_empty())
        .or_else(uid_name)
        .unwrap_or_else(|| "unknown".into());
    match Label::parse("actor", &name) {
        Ok(l) if !l.as_str().is_empty() => format!("admin:{}", l.as_str()),
        _ => "admin".into(),
    }
}

/// The passwd name of our real user id.
fn uid_name() -> Option<String> {
    // SAFETY: getuid cannot fail and touches no memory of ours.
    crate::passwd::of_uid(unsafe { libc::getuid() }).map(|e| e.name)
}

impl Run for Release {
    fn run(&self, app: &App) -> Result<()> {
        let user = user_named("USER", &self.user)?;
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
        let now = Timestamp::now();
        // What was undone, for the audit trail: in warn mode, or at notify, nothing was
        // blocked or held.
        let mut undone = "nothing was blocked or held".to_owned();
        // Undo in Postfix first: if that fails, the account stays recorded as blocked
        // or quarantined and running release again retries. With quarantine on in
        // enforce mode, a notify past its quiet period may still have held mail here.
        let answer = PostfixAnswer::of(&cfg, &state, now);
        let quarantining = cfg.contain.actions.quarantine && cfg.mode == Mode::Enforce;
        if state.level >= Level::Block && state.enforced
            || answer != PostfixAnswer::Dunno
            || quarantining
        {
            // This server at once; the others at their next run-actions, which sees
            // the account at ok.
            let mut local = Local::open(&cfg)?;
            let lifted = if state.level >= Level::Block && state.enforced {
                "sending unblocked"
            } else {
                "quarantine lifted"
            };
            if converge::maps(&cfg) {
                let others: Vec<Account> = (store.flagged()?.into_iter())
                    .filter(|a| a.user != user)
                    .collect();
                let entries = converge::map_entries(&cfg, &others, now);
                let (_, map) =
                    converge::map(&cfg, &mut local, &entries).map_err(Error::External)?;
                println!("{lifted} ({map})");
            }
            let queue = &mut converge::Queue::default();
            let n = converge::release(&cfg, &mut local, queue, user.as_str(), self.purge_held)
                .map_err(Error::External)?;
            local.save()?;
            let held = if self.purge_held {
                format!("{n} held message(s) deleted")
            } else {
                format!("{n} held message(s) released")
            };
            println!("{held}");
            undone = format!("{lifted}; {held}");
        }
        let cancelled = store.cancel_pending(&user, now)?;
        if cancelled > 0 {
            println!("{cancelled} pending action(s) cancelled");
        }
        let transition = Transition {
            from: state.level,
            to: Level::Ok,
            enforced: false,
            reason: format!("released ({undone}); counting restarts now"),
        };
        let actor = actor();
        let edit = LevelEdit {
            at: now,
            transition: &transition,
            actor: &actor,
            count_from: Some(now),
        };
        store.change_level(&user, &edit)?;
        println!(
            "{}: {} -> ok",
            user.shown(),
            state.level.describe(state.enforced)
        );
        Ok(())
    }
}
