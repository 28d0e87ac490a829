//! The admin mail: which account, which level, the evidence, what was (or would have
//! been) done, and the exact release command. Built with lettre, never by a shell or
//! mail(1), so log-derived text cannot become headers or commands.

use std::fmt::Write as _;
use std::time::Duration;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Message, SendmailTransport, SmtpTransport, Transport};

use super::ActionKind;
use crate::config::{Config, MailSecurity, MailTransport};
use crate::detect::PostfixAnswer;
use crate::model::display::{plain, shown};
use crate::model::{Level, Mode, Timestamp};
use crate::report::Detail;
use crate::store::QueuedAction;

/// Networks listed in the mail; the rest are counted.
const MAX_NETWORKS: usize = 40;

pub(super) fn when(secs: f64) -> String {
    Timestamp::from_millis((secs * 1000.0) as i64).rfc3339()
}

/// Single-quotes for a POSIX shell, so the release line can be pasted as is.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The name as one shell word that pastes safely and names the account exactly: quoted
/// when plain, else rebuilt by printf from octal bytes, so no raw bidi or look-alike
/// character is in the mail. `-` is written in octal too, so the format never reads as
/// an option.
fn shell_word(name: &str) -> String {
    if name.chars().all(plain) {
        return shell_quote(name);
    }
    let mut octal = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b".@_+".contains(&b) {
            octal.push(char::from(b));
        } else {
            let _ = write!(octal, "\\{b:03o}");
        }
    }
    format!("\"$(printf '{octal}')\"")
}

pub fn subject(action: &QueuedAction) -> String {
    format!(
        "[f2b-mailguard] {}: {}",
        action.user.shown(),
        action.level.describe(action.enforced)
    )
}

pub fn body(cfg: &Config, action: &QueuedAction, d: &Detail) -> String {
    let mut b = String::new();
    let host = hostname();
    let _ = writeln!(
        b,
        "f2b-mailguard on {host} flagged the mail account {}.\n",
        d.user.shown()
    );
    if d.user.shown() != d.user.as_str() {
        let _ = writeln!(
            b,
            "The name is shown with \\u{{...}} for each character outside plain ASCII;\n\
             the commands at the end name the account exactly.\n"
        );
    }
    let _ = writeln!(
        b,
        "Level:  {} (mode {})",
        action.level.describe(action.enforced),
        cfg.mode.as_str()
    );
    if let Some(h) = d.history.iter().rev().find(|h| h.to == action.level) {
        let _ = writeln!(b, "Since:  {}", when(h.time));
        let _ = writeln!(b, "Why:    {}", shown(&h.reason));
    }
    let _ = writeln!(b, "Now:    {}", d.state);

    let planned: Vec<ActionKind> = cfg
        .contain
        .actions
        .for_level(action.level)
        .iter()
        .copied()
        // The owner's mail in warn mode is sent, not "would have been".
        .filter(|k| {
            *k != ActionKind::Mail
                && !(*k == ActionKind::NotifyUser && cfg.contain.actions.user_mail_in_warn_mode)
        })
        .collect();
    if action.enforced || !action.level.needs_enforcement() {
        let done: Vec<_> = d
            .actions
            .iter()
            .filter(|a| a.change_id == action.change_id && a.kind != ActionKind::Mail)
            .collect();
        if !done.is_empty() {
            let _ = writeln!(b, "\nDone:");
            for a in done {
                let outcome = shown(a.outcome.as_deref().unwrap_or(""));
                let _ = writeln!(b, "  - {}: {} {}", a.kind.describe(), a.state, outcome);
            }
        }
    } else if !planned.is_empty() {
        let _ = writeln!(
            b,
            "\nWould have done (mode is {}; set mode = \"enforce\" to act):",
            Mode::Warn.as_str()
        );
        for k in planned {
            let _ = writeln!(b, "  - {}", k.describe());
        }
    }

    if let Some(q) = quarantine(cfg, action) {
        let _ = writeln!(b, "\n{q}");
    }

    let _ = writeln!(b, "\nNetworks seen (most recent first):");
    let _ = writeln!(
        b,
        "  {:<24} {:<20} {:<20} {:>6}  SOURCES",
        "NETWORK", "FIRST SEEN", "LAST SEEN", "COUNT"
    );
    for n in d.networks.iter().take(MAX_NETWORKS) {
        let sources: Vec<&str> = n.sources.iter().map(|s| s.as_str()).collect();
        let owner = n.owner().map(|o| format!("  {o}")).unwrap_or_default();
        let _ = writeln!(
            b,
            "  {:<24} {:<20} {:<20} {:>6}  {}{}{owner}",
            n.network,
            &when(n.first_seen)[..19],
            &when(n.last_seen)[..19],
            n.count,
            sources.join(","),
            if n.whitelisted { " (whitelisted)" } else { "" }
        );
    }
    if d.networks.len() > MAX_NETWORKS {
        let _ = writeln!(
            b,
            "  ... and {} more (f2b-mailguard status)",
            d.networks.len() - MAX_NETWORKS
        );
    }

    let _ = writeln!(b, "\nLevel history:");
    for h in &d.history {
        let _ = writeln!(
            b,
            "  {}  {} -> {}  by {}: {}",
            when(h.time),
            h.from,
            h.to.describe(h.enforced),
            shown(&h.actor),
            shown(&h.reason)
        );
    }

    let user = shell_word(d.user.as_str());
    let _ = writeln!(b, "\nTo see everything:   f2b-mailguard status -- {user}");
    let _ = writeln!(b, "To release it:       f2b-mailguard release -- {user}");
    let _ = writeln!(
        b,
        "  (held mail is released too; add --purge-held to delete it instead)"
    );
    if action.level >= Level::Lock && action.enforced {
        let _ = writeln!(b, "\nThe password was replaced by a random one: set a new one with the user before release.");
    }
    b
}

/// lettre sends an ASCII word of a subject as is, so a name `=?utf-8?q?...?=` would be
/// decoded by the reader into what it says. Such a subject goes out as encoded-words
/// of its own (email-encoding, lettre's own encoder, folds them): the reader decodes
/// them once and shows the `=?...?=` as text.
fn encoded_subject(subject: String) -> Result<HeaderValue, String> {
    use email_encoding::headers::{rfc2047, writer::EmailWriter};
    let mut encoded = String::new();
    rfc2047::encode(
        &subject,
        &mut EmailWriter::new(&mut encoded, "Subject: ".len(), 0, false),
    )
    .map_err(|e| format!("encoding the subject: {e}"))?;
    Ok(HeaderValue::dangerous_new_pre_encoded(
        HeaderName::new_from_ascii_str("Subject"),
        subject,
        encoded,
    ))
}

pub(super) use crate::config::hostname;

pub fn send(cfg: &Config, action: &QueuedAction, d: &Detail) -> Result<String, String> {
    deliver(cfg, subject(action), body(cfg, action, d))
}

/// Sends one plain-text mail to the configured admins; returns the server's answer.
pub fn deliver(cfg: &Config, subject: String, body: String) -> Result<String, String> {
    deliver_to(cfg, &cfg.contain.mail.to, None, subject, body)
}

/// Sends one plain-text mail to `to` through the configured transport.
pub fn deliver_to(
    cfg: &Config,
    to: &[lettre::Address],
    reply_to: Option<&lettre::Address>,
    subject: String,
    body: String,
) -> Result<String, String> {
    let m = &cfg.contain.mail;
    let mut builder = Message::builder()
        .from(Mailbox::new(Some("f2b-mailguard".into()), m.from.clone()))
        .header(ContentType::TEXT_PLAIN);
    if let Some(r) = reply_to {
        builder = builder.reply_to(Mailbox::new(None, r.clone()));
    }
    builder = if subject.contains("=?") || !subject.is_ascii() {
        builder.raw_header(encoded_subject(subject)?)
    } else {
        builder.subject(subject)
    };
    for addr in to {
        builder = builder.to(Mailbox::new(None, addr.clone()));
    }
    let message = builder
        .body(body)
        .map_err(|e| format!("building the mail: {e}"))?;
    let to: Vec<String> = to.iter().map(|a| a.to_string()).collect();
    match m.transport {
        MailTransport::Smtp => {
            let timeout = Some(Duration::from_millis(
                cfg.contain.actions.command_timeout.millis() as u64,
            ));
            let builder = match m.smtp_security {
                MailSecurity::None => SmtpTransport::builder_dangerous(&m.smtp_host),
                MailSecurity::Starttls => {
                    SmtpTransport::starttls_relay(&m.smtp_host).map_err(|e| e.to_string())?
                }
                MailSecurity::Tls => {
                    SmtpTransport::relay(&m.smtp_host).map_err(|e| e.to_string())?
                }
            };
            let mut builder = builder.port(m.smtp_port).timeout(timeout);
            if !m.smtp_user.is_empty() {
                builder = builder.credentials(Credentials::new(
                    m.smtp_user.clone(),
                    m.smtp_password.clone(),
                ));
            }
            let reply = builder
                .build()
                .send(&message)
                .map_err(|e| format!("SMTP {}:{}: {e}", m.smtp_host, m.smtp_port))?;
            let text: Vec<&str> = reply.message().collect();
            Ok(format!(
                "sent to {} via {}:{}: {} {}",
                to.join(", "),
                m.smtp_host,
                m.smtp_port,
                reply.code(),
                text.join(" ")
            ))
        }
        MailTransport::Sendmail => {
            SendmailTransport::new_with_command(&m.sendmail)
                .send(&message)
                .map_err(|e| format!("{}: {e}", m.sendmail.display()))?;
            Ok(format!(
                "sent to {} via {}",
                to.join(", "),
                m.sendmail.display()
            ))
        }
    }
}

/// What quarantine does (or, in warn mode, would do) to an account at notify; block
/// and lock say what they do in their own list.
fn quarantine(cfg: &Config, action: &QueuedAction) -> Option<String> {
    let quarantine = cfg.contain.actions.quarantine;
    let answer = |mode| PostfixAnswer::decide(action.level, action.enforced, mode, quarantine);
    if action.level != Level::Notify || answer(Mode::Enforce) != PostfixAnswer::Hold {
        return None;
    }
    let quiet = cfg.detection.notify_quiet;
    Some(if answer(cfg.mode) == PostfixAnswer::Hold {
        format!(
            "Quarantined: its new mail is accepted into Postfix's hold queue and not sent\n\
             (the sender sees success). Release sends it; so does notify clearing by\n\
             itself ({quiet} below every threshold). A rise to block keeps it held."
        )
    } else {
        format!(
            "Would quarantine (mode is {}): in enforce mode its new mail would be held in\n\
             Postfix's hold queue until release, or until notify clears ({quiet}).",
            Mode::Warn.as_str()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::{shell_quote, shell_word};

    #[test]
    fn quotes_for_paste() {
        assert_eq!(shell_quote("a@b"), "'a@b'");
        assert_eq!(shell_quote("x'$(id)"), r"'x'\''$(id)'");
    }

    #[test]
    fn names_outside_ascii_are_rebuilt_by_printf() {
        assert_eq!(shell_word("a@b"), "'a@b'");
        assert_eq!(
            shell_word("-\u{430}'%\\"),
            r#""$(printf '\055\320\260\047\045\134')""#
        );
    }
}
