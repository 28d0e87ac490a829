//! New to this account: the parties (owners, or wider networks without an ASN
//! database) an account has used, each with the log time it was first seen. A party
//! first seen once the account had been seen for `detection.known_after` stays new
//! for `detection.new_for`: its own carrier's NAT, its provider's fetcher, its CRM's
//! cloud are known; a hosting provider or a botnet it never used is not.
//!
//! The store keeps one row per (account, party) with its first and last log time,
//! written with each login and pruned with retention; an evaluation reads only the
//! parties first seen recently enough to be new, so its cost does not grow with the
//! account's history. The replay keeps the same in memory.

use foldhash::HashMap;

use crate::config::Detection;
use crate::model::{Span, Timestamp};

use super::OwnerKey;

/// What an account has used, as far as one evaluation needs it.
#[derive(Debug, Clone)]
pub struct Known {
    /// When the account was first seen (its earliest party's first log time).
    since: Option<Timestamp>,
    /// First log time of the parties that may be new; a party not held here is known
    /// (the store reads only recent ones) or not yet seen (the replay adds it first).
    first: HashMap<OwnerKey, Timestamp>,
    known_after: Span,
    new_for: Span,
    /// `detection.window`: how long a party is fresh (see `is_fresh`).
    fresh_for: Span,
}

impl Default for Known {
    fn default() -> Self {
        Self {
            since: None,
            first: HashMap::default(),
            known_after: Span::secs(0),
            new_for: Span::secs(0),
            fresh_for: Span::secs(0),
        }
    }
}

impl Known {
    pub fn new(d: &Detection) -> Self {
        Self {
            known_after: d.known_after,
            new_for: d.new_for,
            fresh_for: d.window,
            ..Self::default()
        }
    }

    /// Nothing is ever new: for views that judge without the account's history.
    pub fn none() -> Self {
        Self::default()
    }

    /// From the store: the account's first log time and the parties first seen after
    /// `recent_from(at)`.
    pub fn stored(
        d: &Detection,
        since: Option<Timestamp>,
        recent: impl IntoIterator<Item = (OwnerKey, Timestamp)>,
    ) -> Self {
        Self {
            since,
            first: recent.into_iter().collect(),
            ..Self::new(d)
        }
    }

    /// Where the parties an evaluation at `at` may find new begin: evidence reaches
    /// back one lookback, and a party stays new for `new_for` after its first login.
    pub fn recent_from(d: &Detection, at: Timestamp) -> Timestamp {
        at.minus(d.lookback()).minus(d.new_for)
    }

    /// `party` used at `t`.
    pub fn see(&mut self, party: OwnerKey, t: Timestamp) {
        self.since = Some(self.since.map_or(t, |s| s.min(t)));
        self.first
            .entry(party)
            .and_modify(|f| *f = (*f).min(t))
            .or_insert(t);
    }

    /// Whether the account had been seen long enough at `at` for a party to be new.
    pub fn warm(&self, at: Timestamp) -> bool {
        self.since
            .is_some_and(|s| self.known_after.millis() > 0 && s.plus(self.known_after) <= at)
    }

    /// Whether evidence from `party` at `t` is from a party new to the account.
    pub fn is_new(&self, party: OwnerKey, t: Timestamp) -> bool {
        let Some(&first) = self.first.get(&party) else {
            return false;
        };
        self.warm(first) && t.millis() - first.millis() < self.new_for.millis()
    }

    /// Whether evidence from `party` at `t` comes within the window after the party's
    /// first login, whatever the account's age: on its first day, what an account
    /// did not use an hour ago (a credential checker's dozens of owners) from what it
    /// has been using all day (a shared mailbox's households and phones).
    pub fn is_fresh(&self, party: OwnerKey, t: Timestamp) -> bool {
        self.first
            .get(&party)
            .is_some_and(|&first| t.millis() - first.millis() < self.fresh_for.millis())
    }

    /// The earliest first log time of a party held that is new at some moment: no
    /// evidence before it is from a new party. None: none is.
    pub fn new_from(&self) -> Option<Timestamp> {
        self.first.values().copied().filter(|f| self.warm(*f)).min()
    }

    /// Every party held with its first log time (the replay's, for the store).
    pub fn parties(&self) -> impl Iterator<Item = (OwnerKey, Timestamp)> + '_ {
        self.first.iter().map(|(k, t)| (*k, *t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::model::{ClientAddr, NetPrefixes};

    fn party(a: &str) -> OwnerKey {
        OwnerKey::Net(
            ClientAddr::parse(a)
                .unwrap()
                .net(NetPrefixes { v4: 16, v6: 32 }),
        )
    }

    #[test]
    fn new_only_once_the_account_has_history_and_only_for_a_while() {
        let cfg = Config::default();
        let d = &cfg.detection;
        let h = |n: i64| Timestamp::from_millis(n * 3_600_000);
        let mut k = Known::new(d);
        let home = party("198.51.100.7");
        let first_day = party("203.0.113.9");
        let later = party("192.0.2.1");
        k.see(home, h(0));
        k.see(first_day, h(5));
        assert!(!k.warm(h(23)));
        assert!(!k.is_new(first_day, h(5)), "everything is new at first");
        k.see(later, h(30));
        assert!(k.warm(h(30)));
        assert!(k.is_new(later, h(30)));
        assert!(k.is_new(later, h(53)));
        assert!(!k.is_new(later, h(54)), "known a day after its first login");
        assert!(!k.is_new(home, h(30)));
        assert!(!k.is_new(party("198.18.0.1"), h(30)), "not held: known");
    }
}
