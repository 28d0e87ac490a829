//! What evaluation counts for one account, kept as running totals: distinct networks
//! per source in the window, logins and messages, and the wider networks of SMTP
//! logins in the spread window. `record` counts its rows once; the replay adds each
//! event and removes what slides out of each window instead of re-counting the
//! account's whole lookback at every event.

use std::borrow::Cow;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

pub use super::counted::{Counted, Origin, OwnerKey};
use super::{Known, MessageKey, Seen, Whitelist};
use crate::config::{Detection, WindowStarts};
use crate::model::{ClientNet, Source, Timestamp};
use crate::ownership::Ownership;

/// Whether evidence enters or leaves a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Add,
    Remove,
}

impl Change {
    fn apply_u32(self, total: &mut u32, n: u32) {
        *total = match self {
            Change::Add => total.wrapping_add(n),
            Change::Remove => total.wrapping_sub(n),
        };
    }

    fn apply_u64(self, total: &mut u64, n: u64) {
        *total = match self {
            Change::Add => total.wrapping_add(n),
            Change::Remove => total.wrapping_sub(n),
        };
    }
}

/// Distinct networks (or owners), each with how many pieces of evidence hold it. A
/// B-tree: most accounts have a few, found in one node without hashing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetCounts<K = ClientNet>(BTreeMap<K, u32>);

impl<K> Default for NetCounts<K> {
    fn default() -> Self {
        Self(BTreeMap::new())
    }
}

impl<K: Ord + Copy> NetCounts<K> {
    /// Adds everything `other` holds.
    fn merge(&mut self, other: &Self) {
        for (k, n) in &other.0 {
            self.change(*k, Change::Add, *n);
        }
    }

    /// `n` pieces of evidence from `net` enter or leave.
    fn change(&mut self, net: K, change: Change, n: u32) {
        match (self.0.entry(net), change) {
            (Entry::Occupied(e), Change::Remove) if *e.get() <= n => {
                e.remove();
            }
            (Entry::Occupied(mut e), _) => change.apply_u32(e.get_mut(), n),
            (Entry::Vacant(e), Change::Add) => {
                e.insert(n);
            }
            // Removing what was never added: nothing is held, so nothing to take away.
            (Entry::Vacant(_), Change::Remove) => {}
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &K> {
        self.0.keys()
    }
}

/// One source's evidence in the window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceTally {
    /// Distinct counted networks (`detection.prefixes`).
    pub networks: NetCounts,
    /// The same per spread prefix (/24, /48): how widely they are spread.
    pub wide: NetCounts,
    /// Their owners (see `OwnerKey`): how many parties they belong to.
    pub owners: NetCounts<OwnerKey>,
    /// Stored events counted: logins, or message counts for rate and bounces.
    pub events: u32,
    /// Stored events from whitelisted networks, not counted (logins), and message
    /// counts from networks the admin whitelisted, not counted either.
    pub whitelisted_events: u32,
    /// Sum of the counts: messages for rate, bounces for bounces.
    pub messages: u64,
    /// The networks, owners and messages of these from parties new to the account.
    pub new_networks: NetCounts,
    pub new_owners: NetCounts<OwnerKey>,
    pub new_messages: u64,
    /// The owners of these first seen within the window before (see
    /// `Known::is_fresh`): on an account's first day, other sources than smtp count
    /// owners by these.
    pub fresh_owners: NetCounts<OwnerKey>,
    /// The parties and messages of these first seen within the window: on an
    /// account's first day, a drip's hosts each sending (see `new_owners_mailing`).
    pub fresh_parties: NetCounts<OwnerKey>,
    pub fresh_messages: u64,
    /// Their parties (see `Known`): without an ASN database the /16s (/32s), which a
    /// count on an account's first day needs many of to block.
    pub party_keys: NetCounts<OwnerKey>,
}

/// How many parties a source's networks belong to: owners when an ASN database knows
/// them (`known`), else wider networks, the stand-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parties {
    pub count: usize,
    pub known: bool,
}

impl std::fmt::Display for Parties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (one, many) = if self.known {
            ("owner", "owners")
        } else {
            ("wider network", "wider networks")
        };
        write!(
            f,
            "{} {}",
            self.count,
            if self.count == 1 { one } else { many }
        )
    }
}

impl Parties {
    /// What is counted: owners, or wider networks without an ASN database.
    pub fn noun(&self) -> &'static str {
        if self.known {
            "owners"
        } else {
            "wider networks"
        }
    }
}

impl SourceTally {
    pub fn parties(&self) -> Parties {
        Parties {
            count: self.owners.len(),
            known: self.owners.iter().any(|k| matches!(k, OwnerKey::As(_))),
        }
    }
}

/// One account's running totals; see the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Indexed by `Source as usize`.
    sources: [SourceTally; Source::ALL.len()],
    /// Owners (wider networks without an ASN database) of counted SMTP logins in the
    /// spread window: a phone hopping between /64s of its carrier is one party.
    spread: NetCounts<OwnerKey>,
    /// The same for refused SMTP logins, kept apart: they count as smtp logins only
    /// when detection says so (see `detect::refused_counts`).
    spread_refused: NetCounts<OwnerKey>,
    /// Those of `spread` new to the account.
    spread_new: NetCounts<OwnerKey>,
    spread_refused_new: NetCounts<OwnerKey>,
    /// The parties of `spread` (see `Known`), and of the refused ones.
    spread_parties: NetCounts<OwnerKey>,
    spread_refused_parties: NetCounts<OwnerKey>,
    /// The messages bounced recipients in the window belong to; bounces without a
    /// known message are one message each (`unknown_bounced`).
    bounced: NetCounts<MessageKey>,
    unknown_bounced: u32,
}

impl Tally {
    /// Counted from scratch at `at`: the evidence up to `at`, each piece in the
    /// windows it falls in.
    pub fn at(d: &Detection, at: Timestamp, evidence: impl IntoIterator<Item = Counted>) -> Self {
        let starts = d.window_starts(at);
        let mut tally = Self::default();
        for c in evidence.into_iter().filter(|c| c.seen.time <= at) {
            tally.add_in(starts, &c);
        }
        tally
    }

    /// Adds evidence (at or before the windows' end) to the windows it falls in.
    pub fn add_in(&mut self, starts: WindowStarts, c: &Counted) {
        if c.seen.time > starts.spread {
            self.change_spread(c, Change::Add);
        }
        if c.seen.time > starts.window {
            self.change_window(c, Change::Add);
        }
    }

    /// As `at`, over stored evidence, with `whitelist`, `owners` and `known` applied.
    pub fn count(
        d: &Detection,
        (whitelist, owners, known): (&Whitelist, &Ownership, &Known),
        at: Timestamp,
        seen: &[Seen],
    ) -> Self {
        Self::at(
            d,
            at,
            seen.iter()
                .map(|s| Counted::new(d, whitelist, owners, known, *s)),
        )
    }

    /// Adds evidence to both windows.
    pub fn add(&mut self, c: &Counted) {
        self.change_window(c, Change::Add);
        self.change_spread(c, Change::Add);
    }

    /// Removes evidence from both windows.
    pub fn remove(&mut self, c: &Counted) {
        self.change_window(c, Change::Remove);
        self.change_spread(c, Change::Remove);
    }

    /// Evidence enters or leaves the window (`detection.window`).
    pub fn change_window(&mut self, c: &Counted, change: Change) {
        let events = c.seen.events;
        // Refused smtp logins in their own slot: `counted` merges them when they count.
        let t = &mut self.sources[c.seen.source as usize];
        change.apply_u32(&mut t.events, events);
        if c.vouched && !c.seen.source.is_login() {
            change.apply_u32(&mut t.whitelisted_events, events);
            return;
        }
        change.apply_u64(&mut t.messages, c.seen.count.into());
        if c.new {
            change.apply_u64(&mut t.new_messages, c.seen.count.into());
        }
        if c.fresh {
            change.apply_u64(&mut t.fresh_messages, c.seen.count.into());
        }
        if c.seen.source == Source::Bounces {
            match c.seen.message {
                Some(m) => self.bounced.change(m, change, events),
                None => change.apply_u32(&mut self.unknown_bounced, events),
            }
        }
        if !c.seen.source.is_login() {
            return;
        }
        match c.nets {
            Some((net, wide, owner)) => {
                t.networks.change(net, change, events);
                t.wide.change(wide, change, events);
                t.owners.change(owner, change, events);
                if c.fresh {
                    t.fresh_owners.change(owner, change, events);
                }
                if let Some(party) = c.party {
                    t.party_keys.change(party, change, events);
                    if c.fresh {
                        t.fresh_parties.change(party, change, events);
                    }
                }
                if let Some(party) = c.party.filter(|_| c.new) {
                    t.new_networks.change(net, change, events);
                    t.new_owners.change(party, change, events);
                }
            }
            None => change.apply_u32(&mut t.whitelisted_events, events),
        }
    }

    /// Evidence enters or leaves the spread window (`detection.spread_window`).
    pub fn change_spread(&mut self, c: &Counted, change: Change) {
        let (spread, new, parties) = match c.seen.source {
            Source::Smtp => (
                &mut self.spread,
                &mut self.spread_new,
                &mut self.spread_parties,
            ),
            Source::SmtpRefused => (
                &mut self.spread_refused,
                &mut self.spread_refused_new,
                &mut self.spread_refused_parties,
            ),
            _ => return,
        };
        if let Some((_, _, owner)) = c.nets {
            spread.change(owner, change, c.seen.events);
        }
        if let Some(party) = c.party {
            parties.change(party, change, c.seen.events);
            if c.new {
                new.change(party, change, c.seen.events);
            }
        }
    }

    /// What evaluation counts: these totals, with the refused smtp logins counted as
    /// smtp logins when `refused` (the account is blocked in enforce mode), else left
    /// out. Borrowed when there is nothing to merge.
    pub fn counted(&self, refused: bool) -> Cow<'_, Tally> {
        let r = &self.sources[Source::SmtpRefused as usize];
        if r.events == 0 && self.spread_refused.is_empty() {
            return Cow::Borrowed(self);
        }
        let mut t = self.clone();
        let r = std::mem::take(&mut t.sources[Source::SmtpRefused as usize]);
        let spread_refused = std::mem::take(&mut t.spread_refused);
        let spread_refused_new = std::mem::take(&mut t.spread_refused_new);
        let spread_refused_parties = std::mem::take(&mut t.spread_refused_parties);
        if refused {
            let smtp = &mut t.sources[Source::Smtp as usize];
            smtp.events = smtp.events.wrapping_add(r.events);
            smtp.whitelisted_events = smtp.whitelisted_events.wrapping_add(r.whitelisted_events);
            smtp.networks.merge(&r.networks);
            smtp.wide.merge(&r.wide);
            smtp.owners.merge(&r.owners);
            smtp.new_networks.merge(&r.new_networks);
            smtp.new_owners.merge(&r.new_owners);
            smtp.fresh_owners.merge(&r.fresh_owners);
            smtp.fresh_parties.merge(&r.fresh_parties);
            smtp.fresh_messages = smtp.fresh_messages.wrapping_add(r.fresh_messages);
            smtp.party_keys.merge(&r.party_keys);
            smtp.new_messages = smtp.new_messages.wrapping_add(r.new_messages);
            t.spread.merge(&spread_refused);
            t.spread_new.merge(&spread_refused_new);
            t.spread_parties.merge(&spread_refused_parties);
        }
        Cow::Owned(t)
    }

    /// Refused smtp logins in the window: (logins, distinct networks).
    pub fn refused(&self) -> (u32, usize) {
        let r = &self.sources[Source::SmtpRefused as usize];
        (r.events, r.networks.len())
    }

    /// The sources with evidence in the window, in source order.
    pub fn sources(&self) -> impl Iterator<Item = (Source, &SourceTally)> {
        Source::ALL
            .into_iter()
            .zip(&self.sources)
            .filter(|(_, t)| t.events > 0)
    }

    pub fn source(&self, source: Source) -> &SourceTally {
        &self.sources[source as usize]
    }

    /// Messages with bounced recipients in the window.
    pub fn bounced_messages(&self) -> u64 {
        self.bounced.len() as u64 + u64::from(self.unknown_bounced)
    }

    /// Distinct owners (else wider networks) of SMTP logins in the spread window.
    pub fn spread(&self) -> usize {
        self.spread.len()
    }

    /// Those of `spread` new to the account.
    pub fn spread_new(&self) -> usize {
        self.spread_new.len()
    }

    /// The parties (see `Known`) of `spread`: without an ASN database its /16s (/32s).
    pub fn spread_parties(&self) -> usize {
        self.spread_parties.len()
    }

    /// Distinct counted networks over all login sources in the window.
    pub fn networks(&self) -> BTreeSet<ClientNet> {
        self.sources
            .iter()
            .flat_map(|t| t.networks.iter().copied())
            .collect()
    }
}

#[cfg(test)]
mod tests;
