//! What Dovecot is told about a login of an account, from its level and where the
//! login comes from. Postfix's answer is `detect::PostfixAnswer`, the map's own.

use crate::model::Level;

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
