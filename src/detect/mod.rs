//! Detection: from one account's logins in a window to a level, and from the level
//! to a transition. Pure functions over data the store hands in, so they are the same
//! for the hot path (`record`), the admin view (`status`) and tests.

mod answer;
pub mod baseline;
mod bound;
mod counted;
mod engine;
mod fold;
mod known;
pub mod leak;
mod message;
pub mod replay;
mod signal;
pub mod tally;
pub mod whitelist;

use std::borrow::Cow;

use crate::config::Config;
use crate::model::{ClientAddr, Level, Mode, SaslUser, Source, Span, Timestamp};

pub use answer::PostfixAnswer;
pub use baseline::Usual;
pub use bound::{Bounded, Read};
pub use engine::{Engine, Evidence, Verdict};
pub use fold::Fold;
pub use known::Known;
pub use message::{message_of, MessageKey};
use signal::{
    bounce_share, corroborate, crossed, new_owners_mailing, new_sending, one_quiet_owner,
    own_thresholds, owner_count, party_capped, spread_block, unit,
};
pub use signal::{Crossing, Signal};
pub use tally::{Counted, Origin, OwnerKey, Parties, Tally};
pub use whitelist::Whitelist;

/// One stored event, as detection needs it: a login, or `count` messages; or, folded
/// (see `Fold`), `events` of them that evaluation cannot tell apart.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub source: Source,
    pub addr: ClientAddr,
    /// The latest of the folded ones.
    pub time: Timestamp,
    /// Messages (rate) or bounced recipients (bounces), summed over the folded events;
    /// 1 per login.
    pub count: u32,
    /// How many stored events this stands for: 1, or more when folded.
    pub events: u32,
    /// For a bounce: the message it belongs to, when its ticket id names one.
    pub message: Option<MessageKey>,
}

/// What is stored about an account between events.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountState {
    pub level: Level,
    pub enforced: bool,
    /// Last time the account was evaluated at or above notify (drives the quiet period).
    pub last_hit: Option<Timestamp>,
    /// Logins at or before this are ignored (as evaluation, evidence and the overview
    /// all read them): set on release so old evidence cannot re-block.
    pub count_from: Timestamp,
}

impl Default for AccountState {
    fn default() -> Self {
        Self {
            level: Level::Ok,
            enforced: false,
            last_hit: None,
            count_from: Timestamp::from_millis(0),
        }
    }
}

/// Everything detection looks at for one account at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The account's evidence counted at that moment: the window, and the spread
    /// window too when `covers_spread`.
    pub tally: &'a Tally,
    pub covers_spread: bool,
    /// Whether refused smtp logins count: `refused_counts` of the account's state.
    pub refused: bool,
    /// The account's deferred mail at the last `queue-scan`.
    pub deferred: Option<u32>,
    pub usual: Option<Usual>,
    /// The account has history enough for a party to be new to it (see `Known`):
    /// logins then count by the parties it had not used, not by every address.
    pub warm: bool,
}

#[derive(Debug, Clone)]
pub struct Evaluation<'a> {
    pub level: Level,
    pub exempt: bool,
    /// What it was made from, as counted (see `Tally::counted`): borrowed unless
    /// refused logins had to be merged or left out, so a replay does not copy sets
    /// per event.
    pub counts: Cow<'a, Tally>,
    /// Every signal that fired, the strongest first.
    pub signals: Vec<Signal>,
    /// Distinct wider networks of SMTP logins in the spread window, if it was covered.
    pub spread: Option<usize>,
    window: Span,
}

impl Evaluation<'_> {
    /// Distinct counted networks over all login sources in the window.
    pub fn networks(&self) -> usize {
        self.counts.networks().len()
    }

    /// Logins counted over all login sources in the window.
    pub fn logins(&self) -> u32 {
        self.counts
            .sources()
            .filter(|(s, _)| s.is_login())
            .map(|(_, c)| c.events)
            .sum()
    }

    /// Messages of `source` (rate, bounces) in the window.
    pub fn messages(&self, source: Source) -> u64 {
        self.counts.source(source).messages
    }

    /// `smtp: 14 networks/1h > 10; rate: 340 msgs/1h > 100`: every signal that fired.
    pub fn reason(&self) -> String {
        if self.exempt {
            return "exempt by configuration".into();
        }
        if self.signals.is_empty() {
            let nets = self.networks();
            return format!(
                "{nets} network{} in {}",
                if nets == 1 { "" } else { "s" },
                self.window
            );
        }
        let parts: Vec<String> = self.signals.iter().map(Signal::to_string).collect();
        parts.join("; ")
    }
}

/// Decides the level one account's counted evidence reaches, and why.
pub fn evaluate<'a>(cfg: &Config, user: &SaslUser, facts: &Facts<'a>) -> Evaluation<'a> {
    let d = &cfg.detection;
    let counted = facts.tally.counted(facts.refused);
    let counts: &Tally = &counted;
    let spread = facts.covers_spread.then(|| counts.spread());
    let exempt = cfg.users.get(user).is_some_and(|p| p.exempt);
    let mut signals = Vec::new();
    // Network counts at notify spread widely enough to escalate: corroboration candidates.
    let mut spread_counts = Vec::new();
    if !exempt {
        let check = |source: Source, value: u64, window: Option<Span>| {
            crossed(source, value, window, cfg.thresholds_for(user, source))
        };
        // An account with a baseline is judged against its own busiest hour (the
        // baseline signal below); the absolute rate only for one without, unless the
        // admin gave this account rate thresholds of its own.
        let has_baseline = facts
            .usual
            .is_some_and(|u| d.baseline.factor > 0 && u.days >= d.baseline.min_days);
        let own_rate = own_thresholds(cfg, user, Source::Rate);
        for (source, c) in counts.sources() {
            if source == Source::Rate && has_baseline && !own_rate {
                continue;
            }
            // A newsletter's busy hour: its messages and its few percent of bounces.
            let absolute = matches!(source, Source::Rate | Source::Bounces);
            if absolute && !own_thresholds(cfg, user, source) && one_quiet_owner(counts) {
                continue;
            }
            if !source.is_login() {
                signals.extend(check(source, c.messages, Some(d.window)));
                continue;
            }
            if facts.warm {
                // Only what is new to the account: its carrier, its fetcher, its CRM's
                // cloud are known however many addresses they use; a pool it never
                // used is evidence with every address.
                let parties = Parties {
                    count: c.new_owners.len(),
                    known: c.parties().known,
                };
                let owners = parties.known.then_some(parties.count);
                let new_unit = |what: &str| format!("new {what}/{}", d.window);
                signals.extend(owner_count(d, source, parties.count).map(|s| Signal {
                    unit: new_unit(parties.noun()),
                    ..s
                }));
                let value = c.new_networks.len() as u64;
                let sig = check(source, value, Some(d.window)).map(|s| Signal {
                    owners,
                    unit: new_unit(source.unit()),
                    ..s
                });
                if parties.count > d.escalate_min_spread as usize
                    && sig.as_ref().is_some_and(|s| s.level == Level::Notify)
                {
                    spread_counts.push(signals.len());
                }
                signals.extend(sig);
                continue;
            }
            let value = c.networks.len() as u64;
            let parties = c.parties();
            let owners = parties.known.then_some(parties.count);
            if parties.known {
                // Logins counted by owner: a credential checker walks through
                // dozens of owners over IMAP, a phone or a provider's fetcher one or two.
                // Those it did not use an hour ago: on its first day a shared mailbox's
                // households and phones are half a dozen owners in a busy hour, all
                // of them in use since the morning.
                signals.extend(owner_count(d, source, c.fresh_owners.len()));
                // Many addresses of one or two owners (a carrier's NAT, a provider's
                // pool) are one party's, not evidence of a stolen password.
                if parties.count <= d.escalate_min_spread as usize {
                    continue;
                }
            }
            let sig = check(source, value, Some(d.window)).map(|s| Signal { owners, ..s });
            // One provider's or carrier's pool: many addresses, few owners (without an
            // ASN database, few wider networks).
            let held = parties.count <= d.escalate_min_spread as usize
                && sig.as_ref().is_some_and(|s| s.level > Level::Notify);
            if held {
                let mut t = cfg.thresholds_for(user, source);
                (t.block, t.lock) = (None, None);
                signals.extend(crossed(source, value, Some(d.window), t).map(|s| Signal {
                    held: Some(parties),
                    owners,
                    ..s
                }));
            } else {
                // Not yet warm, without owners: only as far as its /16s (0: off).
                let capped = !parties.known && d.escalate_min_spread > 0;
                let t = cfg.thresholds_for(user, source);
                let sig = sig.map(|s| {
                    if capped {
                        party_capped(s, c.party_keys.len(), t)
                    } else {
                        s
                    }
                });
                if parties.count > d.escalate_min_spread as usize
                    && sig.as_ref().is_some_and(|s| s.level == Level::Notify)
                {
                    spread_counts.push(signals.len());
                }
                signals.extend(sig);
            }
        }
        signals.extend(bounce_share(d, counts));
        if facts.warm {
            signals.extend(new_sending(d, counts, facts.usual));
        }
        signals.extend(new_owners_mailing(d, counts, facts.warm));
        if let Some(n) = facts.deferred {
            signals.extend(check(Source::Queue, n.into(), None));
        }
        // Warm, the spread counts parties new to the account; the baseline below
        // compares all of them with the account's usual day.
        let spread_signal = match spread {
            Some(_) if facts.warm => Some(counts.spread_new()),
            other => other,
        };
        if let Some(n) = spread_signal {
            let smtp = counts.source(Source::Smtp).parties();
            let counted = match (facts.warm, smtp.known) {
                (true, _) => format!("new {}", smtp.noun()),
                (false, true) => "owners".into(),
                (false, false) => "networks".into(),
            };
            signals.extend(
                check(Source::Spread, n as u64, Some(d.spread_window)).map(|s| Signal {
                    unit: format!("{counted}/{}", d.spread_window),
                    ..s
                }),
            );
            // More parties than a day's travel shows: a stolen password used from one
            // network after another. Not yet warm, the day's owners are also those of
            // everyone sharing the account (a role mailbox's households and phones),
            // unless the hour's SMTP networks are at notify as well.
            let burst = signals
                .iter()
                .any(|s| s.source == Source::Smtp && s.level >= Level::Notify);
            signals.extend(spread_block(d, counts, n, facts.warm, burst));
        }
        if let Some(usual) = facts.usual {
            let rate = counts.source(Source::Rate).messages;
            // Warm, a day's spread counts the parties new to the account too: its own
            // ISP's nightly addresses and its carrier's pool are no more than usual.
            let (spread, noun) = match spread_signal {
                Some(n) if facts.warm => (Some(n), Some(counts.source(Source::Smtp).parties())),
                _ => (spread, None),
            };
            signals.extend(
                baseline::crossed(&d.baseline, usual, rate, spread, d.window, d.spread_window)
                    .into_iter()
                    .map(|s| match noun {
                        Some(p) if s.source == Source::Spread => Signal {
                            unit: format!("new {}/{}", p.noun(), d.spread_window),
                            ..s
                        },
                        _ => s,
                    }),
            );
        }
    }
    if d.corroborate {
        corroborate(&mut signals, &spread_counts);
    }
    signals.sort_by_key(|s| std::cmp::Reverse(s.level));
    let level = signals.first().map_or(Level::Ok, |s| s.level);
    Evaluation {
        level,
        exempt,
        counts: counted,
        signals,
        spread,
        window: d.window,
    }
}

/// Whether an account's refused smtp logins (Postfix refusing its submissions through
/// our check_sasl_access map) count as smtp logins: only once it is blocked in enforce
/// mode. Only then is it in the map, so only then can Postfix have refused it; any
/// other such line was shaped by someone else, and a port-25 client must never move
/// an account. They exist to keep counting a blocked account's botnet up to lock.
pub fn refused_counts(cfg: &Config, state: &AccountState) -> bool {
    cfg.mode == Mode::Enforce && state.enforced && state.level >= Level::Block
}

/// A change of an account's level, as stored in the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub from: Level,
    pub to: Level,
    pub enforced: bool,
    pub reason: String,
}

/// The account's next state after an evaluation at `at`, and the transition if its
/// level (or enforcement) changed. Levels only rise here; block and lock are lowered
/// only by an admin's release, notify by a quiet period.
pub fn decide(
    cfg: &Config,
    state: &AccountState,
    eval: &Evaluation,
    at: Timestamp,
) -> (AccountState, Option<Transition>) {
    let mut next = state.clone();
    if eval.level >= Level::Notify {
        next.last_hit = Some(state.last_hit.map_or(at, |h| h.max(at)));
    }
    let enforce = cfg.mode == Mode::Enforce;
    let transition = if eval.level > state.level {
        Some(Transition {
            from: state.level,
            to: eval.level,
            enforced: enforce && eval.level.needs_enforcement(),
            reason: eval.reason(),
        })
    } else if state.level.needs_enforcement()
        && !state.enforced
        && enforce
        && eval.level >= state.level
    {
        Some(Transition {
            from: state.level,
            to: state.level,
            enforced: true,
            reason: format!("{} (mode is now enforce)", eval.reason()),
        })
    } else {
        quiet_expiry(cfg, state, at)
    };
    if let Some(t) = &transition {
        next.level = t.to;
        next.enforced = t.enforced;
    }
    (next, transition)
}

/// The stored level as of `at`: a notify whose quiet period has passed reads as ok
/// even before the next login of that account writes the change down.
pub fn effective(cfg: &Config, state: &AccountState, at: Timestamp) -> (Level, bool) {
    match quiet_expiry(cfg, state, at) {
        Some(t) => (t.to, t.enforced),
        None => (state.level, state.enforced),
    }
}

/// Notify clears by itself once the account stayed below every threshold for
/// `detection.notify_quiet`; block and lock never do.
pub fn quiet_expiry(cfg: &Config, state: &AccountState, at: Timestamp) -> Option<Transition> {
    let quiet = cfg.detection.notify_quiet;
    let last = state.last_hit?;
    (state.level == Level::Notify && last.millis() + quiet.millis() <= at.millis()).then(|| {
        Transition {
            from: Level::Notify,
            to: Level::Ok,
            enforced: false,
            reason: format!("no threshold crossed for {quiet}"),
        }
    })
}

#[cfg(test)]
pub(crate) mod tests;
