//! What the backtest says leaves before containment: per account, the messages
//! accepted before its mail is stopped, with quarantine (stopped at the rise from ok,
//! notify in enforce mode) and without (stopped at block).

use serde::Serialize;

use super::Seen;
use crate::model::{Level, Source, Timestamp};

/// An account's messages (rate events) around the episode that took it to block.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Leak {
    /// Messages in the detection window when the account rose from ok (the crossing
    /// message and any of its second included): out before anything could answer.
    pub before_notify: u64,
    /// Messages after that rise up to and including the second it crossed into block:
    /// held with quarantine, sent without.
    pub notify_to_block: u64,
    /// The account reached block or lock (then the figures are final).
    pub blocked: bool,
    /// When the open episode rose from ok; None while at ok.
    #[serde(skip)]
    rose_at: Option<Timestamp>,
    #[serde(skip)]
    blocked_at: Option<Timestamp>,
}

impl Leak {
    /// Takes one replayed event, judged: the level before and after it, and the
    /// messages in the window as of the event (asked only at a rise from ok).
    pub fn note(&mut self, before: Level, after: Level, seen: &Seen, window: impl FnOnce() -> u64) {
        let messages = if seen.source == Source::Rate {
            u64::from(seen.count)
        } else {
            0
        };
        // Messages of the second something rose in went out: the map cannot have
        // changed yet (a line's login and its message come as two events).
        let same_second = |at: Option<Timestamp>| at == Some(seen.time);
        if self.blocked {
            if same_second(self.blocked_at) {
                self.add(messages, seen);
            }
            return;
        }
        if before == Level::Ok && after > Level::Ok {
            self.before_notify = window();
            self.notify_to_block = 0;
            self.rose_at = Some(seen.time);
        } else if after == Level::Ok {
            // Notify cleared: that alarm ends without containment.
            self.rose_at = None;
        } else if self.rose_at.is_some() {
            self.add(messages, seen);
        }
        if after >= Level::Block {
            self.blocked = true;
            self.blocked_at = Some(seen.time);
        }
    }

    fn add(&mut self, messages: u64, seen: &Seen) {
        if self.rose_at == Some(seen.time) {
            self.before_notify += messages;
        } else {
            self.notify_to_block += messages;
        }
    }

    /// Messages accepted before block: containment without quarantine.
    pub fn without_quarantine(&self) -> u64 {
        self.before_notify + self.notify_to_block
    }

    /// Messages accepted before the rise from ok: containment with quarantine.
    pub fn with_quarantine(&self) -> u64 {
        self.before_notify
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ClientAddr;

    fn message(secs: i64) -> Seen {
        Seen {
            source: Source::Rate,
            addr: ClientAddr::parse("203.0.113.1").unwrap(),
            time: Timestamp::from_millis(secs * 1000),
            count: 1,
            events: 1,
            message: None,
        }
    }

    #[test]
    fn counts_the_window_at_the_rise_then_up_to_block() {
        let mut leak = Leak::default();
        leak.note(Level::Ok, Level::Ok, &message(1), || unreachable!());
        leak.note(Level::Ok, Level::Notify, &message(2), || 7);
        leak.note(Level::Notify, Level::Notify, &message(2), || unreachable!());
        for s in 3..=5 {
            leak.note(Level::Notify, Level::Notify, &message(s), || unreachable!());
        }
        leak.note(Level::Notify, Level::Block, &message(6), || unreachable!());
        leak.note(Level::Block, Level::Block, &message(6), || unreachable!());
        leak.note(Level::Block, Level::Block, &message(7), || unreachable!());
        assert_eq!((leak.with_quarantine(), leak.without_quarantine()), (8, 13));
        assert!(leak.blocked);
    }

    #[test]
    fn a_cleared_alarm_starts_over() {
        let mut leak = Leak::default();
        leak.note(Level::Ok, Level::Notify, &message(1), || 3);
        leak.note(Level::Notify, Level::Notify, &message(2), || unreachable!());
        leak.note(Level::Notify, Level::Ok, &message(100), || unreachable!());
        leak.note(Level::Ok, Level::Ok, &message(101), || unreachable!());
        leak.note(Level::Ok, Level::Block, &message(102), || 2);
        assert_eq!((leak.with_quarantine(), leak.without_quarantine()), (2, 2));
    }
}
