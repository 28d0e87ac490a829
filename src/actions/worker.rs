//! `run-actions`: the one worker that executes queued actions, records each outcome
//! and retries failures with backoff. Started detached by `record`, and by a timer.

use std::ffi::OsStr;
use std::fs::{OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::local::Local;
use super::{converge, mail, password, postfix, user_mail, ActionKind, Outcome};
use crate::config::Config;
use crate::detect::PostfixAnswer;
use crate::error::{Error, Result};
use crate::model::{Level, Span, Timestamp};
use crate::ownership::Ownership;
use crate::report;
use crate::store::{ActionState, Attempt, QueuedAction, Store};

/// A worker waits in-process for retries due this soon; later ones are left to the
/// next `record` or the timer.
const LINGER: Span = Span::secs(120);
const MAX_BACKOFF: Span = Span::secs(3600);

#[derive(Debug, Default)]
pub struct Summary {
    pub done: u32,
    pub skipped: u32,
    pub retrying: u32,
    pub failed: u32,
}

/// Starts `run-actions` fully detached: own process group (Fail2ban kills the action's
/// group on timeout) and no inherited pipes (Fail2ban reads them until EOF).
/// Failing to start is not an error for the caller: the rows stay pending for the timer.
pub fn spawn(config: Option<&Path>, db: Option<&OsStr>) {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = Command::new(exe);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    // In the environment, not the arguments: a URL's password is no one's to see in ps.
    if let Some(d) = db {
        cmd.env("F2B_MAILGUARD_DB", d);
    }
    let _ = cmd
        .arg("run-actions")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
}

/// One worker at a time, by a lock file beside the database. A worker that finds the
/// lock taken exits at once (a burst of escalations must not pile up processes), so the
/// holder re-checks after unlocking: rows committed while it was finishing are then
/// either seen by it or by a worker started after its unlock.
pub fn run(cfg: &Config, store: &mut dyn Store) -> Result<Summary> {
    let mut lock_path = cfg.local_base().into_os_string();
    lock_path.push(".worker.lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        // Never through a link: as root that would create a file wherever it points.
        .custom_flags(libc::O_NOFOLLOW)
        .open(&lock_path)
        .map_err(|e| Error::io(&lock_path, e))?;
    let mut summary = Summary::default();
    loop {
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(summary),
            Err(TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        let ran = drain(cfg, store, &mut summary);
        if ran.is_ok() {
            // For doctor and monitoring: when a worker last finished its queue.
            let _ = store.set_meta("last_run_actions", &Timestamp::now().millis().to_string());
        }
        let _ = lock.unlock();
        ran?;
        let due = store.next_pending()?.is_some_and(|t| t <= Timestamp::now());
        if !due {
            return Ok(summary);
        }
    }
}

/// The account's report for a mail (the admin's or its owner's), with the networks'
/// owners: a broken ownership database costs the mail its owners, never the mail.
fn detail(
    cfg: &Config,
    store: &mut dyn Store,
    user: &crate::model::SaslUser,
) -> crate::error::Result<report::Detail> {
    let owners = Ownership::open_lenient(cfg).0;
    report::detail(cfg, &owners, store, user, Timestamp::now())
}

/// Runs due actions until none is due within `LINGER`.
fn drain(cfg: &Config, store: &mut dyn Store, summary: &mut Summary) -> Result<()> {
    loop {
        let now = Timestamp::now();
        for action in store.due_actions(now)? {
            let outcome = execute(cfg, store, &action);
            let finished = Timestamp::now();
            let (state, text, retry) = match outcome {
                Outcome::Done(t) => (ActionState::Done, t, None),
                Outcome::Skipped(t) => (ActionState::Skipped, t, None),
                Outcome::Failed(t) if action.attempts + 1 < cfg.contain.actions.max_attempts => {
                    let wait = backoff(cfg.contain.actions.retry_base, action.attempts);
                    (ActionState::Pending, t, Some(finished.plus(wait)))
                }
                Outcome::Failed(t) | Outcome::Refused(t) => (ActionState::Failed, t, None),
            };
            match (state, retry) {
                (_, Some(_)) => summary.retrying += 1,
                (ActionState::Done, _) => summary.done += 1,
                (ActionState::Skipped, _) => summary.skipped += 1,
                _ => summary.failed += 1,
            }
            let attempt = Attempt {
                at: finished,
                state,
                outcome: &text,
                retry_at: retry,
            };
            store.finish_action(action.id, &attempt)?;
        }
        match store.next_pending()? {
            Some(next) if next.millis() <= Timestamp::now().plus(LINGER).millis() => {
                let wait = (next.millis() - Timestamp::now().millis()).clamp(10, LINGER.millis());
                std::thread::sleep(Duration::from_millis(wait as u64));
            }
            _ => return Ok(()),
        }
    }
}

/// retry_base, doubled per failed attempt, at most an hour.
fn backoff(base: Span, attempts: u32) -> Span {
    let factor = 1i64 << attempts.min(20);
    Span::secs((base.as_secs() * factor).min(MAX_BACKOFF.as_secs()).max(1))
}

fn execute(cfg: &Config, store: &mut dyn Store, action: &QueuedAction) -> Outcome {
    let user = &action.user;
    let account = match store.account(user) {
        Ok(Some(a)) => a,
        Ok(None) => return Outcome::Skipped("account unknown".into()),
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    // An admin may have released the account since this was queued.
    let still_contained =
        account.state.level >= action.level.max(Level::Block) && account.state.enforced;
    let result = match action.kind {
        ActionKind::Mail => match detail(cfg, store, user) {
            Ok(d) => mail::send(cfg, action, &d),
            Err(e) => Err(e.to_string()),
        },
        ActionKind::SaslBlock => return sasl_block(cfg, store, action),
        // In warn mode (user_mail_in_warn_mode) nothing was contained to begin with.
        ActionKind::NotifyUser if action.enforced && !still_contained => {
            return Outcome::Skipped("account no longer blocked".into())
        }
        ActionKind::NotifyUser => {
            return match detail(cfg, store, user) {
                Ok(d) => user_mail::send(cfg, action, &d),
                Err(e) => Outcome::Failed(e.to_string()),
            };
        }
        _ if !still_contained => return Outcome::Skipped("account no longer blocked".into()),
        ActionKind::HoldQueue => {
            // All this server holds for it: a convergence that ran first may have held
            // them already.
            let held = here(cfg, |local| {
                let queue = &mut converge::Queue::default();
                converge::hold(cfg, local, queue, std::slice::from_ref(user))?;
                Ok(local.state.held.get(user.as_str()).map_or(0, |h| h.len()))
            });
            return held.map_or_else(Outcome::Failed, |n| {
                Outcome::Done(format!("{n} queued message(s) put on hold"))
            });
        }
        ActionKind::ResetPassword => return password::reset(cfg, user),
        ActionKind::DovecotKick => {
            let id = match converge::containment_id(store, user) {
                Ok(id) => id,
                Err(e) => return Outcome::Failed(e.to_string()),
            };
            let kicked = here(cfg, |local| Ok(converge::kick(cfg, local, user, id)));
            return kicked.unwrap_or_else(Outcome::Failed);
        }
    };
    match result {
        Ok(text) => Outcome::Done(text),
        Err(e) => Outcome::Failed(e),
    }
}

/// Runs `f` on this server's local state, locked, and saves what it changed.
fn here<T>(cfg: &Config, f: impl FnOnce(&mut Local) -> Result<T, String>) -> Result<T, String> {
    let mut local = Local::open(cfg).map_err(|e| e.to_string())?;
    let done = f(&mut local)?;
    local.save().map_err(|e| e.to_string())?;
    Ok(done)
}

/// This server's map converged now. It is rewritten from the database even if the
/// account was released since: the rewrite then drops it, which is what the admin
/// asked for. Other servers converge theirs at their next run.
fn sasl_block(cfg: &Config, store: &mut dyn Store, action: &QueuedAction) -> Outcome {
    let entries = match store.flagged() {
        Ok(flagged) => converge::map_entries(cfg, &flagged, Timestamp::now()),
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    if !postfix::map_key_ok(&action.user) {
        return Outcome::Refused(format!(
            "{} cannot be a key in a Postfix map (leading '#' or a '\"'): block this account in the password store instead",
            action.user
        ));
    }
    let answer = (entries.iter()).find(|(u, _)| *u == action.user);
    match here(cfg, |local| converge::map(cfg, local, &entries)) {
        Err(e) => Outcome::Failed(e),
        Ok((_, done)) => match answer {
            Some((_, PostfixAnswer::Reject)) => Outcome::Done(format!("refused; {done}")),
            Some((_, _)) => Outcome::Done(format!("quarantined (mail held); {done}")),
            None => Outcome::Skipped(format!("account no longer blocked; {done}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_an_hour() {
        let base = Span::secs(30);
        assert_eq!(backoff(base, 0).as_secs(), 30);
        assert_eq!(backoff(base, 1).as_secs(), 60);
        assert_eq!(backoff(base, 10).as_secs(), 3600);
    }
}
