//! Detection as the store's hot path calls it, inside the transaction that stored
//! the evidence: the same for `record` (which acts) and `ingest` (which never does).

use super::{baseline, decide, evaluate, explain, Facts, Seen, Usual, Whitelist};
use crate::actions;
use crate::config::Config;
use crate::model::{Cidr, LogTime, SaslUser, Span};
use crate::store::{Detector, Evidence, Verdict};

pub struct Engine<'a> {
    cfg: &'a Config,
    /// Queue the configured actions on a rise (`record`), or none (`ingest`).
    act: bool,
}

impl<'a> Engine<'a> {
    pub fn new(cfg: &'a Config, act: bool) -> Self {
        Self { cfg, act }
    }

    fn facts<'e>(&self, ev: &'e Evidence) -> Facts<'e> {
        Facts {
            at: ev.at,
            seen: ev.seen,
            covers_spread: true,
            deferred: ev.deferred,
            usual: ev.usual,
        }
    }
}

impl Detector for Engine<'_> {
    fn lookback(&self) -> Span {
        self.cfg.detection.lookback()
    }

    fn history_range(&self, day: i64) -> Option<(LogTime, LogTime)> {
        (self.cfg.detection.baseline.factor > 0).then(|| baseline::history_range(self.cfg, day))
    }

    fn usual(&self, user: &SaslUser, history: &[Seen], whitelist: &[Cidr]) -> Usual {
        baseline::usual(
            self.cfg,
            history,
            &Whitelist::new(self.cfg, user, whitelist),
        )
    }

    fn decide(&self, ev: &Evidence) -> Verdict {
        let whitelist = Whitelist::new(self.cfg, ev.user, ev.whitelist);
        let eval = evaluate(self.cfg, ev.user, &self.facts(ev), &whitelist);
        let (state, transition) = decide(self.cfg, ev.state, &eval, ev.at);
        let actions = match &transition {
            Some(t) if self.act => actions::plan(self.cfg, t),
            _ => Vec::new(),
        };
        Verdict {
            state,
            transition,
            actions,
            mail_cooldown: self.cfg.contain.mail.cooldown,
        }
    }

    fn explain(&self, ev: &Evidence, earlier: &[Seen], verdict: &mut Verdict) {
        let Some(t) = verdict.transition.as_mut() else {
            return;
        };
        if t.to <= t.from {
            return;
        }
        let whitelist = Whitelist::new(self.cfg, ev.user, ev.whitelist);
        let eval = evaluate(self.cfg, ev.user, &self.facts(ev), &whitelist);
        explain(self.cfg, &eval, ev.at, earlier, ev.seen, t);
    }
}
