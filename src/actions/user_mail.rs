//! The owner's mail (`notify_user`): when an account is blocked or locked, its owner
//! learns in plain words what was seen, what was done and what to do now. Sent like
//! the admin mail (lettre, never a shell); the account name is shown escaped, as there.

use std::fmt::Write as _;

use super::mail::{deliver_to, hostname, when};
use super::{ActionKind, Outcome};
use crate::config::Config;
use crate::model::{Level, SaslUser};
use crate::report::Detail;
use crate::store::QueuedAction;

const BUILT_IN_BODY: &str = "\
Hello,

This is an automatic message from the mail server {host} about your mail
account {user}.

What we saw: in the {window} before {since}, the password of your account
was used to log in from {count} different networks:

{networks}

Logins from so many places at once mean that someone else very probably
knows your password and uses your account, usually to send spam.

What we did: your account has been {done}.
{measures}

What to do now:
  1. Contact the postmaster at {contact} (you can reply to this mail).
     They turn your account back on once it is safe.
  2. Change the password of this account, and of every other account where
     you used the same password.
  3. Scan the computers and phones you read your mail on for malware:
     stolen passwords often come from them.

If all these logins were yours (travel, a new phone, a VPN), tell the
postmaster too.

-- 
f2b-mailguard on {host}
";

/// The owner's address: the map first, else the `to` template. Err: why there is none.
pub fn recipient(cfg: &Config, user: &SaslUser) -> Result<lettre::Address, String> {
    let u = &cfg.contain.user_mail;
    if let Some(addr) = u.addresses.get(user) {
        return Ok(addr.clone());
    }
    let name = user.as_str();
    let (local, domain) = name.split_once('@').unwrap_or((name, ""));
    let to = fill(
        &u.to,
        &[("user", name), ("local", local), ("domain", domain)],
    );
    to.parse().map_err(|_| {
        format!(
            "no address for the owner of {}: {:?} is not a mail address \
             (set user_mail.to, or the account in [user_mail.addresses])",
            user.shown(),
            to
        )
    })
}

/// `template` with each `{name}` of `values` replaced, in one pass: a value that
/// holds `{...}` (an account name may) stays as it is.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        rest = &rest[open..];
        let value = rest.find('}').and_then(|close| {
            let name = &rest[1..close];
            values
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (close, *v))
        });
        match value {
            Some((close, v)) => {
                out.push_str(v);
                rest = &rest[close + 1..];
            }
            None => {
                out.push('{');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A short phrase for the subject, and the measures one per line, in plain words.
fn what_was_done(cfg: &Config, action: &QueuedAction) -> (&'static str, String) {
    if !action.enforced {
        return (
            "flagged as possibly misused",
            "  Nothing has been changed yet: the postmaster decides.".into(),
        );
    }
    let mut lines = String::new();
    for kind in cfg.contain.actions.for_level(action.level) {
        let line = match kind {
            ActionKind::SaslBlock => "It can no longer send mail.",
            ActionKind::HoldQueue => "Mail it sent recently is held back, not deleted.",
            ActionKind::ResetPassword => "Its password was replaced: your old one no longer works.",
            ActionKind::DovecotKick => "It was signed out on every device.",
            ActionKind::Mail | ActionKind::NotifyUser => continue,
        };
        let _ = writeln!(lines, "  - {line}");
    }
    let short = if action.level >= Level::Lock {
        "locked"
    } else {
        "blocked"
    };
    (short, lines.trim_end().to_owned())
}

/// `2026-11-23 07:00`.
fn minute(secs: f64) -> String {
    when(secs).get(..16).unwrap_or_default().replace('T', " ")
}

pub fn subject_and_body(
    cfg: &Config,
    action: &QueuedAction,
    d: &Detail,
    body: &str,
) -> (String, String) {
    let u = &cfg.contain.user_mail;
    let (done, measures) = what_was_done(cfg, action);
    let counted: Vec<_> = d.networks.iter().filter(|n| !n.whitelisted).collect();
    let mut networks = String::new();
    for n in &counted {
        let (first, last) = (minute(n.first_seen), minute(n.last_seen));
        let until = match last.get(11..) {
            Some(time) if last != first => format!(" to {time}"),
            _ => String::new(),
        };
        let logins = if n.count == 1 { "login" } else { "logins" };
        let _ = writeln!(
            networks,
            "  {:<20} {first}{until} UTC, {} {logins}",
            n.network, n.count
        );
    }
    let since = d
        .history
        .iter()
        .rev()
        .find(|h| h.to == action.level)
        .map(|h| minute(h.time) + " UTC")
        .unwrap_or_default();
    let contact = u
        .contact
        .as_ref()
        .or(cfg.contain.mail.to.first())
        .map(|a| a.to_string())
        .unwrap_or_default();
    let user = d.user.shown();
    let (host, count, window) = (
        hostname(),
        counted.len().to_string(),
        cfg.detection.window.to_string(),
    );
    let values = [
        ("user", user.as_ref()),
        ("level", action.level.as_str()),
        ("done", done),
        ("measures", measures.as_str()),
        ("since", since.as_str()),
        ("networks", networks.trim_end()),
        ("count", count.as_str()),
        ("window", window.as_str()),
        ("contact", contact.as_str()),
        ("host", host.as_str()),
    ];
    (fill(&u.subject, &values), fill(body, &values))
}

pub fn send(cfg: &Config, action: &QueuedAction, d: &Detail) -> Outcome {
    let u = &cfg.contain.user_mail;
    let to = match recipient(cfg, &action.user) {
        Ok(to) => to,
        Err(why) => return Outcome::Refused(why),
    };
    let body = match &u.body_file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                return Outcome::Failed(format!("user_mail.body_file {}: {e}", path.display()))
            }
        },
        None if u.body.is_empty() => BUILT_IN_BODY.to_owned(),
        None => u.body.clone(),
    };
    let (subject, body) = subject_and_body(cfg, action, d, &body);
    let contact = u.contact.as_ref().or(cfg.contain.mail.to.first());
    match deliver_to(cfg, std::slice::from_ref(&to), contact, subject, body) {
        Ok(text) => Outcome::Done(text),
        Err(e) => Outcome::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_in_one_pass() {
        let values = [("user", "{host}@x"), ("host", "mx")];
        assert_eq!(
            fill("{user} on {host} {nope} {", &values),
            "{host}@x on mx {nope} {"
        );
    }

    #[test]
    fn the_built_in_body_uses_known_placeholders_only() {
        use crate::config::USER_MAIL_PLACEHOLDERS;
        let unknown =
            crate::config::user_mail_unknown_placeholders(BUILT_IN_BODY, &USER_MAIL_PLACEHOLDERS);
        assert!(unknown.is_empty(), "{unknown:?}");
    }
}
