//! Backtests in memory: the same detection as `record` (evaluate, decide, baselines,
//! explanations), over each account's evidence kept in time order, without a
//! database round trip per event. `ingest` writes the outcome in bulk afterwards.

use std::collections::{HashMap, VecDeque};

use super::{baseline, decide, evaluate, explain, AccountState, Facts, Seen, Transition, Usual};
use super::{whitelist::Whitelist, Evaluation};
use crate::config::Config;
use crate::model::{LogTime, SaslUser};
use crate::store::{LoginEvent, WhitelistEntry};

/// One account after a replay: what `ingest` stores and reports.
#[derive(Debug, Default)]
pub struct Replayed {
    pub state: AccountState,
    pub last_seen: Option<LogTime>,
    pub events: Vec<LoginEvent>,
    pub changes: Vec<(LogTime, Transition)>,
}

#[derive(Default)]
struct Account {
    out: Replayed,
    /// Evidence within the lookback (window or spread window) of the last event.
    recent: VecDeque<Seen>,
    /// Evidence before `recent`, within the baseline history.
    earlier: VecDeque<Seen>,
    usual: Option<(i64, Usual)>,
    whitelist: Option<Whitelist>,
}

pub struct Replay<'a> {
    cfg: &'a Config,
    db_whitelist: &'a [WhitelistEntry],
    accounts: HashMap<SaslUser, Account>,
}

impl<'a> Replay<'a> {
    /// `db_whitelist`: the scratch database's entries.
    pub fn new(cfg: &'a Config, db_whitelist: &'a [WhitelistEntry]) -> Self {
        Self {
            cfg,
            db_whitelist,
            accounts: HashMap::new(),
        }
    }

    /// Adds one event (events come in log-time order) and re-evaluates its account.
    pub fn push(&mut self, event: LoginEvent) {
        let cfg = self.cfg;
        let db_whitelist = self.db_whitelist;
        let a = self.accounts.entry(event.user.clone()).or_default();
        let user = &event.user;
        let at = event.time;
        let whitelist = a
            .whitelist
            .get_or_insert_with(|| Whitelist::for_account(cfg, user, db_whitelist));
        // Slide: the lookback keeps what evaluation sees, the history what baselines
        // and explanations see.
        let lookback_start = at.minus(cfg.detection.lookback());
        while a.recent.front().is_some_and(|s| s.time <= lookback_start) {
            if let Some(s) = a.recent.pop_front() {
                a.earlier.push_back(s);
            }
        }
        let history_start = at.minus(cfg.detection.baseline.history);
        while a.earlier.front().is_some_and(|s| s.time <= history_start) {
            a.earlier.pop_front();
        }
        a.recent.push_back(Seen {
            source: event.source,
            addr: event.addr,
            time: at,
            count: event.count,
        });
        a.out.last_seen = Some(a.out.last_seen.map_or(at, |l| l.max(at)));

        let usual = (cfg.detection.baseline.factor > 0).then(|| {
            let day = baseline::day_of(at);
            match a.usual {
                Some((d, u)) if d == day => u,
                _ => {
                    let (from, until) = baseline::history_range(cfg, day);
                    let history: Vec<Seen> = a
                        .earlier
                        .iter()
                        .chain(a.recent.iter())
                        .filter(|s| s.time > from && s.time <= until)
                        .copied()
                        .collect();
                    let u = baseline::usual(cfg, &history, whitelist);
                    a.usual = Some((day, u));
                    u
                }
            }
        });
        // No release happens in a replay, so counting never restarts (count_from).
        let seen = a.recent.make_contiguous();
        let facts = Facts {
            at,
            seen,
            covers_spread: true,
            deferred: None,
            usual,
        };
        let eval: Evaluation = evaluate(cfg, user, &facts, whitelist);
        let (state, transition) = decide(cfg, &a.out.state, &eval, at);
        a.out.state = state;
        if let Some(mut t) = transition {
            if t.to > t.from {
                explain(cfg, &eval, at, a.earlier.make_contiguous(), seen, &mut t);
            }
            a.out.changes.push((at, t));
        }
        a.out.events.push(event);
    }

    pub fn finish(self) -> Vec<(SaslUser, Replayed)> {
        let mut out: Vec<(SaslUser, Replayed)> =
            self.accounts.into_iter().map(|(u, a)| (u, a.out)).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}
