//! The shipped filters through the real `fail2ban-regex`: nothing on failures,
//! rejections, forged or untagged lines and Fail2ban's own failure samples, and no
//! slow regex on hostile input.

use crate::fail2ban_filters::{assert_no_match, filters, fixture, log_file, ALL, UPSTREAM_SAMPLES};
use crate::support;

use std::path::Path;
use std::time::{Duration, Instant};
use support::fail2ban::regex;

#[test]
fn no_filter_matches_a_failure_rejection_or_unknown_user() {
    // Our own corpus: SASL failures (old and new Postfix), rejects incl. Postfix 3.10's
    // sasl_username suffix, hold/discard, unknown users, Dovecot auth failures and
    // aborted logins (2.3 and 2.4), injection attempts through user names, Roundcube
    // failures in every form.
    assert_no_match(&fixture("failures.log"));
}

/// What an attacker gets into Roundcube's log with a newline, a
/// CR or tags in the posted user name (strip_tags removes `<...>`), in the file and
/// the syslog form; a line without Roundcube's `<sessid> ` prefix (as with
/// log_session_id = 0) is one of them. tests/roundcube.rs does it with a real Roundcube.
#[test]
fn no_filter_matches_a_forged_roundcube_line() {
    assert_no_match(&fixture("roundcube-forged.log"));
}

/// Fail2ban's common.conf makes the daemon tag optional, so a line without
/// `postfix/smtpd[PID]:`, `dovecot:` or `roundcube:` (anyone's text in the message
/// position) would pass. Every filter requires its daemon's own tag.
#[test]
fn no_filter_matches_a_line_without_its_daemons_tag() {
    assert_no_match(&fixture("untagged.log"));
}

/// The five sample files in one log: each filter runs once over all of them (a
/// `fail2ban-regex` start is most of the cost), and a match shows its line.
#[test]
fn no_filter_matches_fail2bans_own_failure_samples() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut all = String::new();
    for sample in [
        "postfix",
        "dovecot",
        "roundcube-auth",
        "sieve",
        "courier-auth",
    ] {
        let path = Path::new(UPSTREAM_SAMPLES).join(sample);
        let text = std::fs::read_to_string(log_file(&path)).expect("sample");
        all.push_str(&text);
        if !all.ends_with('\n') {
            all.push('\n');
        }
    }
    let log = dir
        .path()
        .join("postfix+dovecot+roundcube-auth+sieve+courier-auth");
    std::fs::write(&log, all).expect("write");
    assert_no_match(&log);
}

/// Each filter on long hostile lines of the shape its attacker controls: a regex with
/// nested or overlapping quantifiers would take exponential time here (Fail2ban's
/// dovecot filter did, GHSA-33wh-ccjc-p397).
#[test]
fn hostile_lines_are_rejected_quickly() {
    let (dir, fd) = filters();
    let n = 3000;
    let rep = |s: &str| s.repeat(n);
    let lines = [
        format!(
            "Nov 23 07:00:01 mx postfix/smtpd[1]: ABCDEF1234: client=unknown[203.0.113.1], sasl_method=PLAIN, sasl_username={}x",
            rep(", sasl_sender=a")
        ),
        format!(
            "Nov 23 07:00:01 mx postfix/smtpd[1]: ABCDEF1234: client={}",
            rep("[203.0.113.1]")
        ),
        format!(
            "Nov 23 07:00:01 mx postfix/smtp[1]: ABCDEF1234: to=<a>, relay={}, delay=1, delays=1, dsn=5.0.0, status=deferred",
            rep("x, delay=1")
        ),
        format!(
            "Nov 23 07:00:01 mx postfix/smtp[1]: ABCDEF1234: to=<a>, relay=x, delay=1, delays={}1, dsn=5.0.0 status=bounced",
            rep("1/")
        ),
        format!(
            "Nov 23 07:00:01 mx dovecot: imap-login: Login: user=<{}, rip=x",
            rep("a: ")
        ),
        format!(
            "Nov 23 07:00:01 mx dovecot: imap-login: Disconnected{} test no match",
            rep(": a")
        ),
        format!(
            "[23-Nov-2026 07:00:01 +0000]: <abc> Successful login for x (ID: 1) from {} in session",
            rep("X-Real-IP: 1.2.3.4,")
        ),
        format!(
            "[23-Nov-2026 07:00:01 +0000]: <abc> Successful login for {} (ID: 1) from",
            rep("a (ID: 1) from ")
        ),
        format!(
            "Nov 23 07:00:01 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from unknown[203.0.113.1]: 550 5.7.1 <a>: SASL login name rejected: {}x",
            rep("; from=<a to=<b proto=ESMTP helo=<c ")
        ),
        format!(
            "Nov 23 07:00:01 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from {}",
            rep("x[203.0.113.1]: 550 5.7.1 <a>: ")
        ),
    ];
    let log = dir.path().join("hostile.log");
    std::fs::write(&log, lines.join("\n") + "\n").expect("write");
    // The yardstick: the same filter over as many bytes of lines it rejects at once.
    // Wall time alone says more about the machine's load than about the regex; a
    // backtracking blow-up is many times slower than this, however busy the machine.
    let plain = dir.path().join("plain.log");
    let plain_lines: Vec<String> = lines
        .iter()
        .map(|l| format!("Nov 23 07:00:01 mx other[1]: {}", "x".repeat(l.len())))
        .collect();
    std::fs::write(&plain, plain_lines.join("\n") + "\n").expect("write");
    let more = ["mailguard-postfix-bounce", "mailguard-postfix-refused"];
    for filter in ALL.into_iter().chain(more) {
        let start = Instant::now();
        regex(&log_file(&plain), filter, &fd, None);
        let yardstick = start.elapsed();
        let start = Instant::now();
        let summary = regex(&log_file(&log), filter, &fd, None);
        let took = start.elapsed();
        assert!(
            summary.contains(" 0 matched"),
            "{filter} matched a hostile line:\n{summary}"
        );
        assert!(
            took < yardstick * 5 + Duration::from_secs(3),
            "{filter} took {took:?} on hostile lines, {yardstick:?} on as many plain bytes"
        );
    }
}
