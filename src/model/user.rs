//! Account names: one spelling per account.

use std::fmt;

use serde::Serialize;

use super::check_printable;
use crate::error::Invalid;

/// Longest accepted SASL user name: RFC 5321 address limit (64 + 1 + 255).
pub const MAX_USER_BYTES: usize = 320;

/// A SASL login name, folded to lower case. One account, one spelling: Postfix's map
/// lookups fold case (so `Mallory@` and `mallory@` are one key there), Dovecot's
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
            // A few characters grow when lower-cased (U+0130 İ).
            return Err(Invalid::new(
                "user",
                format!(
                    "is {} bytes long in lower case (at most {MAX_USER_BYTES})",
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

/// The one case rule for account names (Unicode lower case; for ASCII names exactly
/// Dovecot's `%Lu` and Postfix's lookup folding). The schema migration that merged
/// accounts differing only in case uses it too.
pub fn fold_case(name: &str) -> String {
    if name
        .bytes()
        .any(|b| b.is_ascii_uppercase() || !b.is_ascii())
    {
        name.to_lowercase()
    } else {
        name.to_owned()
    }
}

impl fmt::Display for SaslUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
