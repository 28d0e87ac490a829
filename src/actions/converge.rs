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
use crate::detect::PostfixAnswer;
use crate::error::Result;
use crate::model::{Level, SaslUser, Timestamp};
use crate::store::{Account, Store};

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
    let flagged = store.flagged()?;
    let contained: Vec<(SaslUser, Level)> = (flagged.iter())
        .filter(|a| a.state.enforced && a.state.level >= Level::Block)
        .map(|a| (a.user.clone(), a.state.level))
        .collect();
    let entries = map_entries(cfg, &flagged, Timestamp::now());
    let with = |kind: ActionKind| -> Vec<SaslUser> {
        contained
            .iter()
            .filter(|(_, level)| actions.for_level(*level).contains(&kind))
            .map(|(u, _)| u.clone())
            .collect()
    };
    let mut out = Converged::default();
    if maps(cfg) {
        match map(cfg, local, &entries) {
            Ok((true, done)) => out.map = Some(done),
            Ok((false, _)) => {}
            Err(e) => out.problems.push(e),
        }
    }
    // Released on any server, or a quarantine lifted (notify cleared): send what we
    // held for it.
    let names: BTreeSet<&str> = (contained.iter().map(|(u, _)| u))
        .chain(entries.iter().map(|(u, _)| u))
        .map(SaslUser::as_str)
        .collect();
    let gone: BTreeSet<String> = (local.state.held.keys())
        .chain(local.state.quarantined.keys())
        .chain(local.state.held_in_band.keys())
        .filter(|u| !names.contains(u.as_str()))
        .cloned()
        .collect();
    let mut queue = Queue::default();
    for user in gone {
        match release(cfg, local, &mut queue, &user, false) {
            Ok(n) => out.released += n,
            Err(e) => out.problems.push(e),
        }
    }
    match hold(cfg, local, &mut queue, &with(ActionKind::HoldQueue)) {
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
    // Once for the releases and kicks: a crash before it only repeats them, harmlessly
    // (released mail is no longer on hold; a kick finds no session).
    local.save()?;
    Ok(out)
}

/// This server's queue, listed (`postqueue -j`) and its submitters read (postcat) at
/// most once for all the releases and the hold of one convergence; kept as a new
/// listing would show it after what they did.
#[derive(Default)]
pub struct Queue {
    listed: Option<Vec<postfix::QueuedMessage>>,
    logins: Option<Vec<String>>,
}

impl Queue {
    fn messages(&mut self, cfg: &Config) -> Result<&[postfix::QueuedMessage], String> {
        if self.listed.is_none() {
            self.listed = Some(postfix::queue(cfg)?);
        }
        Ok(self.listed.get_or_insert_default())
    }

    /// The messages with the login behind each ("" for none).
    fn with_logins(
        &mut self,
        cfg: &Config,
        local: &mut Local,
    ) -> Result<(&[postfix::QueuedMessage], &[String]), String> {
        self.messages(cfg)?;
        let listed = self.listed.get_or_insert_default();
        if self.logins.is_none() {
            self.logins = Some(postfix::logins(cfg, listed, &mut local.state.submitters)?);
        }
        Ok((listed, self.logins.get_or_insert_default()))
    }

    /// `ids` moved by `postsuper` to `queue`; deleted ones (None) are listed anew if asked.
    fn moved(&mut self, ids: &[String], queue: Option<&str>) {
        let Some(to) = queue else {
            *self = Self::default();
            return;
        };
        let ids: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
        for m in self.listed.iter_mut().flatten() {
            if ids.contains(m.queue_id.as_str()) {
                to.clone_into(&mut m.queue_name);
            }
        }
    }
}

/// Whether this server keeps a check_sasl_access map: an action list refuses with it,
/// or quarantine holds with it.
pub fn maps(cfg: &Config) -> bool {
    let actions = &cfg.contain.actions;
    actions.quarantine
        || [Level::Block, Level::Lock]
            .iter()
            .any(|l| actions.for_level(*l).contains(&ActionKind::SaslBlock))
}

/// The map's entries: each of `flagged` (accounts above ok) whose Postfix answer as of
/// `at` is not DUNNO.
pub fn map_entries(
    cfg: &Config,
    flagged: &[Account],
    at: Timestamp,
) -> Vec<(SaslUser, PostfixAnswer)> {
    let mut entries: Vec<(SaslUser, PostfixAnswer)> = (flagged.iter())
        .map(|a| (a.user.clone(), PostfixAnswer::of(cfg, &a.state, at)))
        .filter(|(_, answer)| *answer != PostfixAnswer::Dunno)
        .collect();
    entries.sort();
    entries
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
/// from `entries`; a missing map with nobody in it stays missing. Returns whether it
/// changed anything, and what the map now holds. An account newly held here is noted
/// first (see `LocalState::quarantined`): Postfix holds its mail only after the build.
pub fn map(
    cfg: &Config,
    local: &mut Local,
    entries: &[(SaslUser, PostfixAnswer)],
) -> Result<(bool, String), String> {
    let (text, n) = postfix::sasl_map_text(cfg, entries);
    let name = postfix::sasl_map_name(cfg);
    let digest = format!("{:x}", Sha256::digest(format!("{name}\n{text}")));
    let built = match std::fs::read(&cfg.contain.postfix.sasl_map) {
        Ok(current) => {
            current == text.as_bytes() && local.state.map_built.as_deref() == Some(&digest)
        }
        Err(e) => e.kind() == std::io::ErrorKind::NotFound && n == 0,
    };
    let held =
        (entries.iter()).filter(|(u, a)| *a == PostfixAnswer::Hold && postfix::map_key_ok(u));
    let done = format!(
        "{n} account(s) in {name}, {} of them held",
        held.clone().count()
    );
    if built {
        return Ok((false, done));
    }
    let now = Timestamp::now().millis().div_euclid(1000);
    for (user, _) in held {
        local
            .state
            .quarantined
            .entry(user.as_str().to_owned())
            .or_insert(now);
    }
    // Noted before the build: the map holds their mail from then on.
    local.save().map_err(|e| e.to_string())?;
    postfix::build_sasl_map(cfg, &text)?;
    // Saved with the rest by the caller; lost, it only rebuilds the same map.
    local.state.map_built = Some(digest);
    Ok((true, done))
}

/// Puts the queued mail of `users` on hold, except messages held here before (an
/// admin who released one by hand meant it); returns how many. Also notes the mail
/// Postfix held for a quarantined account (see `adopt`). Nothing to hold, nothing
/// read: `release` adopts a quarantine's mail itself, so a server whose queue cannot
/// be listed right now still converges its map and kicks. Saved at once: mail held
/// here and not noted would stay on hold.
pub fn hold(
    cfg: &Config,
    local: &mut Local,
    queue: &mut Queue,
    users: &[SaslUser],
) -> Result<usize, String> {
    if users.is_empty() {
        return Ok(0);
    }
    let (listed, logins) = queue.with_logins(cfg, local)?;
    postfix::forget_unlisted(&mut local.state.submitters, listed);
    adopt(local, listed, logins);
    let mut fresh: Vec<(&SaslUser, &postfix::QueuedMessage)> = Vec::new();
    for (m, login) in listed.iter().zip(logins) {
        if m.queue_name == "hold" {
            continue;
        }
        let Some(user) = postfix::owner_among(users, m, login) else {
            continue;
        };
        let before = local.state.held.get(user.as_str());
        if !before.is_some_and(|s| s.contains(&m.key())) {
            fresh.push((user, m));
        }
    }
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
    queue.moved(&ids, Some("hold"));
    Ok(n)
}

/// Joins to `held` the mail Postfix put on hold itself for a quarantined account: the
/// messages in the hold queue that the account submitted since its quarantine began
/// here (the map's HOLD), and those the policy service held in-band. Mail held before,
/// or submitted by anyone else, is not ours.
fn adopt(local: &mut Local, queue: &[postfix::QueuedMessage], logins: &[String]) {
    for (m, login) in queue.iter().zip(logins) {
        if m.queue_name != "hold" {
            continue;
        }
        let since = local.state.quarantined.get(login);
        let by_map = since.is_some_and(|s| m.arrival_time.unwrap_or(0.0) >= *s as f64);
        let in_band =
            (local.state.held_in_band.get(login)).is_some_and(|ids| ids.contains(&m.queue_id));
        if by_map || in_band {
            let held = local.state.held.entry(login.clone()).or_default();
            held.insert(m.key());
        }
    }
}

/// Releases (or, with `purge`, deletes) the account's mail that this server held, or
/// that Postfix held for its quarantine here, and that is still on hold; mail held by
/// anyone else stays. Forgets the account (the caller saves).
pub fn release(
    cfg: &Config,
    local: &mut Local,
    queue: &mut Queue,
    user: &str,
    purge: bool,
) -> Result<usize, String> {
    let quarantined =
        local.state.quarantined.contains_key(user) || local.state.held_in_band.contains_key(user);
    let ids: Vec<String> = if !quarantined && !local.state.held.contains_key(user) {
        Vec::new()
    } else {
        let listed = if quarantined {
            let (listed, logins) = queue.with_logins(cfg, local)?;
            adopt(local, listed, logins);
            listed
        } else {
            queue.messages(cfg)?
        };
        let ours = local.state.held.get(user).cloned().unwrap_or_default();
        (listed.iter())
            .filter(|m| m.queue_name == "hold" && ours.contains(&m.key()))
            .map(|m| m.queue_id.clone())
            .collect()
    };
    let flag = if purge { "-d" } else { "-H" };
    let n = postfix::postsuper(cfg, flag, Some("hold"), &ids)?;
    if purge {
        queue.moved(&ids, None);
    } else {
        // Where `postsuper -H` puts mail released from hold.
        queue.moved(&ids, Some("deferred"));
        postfix::deliver_now(cfg, &ids);
    }
    local.state.held.remove(user);
    local.state.quarantined.remove(user);
    local.state.held_in_band.remove(user);
    Ok(n)
}

/// Flushes the account's Dovecot auth cache and kicks its sessions here, and notes the
/// containment `id` as done unless it failed (then the next run tries again); the
/// caller saves.
pub fn kick(cfg: &Config, local: &mut Local, user: &SaslUser, id: String) -> Outcome {
    // The flush matches the name literally, so it runs even for a name never kicked.
    let outcome = dovecot::flush_and_kick(cfg, user);
    if !matches!(outcome, Outcome::Failed(_)) {
        local.state.kicked.insert(user.as_str().to_owned(), id);
    }
    outcome
}
