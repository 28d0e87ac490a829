//! Detection as both paths call it: `record`, through the store, with the evidence
//! loaded from the database, and `ingest`'s replay, with the evidence kept in memory.
//! One judgement and one explanation, so a backtest says what `record` does.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use super::{baseline, decide, evaluate, AccountState, Bounded, Counted, Facts, Seen};
use super::{Evaluation, Known, Origin, OwnerKey, Tally, Transition, Usual, Whitelist};
use crate::config::{Config, WindowStarts};
use crate::model::{Asn, Cidr, ClientAddr, ClientNet, SaslUser, Span, Timestamp};
use crate::ownership::Ownership;

pub struct Engine<'a> {
    cfg: &'a Config,
    /// Who owns each network, when an ASN database is configured.
    owners: &'a Ownership,
}

/// One account's evidence at one moment, however it was gathered.
pub struct Evidence<'a> {
    pub user: &'a SaslUser,
    pub at: Timestamp,
    pub state: &'a AccountState,
    /// Its evidence counted in the window and the spread window ending at `at`.
    pub tally: &'a Tally,
    /// Its deferred mail at the last queue scan.
    pub deferred: Option<u32>,
    /// Its usual figures, if baselines are on.
    pub usual: Option<Usual>,
    /// Whether it has history enough for a party to be new to it (`Known::warm`).
    pub warm: bool,
}

/// Detection's answer: the account's next state and, if its level changed, why.
pub struct Verdict {
    pub state: AccountState,
    pub transition: Option<Transition>,
    /// On a rise, the counted networks of the sources that rose, for `Engine::explain`.
    rise: Option<BTreeSet<ClientNet>>,
    /// On a rise, the parties of those sources new to the account.
    new: BTreeSet<OwnerKey>,
}

impl Verdict {
    /// Whether the level rose: only then is the reason explained further.
    pub fn rose(&self) -> bool {
        self.rise.is_some()
    }
}

impl<'a> Engine<'a> {
    pub fn new(cfg: &'a Config, owners: &'a Ownership) -> Self {
        Self { cfg, owners }
    }

    pub fn owners(&self) -> &'a Ownership {
        self.owners
    }

    pub fn config(&self) -> &'a Config {
        self.cfg
    }

    /// Where the windows of an evaluation at `at` start; the evidence `judge` needs
    /// reaches back to the earlier start.
    pub fn window_starts(&self, at: Timestamp) -> WindowStarts {
        self.cfg.detection.window_starts(at)
    }

    /// How far back one evaluation looks: the longer of the two windows.
    pub fn lookback(&self) -> Span {
        self.cfg.detection.lookback()
    }

    /// The history a baseline for the day of `at` is computed from; None: baselines off.
    pub fn history_range(&self, at: Timestamp) -> Option<(Timestamp, Timestamp)> {
        (self.cfg.detection.baseline.factor > 0)
            .then(|| baseline::history_range(self.cfg, baseline::day_of(at)))
    }

    /// Where the history `explain` compares a rise with begins: it ends where the
    /// evidence `judge` saw begins.
    pub fn explain_from(&self, at: Timestamp) -> Timestamp {
        at.minus(self.cfg.detection.baseline.history)
    }

    /// The networks that never count for `user`: built in, configured, and `from_db`.
    pub fn whitelist(&self, user: &SaslUser, from_db: &[Cidr]) -> Whitelist {
        Whitelist::new(self.cfg, user, from_db)
    }

    pub fn usual(&self, history: &[Seen], whitelist: &Whitelist) -> Usual {
        baseline::usual(self.cfg, history, whitelist, self.owners)
    }

    /// `seen` (the evidence since the earlier window start) counted at `at`.
    pub fn count(
        &self,
        whitelist: &Whitelist,
        known: &Known,
        at: Timestamp,
        seen: &[Seen],
    ) -> Tally {
        Tally::count(
            &self.cfg.detection,
            (whitelist, self.owners, known),
            at,
            seen,
        )
    }

    /// An empty count of `user`'s evidence at `at`, filled from stored rows until more
    /// cannot change the verdict (see `Bounded`).
    pub fn bounded<'b>(
        &'b self,
        whitelist: &'b Whitelist,
        known: &'b Known,
        user: &SaslUser,
        at: Timestamp,
        state: &AccountState,
        usual: Option<Usual>,
    ) -> Bounded<'b> {
        Bounded::new(
            self.cfg,
            (self.owners, whitelist, known),
            user,
            at,
            state,
            usual,
        )
    }

    /// One piece of evidence with `whitelist`, the owners and `known` applied, for
    /// `tally`: evidence counted at several moments is looked up once.
    pub fn counted(&self, whitelist: &Whitelist, known: &Known, seen: Seen) -> Counted {
        Counted::new(&self.cfg.detection, whitelist, self.owners, known, seen)
    }

    /// Where evidence from `addr` comes from: its party (see `Known`) unless
    /// whitelisted.
    pub fn origin(&self, whitelist: &Whitelist, addr: ClientAddr) -> Origin {
        Counted::origin(whitelist, self.owners, &self.cfg.detection, addr)
    }

    /// What the account's known parties are for an evaluation: the store reads the
    /// parties first seen after `known_from(at)`.
    pub fn known(
        &self,
        since: Option<Timestamp>,
        recent: impl IntoIterator<Item = (OwnerKey, Timestamp)>,
    ) -> Known {
        Known::stored(&self.cfg.detection, since, recent)
    }

    pub fn known_from(&self, at: Timestamp) -> Timestamp {
        Known::recent_from(&self.cfg.detection, at)
    }

    /// How a party is stored: owners from an ASN database and wider networks are
    /// different keys, so adding or dropping a database starts over instead of
    /// finding every party new.
    pub fn party_scheme(&self) -> &'static str {
        if self.owners.has_asn() {
            "asn"
        } else {
            "net"
        }
    }

    /// As `count`, over evidence already `counted`.
    pub fn tally(&self, at: Timestamp, evidence: &[Counted]) -> Tally {
        Tally::at(&self.cfg.detection, at, evidence.iter().copied())
    }

    /// The account's next state and the transition, if any.
    pub fn judge(&self, ev: &Evidence) -> Verdict {
        let facts = Facts {
            tally: ev.tally,
            covers_spread: true,
            refused: super::refused_counts(self.cfg, ev.state),
            deferred: ev.deferred,
            usual: ev.usual,
            warm: ev.warm,
        };
        let eval = evaluate(self.cfg, ev.user, &facts);
        let (state, transition) = decide(self.cfg, ev.state, &eval, ev.at);
        let rose = transition.as_ref().is_some_and(|t| t.to > t.from);
        let (rise, new) = if rose {
            let (nets, new) = risen(&eval);
            (Some(nets), new)
        } else {
            (None, BTreeSet::new())
        };
        Verdict {
            state,
            transition,
            rise,
            new,
        }
    }

    /// Adds to a rise's reason how many of the window's networks the account had not
    /// used before: `earlier` is its evidence from `explain_from(at)` up to where
    /// `recent`, the evidence the verdict was made from, begins.
    pub fn explain(&self, verdict: &mut Verdict, at: Timestamp, earlier: &[Seen], recent: &[Seen]) {
        if let (Some(window), Some(t)) = (&verdict.rise, verdict.transition.as_mut()) {
            note_new_networks(self.cfg, window, at, earlier, recent, t);
            if !verdict.new.is_empty() {
                name_new(self.owners, window, &verdict.new, &mut t.reason);
            }
            if self.owners.has_asn() {
                name_owners(self.owners, window, &mut t.reason);
            }
        }
    }
}

/// Appends what a longer history shows to a transition's reason at `at`: how many of
/// the window's networks (`window`) the account had not used before. `earlier` is its
/// evidence in the history before `recent`, the evidence the verdict was made from. A
/// note, never a signal of its own.
fn note_new_networks(
    cfg: &Config,
    window: &BTreeSet<ClientNet>,
    at: Timestamp,
    earlier: &[Seen],
    recent: &[Seen],
    t: &mut Transition,
) {
    let prefixes = cfg.detection.prefixes;
    let window_start = at.minus(cfg.detection.window);
    let known: BTreeSet<ClientNet> = earlier
        .iter()
        .chain(recent.iter().filter(|s| s.time <= window_start))
        .filter(|s| s.source.is_login())
        .map(|s| s.addr.net(prefixes))
        .collect();
    let new = window.iter().filter(|n| !known.contains(n)).count();
    // Without any history every network is new, which says nothing.
    if new > 0 && !known.is_empty() {
        let _ = write!(
            t.reason,
            "; new: {new} of {} network{} not seen in {}",
            window.len(),
            if window.len() == 1 { "" } else { "s" },
            cfg.detection.baseline.history
        );
    }
}

/// The login sources a rise is about: those whose signals reached its level (the
/// spread's are smtp's); every login source when only message signals did. An IMAP
/// checker's reason then names IMAP's networks and owners, not the phone's SMTP ones.
/// Returns their counted networks and their parties new to the account.
fn risen(eval: &Evaluation) -> (BTreeSet<ClientNet>, BTreeSet<OwnerKey>) {
    use crate::model::Source;
    let mut sources: BTreeSet<Source> = eval
        .signals
        .iter()
        .filter(|s| s.level == eval.level)
        .map(|s| match s.source {
            Source::Spread => Source::Smtp,
            other => other,
        })
        .filter(|s| s.is_login())
        .collect();
    if sources.is_empty() {
        sources = Source::ALL.into_iter().filter(|s| s.is_login()).collect();
    }
    let mut nets = BTreeSet::new();
    let mut new = BTreeSet::new();
    for (source, c) in eval.counts.sources() {
        if sources.contains(&source) {
            nets.extend(c.networks.iter().copied());
            new.extend(c.new_owners.iter().copied());
        }
    }
    (nets, new)
}

/// The parties new to the account named in a rise's reason:
/// `; new to this account: AS64500 Example Hosting, 198.51.0.0/16, ... (7)`: stored
/// as written, escaped where shown.
fn name_new(
    owners: &Ownership,
    window: &BTreeSet<ClientNet>,
    new: &BTreeSet<OwnerKey>,
    reason: &mut String,
) {
    const NAMED: usize = 3;
    let named: Vec<String> = new
        .iter()
        .take(NAMED)
        .map(|k| match k {
            OwnerKey::As(asn) => {
                // Its name from one of its networks in the window, if any says it.
                let org = window
                    .iter()
                    .filter_map(|n| owners.lookup(n.first()))
                    .find(|o| o.asn == *asn)
                    .and_then(|o| o.org)
                    .map(|org| format!(" {org}"))
                    .unwrap_or_default();
                format!("{asn}{org}")
            }
            OwnerKey::Net(net) => net.to_string(),
        })
        .collect();
    let _ = write!(reason, "; new to this account: {}", named.join(", "));
    if new.len() > NAMED {
        let _ = write!(reason, ", ... ({})", new.len());
    }
}

/// Owners named in a rise's reason, the most networks first:
/// `; owners: AS15169 Google x2, AS3320 Deutsche Telekom, ... (12)`. Stored as the
/// AS holder wrote its name: everything that shows a reason escapes it.
fn name_owners(owners: &Ownership, window: &BTreeSet<ClientNet>, reason: &mut String) {
    const NAMED: usize = 3;
    let mut by_owner: BTreeMap<Asn, (usize, Option<Arc<str>>)> = BTreeMap::new();
    for net in window {
        if let Some(o) = owners.lookup(net.first()) {
            by_owner.entry(o.asn).or_insert((0, o.org)).0 += 1;
        }
    }
    if by_owner.is_empty() {
        return;
    }
    let mut ranked: Vec<(Asn, usize, Option<Arc<str>>)> = by_owner
        .into_iter()
        .map(|(a, (n, org))| (a, n, org))
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let named: Vec<String> = ranked
        .iter()
        .take(NAMED)
        .map(|(asn, n, org)| {
            let mut s = asn.to_string();
            if let Some(org) = org {
                let _ = write!(s, " {org}");
            }
            if *n > 1 {
                let _ = write!(s, " x{n}");
            }
            s
        })
        .collect();
    let _ = write!(reason, "; owners: {}", named.join(", "));
    if ranked.len() > NAMED {
        let _ = write!(reason, ", ... ({})", ranked.len());
    }
}
