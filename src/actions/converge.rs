//! Convergence: this server's Postfix map, held mail and Dovecot sessions brought in
//! line with the shared decisions at every `run-actions` (the timer's, each minute, and
//! the one `record` starts on a rise), whichever server decided.
//!
//! The queued actions are the audit trail of the decision; the worker that runs one
//! calls the same pieces below for its account ("converge now"), and `release` undoes
//! through them on its own server at once. Other servers follow at their next run:
//! their map drops the account and they release the mail *they* held (`local`).

use std::collections::BTreeSet;
use std::fmt;

use sha2::{Digest, Sha256};

use super::local::Local;
use super::{dovecot, postfix, ActionKind, Outcome};
use crate::config::Config;
use crate::error::Result;
use crate::model::{Level, SaslUser};
use crate::store::Store;

/// What one convergence changed here; `problems` are the parts that failed (retried
/// at the next run).
#[derive(Debug, Default)]
pub struct Converged {
    pub map: Option<String>,
    pub held: usize,
    pub released: usize,
    pub kicked: usize,
    pub problems: Vec<String>,
}

impl fmt::Display for Converged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "this server: map {}, {} message(s) held, {} released, {} account(s) kicked",
            self.map.as_deref().unwrap_or("unchanged"),
            self.held,
            self.released,
            self.kicked
        )
    }
}

/// Converges unless another worker on this machine is converging; that one then runs
/// once more (see `Local::try_open`), so nothing decided before now is missed.
pub fn run(cfg: &Config, store: &mut dyn Store) -> Result<Option<Converged>> {
    let mut last = None;
    while let Some(mut local) = Local::try_open(cfg)? {
        last = Some(converge(cfg, store, &mut local)?);
        drop(local);
        if !Local::wanted_again(cfg) {
            break;
        }
    }
    Ok(last)
}

fn converge(cfg: &Config, store: &mut dyn Store, local: &mut Local) -> Result<Converged> {
    let actions = &cfg.contain.actions;
    let contained: Vec<(SaslUser, Level)> = store
        .flagged()?
        .into_iter()
        .filter(|a| a.state.enforced && a.state.level >= Level::Block)
        .map(|a| (a.user, a.state.level))
        .collect();
    let with = |kind: ActionKind| -> Vec<SaslUser> {
        contained
            .iter()
            .filter(|(_, level)| actions.for_level(*level).contains(&kind))
            .map(|(u, _)| u.clone())
            .collect()
    };
    let mut out = Converged::default();
    let maps = [Level::Block, Level::Lock]
        .iter()
        .any(|l| actions.for_level(*l).contains(&ActionKind::SaslBlock));
    if maps {
        match map(cfg, local, &store.blocked()?) {
            Ok((true, done)) => out.map = Some(done),
            Ok((false, _)) => {}
            Err(e) => out.problems.push(e),
        }
    }
    // Released on any server: send what we held for it.
    let names: BTreeSet<&str> = contained.iter().map(|(u, _)| u.as_str()).collect();
    let gone: Vec<String> = (local.state.held.keys())
        .filter(|u| !names.contains(u.as_str()))
        .cloned()
        .collect();
    for user in gone {
        match release(cfg, local, &user, false) {
            Ok(n) => out.released += n,
            Err(e) => out.problems.push(e),
        }
    }
    match hold(cfg, local, &with(ActionKind::HoldQueue)) {
        Ok(n) => out.held += n,
        Err(e) => out.problems.push(e),
    }
    local.state.kicked.retain(|u, _| names.contains(u.as_str()));
    for user in with(ActionKind::DovecotKick) {
        let id = containment_id(store, &user)?;
        if local.state.kicked.get(user.as_str()) == Some(&id) {
            continue;
        }
        match kick(cfg, local, &user, id) {
            Outcome::Failed(e) => out.problems.push(e),
            _ => out.kicked += 1,
        }
    }
    local.save()?;
    Ok(out)
}

/// Which containment of the account this is: its last change to its present level, so
/// a new lock after a release kicks again and a retry of the same one does not.
pub fn containment_id(store: &mut dyn Store, user: &SaslUser) -> Result<String> {
    let history = store.history(user)?;
    let level = history.last().map(|c| c.to);
    let at = history
        .iter()
        .rposition(|c| Some(c.to) == level && c.enforced);
    Ok(match at {
        Some(i) => format!("{i}@{}", history[i].time.millis()),
        None => String::new(),
    })
}

/// Rewrites this server's map when its text (or the map postmap last built) differs
/// from `blocked`; a missing map with nobody to block stays missing. Returns whether
/// it changed anything, and what the map now holds.
pub fn map(
    cfg: &Config,
    local: &mut Local,
    blocked: &[SaslUser],
) -> Result<(bool, String), String> {
    let (text, n) = postfix::sasl_map_text(cfg, blocked);
    let name = postfix::sasl_map_name(cfg);
    let digest = format!("{:x}", Sha256::digest(format!("{name}\n{text}")));
    let built = match std::fs::read(&cfg.contain.postfix.sasl_map) {
        Ok(current) => {
            current == text.as_bytes() && local.state.map_built.as_deref() == Some(&digest)
        }
        Err(e) => e.kind() == std::io::ErrorKind::NotFound && n == 0,
    };
    let done = format!("{n} account(s) in {name}");
    if built {
        return Ok((false, done));
    }
    postfix::build_sasl_map(cfg, &text)?;
    local.state.map_built = Some(digest);
    local.save().map_err(|e| e.to_string())?;
    Ok((true, done))
}

/// Puts the queued mail of `users` on hold, except messages held here before (an
/// admin who released one by hand meant it); returns how many.
pub fn hold(cfg: &Config, local: &mut Local, users: &[SaslUser]) -> Result<usize, String> {
    if users.is_empty() {
        return Ok(0);
    }
    let waiting = postfix::queue(cfg)?
        .into_iter()
        .filter(|m| m.queue_name != "hold")
        .collect();
    let found = postfix::of_accounts(cfg, waiting, users, &mut local.state.submitters)?;
    let fresh: Vec<(SaslUser, postfix::QueuedMessage)> = (found.into_iter())
        .filter(|(u, m)| {
            !local
                .state
                .held
                .get(u.as_str())
                .is_some_and(|s| s.contains(&m.key()))
        })
        .collect();
    let ids: Vec<String> = fresh.iter().map(|(_, m)| m.queue_id.clone()).collect();
    let n = postfix::postsuper(cfg, "-h", None, &ids)?;
    for (user, m) in fresh {
        let held = local
            .state
            .held
            .entry(user.as_str().to_owned())
            .or_default();
        held.insert(m.key());
    }
    local.save().map_err(|e| e.to_string())?;
    Ok(n)
}

/// Releases (or, with `purge`, deletes) the account's mail that this server held and
/// that is still on hold; mail held by anyone else stays. Forgets the account.
pub fn release(cfg: &Config, local: &mut Local, user: &str, purge: bool) -> Result<usize, String> {
    let ours = local.state.held.get(user).cloned().unwrap_or_default();
    let ids: Vec<String> = if ours.is_empty() {
        Vec::new()
    } else {
        postfix::queue(cfg)?
            .into_iter()
            .filter(|m| m.queue_name == "hold" && ours.contains(&m.key()))
            .map(|m| m.queue_id)
            .collect()
    };
    let flag = if purge { "-d" } else { "-H" };
    let n = postfix::postsuper(cfg, flag, Some("hold"), &ids)?;
    local.state.held.remove(user);
    local.save().map_err(|e| e.to_string())?;
    Ok(n)
}

/// Flushes the account's Dovecot auth cache and kicks its sessions here, and notes the
/// containment `id` as done unless it failed (then the next run tries again).
pub fn kick(cfg: &Config, local: &mut Local, user: &SaslUser, id: String) -> Outcome {
    // The flush matches the name literally, so it runs even for a name never kicked.
    let outcome = dovecot::flush_and_kick(cfg, user);
    if !matches!(outcome, Outcome::Failed(_)) {
        local.state.kicked.insert(user.as_str().to_owned(), id);
        if let Err(e) = local.save() {
            return Outcome::Failed(e.to_string());
        }
    }
    outcome
}
