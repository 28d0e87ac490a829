//! The Python action (action.d/f2b_mailguard.py, the jails' default) through a real,
//! private fail2ban-server: its `f2b-mailguard stream` child killed mid-stream loses no
//! message and stores none twice. (Fail2ban itself restarted or killed: fail2ban_heal.)

use crate::support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::fail2ban::{append, syslog_now, Fail2ban, Jail};
use support::{Sandbox, BIN};

const ACCOUNTS: u32 = 50;

/// Message `i`: one accepted submission (a rate ticket; a login ticket for a new pair).
fn message(i: u32, stamp: &str) -> String {
    let user = format!("user{:02}@example.com", i % ACCOUNTS);
    let addr = format!("198.51.100.{}", 1 + i % 7);
    format!(
        "{stamp} mx postfix/submission/smtpd[{}]: S{i:09X}: client=unknown[{addr}], sasl_method=PLAIN, sasl_username={user}",
        7000 + i % ACCOUNTS
    )
}

/// Distinct (user, address) pairs among the first `n` messages.
fn pairs(n: u32) -> i64 {
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..n {
        seen.insert((i % ACCOUNTS, 1 + i % 7));
    }
    seen.len() as i64
}

/// Stored messages, and (user, address) pairs with a stored smtp login.
fn stored(s: &Sandbox) -> (i64, i64) {
    if !s.db().exists() {
        return (0, 0);
    }
    let Ok(conn) = rusqlite::Connection::open(s.db()) else {
        return (0, 0);
    };
    let n = |sql: &str| conn.query_row(sql, [], |r| r.get(0)).unwrap_or(0);
    (
        n("SELECT count(*) FROM events WHERE source = 'rate'"),
        n("SELECT count(DISTINCT user_id || ' ' || ip) FROM events WHERE source = 'smtp'"),
    )
}

/// Writes `n` messages from `first` at `per_tick` every 50 ms, calling `during` after
/// each tick with the number written so far.
fn burst(log: &Path, first: u32, n: u32, per_tick: u32, mut during: impl FnMut(u32)) {
    let started = Instant::now();
    let mut i = first;
    let mut tick = 0;
    while i < first + n {
        let stamp = syslog_now();
        let end = (i + per_tick).min(first + n);
        let lines: Vec<String> = (i..end).map(|k| message(k, &stamp)).collect();
        append(log, &lines);
        i = end;
        tick += 1;
        during(i);
        let next = started + Duration::from_millis(50 * tick);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

fn wait_for(s: &Sandbox, want: (i64, i64), f2b: &Fail2ban) {
    let mut got = stored(s);
    support::try_wait_until(Duration::from_secs(120), || {
        got = stored(s);
        got == want || got.0 > want.0 || got.1 > want.1
    });
    assert_eq!(
        got,
        want,
        "(messages, logins) stored; fail2ban log tail:\n{}",
        f2b.log()
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Nothing more arrives later.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(stored(s), want);
}

/// A sandbox with an empty mail log.
fn sandbox() -> (Sandbox, PathBuf) {
    let s = Sandbox::new("");
    let log = s.path().join("mail.log");
    std::fs::write(&log, "").expect("log");
    (s, log)
}

fn jails(log: &Path) -> Vec<Jail<'_>> {
    Jail::each(["mailguard-smtp", "mailguard-rate"], log)
}

#[test]
fn the_stream_child_killed_mid_stream_loses_nothing_and_stores_nothing_twice() {
    const N: u32 = 3000;
    let (s, log) = sandbox();
    let f2b = Fail2ban::start(s.path(), Path::new(BIN), &s.config_path(), &jails(&log));
    let config = s.config_path().display().to_string();
    let children = || -> Vec<u32> {
        support::processes_mentioning(&config)
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == b"stream"))
            })
            .collect()
    };
    let mut kills = Vec::new();
    // 20 messages every 50 ms (400 a second): one SIGKILL a second while they flow.
    burst(&log, 0, N, 20, |written| {
        if written % 400 == 0 && written < N {
            let before = stored(&s).0;
            for pid in children() {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                kills.push((pid, before, written));
            }
        }
    });
    assert!(kills.len() >= 5, "killed only {kills:?}");
    // Killed while tickets were on their way, not after the last was stored.
    assert!(
        kills
            .iter()
            .any(|(_, stored, written)| (*stored as u32) < *written),
        "{kills:?}"
    );
    wait_for(&s, (i64::from(N), pairs(N)), &f2b);
    let restarts = f2b.log().matches("stream exited").count();
    assert!(restarts >= 5, "{restarts} restarts in the fail2ban log");
}
