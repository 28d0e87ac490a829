//! Detection: from one account's logins in a window to a level, and from the level
//! to a transition. Pure functions over data the store hands in, so they are the same
//! for the hot path (`record`), the admin view (`status`) and tests.

pub mod whitelist;

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{Config, Thresholds};
use crate::model::{ClientAddr, ClientNet, Level, LogTime, Mode, SaslUser, Source, Span};

pub use whitelist::Whitelist;

/// One stored login, as detection needs it.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub source: Source,
    pub addr: ClientAddr,
    pub time: LogTime,
}

/// What is stored about an account between events.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountState {
    pub level: Level,
    pub enforced: bool,
    /// Last time the account was evaluated at or above notify (drives the quiet period).
    pub last_hit: Option<LogTime>,
    /// Logins before this are ignored: set on release so old evidence cannot re-block.
    pub count_from: LogTime,
}

impl Default for AccountState {
    fn default() -> Self {
        Self {
            level: Level::Ok,
            enforced: false,
            last_hit: None,
            count_from: LogTime::from_millis(0),
        }
    }
}

/// Distinct networks and logins of one source in the window.
#[derive(Debug, Clone, Default)]
pub struct SourceCount {
    pub networks: BTreeSet<ClientNet>,
    pub logins: u32,
    pub whitelisted_logins: u32,
}

/// One threshold crossed, with the figures that explain it.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub source: Source,
    pub level: Level,
    pub networks: usize,
    pub threshold: u32,
}

#[derive(Debug, Clone)]
pub struct Evaluation {
    pub level: Level,
    pub exempt: bool,
    pub counts: BTreeMap<Source, SourceCount>,
    pub signals: Vec<Signal>,
    window: Span,
}

impl Evaluation {
    /// Distinct counted networks over all sources.
    pub fn networks(&self) -> usize {
        let all: BTreeSet<_> = self
            .counts
            .values()
            .flat_map(|c| c.networks.iter())
            .collect();
        all.len()
    }

    pub fn logins(&self) -> u32 {
        self.counts.values().map(|c| c.logins).sum()
    }

    /// `smtp: 11 networks in 1h (threshold 10)`: the signals that set the level.
    pub fn reason(&self) -> String {
        if self.exempt {
            return "exempt by configuration".into();
        }
        let top: Vec<String> = self
            .signals
            .iter()
            .filter(|s| s.level == self.level)
            .map(|s| {
                format!(
                    "{}: {} networks in {} (threshold {})",
                    s.source, s.networks, self.window, s.threshold
                )
            })
            .collect();
        if top.is_empty() {
            let nets = self.networks();
            format!(
                "{nets} network{} in {}",
                if nets == 1 { "" } else { "s" },
                self.window
            )
        } else {
            top.join("; ")
        }
    }
}

/// Counts one account's logins per source and decides the level they reach.
pub fn evaluate(cfg: &Config, user: &SaslUser, seen: &[Seen], whitelist: &Whitelist) -> Evaluation {
    let prefixes = cfg.detection.prefixes;
    let mut counts: BTreeMap<Source, SourceCount> = BTreeMap::new();
    for s in seen {
        let c = counts.entry(s.source).or_default();
        c.logins += 1;
        if whitelist.covers(s.addr) {
            c.whitelisted_logins += 1;
        } else {
            c.networks.insert(s.addr.net(prefixes));
        }
    }
    let exempt = cfg.users.get(user).is_some_and(|p| p.exempt);
    let mut signals = Vec::new();
    if !exempt {
        for (source, c) in &counts {
            signals.extend(crossed(
                *source,
                c.networks.len(),
                cfg.thresholds_for(user, *source),
            ));
        }
    }
    let level = signals.iter().map(|s| s.level).max().unwrap_or(Level::Ok);
    Evaluation {
        level,
        exempt,
        counts,
        signals,
        window: cfg.detection.window,
    }
}

fn crossed(source: Source, networks: usize, t: Thresholds) -> Option<Signal> {
    [
        (Level::Lock, t.lock),
        (Level::Block, t.block),
        (Level::Notify, t.notify),
    ]
    .into_iter()
    .find_map(|(level, threshold)| {
        threshold
            .filter(|&th| networks > th as usize)
            .map(|threshold| Signal {
                source,
                level,
                networks,
                threshold,
            })
    })
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
    at: LogTime,
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

/// Notify clears by itself once the account stayed below every threshold for
/// `detection.notify_quiet`; block and lock never do.
pub fn quiet_expiry(cfg: &Config, state: &AccountState, at: LogTime) -> Option<Transition> {
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
mod tests {
    use super::*;

    fn seen(n: usize) -> Vec<Seen> {
        (0..n)
            .map(|i| Seen {
                source: Source::Smtp,
                addr: ClientAddr::parse(&format!("198.51.100.{}", i + 1)).unwrap(),
                time: LogTime::from_millis(1000 * i as i64),
            })
            .collect()
    }

    #[test]
    fn levels_by_count() {
        let cfg = Config::default();
        let user = SaslUser::parse("a@example.com").unwrap();
        let wl = Whitelist::new(&cfg, &user, &[]);
        for (n, level) in [
            (5, Level::Ok),
            (6, Level::Notify),
            (11, Level::Block),
            (21, Level::Lock),
        ] {
            assert_eq!(
                evaluate(&cfg, &user, &seen(n), &wl).level,
                level,
                "{n} networks"
            );
        }
        let e = evaluate(&cfg, &user, &seen(11), &wl);
        assert_eq!(e.reason(), "smtp: 11 networks in 1h (threshold 10)");
    }

    #[test]
    fn notify_expires_block_stays() {
        let cfg = Config::default();
        let user = SaslUser::parse("a@example.com").unwrap();
        let wl = Whitelist::new(&cfg, &user, &[]);
        let quiet = evaluate(&cfg, &user, &seen(1), &wl);
        let hit = LogTime::from_millis(0);
        let day = LogTime::from_millis(86_400_000);
        for (level, expect) in [(Level::Notify, Some(Level::Ok)), (Level::Block, None)] {
            let state = AccountState {
                level,
                last_hit: Some(hit),
                ..AccountState::default()
            };
            let (_, t) = decide(&cfg, &state, &quiet, day);
            assert_eq!(t.map(|t| t.to), expect);
        }
    }
}
