//! The shipped filters through the real `fail2ban-regex`: exactly the expected
//! (user, address) pairs on success lines of every format, nothing on failures.

use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Fail2ban's own failure samples, shipped in Debian's package (not copied here).
const UPSTREAM_SAMPLES: &str = "/usr/lib/python3/dist-packages/fail2ban/tests/files/logs";

/// A config dir with the system's common.conf beside our filters, as on a real install.
fn filters() -> (tempfile::TempDir, PathBuf) {
    assert!(
        Path::new("/usr/bin/fail2ban-regex").exists(),
        "fail2ban-regex is missing: run tests/run, which installs fail2ban"
    );
    let dir = tempfile::tempdir().expect("tmp");
    let fd = dir.path().join("filter.d");
    std::fs::create_dir_all(&fd).expect("mkdir");
    std::fs::copy("/etc/fail2ban/filter.d/common.conf", fd.join("common.conf"))
        .expect("common.conf");
    for e in std::fs::read_dir(Path::new(ROOT).join("fail2ban/filter.d")).expect("filters") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), fd.join(e.file_name())).expect("copy");
    }
    (dir, fd)
}

fn regex(log: &Path, filter: &str, fd: &Path, output: Option<&str>) -> String {
    // fail2ban-regex reads a path that does not exist as a literal log line.
    assert!(log.is_file(), "{} is missing", log.display());
    let (name, args) = filter.split_once('[').map_or((filter, ""), |(n, a)| (n, a));
    let target = format!(
        "{}/{name}.conf{}",
        fd.display(),
        if args.is_empty() {
            String::new()
        } else {
            format!("[{args}")
        }
    );
    let mut cmd = Command::new("/usr/bin/fail2ban-regex");
    if let Some(o) = output {
        cmd.args(["-o", o]);
    }
    let out = cmd.arg(log).arg(&target).output().expect("fail2ban-regex");
    assert!(
        out.status.success(),
        "fail2ban-regex {filter}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(ROOT).join("tests/fail2ban").join(name)
}

fn assert_pairs(log: &str, filter: &str, expected: &str) {
    let (_dir, fd) = filters();
    let got = regex(&fixture(log), filter, &fd, Some("<F-USER> <ip>"));
    let want = std::fs::read_to_string(fixture(expected)).expect("expected file");
    assert_eq!(got, want, "{filter} on {log}");
}

#[test]
fn postfix_sasl_success_in_every_format() {
    assert_pairs(
        "postfix-success.log",
        "mailguard-postfix-sasl",
        "postfix-success.expected",
    );
}

#[test]
fn dovecot_logins_per_service() {
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

#[test]
fn tickets_are_keyed_on_the_user_address_pair() {
    let (_dir, fd) = filters();
    let ids = regex(
        &fixture("postfix-success.log"),
        "mailguard-postfix-sasl",
        &fd,
        Some("<fid>"),
    );
    assert_eq!(
        ids.lines().next(),
        Some("('alice@example.com', '198.51.100.23')")
    );
}

const ALL: [&str; 5] = [
    "mailguard-postfix-sasl",
    "mailguard-dovecot-login[service=imap]",
    "mailguard-dovecot-login[service=pop3]",
    "mailguard-roundcube-login",
    "mailguard-roundcube-login[mode=proxy]",
];

fn assert_no_match(log: &Path) {
    let (_dir, fd) = filters();
    for filter in ALL {
        let summary = regex(log, filter, &fd, None);
        let line = summary
            .lines()
            .find(|l| l.starts_with("Lines:"))
            .expect("summary line");
        assert!(
            line.contains(" 0 matched"),
            "{filter} matched in {}: {line}",
            log.display()
        );
    }
}

#[test]
fn no_filter_matches_a_failure_rejection_or_unknown_user() {
    assert_no_match(&fixture("failures.log"));
}

#[test]
fn no_filter_matches_fail2bans_own_failure_samples() {
    for sample in ["postfix", "dovecot", "roundcube-auth"] {
        assert_no_match(&Path::new(UPSTREAM_SAMPLES).join(sample));
    }
}
