//! Account names: one spelling per account.

use std::fmt;

use serde::Serialize;

use super::check_printable;
use crate::error::Invalid;

/// Longest accepted SASL user name: RFC 5321 address limit (64 + 1 + 255).
pub const MAX_USER_BYTES: usize = 320;

/// A SASL login name, case-folded (`fold_case`). One account, one spelling: Postfix's
/// map lookups fold case (so `Mallory@` and `mallory@`, `straße@` and `strasse@` are
/// one key there), Dovecot's
/// default `auth_username_format = %Lu` folds it, and the queue's records are compared
/// with it; an account that two spellings could split would escape its own block.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SaslUser(String);

impl SaslUser {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.is_empty() {
            return Err(Invalid::new("user", "is empty"));
        }
        if raw.len() > MAX_USER_BYTES {
            return Err(Invalid::new(
                "user",
                format!("is {} bytes long (at most {MAX_USER_BYTES})", raw.len()),
            ));
        }
        check_printable("user", raw)?;
        if raw.chars().any(char::is_whitespace) {
            return Err(Invalid::new("user", "contains whitespace"));
        }
        let folded = fold_case(raw);
        if folded.len() > MAX_USER_BYTES {
            // A few characters grow when folded (U+0130 İ, U+FB03 ﬃ).
            return Err(Invalid::new(
                "user",
                format!(
                    "is {} bytes long case-folded (at most {MAX_USER_BYTES})",
                    folded.len()
                ),
            ));
        }
        Ok(Self(folded))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The one case rule for account names: Unicode default case folding, as Postfix
/// folds a map key with `smtputf8_enable = yes` (Debian's default), on lookup and in
/// `postmap`: `Straße`, `STRASSE` and `strasse` are one key there, so one account
/// here. For ASCII names exactly Dovecot's `%Lu`. The schema migrations that merged
/// accounts differing only in case use it too.
pub fn fold_case(name: &str) -> String {
    if name.is_ascii() {
        name.to_ascii_lowercase()
    } else {
        icu_casemap::CaseMapper::new()
            .fold_string(name)
            .into_owned()
    }
}

impl fmt::Display for SaslUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `postmap -q` of Postfix 3.7 (`smtputf8_enable = yes`) finds for each
    /// spelling: one key.
    #[test]
    fn names_fold_as_postfix_folds_map_keys() {
        for (raw, folded) in [
            ("Mallory@Example.TEST", "mallory@example.test"),
            ("Straße@x.test", "strasse@x.test"),
            ("STRAẞE@x.test", "strasse@x.test"),
            ("ﬁ@x.test", "fi@x.test"),
            ("Σς@x.test", "σσ@x.test"),
            ("\u{212a}@x.test", "k@x.test"),
            ("Élodie@x.test", "élodie@x.test"),
        ] {
            assert_eq!(SaslUser::parse(raw).expect(raw).as_str(), folded, "{raw}");
        }
    }
}
