//! How much of an account's stored evidence `record` reads to reach its verdict. The
//! verdict compares each count of distinct networks and owners with thresholds; once
//! a count is past the highest threshold it is compared with, more of the same cannot
//! change the verdict. So each login source is read newest first and its reading stops
//! there: an account seen from 20,000 networks is read about as far as one seen from
//! a few dozen. Message counts (rate, bounces) are sums and a share: read whole.
//!
//! Once an account has history (see `Known`), its login counts are of networks and
//! owners new to it: no row older than the earliest first login of a party new to it
//! can add to them, so a source's reading also stops there (or once those counts are
//! past the thresholds too), and needs nothing more when no party is new to it,
//! however many networks of its known parties the window holds. A few networks of a
//! new party beside thousands of a known one are read back to the new party's first
//! login: at most the window, never the older history.
//!
//! The counts are then lower bounds, exact below `enough`, and judge exactly as the
//! full counts do. Their figures are not for explanations: a level change is judged
//! again from all the evidence, as `ingest`'s replay judges it (see `store::evaluate`).

use super::signal::{NEW_NETS_MAILING, NEW_OWNERS_MAILING, PARTY_CAP_UP_TO};
use super::{AccountState, Counted, Known, Origin, Seen, Tally, Usual, Whitelist};
use crate::config::{Config, WindowStarts};
use crate::model::{ClientAddr, SaslUser, Source, Timestamp};
use crate::ownership::Ownership;

/// One account's evidence counted as far as its verdict can change; see the module
/// documentation.
pub struct Bounded<'a> {
    cfg: &'a Config,
    owners: &'a Ownership,
    whitelist: &'a Whitelist,
    known: &'a Known,
    starts: WindowStarts,
    /// Rows before this are from no party new to the account: its new counts are
    /// complete once a source is read past it. None: nothing is new to it.
    new_from: Option<Timestamp>,
    /// The account has history (`Known::warm`): its wider networks of the spread
    /// window no longer count on their own (see `signal::spread_block`).
    warm: bool,
    /// The account's SMTP network count can block (it has a block or lock threshold).
    smtp_blocks: bool,
    count_from: Timestamp,
    /// Distinct networks, owners and spread owners at or above this are past every
    /// threshold they are compared with.
    enough: usize,
    /// Per source (`Source as usize`): a row at or before the window's start was read,
    /// so its window counts are complete (rows come newest first).
    past_window: [bool; Source::ALL.len()],
    /// Per source: a row before `new_from` was read.
    past_new: [bool; Source::ALL.len()],
    tally: Tally,
    /// The last row's address and origin: an account's rows mostly repeat their
    /// address, and its owner is a lookup in the ASN database.
    last: Option<(ClientAddr, Origin)>,
}

/// What to read of one source: its rows after `since` (exclusive), newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    pub source: Source,
    pub since: Timestamp,
}

impl<'a> Bounded<'a> {
    pub(super) fn new(
        cfg: &'a Config,
        (owners, whitelist, known): (&'a Ownership, &'a Whitelist, &'a Known),
        user: &SaslUser,
        at: Timestamp,
        state: &AccountState,
        usual: Option<Usual>,
    ) -> Self {
        Self {
            cfg,
            owners,
            whitelist,
            known,
            starts: cfg.detection.window_starts(at),
            new_from: known.new_from().filter(|_| known.warm(at)),
            warm: known.warm(at),
            smtp_blocks: {
                let t = cfg.thresholds_for(user, Source::Smtp);
                t.block.is_some() || t.lock.is_some()
            },
            count_from: state.count_from,
            enough: enough(cfg, user, usual),
            past_window: [false; Source::ALL.len()],
            past_new: [false; Source::ALL.len()],
            tally: Tally::default(),
            last: None,
        }
    }

    /// Each stored source over the windows it counts in: SMTP logins (refused ones
    /// too) over the spread window as well, the rest over the window.
    pub fn reads(&self) -> Vec<Read> {
        Source::ALL
            .into_iter()
            .filter(|s| s.is_recorded())
            .map(|source| {
                let start = if source.counted_as() == Source::Smtp {
                    self.starts.earliest()
                } else {
                    self.starts.window
                };
                Read {
                    source,
                    since: start.max(self.count_from),
                }
            })
            .collect()
    }

    /// Adds one stored row of `seen.source`, no later than the windows' end; each
    /// source's rows newest first.
    pub fn add(&mut self, seen: Seen) {
        if seen.time <= self.starts.window {
            self.past_window[seen.source as usize] = true;
        }
        if self.new_from.is_some_and(|from| seen.time < from) {
            self.past_new[seen.source as usize] = true;
        }
        let d = &self.cfg.detection;
        let origin = match self.last {
            Some((addr, origin)) if addr == seen.addr => origin,
            _ => Counted::origin(self.whitelist, self.owners, d, seen.addr),
        };
        self.last = Some((seen.addr, origin));
        let c = Counted::of(d, self.known, seen, origin);
        self.tally.add_in(self.starts, &c);
    }

    /// Whether older rows of `source` than those added can no longer change the
    /// verdict. Never for message counts, which are summed whole.
    pub fn settled(&self, source: Source) -> bool {
        if !source.is_login() {
            return false;
        }
        if self.enough == 0 {
            return true;
        }
        let counted = source.counted_as();
        let smtp = counted == Source::Smtp;
        let t = self.tally.source(counted);
        let past_window = self.past_window[source as usize];
        // No older row is from a party new to the account.
        let past_new = self.new_from.is_none() || self.past_new[source as usize];
        let window = past_window
            || (t.networks.len() >= self.enough
                && t.owners.len() >= self.enough
                // Not yet warm and without owners, a count rises only as far as its
                // wider networks do, up to a limit (`party_capped`).
                && (self.warm
                    || t.parties().known
                    || t.party_keys.len() >= self.enough
                    || t.networks.len() > self.enough.saturating_mul(PARTY_CAP_UP_TO))
                // Other sources than smtp count owners first seen within the window.
                && (smtp || t.fresh_owners.len() >= self.enough)
                // Whether owners are known changes which rules apply.
                && (!self.owners.has_asn() || t.parties().known));
        let new_window = past_window
            || past_new
            || (t.new_networks.len() >= self.enough && t.new_owners.len() >= self.enough);
        // Not yet warm, the spread window's wider networks count too, unless the
        // window's networks, spread over more than a few /24s (owners), are past every
        // threshold already: nothing can rise further.
        let top = self.smtp_blocks
            && t.networks.len() >= self.enough
            && t.owners.len() > self.cfg.detection.escalate_min_spread as usize;
        let spread = !smtp
            || (self.tally.spread() >= self.enough
                && (self.warm || top || self.tally.spread_parties() >= self.enough));
        let new_spread = !smtp || past_new || self.tally.spread_new() >= self.enough;
        window && new_window && spread && new_spread
    }

    pub fn tally(&self) -> &Tally {
        &self.tally
    }
}

/// One past the highest threshold that a count of distinct networks, owners or spread
/// owners is compared with when `user` is judged (`evaluate`, `baseline::crossed`);
/// 0 for an exempt account, which no count moves.
fn enough(cfg: &Config, user: &SaslUser, usual: Option<Usual>) -> usize {
    if cfg.users.get(user).is_some_and(|p| p.exempt) {
        return 0;
    }
    let d = &cfg.detection;
    let mut highest: u64 = [
        1, // one_quiet_owner: at most one owner
        d.escalate_min_spread,
        d.owners_notify,
        d.owners_block,
        d.owners_lock,
        d.spread_owners_block.saturating_mul(4),
    ]
    .into_iter()
    .map(u64::from)
    .chain([NEW_OWNERS_MAILING, NEW_NETS_MAILING]) // `new_owners_mailing`
    .max()
    .unwrap_or(1);
    for source in Source::ALL
        .into_iter()
        .filter(|s| s.is_login() || *s == Source::Spread)
    {
        let t = cfg.thresholds_for(user, source);
        for th in [t.notify, t.block, t.lock].into_iter().flatten() {
            highest = highest.max(th.into());
        }
    }
    if let Some(u) = usual {
        let b = &d.baseline;
        let spread = (u64::from(u.networks) * u64::from(b.factor)).max(b.min_networks.into());
        highest = highest.max(spread);
    }
    usize::try_from(highest.saturating_add(1)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests;
