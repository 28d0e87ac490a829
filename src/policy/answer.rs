//! What the mail server is told about an account, from its level alone: one mapping
//! for Postfix and one for Dovecot, so the answers cannot drift apart.

use crate::model::{Level, Mode};

/// Postfix's access(5) answer to a message of the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostfixAnswer {
    /// No opinion: the rest of the restrictions decide.
    Dunno,
    /// Accept, but keep the whole message on the hold queue until `release`.
    Hold,
    /// Refuse the message (the code and text of `postfix.reject`).
    Reject,
}

/// An account's level (enforced or only reported) mapped to Postfix's answer. Block
/// and lock refuse once enforced; with quarantine, notify holds new mail in enforce
/// mode, so a false alarm costs only delay.
pub fn postfix_answer(level: Level, enforced: bool, mode: Mode, quarantine: bool) -> PostfixAnswer {
    match level {
        Level::Block | Level::Lock if enforced => PostfixAnswer::Reject,
        Level::Notify if mode == Mode::Enforce && quarantine => PostfixAnswer::Hold,
        _ => PostfixAnswer::Dunno,
    }
}

/// Dovecot's answer to a login of the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginAnswer {
    Allow,
    /// Refused, with the reason shown to the client.
    Refuse(&'static str),
}

/// A locked account is refused everywhere; a blocked one only from a network (and,
/// with an ASN database, an owner) it did not use before its trouble began: its owner
/// still reads mail from home while a stolen password is refused elsewhere.
pub fn login_answer(level: Level, enforced: bool, known_place: bool) -> LoginAnswer {
    match level {
        Level::Lock if enforced => LoginAnswer::Refuse("Account locked, contact your postmaster"),
        Level::Block if enforced && !known_place => {
            LoginAnswer::Refuse("Login refused from this network, contact your postmaster")
        }
        _ => LoginAnswer::Allow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_enforced_levels_act() {
        use PostfixAnswer::*;
        let (w, e) = (Mode::Warn, Mode::Enforce);
        for q in [false, true] {
            assert_eq!(postfix_answer(Level::Ok, false, e, q), Dunno);
            assert_eq!(postfix_answer(Level::Block, false, w, q), Dunno);
            assert_eq!(postfix_answer(Level::Lock, false, w, q), Dunno);
            assert_eq!(postfix_answer(Level::Block, true, e, q), Reject);
            assert_eq!(postfix_answer(Level::Lock, true, e, q), Reject);
            assert_eq!(postfix_answer(Level::Notify, false, w, q), Dunno);
        }
        assert_eq!(postfix_answer(Level::Notify, false, e, false), Dunno);
        assert_eq!(postfix_answer(Level::Notify, false, e, true), Hold);
    }

    #[test]
    fn a_blocked_owner_logs_in_from_home() {
        assert_eq!(login_answer(Level::Block, true, true), LoginAnswer::Allow);
        assert!(matches!(
            login_answer(Level::Block, true, false),
            LoginAnswer::Refuse(_)
        ));
        assert!(matches!(
            login_answer(Level::Lock, true, true),
            LoginAnswer::Refuse(_)
        ));
        assert_eq!(login_answer(Level::Lock, false, false), LoginAnswer::Allow);
        assert_eq!(login_answer(Level::Notify, true, false), LoginAnswer::Allow);
    }
}
