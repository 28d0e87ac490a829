//! The shipped filters through the real `fail2ban-regex`: exactly the expected
//! (user, address) pairs on success lines of every log format (syslog, RFC 3339
//! syslog, Postfix maillog_file, Dovecot's own log, Roundcube's userlogins, and the
//! systemd journal), nothing on failures, and no slow regex on hostile input.

#[path = "support/fail2ban.rs"]
mod fail2ban;

use fail2ban::regex;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Fail2ban's own failure samples, shipped in Debian's fail2ban package (read there,
/// not copied into this repository).
const UPSTREAM_SAMPLES: &str = "/usr/lib/python3/dist-packages/fail2ban/tests/files/logs";
/// Writes journal files from journal export format (package systemd-journal-remote).
const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";

/// A config dir with the shipped filters, as on a real install.
fn filters() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tmp");
    let fd = fail2ban::filter_dir(dir.path());
    (dir, fd)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(ROOT).join("tests/fail2ban").join(name)
}

/// A log file argument; fail2ban-regex would read a missing path as a literal log line.
fn log_file(p: &Path) -> String {
    assert!(p.is_file(), "{} is missing", p.display());
    p.display().to_string()
}

fn expected(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).expect("expected file")
}

fn assert_pairs(log: &str, filter: &str, want: &str) {
    let (_dir, fd) = filters();
    let got = regex(&log_file(&fixture(log)), filter, &fd, Some("<F-USER> <ip>"));
    assert_eq!(got, expected(want), "{filter} on {log}");
}

#[test]
fn postfix_sasl_success_in_syslog_rfc3339_and_maillog_file_formats() {
    // Every smtpd service name (submission, smtps, dovecot-submission, custom names,
    // postfix-incoming and postfix-out instances), IPv4 and IPv6, with and without
    // client port, short and long queue ids, sasl_sender/orig_* suffixes, and a user
    // name that looks like an address: the address always comes from client=...[ADDR].
    assert_pairs(
        "postfix-success.log",
        "mailguard-postfix-sasl",
        "postfix-success.expected",
    );
}

#[test]
fn bounces_carry_the_sasl_user_of_their_queue_id() {
    // One line per status=bounced recipient (smtp, lmtp, error; orig_to, conn_use,
    // long queue ids), with the user and address of the smtpd line of the same queue
    // id; not for sent or deferred recipients, and not after "removed" forgot the queue
    // id. A bounce of mail without a SASL user is a ticket without a user (its id is
    // the queue id and recipient), which the action skips before running anything.
    assert_pairs(
        "postfix-bounce.log",
        "mailguard-postfix-bounce",
        "postfix-bounce.expected",
    );
}

#[test]
fn rate_and_bounce_tickets_are_one_per_message_and_per_bounced_recipient() {
    let (_dir, fd) = filters();
    let log = log_file(&fixture("postfix-success.log"));
    // The same lines as the pair mode...
    assert_eq!(
        regex(
            &log,
            "mailguard-postfix-sasl[mode=rate]",
            &fd,
            Some("<F-USER> <ip>")
        ),
        expected("postfix-success.expected")
    );
    // ...each its own ticket, the (user, queue id) pair: no message waits for another.
    let ids = regex(
        &log,
        "mailguard-postfix-sasl[mode=rate]",
        &fd,
        Some("<fid>"),
    );
    assert_eq!(
        ids.lines().next(),
        Some("('alice@example.com', '8FEF0C037B')")
    );
    let unique: std::collections::BTreeSet<&str> = ids.lines().collect();
    assert_eq!(unique.len(), ids.lines().count(), "{ids}");
    // A bounce's ticket is its (queue id, recipient) pair, with the user of the queue id.
    let bounces = regex(
        &log_file(&fixture("postfix-bounce.log")),
        "mailguard-postfix-bounce",
        &fd,
        Some("<fid> <F-USER>"),
    );
    let mut lines = bounces.lines();
    assert_eq!(
        lines.next(),
        Some("('1A2B3C4D5E', 'a@remote.test') alice@example.com")
    );
    assert_eq!(
        lines.next(),
        Some("('1A2B3C4D5E', 'c@remote.test') alice@example.com")
    );
}

#[test]
fn dovecot_logins_per_service_in_syslog_and_dovecot_log_formats() {
    assert_pairs(
        "dovecot-success.log",
        "mailguard-dovecot-login[service=imap]",
        "dovecot-success.imap.expected",
    );
    assert_pairs(
        "dovecot-success.log",
        "mailguard-dovecot-login[service=pop3]",
        "dovecot-success.pop3.expected",
    );
}

#[test]
fn roundcube_logins_direct_and_behind_a_proxy() {
    // Roundcube <= 1.4 and >= 1.5 forms of the forwarded headers, file and syslog.
    assert_pairs(
        "roundcube-success.log",
        "mailguard-roundcube-login",
        "roundcube-success.direct.expected",
    );
    assert_pairs(
        "roundcube-success.log",
        "mailguard-roundcube-login[mode=proxy]",
        "roundcube-success.proxy.expected",
    );
}

/// tests/fail2ban/journal.export (journal export format) written to a real journal
/// file, read as Fail2ban's systemd backend reads it, with each filter's journalmatch.
#[test]
fn every_filter_in_the_systemd_journal_with_its_journalmatch() {
    fail2ban::need(JOURNAL_REMOTE);
    let (dir, fd) = filters();
    let journal = dir.path().join("test.journal");
    let export = std::fs::File::open(fixture("journal.export")).expect("journal.export");
    let out = Command::new(JOURNAL_REMOTE)
        .arg(format!("--output={}", journal.display()))
        .arg("-")
        .stdin(export)
        .output()
        .expect("systemd-journal-remote");
    assert!(
        out.status.success() && journal.is_file(),
        "systemd-journal-remote: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let source = format!("systemd-journal[journalfiles={}]", journal.display());
    for (filter, want) in [
        // postfix@-.service (Debian 12), postfix.service, a postmulti instance in
        // system-postfix.slice; not a forged line from a user session.
        ("mailguard-postfix-sasl", "journal.smtp.expected"),
        (
            "mailguard-dovecot-login[service=imap]",
            "journal.imap.expected",
        ),
        (
            "mailguard-dovecot-login[service=pop3]",
            "journal.pop3.expected",
        ),
        ("mailguard-roundcube-login", "journal.webmail.expected"),
    ] {
        let summary = regex(&source, filter, &fd, None);
        assert!(
            summary.contains("Use         systemd journal"),
            "{filter} did not read the journal:\n{summary}"
        );
        let got = regex(&source, filter, &fd, Some("<F-USER> <ip>"));
        assert_eq!(got, expected(want), "{filter} on the journal");
    }
}

#[test]
fn tickets_are_keyed_on_the_user_address_pair() {
    let (_dir, fd) = filters();
    for (log, filter, first) in [
        (
            "postfix-success.log",
            "mailguard-postfix-sasl",
            "('alice@example.com', '198.51.100.23')",
        ),
        (
            "dovecot-success.log",
            "mailguard-dovecot-login[service=imap]",
            "('alice@example.com', '198.51.100.31')",
        ),
        (
            "roundcube-success.log",
            "mailguard-roundcube-login",
            "('alice@example.com', '198.51.100.51')",
        ),
    ] {
        let ids = regex(&log_file(&fixture(log)), filter, &fd, Some("<fid>"));
        assert_eq!(ids.lines().next(), Some(first), "{filter}");
    }
    // Two users behind one address are two tickets (alice and frank share .23).
    let ids = regex(
        &log_file(&fixture("postfix-success.log")),
        "mailguard-postfix-sasl",
        &fd,
        Some("<fid>"),
    );
    assert!(ids.contains("('frank@example.com', '198.51.100.23')"));
}

/// The bounce filter is not here: it matches bounces of any mail, and counts only
/// those whose queue id it tied to a SASL user (see assert_no_match).
const ALL: [&str; 6] = [
    "mailguard-postfix-sasl",
    "mailguard-postfix-sasl[mode=rate]",
    "mailguard-dovecot-login[service=imap]",
    "mailguard-dovecot-login[service=pop3]",
    "mailguard-roundcube-login",
    "mailguard-roundcube-login[mode=proxy]",
];

fn assert_no_match(log: &Path) {
    let (_dir, fd) = filters();
    for filter in ALL {
        let summary = regex(&log_file(log), filter, &fd, None);
        let line = summary
            .lines()
            .find(|l| l.starts_with("Lines:"))
            .expect("summary line");
        assert!(
            line.contains(" 0 matched"),
            "{filter} matched in {}: {line}\n{summary}",
            log.display()
        );
    }
    let users = regex(
        &log_file(log),
        "mailguard-postfix-bounce",
        &fd,
        Some("<F-USER>"),
    );
    assert_eq!(
        users.trim(),
        "",
        "bounces counted for a user in {}",
        log.display()
    );
}

#[test]
fn no_filter_matches_a_failure_rejection_or_unknown_user() {
    // Our own corpus: SASL failures (old and new Postfix), rejects incl. Postfix 3.10's
    // sasl_username suffix, hold/discard, unknown users, Dovecot auth failures and
    // aborted logins (2.3 and 2.4), injection attempts through user names, Roundcube
    // failures in every form.
    assert_no_match(&fixture("failures.log"));
}

#[test]
fn no_filter_matches_fail2bans_own_failure_samples() {
    for sample in [
        "postfix",
        "dovecot",
        "roundcube-auth",
        "sieve",
        "courier-auth",
    ] {
        assert_no_match(&Path::new(UPSTREAM_SAMPLES).join(sample));
    }
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
    ];
    let log = dir.path().join("hostile.log");
    std::fs::write(&log, lines.join("\n") + "\n").expect("write");
    for filter in ALL.into_iter().chain(["mailguard-postfix-bounce"]) {
        let start = Instant::now();
        let summary = regex(&log_file(&log), filter, &fd, None);
        let took = start.elapsed();
        assert!(
            summary.contains(" 0 matched"),
            "{filter} matched a hostile line:\n{summary}"
        );
        assert!(
            took < Duration::from_secs(10),
            "{filter} took {took:?} on hostile lines"
        );
    }
}
