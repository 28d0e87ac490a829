//! A `queue-scan`'s snapshot of Postfix's queues, as the store takes it: only mail an
//! account submitted itself, and only a grown count of it, can raise the account.

use std::collections::BTreeMap;

use crate::model::{SaslUser, Timestamp};

/// Senders of the mail in one Postfix queue at a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSender {
    pub queue: String,
    /// The envelope sender, as Postfix has it ("" for bounces). Anyone can write it.
    pub sender: String,
    /// The SASL account that submitted these messages, from the queue files ("" for
    /// mail without a login); read for the deferred queue, the one detection uses.
    pub account: String,
    pub messages: u32,
    pub recipients: u32,
    pub oldest: Option<Timestamp>,
}

/// One `queue-scan`: this server's queue senders at `at`.
pub struct QueueSnapshot<'a> {
    pub at: Timestamp,
    pub senders: &'a [QueueSender],
}

impl QueueSnapshot<'_> {
    /// Deferred messages per account that submitted them. Only mail an account
    /// submitted itself counts: a stranger can put any address in MAIL FROM on port
    /// 25. Senders without a login (local scripts, the null sender, forgeries) are
    /// listed, not judged.
    pub(super) fn deferred_per_account(&self) -> BTreeMap<&str, u32> {
        let mut out: BTreeMap<&str, u32> = BTreeMap::new();
        for s in self
            .senders
            .iter()
            .filter(|s| s.queue == "deferred" && !s.account.is_empty())
        {
            let n = out.entry(s.account.as_str()).or_default();
            *n = n.saturating_add(s.messages);
        }
        out
    }
}

/// The accounts whose deferred mail grew from `before` to `now`, in name order: levels
/// only rise, so only a grown count can change one.
pub(super) fn grown<'a>(
    before: &BTreeMap<String, u32>,
    now: impl IntoIterator<Item = (&'a str, u32)>,
) -> Vec<SaslUser> {
    now.into_iter()
        .filter(|(account, n)| *n > before.get(*account).copied().unwrap_or(0))
        .filter_map(|(account, _)| SaslUser::parse(account).ok())
        .collect()
}
