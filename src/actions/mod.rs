//! Containment: what runs when an account's level rises, and the worker that runs it.
//!
//! `record` only *queues* actions (in the same transaction as the level change) and
//! starts a detached `run-actions`; nothing here runs under Fail2ban's lock.

mod dovecot;
pub mod exec;
pub mod mail;
pub mod password;
pub mod postcat;
pub mod postfix;
pub mod worker;

use std::fmt;
use std::str::FromStr;

use crate::config::Config;
use crate::detect::Transition;
use crate::model::Span;

/// A queued action waiting longer than this means the worker is not running: `check`
/// warns (its `--pending-age` default) and so does `doctor`.
pub const STUCK_AFTER: Span = Span::secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Admin mail with the evidence and the release command.
    Mail,
    /// The account in Postfix's check_sasl_access map: no more sending.
    SaslBlock,
    /// Put the account's queued mail on hold (not deleted: release can send it).
    HoldQueue,
    /// New random password in the password store.
    ResetPassword,
    /// Flush Dovecot's auth cache for the account and kick its sessions.
    DovecotKick,
}

impl ActionKind {
    pub const ALL: [ActionKind; 5] = [
        ActionKind::Mail,
        ActionKind::SaslBlock,
        ActionKind::HoldQueue,
        ActionKind::ResetPassword,
        ActionKind::DovecotKick,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Mail => "mail",
            ActionKind::SaslBlock => "sasl_block",
            ActionKind::HoldQueue => "hold_queue",
            ActionKind::ResetPassword => "reset_password",
            ActionKind::DovecotKick => "dovecot_kick",
        }
    }

    /// What the admin reads in mail and status.
    pub fn describe(self) -> &'static str {
        match self {
            ActionKind::Mail => "mail the admin",
            ActionKind::SaslBlock => "block sending (Postfix check_sasl_access)",
            ActionKind::HoldQueue => "hold the account's queued mail",
            ActionKind::ResetPassword => "reset the password",
            ActionKind::DovecotKick => "flush Dovecot's auth cache and kick sessions",
        }
    }
}

impl FromStr for ActionKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|a| a.as_str()).collect();
                format!("{s:?} is not one of {}", names.join(", "))
            })
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one attempt at an action ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done(String),
    /// Nothing to do, or not applicable any more (e.g. the account was released).
    Skipped(String),
    Failed(String),
    /// Failed in a way no retry can fix.
    Refused(String),
}

/// The actions a transition queues: a rise (or a block becoming enforced) runs the
/// new level's list; in warn mode only the mail goes out, saying what would be done.
pub fn plan(cfg: &Config, t: &Transition) -> Vec<ActionKind> {
    let newly_enforced = t.to == t.from && t.enforced;
    if t.to <= t.from && !newly_enforced {
        return Vec::new();
    }
    let list = cfg.contain.actions.for_level(t.to);
    if t.enforced || !t.to.needs_enforcement() {
        list.to_vec()
    } else {
        list.iter()
            .copied()
            .filter(|a| *a == ActionKind::Mail)
            .collect()
    }
}
