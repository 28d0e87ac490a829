//! `ingest`: replaying past logins with the thresholds in force into a scratch
//! database, its input and its report (the logs themselves: tests/backtest_logs.rs).

use crate::support;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use support::Sandbox;

/// 2026-11-20 10:00:00 UTC, a past day: log times, not the clock, drive detection.
pub(crate) const DAY: i64 = 1_795_168_800;

/// `f2b-mailguard [global] ingest [flags]` with `input` on stdin.
pub(crate) fn ingest(s: &Sandbox, global: &[&str], input: &[u8]) -> std::process::Output {
    ingest_with(s, global, &[], input)
}

pub(crate) fn ingest_with(
    s: &Sandbox,
    global: &[&str],
    flags: &[&str],
    input: &[u8],
) -> std::process::Output {
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

/// `ingest --json` of `input` into the scratch database `scratch`: its report.
pub(crate) fn ingest_json(s: &Sandbox, scratch: &Path, input: &[u8]) -> serde_json::Value {
    let out = ingest_with(s, &["--db", scratch.to_str().unwrap()], &["--json"], input);
    support::assert_success("ingest", &out);
    serde_json::from_slice(&out.stdout).unwrap()
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
    support::assert_success("ingest", &out);
    let err = String::from_utf8_lossy(&out.stderr);
    // Fields of an input line, not options: no dashes.
    assert!(err.contains("line 4: invalid line: "), "{err}");
    assert!(err.contains("line 5: invalid ip: "), "{err}");
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

#[test]
fn a_repeated_login_counts_and_is_stored_once_however_late_it_comes_again() {
    let s = Sandbox::new("[thresholds.imap]\nnotify = 2");
    let scratch = s.path().join("repeat.db");
    let line = |t: i64, ip: &str| {
        format!("{{\"time\": {t}, \"user\": \"erin@example.com\", \"ip\": \"{ip}\", \"source\": \"imap\"}}\n")
    };
    // Two at once: the second is the first again. Then, three hours on (past the
    // window the replay holds), the first once more: stored once all the same.
    let input = [
        line(DAY, "192.0.2.1"),
        line(DAY, "192.0.2.1"),
        line(DAY + 60, "192.0.2.2"),
        line(DAY + 3 * 3600, "192.0.2.3"),
        line(DAY, "192.0.2.1"),
    ]
    .concat();
    let out = ingest(&s, &["--db", scratch.to_str().unwrap()], input.as_bytes());
    support::assert_success("ingest", &out);
    // Two networks in the first hour, not three logins from three: still ok.
    assert!(String::from_utf8_lossy(&out.stdout).contains("no account would have been flagged"));
    let stored: (i64, i64) = rusqlite::Connection::open(&scratch)
        .unwrap()
        .query_row(
            "SELECT count(*), count(DISTINCT ts_ms || ip) FROM events",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(stored, (3, 3));
}

#[test]
fn an_ingest_killed_half_way_leaves_a_scratch_database_that_says_so() {
    let s = Sandbox::new("");
    let scratch = s.path().join("killed.db");
    let db = ["--db", scratch.to_str().unwrap()];
    let line = |i: i64| format!("{} mallory@example.com 198.51.100.{}\n", DAY + i, i % 200);
    let mut child = s
        .cmd()
        .args(db)
        .arg("ingest")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let lines: String = (0..20_000).map(line).collect();
    stdin.write_all(lines.as_bytes()).unwrap();
    stdin.flush().unwrap();
    // The import is under way (its mark stored) while ingest waits for more input.
    let marked = || {
        rusqlite::Connection::open(&scratch)
            .and_then(|c| {
                c.query_row(
                    "SELECT count(*) FROM meta WHERE key LIKE 'import%'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
            .is_ok_and(|n| n == 1)
    };
    support::wait_until("the import to start", Duration::from_secs(30), marked);
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);

    for args in [&["status"][..], &["ingest"][..]] {
        let out = s.run(&[&db[..], args].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("interrupted ingest") && err.contains("killed.db"),
            "{args:?}: {err}"
        );
    }

    // Run to the end, an ingest leaves the database as every command expects it.
    let whole = s.path().join("whole.db");
    let out = ingest(&s, &["--db", whole.to_str().unwrap()], lines.as_bytes());
    support::assert_success("ingest", &out);
    let c = rusqlite::Connection::open(&whole).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    let marks: i64 = c
        .query_row("SELECT count(*) FROM meta", [], |r| r.get(0))
        .unwrap();
    let events: i64 = c
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!((mode.as_str(), marks, events), ("wal", 0, 40_000));
    s.ok(&[
        "--db",
        whole.to_str().unwrap(),
        "status",
        "--at",
        &(DAY + 20_000).to_string(),
    ]);
}

/// Per account that reached block, the messages accepted before containment: with
/// quarantine those in the window when it first rose (notify), without it those up
/// to block too. `TIME USER ADDRESS` lines: each a login and one message.
#[test]
fn the_report_counts_messages_before_containment_with_and_without_quarantine() {
    let s = Sandbox::new("");
    let mut input = String::new();
    // Two hours before: the owner's own mail, outside the window of the attack.
    for i in 0..5 {
        input.push_str(&format!(
            "{} alice@example.com 198.51.100.7\n",
            DAY - 7200 + i
        ));
    }
    // Twelve networks (a botnet's, each in a /16 of its own) a minute apart, three
    // messages each: notify with the 6th network's first, block with the 11th's first.
    for k in 1..=12 {
        for m in 0..3 {
            input.push_str(&format!(
                "{} alice@example.com 203.{k}.0.9\n",
                DAY + k * 60 + m * 10
            ));
        }
    }
    let report = ingest_json(&s, &s.path().join("leak.db"), input.as_bytes());
    let alice = &report["accounts"][0];
    assert_eq!(alice["highest"], "block", "{report:#}");
    // 5 networks x 3 and the 6th's first: 16; then the 6th's other two, 4 networks x
    // 3 and the 11th's first: 15 more.
    let want = serde_json::json!({"accounts": 1, "without_quarantine": 31, "with_quarantine": 16});
    assert_eq!(alice["contained"], want, "{alice:#}");
    assert_eq!(report["contained"], want);
    let out = ingest(
        &s,
        &["--db", s.path().join("leak2.db").to_str().unwrap()],
        input.as_bytes(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Messages accepted before containment (1 account(s) reached block)"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["total", "31", "16"]),
        "{text}"
    );
}
