//! `ingest`: replaying past logs with the thresholds in force, through the real
//! `fail2ban-regex` and the shipped filter, into a scratch database.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use support::Sandbox;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// 2026-11-20 10:00:00 UTC, a past day: log times, not the clock, drive detection.
const DAY: i64 = 1_795_168_800;

fn syslog(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap()
        .format("%b %e %H:%M:%S")
        .to_string()
}

/// `f2b-mailguard [global] ingest [flags]` with `input` on stdin.
fn ingest(s: &Sandbox, global: &[&str], input: &[u8]) -> std::process::Output {
    ingest_with(s, global, &[], input)
}

fn ingest_with(s: &Sandbox, global: &[&str], flags: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = s
        .cmd()
        .args(global)
        .arg("ingest")
        .args(flags)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn last_months_log_through_fail2ban_regex_shows_who_would_have_been_flagged_and_when() {
    let s = Sandbox::new("");
    // A botnet on alice (a new address every 20 s), bob on two devices all day.
    let mut log = Vec::new();
    for i in 0..12 {
        log.push((
            DAY + 20 * i,
            format!(
                "client=unknown[203.0.113.{}], sasl_method=PLAIN, sasl_username=alice@example.com",
                i + 1
            ),
        ));
    }
    for i in 0..16 {
        log.push((
            DAY + 1800 * i,
            format!(
                "client=unknown[198.51.100.{}], sasl_method=PLAIN, sasl_username=bob@example.com",
                i % 2 + 1
            ),
        ));
    }
    log.sort();
    let text: String = log
        .iter()
        .enumerate()
        .map(|(n, (t, rest))| {
            format!(
                "{} mx postfix/submission/smtpd[9]: {:010X}: {rest}\n",
                syslog(*t),
                0xA000 + n
            )
        })
        .collect();
    let mail_log = s.path().join("mail.log");
    std::fs::write(&mail_log, text).unwrap();

    // The recipe from the README: fail2ban-regex with the shipped filter, into ingest.
    let dir = tempfile::tempdir().unwrap();
    let fd = dir.path().join("filter.d");
    std::fs::create_dir_all(&fd).unwrap();
    std::fs::copy("/etc/fail2ban/filter.d/common.conf", fd.join("common.conf")).unwrap();
    std::fs::copy(
        Path::new(ROOT).join("fail2ban/filter.d/mailguard-postfix-sasl.conf"),
        fd.join("mailguard-postfix-sasl.conf"),
    )
    .unwrap();
    let regex = Command::new("/usr/bin/fail2ban-regex")
        .args(["-o", "<time> <F-USER> <ip>"])
        .arg(&mail_log)
        .arg(fd.join("mailguard-postfix-sasl.conf"))
        .output()
        .expect("fail2ban-regex (run tests/run)");
    assert!(regex.status.success());
    assert_eq!(String::from_utf8_lossy(&regex.stdout).lines().count(), 28);

    let scratch = s.path().join("backtest.db");
    let out = ingest(&s, &["--db", scratch.to_str().unwrap()], &regex.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("ingested 28 events"));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("alice@example.com                  notify  2026-11-20 10:01:40  smtp: 6 networks/1h > 5"), "{text}");
    assert!(
        text.contains("block   2026-11-20 10:03:20  smtp: 11 networks/1h > 10"),
        "{text}"
    );
    assert!(!text.contains("bob@example.com"), "{text}");
    assert!(!s.db().exists(), "the live database was not touched");

    // --json, and the same again with other thresholds (a fresh scratch database).
    let scratch2 = s.path().join("backtest2.db");
    s.write_config("[thresholds.smtp]\nnotify = 11\nblock = 20\nlock = 30");
    let out = ingest(&s, &["--db", scratch2.to_str().unwrap()], &regex.stdout);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("notify  2026-11-20 10:03:40  smtp: 12 networks/1h > 11"),
        "{text}"
    );
    let b3 = s.path().join("b3.db");
    let out = ingest_with(
        &s,
        &["--db", b3.to_str().unwrap()],
        &["--json"],
        &regex.stdout,
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["events"], 28);
    assert_eq!(v["accounts"][0]["user"], "alice@example.com");
    assert_eq!(v["accounts"][0]["highest"], "notify");
    assert_eq!(v["accounts"][0]["levels"][0]["time"], (DAY + 220) as f64);
}

#[test]
fn json_lines_sources_and_bad_lines() {
    let s = Sandbox::new("[thresholds.imap]\nnotify = 2");
    let mut input = String::new();
    for i in 0..3 {
        input.push_str(&format!("{{\"time\": {}, \"user\": \"carol@example.com\", \"ip\": \"192.0.2.{}\", \"source\": \"imap\"}}\n", DAY + i, i + 1));
    }
    input.push_str("not a login line at all\n");
    input.push_str(&format!("{} dave@example.com 999.1.1.1\n", DAY));
    input.push_str("# a comment\n\n");
    let out = ingest(
        &s,
        &["--db", s.path().join("j.db").to_str().unwrap()],
        input.as_bytes(),
    );
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 4: invalid --line"), "{err}");
    assert!(err.contains("line 5: invalid --ip"), "{err}");
    assert!(
        err.contains("ingested 3 events") && err.contains("2 line(s) skipped"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("imap: 3 networks/1h > 2"));
}

#[test]
fn ingest_refuses_the_live_database() {
    let s = Sandbox::new("");
    let out = ingest(&s, &[], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give --db PATH"));
    let out = ingest(&s, &["--db", s.db().to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the live database"));
}
