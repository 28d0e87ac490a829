//! Reconciling through a real, private fail2ban-server: a log rotated (renamed, copied
//! and truncated, or renamed and compressed at once) right after a write, mid-burst,
//! leaves a tail Fail2ban never reads; the Python action re-reads it with the jail's own
//! filters, so every message, bounce and login pair is stored exactly once, and
//! re-reading it all again adds nothing. The traffic and its checks serve
//! fail2ban_heal (restarts and crashes) too.

use crate::support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use support::fail2ban::{append, Fail2ban, MESSAGE_JAILS};
use support::Sandbox;

pub(crate) const ACCOUNTS: u32 = 20;

/// One call the jails should make, for `ingest`: (source, user, address, time, fid).
pub(crate) type Call = (&'static str, String, String, i64, String);

/// A syslog timestamp for `t`, in the local time zone the server reads it in.
fn stamp_at(t: i64) -> String {
    support::fail2ban::stdout_of(
        std::process::Command::new("date")
            .env("LC_ALL", "C")
            .arg(format!("--date=@{t}"))
            .arg("+%b %e %H:%M:%S"),
    )
    .trim_end()
    .to_string()
}

/// The calls message `i` at `t` should give: its message, its bounce, and a login for
/// a pair not reported yet (the jails' bantime outlasts the test).
pub(crate) fn calls_of(
    i: u32,
    t: i64,
    seen: &mut std::collections::BTreeSet<String>,
    out: &mut Vec<Call>,
) {
    let user = format!("user{:02}@example.com", i % ACCOUNTS);
    let addr = format!("198.51.100.{}", 1 + i % 3);
    if seen.insert(format!("{user} {addr}")) {
        out.push((
            "smtp",
            user.clone(),
            addr.clone(),
            t,
            format!("{user} {addr}"),
        ));
    }
    out.push(("rate", user.clone(), addr.clone(), t, format!("R{i:09X}")));
    if i.is_multiple_of(5) {
        out.push(("bounces", user, addr, t, format!("R{i:09X} gone{i}")));
    }
}

/// Message `i`'s lines: its accepted submission, and for every 5th a bounced recipient.
fn message(i: u32, stamp: &str) -> Vec<String> {
    let user = format!("user{:02}@example.com", i % ACCOUNTS);
    let addr = format!("198.51.100.{}", 1 + i % 3);
    let mut lines = vec![format!(
        "{stamp} mx postfix/submission/smtpd[{}]: R{i:09X}: client=unknown[{addr}], sasl_method=PLAIN, sasl_username={user}",
        7000 + i % ACCOUNTS
    )];
    if i.is_multiple_of(5) {
        lines.push(bounce(i, stamp));
    }
    lines
}

fn bounce(i: u32, stamp: &str) -> String {
    format!("{stamp} mx postfix/smtp[8001]: R{i:09X}: to=<gone{i}@remote.example>, relay=mx.remote.example[192.0.2.9]:25, delay=0.2, delays=0.1/0/0/0.1, dsn=5.1.1, status=bounced (550 5.1.1 unknown user)")
}

/// (messages, bounces, smtp logins, distinct smtp pairs) stored.
pub(crate) fn stored(s: &Sandbox) -> (i64, i64, i64, i64) {
    let Ok(conn) = rusqlite::Connection::open(s.db()) else {
        return (0, 0, 0, 0);
    };
    let n = |sql: &str| conn.query_row(sql, [], |r| r.get(0)).unwrap_or(0);
    (
        n("SELECT count(*) FROM events WHERE source = 'rate'"),
        n("SELECT count(*) FROM events WHERE source = 'bounces'"),
        n("SELECT count(*) FROM events WHERE source = 'smtp'"),
        n("SELECT count(DISTINCT user_id || ' ' || ip) FROM events WHERE source = 'smtp'"),
    )
}

pub(crate) fn settle(s: &Sandbox, want: (i64, i64, i64, i64), f2b: &Fail2ban) {
    let mut got = stored(s);
    support::try_wait_until(Duration::from_secs(90), || {
        got = stored(s);
        got == want
    });
    // Nothing more arrives later either.
    std::thread::sleep(Duration::from_secs(3));
    got = stored(s);
    assert_eq!(
        got,
        want,
        "(messages, bounces, logins, pairs) stored; fail2ban's log on rotation and reconciling:\n{}",
        f2b.log()
            .lines()
            .filter(|l| l.contains("mailguard:") || l.contains("rotation") || l.contains("ERROR"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn reconciled(f2b: &Fail2ban) -> usize {
    f2b.log().matches("reconciled").count()
}

/// Writes messages `from..to` in chunks of 10, one chunk every 50 ms, counting them in
/// `written`; returns the time of each.
pub(crate) fn write(log: &Path, from: u32, to: u32, written: &AtomicU32) -> Vec<(u32, i64)> {
    write_to(&mut |lines, _| append(log, lines), from, to, written)
}

/// As `write`, each chunk's syslog lines given to `out` with their time.
pub(crate) fn write_to(
    out: &mut dyn FnMut(&[String], i64),
    from: u32,
    to: u32,
    written: &AtomicU32,
) -> Vec<(u32, i64)> {
    let mut i = from;
    let mut times = Vec::new();
    while i < to {
        let t = support::now();
        let stamp = stamp_at(t);
        let end = (i + 10).min(to);
        let lines: Vec<String> = (i..end).flat_map(|k| message(k, &stamp)).collect();
        out(&lines, t);
        times.extend((i..end).map(|k| (k, t)));
        i = end;
        written.store(i, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
    }
    times
}

/// Every account's row of `status` at `at` on the database `db`, without the reason
/// of its last level change: the jails are threads of their own, so whether a
/// message's bounce or the message itself is stored first (the figures that reason
/// quotes) is Fail2ban's timing, not ours. The level, counts and signals are kept.
fn accounts(s: &Sandbox, db: &Path, at: i64) -> serde_json::Value {
    let out = s.ok(&[
        &format!("--db={}", db.display()),
        "status",
        "--json",
        &format!("--at={at}"),
    ]);
    let mut v: serde_json::Value = serde_json::from_str(&out).expect("status --json is JSON");
    for a in v["accounts"].as_array_mut().into_iter().flatten() {
        a.as_object_mut().map(|o| o.remove("reason"));
    }
    v["accounts"].clone()
}

/// The calls the jails should make for messages written at `times` (each pair's login
/// at its first message), sorted by time, and `extra` ones.
pub(crate) fn calls(times: &[(u32, i64)], extra: Vec<Call>) -> Vec<Call> {
    let mut seen = std::collections::BTreeSet::new();
    let mut calls = Vec::new();
    for (i, t) in times {
        calls_of(*i, *t, &mut seen, &mut calls);
    }
    calls.extend(extra);
    calls.sort_by_key(|c| c.3);
    calls
}

/// The levels and counts stored live are those of `ingest` given `calls`, for
/// `accounts` accounts.
pub(crate) fn assert_levels_of_ingest(s: &Sandbox, calls: &[Call], accounts_n: usize) {
    let input: String = calls
        .iter()
        .map(|(source, user, ip, time, fid)| {
            let call = serde_json::json!({"time": time, "user": user, "ip": ip,
                                          "source": source, "count": 1, "fid": fid});
            format!("{call}\n")
        })
        .collect();
    let scratch = s.path().join("reference.db");
    let _ = std::fs::remove_file(&scratch);
    s.ingest(&scratch, input);
    let at = support::now() + 1;
    let live = accounts(s, &s.db(), at);
    assert_eq!(live.as_array().map(Vec::len), Some(accounts_n), "{live:#}");
    assert_eq!(live, accounts(s, &scratch, at));
}

#[derive(Clone, Copy)]
enum Rotation {
    Rename,
    CopyTruncate,
    /// logrotate's `compress` without `delaycompress`: NAME.1.gz at once, no NAME.1.
    RenameCompress,
}

fn rotate(log: &Path, how: Rotation) {
    let old = PathBuf::from(format!("{}.1", log.display()));
    match how {
        Rotation::CopyTruncate => {
            std::fs::copy(log, &old).expect("copy");
            std::fs::OpenOptions::new()
                .write(true)
                .open(log)
                .and_then(|f| f.set_len(0))
                .expect("truncate");
        }
        Rotation::Rename | Rotation::RenameCompress => {
            std::fs::rename(log, &old).expect("rename");
            std::fs::write(log, "").expect("new log");
        }
    }
    if let Rotation::RenameCompress = how {
        use std::io::Write;
        let gz = PathBuf::from(format!("{}.1.gz", log.display()));
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).expect("gz"),
            flate2::Compression::default(),
        );
        enc.write_all(&std::fs::read(&old).expect("rotated"))
            .expect("compress");
        enc.finish().expect("gz");
        std::fs::remove_file(&old).expect("remove NAME.1");
    }
}

fn fast_rotation_mid_burst(how: Rotation) {
    let s = Sandbox::new("");
    let log = s.path().join("mail.log");
    std::fs::write(&log, "").expect("log");
    let f2b = Fail2ban::on_log(s.path(), &s.config_path(), &log, &MESSAGE_JAILS);
    let written = AtomicU32::new(0);
    let mut times = write(&log, 0, 300, &written);
    // A submission whose bounce comes after the rotation, then a last chunk: rotated
    // within microseconds of that write, so Fail2ban never reads it.
    let t = support::now();
    let stamp = stamp_at(t);
    let mut tail = vec![format!(
        "{stamp} mx postfix/submission/smtpd[6999]: LATE00001: client=unknown[203.0.113.77], sasl_method=PLAIN, sasl_username=late@example.com"
    )];
    for i in 300..340 {
        tail.extend(message(i, &stamp));
        times.push((i, t));
    }
    append(&log, &tail);
    rotate(&log, how);
    // The bounce only once the rotation is reconciled: the jail itself never read the
    // submission line it needs, so only what the re-read hands over lets it match.
    support::wait_until("the rotation reconciled", Duration::from_secs(60), || {
        reconciled(&f2b) >= 1
    });
    append(
        &log,
        &[format!("{stamp} mx postfix/smtp[8001]: LATE00001: to=<x@remote.example>, relay=mx.remote.example[192.0.2.9]:25, delay=0.2, delays=0.1/0/0/0.1, dsn=5.1.1, status=bounced (550 5.1.1 unknown user)")],
    );
    times.extend(write(&log, 340, 600, &written));
    // 600 messages, each 5th bounced, plus the late one's message and bounce; one login
    // per (user, address) pair within the jail's bantime, plus the late account's.
    let want = (601, 121, pairs(600) + 1, pairs(600) + 1);
    settle(&s, want, &f2b);
    assert!(reconciled(&f2b) >= 1, "no reconcile in the fail2ban log");

    // The levels and counts are those of `ingest` given the calls the jails should make.
    let late = "late@example.com".to_string();
    let late_addr = "203.0.113.77".to_string();
    let extra = vec![
        ("smtp", late.clone(), late_addr.clone(), t, "late".into()),
        (
            "rate",
            late.clone(),
            late_addr.clone(),
            t,
            "LATE00001".into(),
        ),
        ("bounces", late, late_addr, t, "LATE00001 x".into()),
    ];
    assert_levels_of_ingest(&s, &calls(&times, extra), ACCOUNTS as usize + 1);

    // Rotated again: the re-read covers the whole file since the first rotation (260
    // messages, their bounces and logins, all stored already) and adds nothing.
    // The rate jail's lines: each message is handed over again.
    let rate = |f2b: &Fail2ban| -> Vec<String> {
        (f2b.log().lines())
            .filter(|l| l.contains("f2b-mailguard: mailguard-rate ") && l.contains("reconciled"))
            .map(str::to_owned)
            .collect()
    };
    let before = rate(&f2b).len();
    let gz = PathBuf::from(format!("{}.1.gz", log.display()));
    let _ = std::fs::remove_file(gz);
    rotate(&log, how);
    support::wait_until("a second reconcile", Duration::from_secs(60), || {
        rate(&f2b).len() > before
    });
    settle(&s, want, &f2b);
    let again = rate(&f2b).pop().unwrap_or_default();
    assert!(!again.contains(" 0 tickets"), "{again}");
}

pub(crate) fn pairs(n: u32) -> i64 {
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..n {
        seen.insert((i % ACCOUNTS, 1 + i % 3));
    }
    seen.len() as i64
}

#[test]
fn a_log_renamed_right_after_a_write_mid_burst_loses_nothing_and_stores_nothing_twice() {
    fast_rotation_mid_burst(Rotation::Rename);
}

#[test]
fn a_log_copied_and_truncated_right_after_a_write_mid_burst_loses_nothing_and_stores_nothing_twice()
{
    fast_rotation_mid_burst(Rotation::CopyTruncate);
}

#[test]
fn a_log_renamed_and_compressed_at_once_mid_burst_loses_nothing_and_stores_nothing_twice() {
    fast_rotation_mid_burst(Rotation::RenameCompress);
}
