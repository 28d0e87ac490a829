//! Healing what Fail2ban drops, through a real, private fail2ban-server with its
//! database in a file (Debian's default). Fail2ban restarted mid-burst (SIGTERM, as
//! `systemctl restart` does) drops the tickets still in its queue; killed (SIGKILL),
//! also those the action held unacknowledged; either way it goes on reading the log
//! past them. The action re-reads each log from its checkpoint at its next start, so
//! every message, bounce and login is stored exactly once, the levels are `ingest`'s for
//! the same calls, and re-reading everything again adds nothing.

use crate::fail2ban_reconcile::{
    assert_levels_of_ingest, calls, pairs, settle, write, Call, ACCOUNTS,
};
use crate::support;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use support::fail2ban::{Fail2ban, Jail, MESSAGE_JAILS};
use support::{Sandbox, BIN};

/// Messages written; each 5th is bounced.
pub(crate) const N: u32 = 3000;

/// Fail2ban with its database in a file; `extra`: config files (e.g. the journal backend).
fn start(s: &Sandbox, jails: &[Jail], extra: &[(&str, &str)]) -> Fail2ban {
    Fail2ban::start_persistent(s.path(), Path::new(BIN), &s.config_path(), jails, extra)
}

/// The reading position of the rate jail that Fail2ban saved in its database (an
/// offset in its log, or the journal's time).
fn saved_position(s: &Sandbox) -> Option<f64> {
    let db = s.path().join("fail2ban/fail2ban.sqlite3");
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    conn.query_row(
        "SELECT lastfilepos FROM logs WHERE jail = 'mailguard-rate'",
        [],
        |r| r.get(0),
    )
    .ok()
}

/// The action's "resumed" lines in Fail2ban's log (one per jail and start).
fn resumed(f2b: &Fail2ban) -> Vec<String> {
    f2b.log()
        .lines()
        .filter(|l| l.contains("resumed") && l.contains("f2b-mailguard:"))
        .map(str::to_owned)
        .collect()
}

/// The tickets a "resumed" line says were handed over again.
fn handed_over(line: &str) -> u64 {
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[1] == "tickets")
        .and_then(|w| w[0].parse().ok())
        .unwrap_or_else(|| panic!("no ticket count in {line:?}"))
}

/// Writes the burst (`write`: messages 0..N, counted in its argument), interrupting
/// Fail2ban after 1,200 messages (killed, or stopped) and starting it again after
/// 1,600, while the messages keep coming; then checks that every message, bounce and
/// login is stored once, with `ingest`'s levels.
pub(crate) fn interrupted_mid_burst(
    s: &Sandbox,
    jails: &[Jail],
    extra: &[(&str, &str)],
    write: &(dyn Fn(&AtomicU32) -> Vec<(u32, i64)> + Sync),
    kill: bool,
) -> (Fail2ban, Vec<Call>) {
    let mut f2b = start(s, jails, extra);
    let written = AtomicU32::new(0);
    let times = std::thread::scope(|scope| {
        let writer = scope.spawn(|| write(&written));
        let at = |n: u32| {
            support::wait_until(
                &format!("{n} messages written"),
                Duration::from_secs(600),
                || written.load(Ordering::SeqCst) >= n,
            );
        };
        at(1200);
        if kill {
            // Killed just after Fail2ban saved a new reading position, while the
            // tickets of the lines it has just read are on their way: what it would
            // never read again.
            let saved = saved_position(s);
            support::wait_until(
                "Fail2ban to save its position",
                Duration::from_secs(60),
                || saved_position(s) != saved,
            );
            f2b.kill();
        } else {
            assert!(f2b.stop(), "fail2ban did not stop on SIGTERM");
        }
        at(1600);
        f2b = start(s, jails, extra);
        writer.join().expect("writer")
    });
    let want = (i64::from(N), i64::from(N / 5), pairs(N), pairs(N));
    settle(s, want, &f2b);
    let lines = resumed(&f2b);
    assert_eq!(lines.len(), jails.len(), "{lines:#?}");
    // The figure this guards (0 when Fail2ban happened to drop nothing).
    eprintln!(
        "tickets handed over again after the {}: {:?}",
        if kill { "kill" } else { "restart" },
        lines.iter().map(|l| handed_over(l)).collect::<Vec<_>>()
    );
    let calls = calls(&times, Vec::new());
    assert_levels_of_ingest(s, &calls, ACCOUNTS as usize);
    (f2b, calls)
}

fn sandbox() -> (Sandbox, std::path::PathBuf) {
    let s = Sandbox::new("");
    let log = s.path().join("mail.log");
    std::fs::write(&log, "").expect("log");
    (s, log)
}

/// Idempotent: Fail2ban stopped, every checkpoint moved back to the start (`rewind`
/// edits one log's entry), so the next start re-reads all of it. Messages and bounces
/// are all handed over again (the store keeps each once); every pair is in the ban
/// list kept across the restart.
pub(crate) fn reread_everything(
    s: &Sandbox,
    mut f2b: Fail2ban,
    jails: &[Jail],
    extra: &[(&str, &str)],
    calls: &[Call],
    rewind: &dyn Fn(&mut serde_json::Value),
) {
    assert!(f2b.stop(), "fail2ban did not stop on SIGTERM");
    for jail in MESSAGE_JAILS {
        let file = s
            .path()
            .join("fail2ban/f2b-mailguard")
            .join(format!("{jail}.json"));
        let text = std::fs::read_to_string(&file).expect("checkpoint");
        let mut v: serde_json::Value = serde_json::from_str(&text).expect("checkpoint JSON");
        let logs = v["logs"].as_object_mut().expect("logs");
        assert!(!logs.is_empty(), "{text}");
        logs.values_mut().for_each(rewind);
        std::fs::write(&file, v.to_string()).expect("checkpoint");
    }
    let before = resumed(&f2b).len();
    let f2b = start(s, jails, extra);
    support::wait_until("the three jails resumed", Duration::from_secs(120), || {
        resumed(&f2b).len() == before + jails.len()
    });
    let want = (i64::from(N), i64::from(N / 5), pairs(N), pairs(N));
    settle(s, want, &f2b);
    let again = &resumed(&f2b)[before..];
    let of = |jail: &str| {
        let line = again
            .iter()
            .find(|l| l.contains(&format!("f2b-mailguard: {jail} ")))
            .unwrap_or_else(|| panic!("{jail} did not resume: {again:#?}"));
        handed_over(line)
    };
    assert_eq!(of("mailguard-rate"), u64::from(N));
    assert_eq!(of("mailguard-bounce"), u64::from(N / 5));
    assert_eq!(of("mailguard-smtp"), 0);
    assert_levels_of_ingest(s, calls, ACCOUNTS as usize);
}

#[test]
fn fail2ban_restarted_mid_burst_loses_nothing_and_stores_nothing_twice() {
    let (s, log) = sandbox();
    let jails = Jail::each(MESSAGE_JAILS, &log);
    let burst = |n: &AtomicU32| write(&log, 0, N, n);
    let (f2b, calls) = interrupted_mid_burst(&s, &jails, &[], &burst, false);
    reread_everything(&s, f2b, &jails, &[], &calls, &|l| {
        l["pos"] = 0.into();
        l["ctx"] = 0.into();
    });
}

#[test]
fn fail2ban_killed_mid_burst_loses_nothing_and_stores_nothing_twice() {
    let (s, log) = sandbox();
    let jails = Jail::each(MESSAGE_JAILS, &log);
    let burst = |n: &AtomicU32| write(&log, 0, N, n);
    interrupted_mid_burst(&s, &jails, &[], &burst, true);
}

/// `fail2ban-client reload` mid-burst (what a package upgrade or an admin's config
/// change does): the action is loaded again while messages keep coming, and every
/// message, bounce and login is still stored once, with `ingest`'s levels.
#[test]
fn fail2ban_reloaded_mid_burst_loses_nothing_and_stores_nothing_twice() {
    let (s, log) = sandbox();
    let jails = Jail::each(MESSAGE_JAILS, &log);
    let f2b = start(&s, &jails, &[]);
    let written = AtomicU32::new(0);
    let times = std::thread::scope(|scope| {
        let writer = scope.spawn(|| write(&log, 0, N, &written));
        support::wait_until("1200 messages written", Duration::from_secs(600), || {
            written.load(Ordering::SeqCst) >= 1200
        });
        let conf = f2b.conf.to_string_lossy().into_owned();
        f2b.client(&["-c", &conf, "reload"])
            .unwrap_or_else(|e| panic!("fail2ban-client reload: {e}"));
        writer.join().expect("writer")
    });
    assert!(f2b.log().contains("Reload finished."), "{}", f2b.log());
    let want = (i64::from(N), i64::from(N / 5), pairs(N), pairs(N));
    settle(&s, want, &f2b);
    assert_levels_of_ingest(&s, &calls(&times, Vec::new()), ACCOUNTS as usize);
}
