//! `[user_mail]`: the mail the `notify_user` action sends to an account's owner when
//! the account is blocked or locked: to whom, from which template, how often.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

use super::value::{address_map, opt_abs_path, opt_address, parsed};
use super::Misfit;
use crate::model::{SaslUser, Span};

/// What a subject or body may say in `{...}`; anything else in braces is a typo.
pub const USER_MAIL_PLACEHOLDERS: [&str; 10] = [
    "user", "level", "done", "measures", "since", "networks", "count", "window", "contact", "host",
];

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserMailConfig {
    /// The owner's address: `{user}` (the account name, when it is an address),
    /// `{local}` and `{domain}` (its parts) are replaced.
    #[serde(deserialize_with = "address_template")]
    pub to: String,
    /// Whom the owner should contact (and Reply-To); none: the first of mail.to.
    #[serde(with = "opt_address")]
    pub contact: Option<lettre::Address>,
    #[serde(deserialize_with = "subject")]
    pub subject: String,
    /// The body template; empty: the built-in one (or `body_file`).
    #[serde(deserialize_with = "body")]
    pub body: String,
    /// Read at each mail, so an edit needs no restart.
    #[serde(with = "opt_abs_path")]
    pub body_file: Option<PathBuf>,
    /// At most one mail per account and level within this (log) time.
    pub cooldown: Span,
    /// Accounts whose owner reads mail elsewhere; checked before `to`. Last: a table
    /// follows the plain values in TOML.
    #[serde(with = "address_map")]
    pub addresses: BTreeMap<SaslUser, lettre::Address>,
}

impl Default for UserMailConfig {
    fn default() -> Self {
        Self {
            to: "{user}".into(),
            addresses: BTreeMap::new(),
            contact: None,
            subject: "Your mail account {user} has been {done}".into(),
            body: String::new(),
            body_file: None,
            cooldown: Span::secs(24 * 3600),
        }
    }
}

/// The `{name}`s in `template` that are not placeholders.
pub fn unknown_placeholders(template: &str, known: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find('}') else { break };
        let name = &rest[..close];
        let word = !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        if word && !known.contains(&name) {
            out.push(format!("{{{name}}}"));
        }
    }
    out
}

/// A template that uses only the placeholders in `known`.
fn template(v: &str, known: &[&str]) -> Result<String, String> {
    let unknown = unknown_placeholders(v, known);
    if !unknown.is_empty() {
        return Err(format!(
            "unknown placeholder {}; known: {{{}}}",
            unknown.join(", "),
            known.join("}, {")
        ));
    }
    Ok(v.to_owned())
}

fn address_template<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    parsed(d, |v| template(v, &["user", "local", "domain"]))
}

fn subject<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    parsed(d, |v| {
        if v.chars().any(char::is_control) {
            return Err("contains a control character".into());
        }
        template(v, &USER_MAIL_PLACEHOLDERS)
    })
}

fn body<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    parsed(d, |v| template(v, &USER_MAIL_PLACEHOLDERS))
}

impl UserMailConfig {
    /// What one key cannot say alone: one body, not two.
    pub(super) fn check(&self) -> Result<(), Misfit> {
        if !self.body.is_empty() && self.body_file.is_some() {
            return Err(Misfit::new(
                ["user_mail", "body_file"],
                "set body or body_file, not both",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_unknown_placeholders_only() {
        let known = ["user", "level"];
        assert!(unknown_placeholders("Hi {user}, {level} {}", &known).is_empty());
        assert_eq!(
            unknown_placeholders("{usr} and {user} {Weird}", &known),
            ["{usr}"]
        );
    }
}
