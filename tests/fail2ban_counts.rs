//! Exact message and bounce counts through a real, private fail2ban-server with the
//! shipped jails and filters: a burst of accepted messages and bounced recipients,
//! many in one second from one address, each reaches `record` exactly once.

use crate::support;

use std::time::{Duration, Instant};

use support::fail2ban::{append, syslog_now, Fail2ban, MESSAGE_JAILS};
use support::Sandbox;

const ALICE: &str = "alice@example.com";
const MESSAGES: u32 = 2000;
const ADDRESSES: u32 = 20;
/// Messages written per tick; one tick every 100 ms is 50 messages a second.
const PER_TICK: u32 = 5;
/// Every 13th of the first 1950 messages bounces for the same four recipients: 150
/// messages, 600 bounced recipients.
const RECIPIENTS: u32 = 4;
fn bounces(i: u32) -> bool {
    i < 1950 && i.is_multiple_of(13)
}

/// `status --json` of alice: (messages, bounces, networks), zeros before any.
fn figures(s: &Sandbox) -> (u64, u64, usize) {
    let out = s.run(&["status", "--json", "--", ALICE]);
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return (0, 0, 0);
    };
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    let networks = v["networks"].as_array().map_or(0, Vec::len);
    (n("messages"), n("bounces"), networks)
}

/// Message `i`'s lines as Postfix logs them: the submission, for a bouncing one its
/// bounced recipients, and the queue file's removal.
fn message(i: u32, stamp: &str) -> Vec<String> {
    let qid = format!("B{i:09X}");
    let addr = format!("198.51.100.{}", 10 + i % ADDRESSES);
    let mut lines = vec![format!(
        "{stamp} mx postfix/submission/smtpd[{}]: {qid}: client=unknown[{addr}], sasl_method=PLAIN, sasl_username={ALICE}",
        7000 + i % ADDRESSES
    )];
    if bounces(i) {
        for r in 0..RECIPIENTS {
            lines.push(format!(
                "{stamp} mx postfix/smtp[8001]: {qid}: to=<gone{r}@remote.example>, relay=mx.remote.example[192.0.2.9]:25, delay=0.2, delays=0.1/0/0/0.1, dsn=5.1.1, status=bounced (host mx.remote.example[192.0.2.9] said: 550 5.1.1 unknown user)"
            ));
        }
    }
    lines.push(format!("{stamp} mx postfix/qmgr[8002]: {qid}: removed"));
    if i % 100 == 50 {
        // Inbound mail (no SASL user) that bounces: a ticket without a user, skipped.
        let qid = format!("C{i:09X}");
        lines.extend([
            format!("{stamp} mx postfix/smtpd[9000]: {qid}: client=mx.other.example[203.0.113.9]"),
            format!("{stamp} mx postfix/lmtp[9001]: {qid}: to=<full@example.com>, relay=mail.example.com[private/dovecot-lmtp], delay=0.1, delays=0/0/0/0.1, dsn=5.2.2, status=bounced (quota)"),
            format!("{stamp} mx postfix/qmgr[8002]: {qid}: removed"),
        ]);
    }
    lines
}

#[test]
fn every_message_and_bounced_recipient_of_a_burst_is_recorded_exactly_once() {
    let s = Sandbox::new("");
    let mail_log = s.path().join("mail.log");
    std::fs::write(&mail_log, "").expect("log");
    let f2b = Fail2ban::on_log(s.path(), &s.config_path(), &mail_log, &MESSAGE_JAILS);

    let started = Instant::now();
    for tick in 0..MESSAGES / PER_TICK {
        let stamp = syslog_now();
        let lines: Vec<String> = (tick * PER_TICK..(tick + 1) * PER_TICK)
            .flat_map(|i| message(i, &stamp))
            .collect();
        append(&mail_log, &lines);
        let next = started + Duration::from_millis(100 * u64::from(tick + 1));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let written = started.elapsed();
    let want_bounces = u64::from((0..MESSAGES).filter(|i| bounces(*i)).count() as u32 * RECIPIENTS);
    assert_eq!(want_bounces, 600);
    let rate = f64::from(MESSAGES) / written.as_secs_f64();
    assert!(rate >= 5.0, "wrote {rate:.1} messages/s, want at least 5");

    let want = (u64::from(MESSAGES), want_bounces);
    // Stops early on a count above the one wanted: that is the failure.
    let mut got = figures(&s);
    support::try_wait_until(Duration::from_secs(90), || {
        got = figures(&s);
        (got.0, got.1) == want || got.0 > want.0 || got.1 > want.1
    });
    assert_eq!(
        (got.0, got.1),
        want,
        "messages and bounces; fail2ban log tail:\n{}",
        f2b.log()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let settled = started.elapsed();
    // Nothing more arrives later; the login jail saw the 20 addresses.
    std::thread::sleep(Duration::from_secs(3));
    let got = figures(&s);
    assert_eq!(got, (want.0, want.1, ADDRESSES as usize));
    let log = f2b.log();
    // (The smtp jail's "already banned" is its purpose: a known pair is not repeated.)
    let dropped: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("[mailguard-rate]") || l.contains("[mailguard-bounce]"))
        .filter(|l| l.contains("expired bantime") || l.contains("already banned"))
        .collect();
    assert!(
        dropped.is_empty(),
        "Fail2ban dropped tickets:\n{}",
        dropped.join("\n")
    );
    eprintln!(
        "wrote {MESSAGES} messages ({rate:.0}/s) and {want_bounces} bounces in {:.1} s; all recorded after {:.1} s",
        written.as_secs_f64(),
        settled.as_secs_f64()
    );
}

/// A spam run keeps hundreds of its messages in the queue (deferred, never "removed")
/// when their bounces come: each bounce needs its message's submission line, which the
/// bounce jail keeps in a multi-line cache that Fail2ban sizes at 100 entries.
#[test]
fn bounces_of_more_messages_in_flight_than_fail2bans_own_cache_are_all_recorded() {
    const IN_FLIGHT: u32 = 300;
    let s = Sandbox::new("");
    let mail_log = s.path().join("mail.log");
    std::fs::write(&mail_log, "").expect("log");
    let f2b = Fail2ban::on_log(s.path(), &s.config_path(), &mail_log, &MESSAGE_JAILS);
    let stamp = syslog_now();
    let line = |what: &str| format!("{stamp} mx postfix/{what}");
    let submissions: Vec<String> = (0..IN_FLIGHT)
        .map(|i| line(&format!("submission/smtpd[7000]: F{i:09X}: client=unknown[198.51.100.7], sasl_method=PLAIN, sasl_username={ALICE}")))
        .collect();
    let bounced: Vec<String> = (0..IN_FLIGHT)
        .map(|i| line(&format!("smtp[8001]: F{i:09X}: to=<gone{i}@remote.example>, relay=mx.remote.example[192.0.2.9]:25, delay=9, delays=0.1/0/0/9, dsn=5.1.1, status=bounced (host mx.remote.example[192.0.2.9] said: 550 5.1.1 unknown user)")))
        .collect();
    for chunk in submissions.chunks(50) {
        append(&mail_log, chunk);
        std::thread::sleep(Duration::from_millis(100));
    }
    support::wait_until("the messages recorded", Duration::from_secs(90), || {
        figures(&s).0 >= u64::from(IN_FLIGHT)
    });
    for chunk in bounced.chunks(50) {
        append(&mail_log, chunk);
        std::thread::sleep(Duration::from_millis(100));
    }
    let want = (u64::from(IN_FLIGHT), u64::from(IN_FLIGHT), 1);
    let mut got = figures(&s);
    support::try_wait_until(Duration::from_secs(90), || {
        got = figures(&s);
        got == want
    });
    assert_eq!(
        got,
        want,
        "(messages, bounces, networks); fail2ban log tail:\n{}",
        f2b.log()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
