//! Which message a bounce belongs to. The bounce jail reports each bounced recipient
//! as its own call, with Fail2ban's ticket id `('QUEUEID', 'recipient')`: the queue id
//! ties the recipients of one message together, so the bounce share counts messages
//! that bounced, not recipients, and one message to many dead addresses is one.

use std::hash::{Hash, Hasher};

use crate::model::Source;

/// A message's queue id, hashed: only compared, never shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageKey(u64);

/// The message of a stored bounce with ticket id `fid`; None for other sources and
/// for a bounce without a readable queue id (then it counts as a message of its own).
pub fn message_of(source: Source, fid: Option<&str>) -> Option<MessageKey> {
    if source != Source::Bounces {
        return None;
    }
    // Postfix's queue id (the filter's `_qid`), the tuple's first item.
    let rest = fid?.strip_prefix("('")?;
    let (qid, _) = rest.split_once('\'')?;
    let valid = (5..=20).contains(&qid.len()) && qid.bytes().all(|b| b.is_ascii_alphanumeric());
    valid.then(|| {
        // SipHash with fixed keys: the same key in every process, for the same id.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        qid.hash(&mut h);
        MessageKey(h.finish())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_id_of_a_bounce_ticket_names_its_message() {
        let a = message_of(Source::Bounces, Some("('4F1A32C0D1', 'r1@remote.example')"));
        let b = message_of(Source::Bounces, Some("('4F1A32C0D1', 'r2@remote.example')"));
        let c = message_of(Source::Bounces, Some("('4F1A32C0D2', 'r1@remote.example')"));
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_ne!(a, c);
        for fid in [
            None,
            Some(""),
            Some("4F1A32C0D1"),
            Some("('4F1A', 'r')"),
            Some("('4F1A32C0D1:x', 'r')"),
        ] {
            assert_eq!(message_of(Source::Bounces, fid), None, "{fid:?}");
        }
        assert_eq!(message_of(Source::Rate, Some("('4F1A32C0D1', 'r')")), None);
    }
}
