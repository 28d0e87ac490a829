//! Containment: what runs when an account's level rises, and the worker that runs it.
//!
//! `record` only *queues* actions (in the same transaction as the level change) and
//! starts a detached `run-actions`; nothing here runs under Fail2ban's lock.

pub mod converge;
mod dovecot;
pub mod exec;
pub mod in_band;
pub mod local;
pub mod mail;
pub mod password;
pub mod postcat;
pub mod postfix;
pub mod user_mail;
pub mod worker;

pub use crate::model::ActionKind;
use crate::model::Span;

/// A queued action waiting longer than this means the worker is not running: `check`
/// warns (its `--pending-age` default) and so does `doctor`.
pub const STUCK_AFTER: Span = Span::secs(600);

/// How one attempt at an action ended. The worker retries `Failed` only.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done(String),
    /// Nothing to do, or not applicable any more (e.g. the account was released).
    Skipped(String),
    /// Failed in a way that may pass (a server down, a command timing out): retried.
    Failed(String),
    /// Failed in a way no retry can fix (nothing configured to do it, a name the
    /// program would misread): final at once.
    Refused(String),
}
