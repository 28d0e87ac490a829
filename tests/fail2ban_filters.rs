//! The shipped filters through the real `fail2ban-regex`: exactly the expected
//! (user, address) pairs on success lines of every log format (syslog, RFC 3339
//! syslog, Postfix maillog_file, Dovecot's own log, Roundcube's userlogins, and the
//! systemd journal). What they must not match: tests/fail2ban_no_match.rs.

use crate::support;

use std::path::{Path, PathBuf};
use support::fail2ban::{self, regex};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Fail2ban's own failure samples, shipped in Debian's fail2ban package (read there,
/// not copied into this repository).
pub(crate) const UPSTREAM_SAMPLES: &str =
    "/usr/lib/python3/dist-packages/fail2ban/tests/files/logs";

/// A config dir with the shipped filters, as on a real install.
pub(crate) fn filters() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tmp");
    let fd = fail2ban::filter_dir(dir.path());
    (dir, fd)
}

pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(ROOT).join("tests/fail2ban").join(name)
}

/// A log file argument; fail2ban-regex would read a missing path as a literal log line.
pub(crate) fn log_file(p: &Path) -> String {
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

/// A blocked account's botnet, refused by our check_sasl_access map.
/// Lines as the real Postfix 3.7 of tests/support/mailstack.rs logs them (the first
/// two verbatim, one with a fake address in its HELO), the maillog_file form, a client
/// port, IPv6, a 4xx reject text and Postfix 3.10's sasl_username suffix.
#[test]
fn refused_submissions_yield_the_sasl_login_and_postfixs_client_address() {
    assert_pairs(
        "postfix-refused.log",
        "mailguard-postfix-refused",
        "postfix-refused.expected",
    );
    let (_dir, fd) = filters();
    let refused = |log: &str, output: &str| {
        regex(
            &log_file(&fixture(log)),
            "mailguard-postfix-refused",
            &fd,
            Some(output),
        )
    };
    assert_eq!(
        refused("postfix-refused.log", "<fid>").lines().next(),
        Some("('alice@example.test', '203.0.113.1')"),
        "keyed on the (user, address) pair, as the smtp jail"
    );
    // Of our failure corpus, exactly its two refused-by-check_sasl_access lines.
    assert_eq!(
        refused("failures.log", "<F-USER> <ip>"),
        "alice@example.com 203.0.113.10\nbob@example.com 203.0.113.26\n"
    );
    // A refused submission is not an accepted one for the other filters.
    assert_no_match(&fixture("postfix-refused.log"));
}

/// What a client can write into a reject line: a RCPT TO or MAIL FROM (quoted local
/// part) or a HELO holding "<victim>: SASL login name rejected: ...", as the real
/// Postfix 3.7 logs it (first four lines), the same with an unsanitised HELO and in
/// every field, a fake "[ADDR]" in HELO or NAME; lines without smtpd's tag, another
/// stage (MAIL), another class, no HELO; and a quarantined account's HOLD answers
/// (its mail is accepted: not a refusal). None may yield a login: each would make the
/// victim count a network the attacker chose.
#[test]
fn the_refused_filter_never_takes_a_user_or_address_a_client_wrote() {
    let (_dir, fd) = filters();
    for log in ["postfix-refused-forged.log", "untagged.log"] {
        let summary = regex(
            &log_file(&fixture(log)),
            "mailguard-postfix-refused",
            &fd,
            None,
        );
        assert!(summary.contains(" 0 matched"), "{log}:\n{summary}");
    }
    for sample in ["postfix", "dovecot"] {
        let summary = regex(
            &log_file(&Path::new(UPSTREAM_SAMPLES).join(sample)),
            "mailguard-postfix-refused",
            &fd,
            None,
        );
        assert!(summary.contains(" 0 matched"), "{sample}:\n{summary}");
    }
}

/// A refused line is read only while it is short and plain ASCII: at most 800
/// characters from the host name on, well below where Postfix (2,000) or a syslog
/// daemon (1,024 with its header) cut a line, so a line whose end a client placed by
/// padding is never read. Genuine lines of 800 characters are; one more, or one
/// non-ASCII character (whose bytes a cut would count), and they are not.
#[test]
fn the_refused_filter_reads_no_line_long_enough_to_have_been_cut() {
    let (dir, fd) = filters();
    // A genuine refusal whose HELO is padded to make the line `len` long from "mx" on.
    let line = |len: usize, helo_char: char| {
        let head = "mx postfix/smtpd[4242]: NOQUEUE: reject: RCPT from unknown[203.0.113.7]: \
                    550 5.7.1 <alice@example.test>: SASL login name rejected: Account suspended; \
                    from=<alice@example.test> to=<x@remote.example> proto=ESMTP helo=<";
        let pad = len - head.len() - 1;
        let helo: String = std::iter::repeat_n(helo_char, pad).collect();
        format!("Nov 23 07:00:00 {head}{helo}>")
    };
    let cases = [
        (line(800, 'h'), true),
        (line(801, 'h'), false),
        (line(1003, 'h'), false),
        (line(400, '\u{e9}'), false),
    ];
    for (text, matches) in cases {
        let log = dir.path().join("one.log");
        std::fs::write(&log, format!("{text}\n")).expect("log");
        let got = regex(
            &log_file(&log),
            "mailguard-postfix-refused",
            &fd,
            Some("<F-USER> <ip>"),
        );
        let want = if matches {
            "alice@example.test 203.0.113.7\n"
        } else {
            ""
        };
        assert_eq!(got, want, "{} characters: {text}", text.chars().count());
    }
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
    let (dir, fd) = filters();
    let export = std::fs::read(fixture("journal.export")).expect("journal.export");
    let source = support::journal::journal_file(&export, &dir.path().join("test.journal"));
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
pub(crate) const ALL: [&str; 6] = [
    "mailguard-postfix-sasl",
    "mailguard-postfix-sasl[mode=rate]",
    "mailguard-dovecot-login[service=imap]",
    "mailguard-dovecot-login[service=pop3]",
    "mailguard-roundcube-login",
    "mailguard-roundcube-login[mode=proxy]",
];

pub(crate) fn assert_no_match(log: &Path) {
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
