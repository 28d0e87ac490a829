//! The rows of the actions queue as the worker, `status` and the admin mail read them.

use crate::model::{ActionKind, Level, SaslUser, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionState {
    Pending,
    Done,
    Skipped,
    Failed,
    Cancelled,
}

impl ActionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionState::Pending => "pending",
            ActionState::Done => "done",
            ActionState::Skipped => "skipped",
            ActionState::Failed => "failed",
            ActionState::Cancelled => "cancelled",
        }
    }

    pub fn from_db(raw: &str) -> Option<Self> {
        use ActionState::*;
        [Pending, Done, Skipped, Failed, Cancelled]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

/// A queued action as the worker needs it.
#[derive(Debug, Clone)]
pub struct QueuedAction {
    pub id: i64,
    /// The level change that queued it; actions of one escalation share it.
    pub change_id: i64,
    pub user: SaslUser,
    pub kind: ActionKind,
    pub level: Level,
    pub enforced: bool,
    pub attempts: u32,
}

/// One action with its history, for status and mail.
#[derive(Debug, Clone)]
pub struct ActionRecord {
    pub id: i64,
    pub change_id: i64,
    pub kind: ActionKind,
    pub level: Level,
    pub enforced: bool,
    pub state: ActionState,
    pub attempts: u32,
    pub created: Timestamp,
    pub updated: Option<Timestamp>,
    pub next: Timestamp,
    pub outcome: Option<String>,
    /// The server that queued it (`server_name`); None for rows from before.
    pub server: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ActionTotals {
    pub pending: u64,
    pub failed: u64,
    pub oldest_pending: Option<Timestamp>,
}
