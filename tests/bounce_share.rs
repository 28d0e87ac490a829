//! The bounce share through the real chain: Postfix takes authenticated submissions
//! and relays them to a sink standing for the Internet, which refuses recipients named
//! `gone…` (so Postfix logs `status=bounced` per recipient); a real Fail2ban with the
//! shipped smtp, rate and bounce jails reports to f2b-mailguard.

use crate::support;

use std::time::Duration;

use support::fail2ban::{Fail2ban, MESSAGE_JAILS};
use support::mailstack::{submit, submit_to_all, Dovecot, Postfix};
use support::smtp_sink::{SmtpSink, GONE};
use support::{now, Sandbox};

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";
const PW: &str = "secret-pw";

/// `status USER --json`, or Null while the account has no login recorded yet.
fn status(s: &Sandbox, user: &str) -> serde_json::Value {
    let out = s.run(&["status", "--json", "--", user]);
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

#[test]
fn one_message_to_many_dead_recipients_notifies_a_spam_run_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start();
    let mut dv = Dovecot::configure(dir.path(), &[(ALICE, PW), (BOB, PW)]);
    dv.start();
    let pf = Postfix::submitting(dir.path(), sink.port, &dv.auth_socket);
    let s = Sandbox::new("");
    let log = pf.root.join("postfix.log");
    let f2b = Fail2ban::on_log(dir.path(), &s.config_path(), &log, &MESSAGE_JAILS);
    let tail = || {
        let log = f2b.log();
        let lines: Vec<&str> = log.lines().rev().take(30).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    };

    // An honest user replies to all of a thread whose Cc list someone planted with 60
    // dead addresses: one message, one live recipient and 60 bounced ones.
    let dead: Vec<String> = (0..60)
        .map(|i| format!("{GONE}{i}@remote.example"))
        .collect();
    let mut to = vec!["friend@remote.example"];
    to.extend(dead.iter().map(String::as_str));
    submit_to_all(pf.submission_port, "198.51.100.7", (ALICE, PW), ALICE, &to)
        .unwrap_or_else(|e| panic!("alice's reply refused: {e}"));
    let held = support::try_wait_until(Duration::from_secs(300), || {
        let d = status(&s, ALICE);
        d["bounces"].as_u64() == Some(60) && d["messages"].as_u64() == Some(1)
    });
    let d = s.status_user(ALICE, now());
    assert!(
        held,
        "alice's message and 60 bounces recorded: {d:#}\n{}",
        tail()
    );
    assert_eq!(d["level"], "notify", "{d:#}");

    // A spam run: 200 messages of one recipient each, 30 % of them to dead addresses.
    for i in 0..200 {
        let rcpt = if i % 10 < 3 {
            format!("{GONE}-list{i}@remote.example")
        } else {
            format!("list{i}@remote.example")
        };
        submit(pf.submission_port, "198.51.100.8", (BOB, PW), BOB, &rcpt)
            .unwrap_or_else(|e| panic!("bob's message {i} refused: {e}"));
    }
    let blocked = support::try_wait_until(Duration::from_secs(300), || {
        status(&s, BOB)["level"] == "block"
    });
    let d = s.status_user(BOB, now());
    assert!(blocked, "the spam run blocks: {d:#}\n{}", tail());
    // Alice's one message never joined it.
    assert_eq!(s.status_user(ALICE, now())["level"], "notify");
}
