//! The owner's mail (`notify_user`) through the real binary and an SMTP sink: once
//! per level rise, in plain words, never in warn mode unless configured.

use crate::support;

use std::time::Duration;

use support::smtp_sink::{quoted_printable, Received, SmtpSink};
use support::{now, Sandbox};

const ALICE: &str = "alice@example.com";

fn sandbox(sink: &SmtpSink, mode: &str, extra: &str) -> Sandbox {
    Sandbox::acting(&format!(
        "mode = \"{mode}\"\n{extra}\n\
         [actions]\nretry_base = \"1s\"\nmax_attempts = 1\n\
         block = [\"sasl_block\", \"notify_user\", \"mail\"]\n\
         lock = [\"sasl_block\", \"notify_user\", \"mail\"]\n\
         [mail]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\n\
         from = \"mailguard@example.test\"\nto = [\"postmaster@example.test\"]\n\
         [postfix]\nsasl_map = \"/nonexistent/mailguard_sasl_access\"\n",
        sink.port
    ))
}

/// Every action of `user` finished (none pending).
fn settled(s: &Sandbox, user: &str) -> serde_json::Value {
    s.wait_user(user, "no action pending", |d| {
        d["actions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["state"] != "pending")
    })
}

/// The mails that went to `to`, once `admin` admin mails arrived and a moment passed
/// for anything else the worker might still send.
fn mails_to(sink: &SmtpSink, admin: usize, to: &str) -> Vec<Received> {
    let all = sink.wait_for(admin, Duration::from_secs(20));
    assert!(all.len() >= admin, "{} mails", all.len());
    std::thread::sleep(Duration::from_millis(500));
    sink.messages()
        .into_iter()
        .filter(|m| m.to.iter().any(|t| t == to))
        .collect()
}

/// The account's notify_user action, as `status USER --json` shows it.
fn notify_user(s: &Sandbox, user: &str) -> serde_json::Value {
    let d = s.status_user(user, now());
    let actions = d["actions"].as_array().unwrap();
    let found = actions.iter().find(|a| a["kind"] == "notify_user");
    found.expect("a notify_user action").clone()
}

fn subject(m: &Received) -> String {
    m.header("Subject").unwrap_or_default()
}

#[test]
fn the_owner_hears_once_per_level_rise_in_plain_words() {
    let sink = SmtpSink::start();
    let s = sandbox(&sink, "enforce", "");
    let t0 = now() - 600;
    s.burst(ALICE, 11, t0);
    settled(&s, ALICE);
    // notify and block to the admin; one mail to the owner, at block.
    let owner = mails_to(&sink, 3, ALICE);
    assert_eq!(
        owner.len(),
        1,
        "{:?}",
        owner.iter().map(subject).collect::<Vec<_>>()
    );
    let m = &owner[0];
    assert_eq!(
        subject(m),
        "Your mail account alice@example.com has been blocked"
    );
    assert_eq!(
        m.header("Reply-To").as_deref(),
        Some("postmaster@example.test")
    );
    // lettre sends long lines quoted-printable, with CRLF line ends.
    let text = quoted_printable(&m.data).replace("\r\n", "\n");
    for words in [
        "about your mail\naccount alice@example.com.",
        "was used to log in from 11 different networks:\n\n  198.61.100.7/32 ",
        "\n  198.51.100.7/32 ",
        "someone else very probably\nknows your password",
        "What we did: your account has been blocked.\n  - It can no longer send mail.",
        "Contact the postmaster at postmaster@example.test",
        "Change the password of this account",
        "Scan the computers and phones",
    ] {
        assert!(text.contains(words), "{words:?} not in\n{text}");
    }
    let sent = notify_user(&s, ALICE);
    assert_eq!(sent["state"], "done", "{sent:#}");
    assert!(sent["outcome"]
        .as_str()
        .unwrap()
        .contains("sent to alice@example.com"));

    // One more network: still block, no rise, no second mail.
    s.record("smtp", ALICE, "203.0.113.9", t0 + 15);
    settled(&s, ALICE);
    assert_eq!(mails_to(&sink, 3, ALICE).len(), 1);

    // Lock: a rise, so the owner hears again.
    s.burst(ALICE, 22, t0 + 20);
    settled(&s, ALICE);
    let owner = mails_to(&sink, 5, ALICE);
    let subjects: Vec<String> = owner.iter().map(subject).collect();
    assert_eq!(
        subjects,
        [
            "Your mail account alice@example.com has been blocked",
            "Your mail account alice@example.com has been locked"
        ]
    );
}

#[test]
fn warn_mode_sends_the_owner_nothing_unless_configured() {
    let sink = SmtpSink::start();
    let s = sandbox(&sink, "warn", "");
    s.burst(ALICE, 11, now() - 600);
    let d = settled(&s, ALICE);
    // The admin's notify and would-block mails, nothing to the owner, nothing queued.
    assert!(mails_to(&sink, 2, ALICE).is_empty());
    assert!(d["actions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["kind"] == "mail"));

    let sink = SmtpSink::start();
    let s = sandbox(&sink, "warn", "");
    let config = std::fs::read_to_string(s.config_path()).unwrap();
    let config = config.replace("[actions]\n", "[actions]\nuser_mail_in_warn_mode = true\n");
    std::fs::write(s.config_path(), config).unwrap();
    s.burst(ALICE, 11, now() - 600);
    settled(&s, ALICE);
    let owner = mails_to(&sink, 3, ALICE);
    assert_eq!(owner.len(), 1);
    assert_eq!(
        subject(&owner[0]),
        "Your mail account alice@example.com has been flagged as possibly misused"
    );
    assert!(quoted_printable(&owner[0].data)
        .contains("Nothing has been changed yet: the postmaster decides."));
}

#[test]
fn owners_are_found_by_map_or_template_and_names_are_shown_escaped() {
    let sink = SmtpSink::start();
    // A right-to-left override in an attacker-chosen account name.
    let tricky = "\u{202e}moc.elpmaxe@ecila";
    let s = sandbox(
        &sink,
        "enforce",
        &format!(
            "[user_mail]\nsubject = \"{{user}}: {{level}}\"\n\
             [user_mail.addresses]\nbob = \"bob@example.org\"\n\"{tricky}\" = \"owner@example.org\"\n"
        ),
    );
    let t0 = now() - 600;
    for user in ["bob", "carol", tricky] {
        s.burst(user, 11, t0);
    }
    for user in ["bob", "carol", tricky] {
        settled(&s, user);
    }
    let bob = mails_to(&sink, 6, "bob@example.org");
    assert_eq!(bob.len(), 1);
    assert_eq!(subject(&bob[0]), "bob: block");

    // No address for carol: refused at once, saying how to give one.
    let a = notify_user(&s, "carol");
    assert_eq!(a["state"], "failed");
    assert_eq!(a["attempts"], 1);
    assert!(a["outcome"]
        .as_str()
        .unwrap()
        .contains("\"carol\" is not a mail address (set user_mail.to, or the account in [user_mail.addresses])"));

    let owner = mails_to(&sink, 6, "owner@example.org");
    assert_eq!(owner.len(), 1);
    let text = quoted_printable(&owner[0].data);
    assert!(!text.contains('\u{202e}'), "{text}");
    assert!(text.contains("\\u{202e}moc.elpmaxe@ecila"), "{text}");
}
