//! `[user_mail]`: the mail the `notify_user` action sends to an account's owner when
//! the account is blocked or locked: to whom, from which template, how often.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::Result;
use crate::model::{SaslUser, Span};

use super::walker::{quote, Walker};

/// What a subject or body may say in `{...}`; anything else in braces is a typo.
pub const USER_MAIL_PLACEHOLDERS: [&str; 10] = [
    "user", "level", "done", "measures", "since", "networks", "count", "window", "contact", "host",
];

#[derive(Debug, Clone, PartialEq)]
pub struct UserMailConfig {
    /// The owner's address: `{user}` (the account name, when it is an address),
    /// `{local}` and `{domain}` (its parts) are replaced.
    pub to: String,
    /// Accounts whose owner reads mail elsewhere; checked before `to`.
    pub addresses: BTreeMap<SaslUser, lettre::Address>,
    /// Whom the owner should contact (and Reply-To); none: the first of mail.to.
    pub contact: Option<lettre::Address>,
    pub subject: String,
    /// The body template; empty: the built-in one (or `body_file`).
    pub body: String,
    /// Read at each mail, so an edit needs no restart.
    pub body_file: Option<PathBuf>,
    /// At most one mail per account and level within this (log) time.
    pub cooldown: Span,
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

fn template(w: &Walker, key: &str, v: &str, known: &[&str]) -> Result<()> {
    let unknown = unknown_placeholders(v, known);
    if !unknown.is_empty() {
        return Err(w.bad(
            key,
            format!(
                "unknown placeholder {}; known: {{{}}}",
                unknown.join(", "),
                known.join("}, {")
            ),
        ));
    }
    Ok(())
}

pub(super) fn parse(root: &mut Walker, c: &mut UserMailConfig) -> Result<()> {
    let Some(mut w) = root.table("user_mail")? else {
        return Ok(());
    };
    if let Some(v) = w.string("to")? {
        template(&w, "to", &v, &["user", "local", "domain"])?;
        c.to = v;
    }
    if let Some(mut map) = w.table("addresses")? {
        for name in map.keys() {
            let user = SaslUser::parse(&name).map_err(|e| map.bad(&name, e.reason))?;
            let Some(addr) = map.string(&name)? else {
                continue;
            };
            let addr = lettre::Address::from_str(&addr)
                .map_err(|_| map.bad(&name, format!("{addr:?} is not a mail address")))?;
            c.addresses.insert(user, addr);
        }
    }
    if let Some(v) = w.string("contact")? {
        c.contact = if v.is_empty() {
            None
        } else {
            let addr = lettre::Address::from_str(&v)
                .map_err(|_| w.bad("contact", format!("{v:?} is not a mail address")))?;
            Some(addr)
        };
    }
    if let Some(v) = w.string("subject")? {
        if v.chars().any(char::is_control) {
            return Err(w.bad("subject", "contains a control character"));
        }
        template(&w, "subject", &v, &USER_MAIL_PLACEHOLDERS)?;
        c.subject = v;
    }
    if let Some(v) = w.string("body")? {
        template(&w, "body", &v, &USER_MAIL_PLACEHOLDERS)?;
        c.body = v;
    }
    if let Some(v) = w.string("body_file")? {
        c.body_file = match v.as_str() {
            "" => None,
            p if p.starts_with('/') => Some(PathBuf::from(p)),
            _ => return Err(w.bad("body_file", format!("{v:?} must be an absolute path"))),
        };
    }
    if !c.body.is_empty() && c.body_file.is_some() {
        return Err(w.bad("body_file", "set body or body_file, not both"));
    }
    if let Some(v) = w.span("cooldown")? {
        c.cooldown = v;
    }
    w.finish()
}

pub(super) fn render(out: &mut String, c: &UserMailConfig) {
    let _ = writeln!(out, "\n[user_mail]");
    let _ = writeln!(out, "to = {}", quote(&c.to));
    let contact = c.contact.as_ref().map_or("", |a| a.as_ref());
    let _ = writeln!(out, "contact = {}", quote(contact));
    let _ = writeln!(out, "subject = {}", quote(&c.subject));
    let _ = writeln!(out, "body = {}", quote(&c.body));
    let file = c.body_file.as_ref().map(|p| p.display().to_string());
    let _ = writeln!(out, "body_file = {}", quote(file.as_deref().unwrap_or("")));
    let _ = writeln!(out, "cooldown = {}", quote(&c.cooldown.to_string()));
    let _ = writeln!(out, "\n[user_mail.addresses]");
    for (user, addr) in &c.addresses {
        let _ = writeln!(out, "{} = {}", quote(user.as_str()), quote(addr.as_ref()));
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
