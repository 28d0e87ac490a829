//! Detection as the store's hot path calls it, inside the transaction that stored
//! the evidence: the same for `record` (which acts) and `ingest` (which never does).

use super::{
    baseline, decide, evaluate, explain, Evaluation, Facts, Seen, Tally, Usual, Whitelist,
};
use crate::actions;
use crate::config::Config;
use crate::model::{Cidr, LogTime, SaslUser};
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

    /// The stored evidence counted once, at the event's time.
    fn tally(&self, ev: &Evidence) -> Tally {
        let whitelist = Whitelist::new(self.cfg, ev.user, ev.whitelist);
        Tally::count(&self.cfg.detection, &whitelist, ev.at, ev.seen)
    }

    fn evaluate<'t>(&self, ev: &Evidence, tally: &'t Tally) -> Evaluation<'t> {
        let facts = Facts {
            tally,
            covers_spread: true,
            deferred: ev.deferred,
            usual: ev.usual,
        };
        evaluate(self.cfg, ev.user, &facts)
    }
}

impl Detector for Engine<'_> {
    fn window_starts(&self, at: LogTime) -> [LogTime; 2] {
        self.cfg.detection.window_starts(at)
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
        let tally = self.tally(ev);
        let eval = self.evaluate(ev, &tally);
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
        let tally = self.tally(ev);
        let eval = self.evaluate(ev, &tally);
        explain(self.cfg, &eval, ev.at, earlier, ev.seen, t);
    }
}
