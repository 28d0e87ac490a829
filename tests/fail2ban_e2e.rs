//! The shipped Fail2ban files with a real fail2ban-server feeding the real binary.

mod support;

use std::time::{Duration, Instant};

use support::fail2ban::{append, syslog_now, Fail2ban, Jail};
use support::{Sandbox, BIN};

#[test]
fn fail2ban_reports_each_user_address_pair_once_and_values_arrive_literally() {
    // 12 networks are "block" with the default thresholds (above 10); this scenario
    // checks the notify level, so block starts above 20 here.
    let s = Sandbox::new("[thresholds.smtp]\nblock = 20\nlock = 40");
    let mail_log = s.path().join("mail.log");
    std::fs::write(&mail_log, "").unwrap();
    let f2b = Fail2ban::start(
        s.path(),
        BIN.as_ref(),
        &s.config_path(),
        &[Jail {
            name: "mailguard-smtp",
            logpath: &mail_log,
        }],
    );
    let pwned = s.path().join("pwned");
    let evil = format!("x$(touch${{IFS}}{});y'\"|&*@example.com", pwned.display());
    let mut lines = Vec::new();
    for i in 0..12 {
        lines.push(format!(
            "{} mx postfix/submission/smtpd[{}]: {:010X}: client=unknown[198.51.100.{}], sasl_method=PLAIN, sasl_username=alice@example.com",
            syslog_now(),
            4000 + i,
            0xA000 + i,
            i + 1
        ));
    }
    for i in 0..3 {
        lines.push(format!(
            "{} mx postfix/submission/smtpd[5000]: {:010X}: client=unknown[203.0.113.9], sasl_method=LOGIN, sasl_username=bob@example.com",
            syslog_now(),
            0xB000 + i
        ));
    }
    lines.push(format!(
        "{} mx postfix/submission/smtpd[5001]: C0FFEE1234: client=unknown[203.0.113.66], sasl_method=PLAIN, sasl_username={evil}",
        syslog_now()
    ));
    append(&mail_log, &lines);

    let deadline = Instant::now() + Duration::from_secs(10);
    while s.rows("events") < 14 {
        assert!(
            Instant::now() < deadline,
            "only {} of 14 pairs recorded; fail2ban log:\n{}",
            s.rows("events"),
            f2b.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        s.rows("events"),
        14,
        "12 + 1 pairs + the odd user, each once"
    );
    let now = support::now();
    let alice = s.status_user("alice@example.com", now);
    assert_eq!(alice["level"], "notify");
    assert_eq!(alice["networks"].as_array().unwrap().len(), 12);
    let bob = s.status_user("bob@example.com", now);
    assert_eq!(bob["networks"][0]["count"], 1);
    let odd = s.status_user(&evil, now);
    assert_eq!(
        odd["user"],
        evil.as_str(),
        "the user name arrived byte for byte"
    );
    assert!(!pwned.exists(), "a shell ran part of the user name");
    // Times are the log's, not the arrival's.
    let seen = alice["networks"][0]["last_seen"].as_f64().unwrap();
    assert!((now as f64 - seen).abs() < 60.0);
    drop(f2b);
}
