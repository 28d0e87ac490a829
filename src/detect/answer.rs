//! What Postfix answers to an account's mail: the one place that maps a level to a
//! Postfix action. The check_sasl_access map is written from it, and an in-band
//! policy service answers with it, so both always agree.

use super::{effective, AccountState};
use crate::config::Config;
use crate::model::{ActionKind, Level, Mode, Timestamp};

/// Postfix's answer to mail submitted by an account (access(5) actions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PostfixAnswer {
    /// No opinion: the other restrictions decide (the account is not in the map).
    Dunno,
    /// Accept, then keep the message in the hold queue: the sender sees success,
    /// nothing leaves until `release` (quarantine).
    Hold,
    /// Refuse the mail (block and lock).
    Reject,
}

impl PostfixAnswer {
    /// The answer for an account at `level`.
    ///
    /// - `enforced`: the stored flag saying block or lock was reached in enforce mode
    ///   (only then is the mail refused);
    /// - `mode`: the configured mode; quarantine acts in enforce mode only;
    /// - `quarantine`: `[actions] quarantine`.
    ///
    /// Enforce mode with quarantine: notify holds, and so does a block or lock not yet
    /// enforced (reached in warn mode, waiting for its next evaluation). Without
    /// quarantine, or in warn mode, only an enforced block or lock has an answer.
    pub fn decide(level: Level, enforced: bool, mode: Mode, quarantine: bool) -> Self {
        if level.needs_enforcement() && enforced {
            PostfixAnswer::Reject
        } else if level >= Level::Notify && mode == Mode::Enforce && quarantine {
            PostfixAnswer::Hold
        } else {
            PostfixAnswer::Dunno
        }
    }

    /// The answer for a stored account state as of `at`, by the configuration: a
    /// notify whose quiet period has passed counts as ok even before the account's
    /// next login writes it down, and a level refuses only if its action list has
    /// `sasl_block`.
    pub fn of(cfg: &Config, state: &AccountState, at: Timestamp) -> Self {
        let (level, enforced) = effective(cfg, state, at);
        let actions = &cfg.contain.actions;
        let refuses = actions.for_level(level).contains(&ActionKind::SaslBlock);
        Self::decide(level, enforced && refuses, cfg.mode, actions.quarantine)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PostfixAnswer::Dunno => "DUNNO",
            PostfixAnswer::Hold => "HOLD",
            PostfixAnswer::Reject => "REJECT",
        }
    }
}

crate::model::display_as_str!(PostfixAnswer);

#[cfg(test)]
mod tests {
    use super::PostfixAnswer::*;
    use super::*;

    #[test]
    fn every_level_mode_and_switch() {
        use Level::*;
        use Mode::*;
        let cases = [
            // level, enforced, mode, quarantine -> answer
            (Ok, false, Enforce, true, Dunno),
            (Notify, false, Enforce, true, Hold),
            (Notify, false, Enforce, false, Dunno),
            (Notify, false, Warn, true, Dunno),
            (Block, true, Enforce, true, Reject),
            (Block, true, Enforce, false, Reject),
            (Lock, true, Enforce, true, Reject),
            (Block, false, Enforce, true, Hold),
            (Block, false, Enforce, false, Dunno),
            (Block, false, Warn, true, Dunno),
            (Lock, false, Warn, false, Dunno),
        ];
        for (level, enforced, mode, quarantine, want) in cases {
            assert_eq!(
                PostfixAnswer::decide(level, enforced, mode, quarantine),
                want,
                "{level} enforced={enforced} {mode:?} quarantine={quarantine}"
            );
        }
    }

    #[test]
    fn a_notify_past_its_quiet_period_holds_no_more() {
        let mut cfg = Config {
            mode: Mode::Enforce,
            ..Config::default()
        };
        cfg.contain.actions.quarantine = true;
        let hit = Timestamp::from_millis(1_000_000);
        let state = AccountState {
            level: Level::Notify,
            last_hit: Some(hit),
            ..AccountState::default()
        };
        assert_eq!(PostfixAnswer::of(&cfg, &state, hit), Hold);
        let later = hit.plus(cfg.detection.notify_quiet);
        assert_eq!(PostfixAnswer::of(&cfg, &state, later), Dunno);
    }
}
