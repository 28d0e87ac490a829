//! Forged Roundcube log lines, with a real Roundcube (Debian's roundcube-core 1.6 under
//! `php -S`, SQLite, a private Dovecot behind it): anyone can post a login form whose
//! user name carries a newline and a forged "Successful login" line. Whatever lands
//! in Roundcube's log, in its own file or through syslog, the shipped
//! mailguard-roundcube-login filter must yield the genuine logins and nothing else.

use crate::support;

use std::path::Path;
use std::process::Command;

use support::fail2ban::{self, filter_dir};
use support::mailstack::Dovecot;
use support::roundcube::{Roundcube, WEB_UID};

const VICTIM: &str = "victim@example.test";
const PASSWORD: &str = "victim-pw";
/// The address a proxy in front of Roundcube would pass for the second genuine login.
const PROXIED: &str = "198.51.100.9";

/// The user names an attacker posts. Each tries to make Roundcube log
/// "Successful login for victim@example.test ... from 6.6.10.N", N = its place.
fn payloads() -> Vec<String> {
    let date = "[01-Dec-2026 17:16:12 +0000]:";
    // What comes before the forged line; payload N is the Nth.
    let prefixes = [
        // The payload: a newline and a line in userlogins' own format.
        format!("x\n{date} "),
        // With a session prefix of its own, which strip_tags removes.
        format!("x\n{date} <abcdefgh> "),
        // CR, and CR LF, instead of LF.
        format!("x\r{date} <abcdefgh> "),
        format!("x\r\n{date} <abcdefgh> "),
        // A syslog-shaped line, with and without a prefix.
        "x\nDec  1 17:16:12 mx roundcube[1]: <abcdefgh> ".into(),
        "x\nDec  1 17:16:12 mx roundcube: ".into(),
        // Only the message: what a syslog message of its own would carry.
        "x\n".into(),
        "x\n<abcdefgh> ".into(),
        // Prefixes strip_tags lets through: "<" before a space, and "<>".
        format!("x\n{date} < abcdefgh> "),
        "x\n< abcdefgh> ".into(),
        format!("x\n{date} <> "),
        // No newline at all.
        "<abcdefgh> ".into(),
    ];
    prefixes
        .iter()
        .zip(1..)
        .map(|(p, n)| {
            format!("{p}Successful login for {VICTIM} (ID: 1) from 6.6.10.{n} in session x")
        })
        .collect()
}

/// Dovecot with the victim, Roundcube on it; two genuine logins (the second with
/// X-Real-IP as a proxy sets it), every payload posted in between.
fn attacked(dir: &Path, log_driver: &str) -> (Dovecot, Roundcube) {
    let mut dv = Dovecot::configure(dir, &[(VICTIM, PASSWORD)]);
    dv.start();
    let rc = Roundcube::start(dir, dv.imap_port, log_driver);
    assert_eq!(rc.login(VICTIM, PASSWORD, &[]), 302, "genuine login");
    for p in payloads() {
        assert_eq!(rc.post_login(&p), 401, "forging post {p:?}");
    }
    let proxy = [
        format!("X-Real-IP: {PROXIED}"),
        format!("X-Forwarded-For: {PROXIED}"),
    ];
    assert_eq!(rc.login(VICTIM, PASSWORD, &proxy), 302, "proxied login");
    (dv, rc)
}

/// What fail2ban-regex finds in `log` with the shipped filter, in both modes.
fn found(log: &str) -> [String; 2] {
    let dir = tempfile::tempdir().expect("tmp");
    let fd = filter_dir(dir.path());
    [
        "mailguard-roundcube-login",
        "mailguard-roundcube-login[mode=proxy]",
    ]
    .map(|f| fail2ban::regex(log, f, &fd, Some("<F-USER> <ip>")))
}

fn genuine() -> [String; 2] {
    [
        format!("{VICTIM} 127.0.0.1\n{VICTIM} 127.0.0.1\n"),
        format!("{VICTIM} 127.0.0.1\n{VICTIM} {PROXIED}\n"),
    ]
}

/// Every payload's forged text reached `text`, so the filter is what stops it.
fn assert_landed(text: &str) {
    for n in 1..=payloads().len() {
        assert!(
            text.contains(&format!("from 6.6.10.{n} in session x")),
            "payload {n} is not in the log:\n{text}"
        );
    }
}

#[test]
fn forged_logins_in_roundcubes_own_log_do_not_match() {
    let dir = tempfile::tempdir().expect("tmp");
    let (dv, rc) = attacked(dir.path(), "file");
    let log = rc.userlogins();
    let text = std::fs::read_to_string(&log).expect("userlogins.log");
    assert_landed(&text);
    assert_eq!(found(&log.display().to_string()), genuine(), "in\n{text}");
    // Dovecot's own log_path lines of the same logins match the imap filter.
    let fd = filter_dir(dir.path());
    let dovecot = dv.root.join("dovecot.log").display().to_string();
    assert_eq!(
        fail2ban::regex(
            &dovecot,
            "mailguard-dovecot-login[service=imap]",
            &fd,
            Some("<F-USER> <ip>")
        ),
        format!("{VICTIM} 127.0.0.1\n{VICTIM} 127.0.0.1\n"),
        "in\n{}",
        dv.log()
    );
}

/// A syslog datagram `<PRI>Mmm dd hh:mm:ss TAG: MSG` as rsyslog writes it to a file.
fn syslog_line(datagram: &str) -> String {
    let rest = datagram.split_once('>').expect("<PRI>").1;
    let (date, tagged) = rest.split_at(15);
    format!("{date} mx{tagged}")
}

/// The same datagram as journald would store it, sent by `pid` running as `uid`.
fn journal_entry(datagram: &str, n: usize, pid: u32, uid: u32) -> String {
    let rest = datagram.split_once('>').expect("<PRI>").1;
    let (ident, message) = rest[16..].split_once(": ").expect("TAG: MSG");
    format!(
        "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID=5e1f0c2a9b8d4e7fa1c3b5d7e9f00112\n\
         _HOSTNAME=mx\n_UID={uid}\n_PID={pid}\nSYSLOG_IDENTIFIER={ident}\nPRIORITY=6\nMESSAGE={message}\n\n",
        1_795_417_200_000_000 + n * 1_000_000,
        (n + 1) * 1_000_000,
    )
}

/// log_driver = syslog: PHP's syslog() sends the text after a newline as a message of
/// its own, tagged roundcube and without the session prefix; CR goes as "\x0d". Then a
/// local user's `logger -t roundcube` with a prefix: a syslog file cannot tell it
/// from Roundcube (the filter documents this), the journal can (_UID).
#[test]
fn forged_logins_through_roundcubes_syslog_do_not_match() {
    fail2ban::need("/usr/bin/logger");
    let dir = tempfile::tempdir().expect("tmp");
    let (_dv, rc) = attacked(dir.path(), "syslog");
    let from_php = rc.syslog();
    let text = from_php.join("\n");
    assert_landed(&text);
    assert!(
        !text.contains('\r') && !text.contains("<abcdefgh>"),
        "{text}"
    );

    let forged =
        format!("<abcdefgh> Successful login for {VICTIM} (ID: 1) from 6.6.10.99 in session x");
    let sock = rc.root.join("syslog.sock");
    fail2ban::stdout_of(
        Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .args(["logger", "-t", "roundcube", "-u"])
            .arg(&sock)
            .arg(&forged),
    );
    let from_logger = rc.syslog();
    assert_eq!(from_logger.len(), 1, "{from_logger:?}");

    let file = dir.path().join("syslog");
    let lines: Vec<String> = from_php
        .iter()
        .chain(&from_logger)
        .map(|d| syslog_line(d))
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").expect("syslog file");
    let [direct, proxy] = genuine();
    let local = format!("{VICTIM} 6.6.10.99\n");
    assert_eq!(
        found(&file.display().to_string()),
        [direct.clone() + &local, proxy.clone() + &local],
        "in\n{}",
        lines.join("\n")
    );

    let nobody = 65534;
    let export: String = from_php
        .iter()
        .map(|d| (d, rc.pid(), WEB_UID))
        .chain(from_logger.iter().map(|d| (d, 4242, nobody)))
        .enumerate()
        .map(|(n, (d, pid, uid))| journal_entry(d, n, pid, uid))
        .collect();
    let journal = support::journal::journal_file(export.as_bytes(), &dir.path().join("rc.journal"));
    assert_eq!(found(&journal), [direct, proxy]);
}
