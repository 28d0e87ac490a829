//! No login is lost to a runtime problem: logins a real Fail2ban hands over (shipped
//! action and jail) while the config is broken, the database is locked past
//! `record_wait` or its disk is full are kept, and the next run stores every one
//! of them, where detection sees them.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::fail2ban::{append, postfix_login, Fail2ban, Jail};
use support::{now, wait_until, Sandbox, SmallDisk, SqliteLock, BIN, T0};

const ALICE: &str = "alice@example.com";

/// Logins waiting in the spool beside `db`.
fn spooled(db: &Path) -> usize {
    let mut p = db.as_os_str().to_owned();
    p.push(".spool");
    std::fs::read(PathBuf::from(p)).map_or(0, |raw| raw.iter().filter(|b| **b == b'\n').count())
}

/// Alice's logins in the database, read directly: `status` needs a working config.
fn stored(db: &Path) -> usize {
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    conn.query_row(
        "SELECT count(*) FROM events JOIN users ON users.id = events.user_id WHERE name = ?1",
        [ALICE],
        |r| r.get::<_, i64>(0),
    )
    .map_or(0, |n| n as usize)
}

/// Points `s`'s config at a database on `disk`, no actions.
fn database_on(s: &Sandbox, disk: &SmallDisk) -> PathBuf {
    let db = disk.path.join("mg.db");
    std::fs::write(
        s.config_path(),
        format!(
            "database = {:?}\n[actions]\nnotify = []\nblock = []\nlock = []\n",
            db.display().to_string()
        ),
    )
    .expect("config");
    db
}

/// A private Fail2ban running the shipped mailguard-smtp jail and action on `log`.
fn fail2ban(s: &Sandbox) -> (Fail2ban, PathBuf) {
    let log = s.path().join("mail.log");
    std::fs::write(&log, "").expect("log");
    let f2b = Fail2ban::start(
        s.path(),
        Path::new(BIN),
        &s.config_path(),
        &[Jail {
            name: "mailguard-smtp",
            logpath: &log,
        }],
    );
    (f2b, log)
}

/// One SMTP login of `user` from `addr`, in the mail log.
fn login(log: &Path, n: u32, user: &str, addr: &str) {
    append(
        log,
        &[postfix_login(7000 + n, &format!("E{n:09X}"), addr, user)],
    );
}

/// Alice's botnet during the fault: 12 logins from 12 /16s, a few at a time, each a
/// new pair for Fail2ban. Returns when Fail2ban has handed over every one and the
/// spool holds at least one (all of them when nothing could be stored).
fn botnet_during_fault(f2b: &Fail2ban, log: &Path, db: &Path, all_spooled: bool) {
    for i in 0..12u32 {
        login(log, i, ALICE, &support::bot(i.into()));
        if i % 4 == 3 {
            std::thread::sleep(Duration::from_millis(700));
        }
    }
    let handed = || stored(db) + spooled(db);
    assert!(
        support::try_wait_until(Duration::from_secs(60), || handed() >= 12),
        "{} of 12 logins handed over; fail2ban log:\n{}",
        handed(),
        f2b.log()
    );
    let waiting = spooled(db);
    assert!(waiting > 0, "the fault never kept a login");
    if all_spooled {
        assert_eq!(waiting, 12);
    }
    // record exited 0: Fail2ban reported no failed ban. (With a broken config the
    // action's start check fails, by design, when Fail2ban starts the action after
    // the config broke; that is logged but loses nothing.)
    let f2b_log = f2b.log();
    assert!(
        !f2b_log.lines().any(|l| l.contains("ERROR")
            && (l.contains(" record ") || l.contains("Failed to execute ban"))),
        "{f2b_log}"
    );
}

/// After the fix, the next login stores what waited first: every one of alice's 12
/// networks is in `status`, and detection saw them (12 networks: would block).
fn all_stored_after_the_next_login(s: &Sandbox, f2b: &Fail2ban, log: &Path, db: &Path) {
    login(log, 99, "bob@example.com", "203.0.113.50");
    wait_until(
        "the next login drains the spool",
        Duration::from_secs(30),
        || s.account("bob@example.com", now()).is_some() && spooled(db) == 0,
    );
    let a = s.status_user(ALICE, now());
    let mut nets: Vec<String> = a["networks"]
        .as_array()
        .expect("networks")
        .iter()
        .map(|n| n["network"].as_str().unwrap_or_default().to_owned())
        .collect();
    nets.sort();
    let mut want: Vec<String> = (0..12).map(|i| format!("{}/32", support::bot(i))).collect();
    want.sort();
    assert_eq!(
        nets,
        want,
        "every login of the outage; fail2ban:\n{}",
        f2b.log()
    );
    for n in a["networks"].as_array().expect("networks") {
        assert_eq!(n["count"], 1, "each login once: {n}");
    }
    assert_eq!(a["state"], "would block", "{a:#}");
    let overview = s.ok(&["status"]);
    assert!(!overview.contains("spooled"), "{overview}");
}

#[test]
fn logins_during_a_broken_config_are_all_stored_once_it_is_fixed() {
    let s = Sandbox::new("");
    let (f2b, log) = fail2ban(&s);
    // An admin saves a typo.
    s.write_config("mode = \"enforc\"");
    botnet_during_fault(&f2b, &log, &s.db(), true);
    s.write_config("");
    let line = s.ok(&["status"]);
    assert!(
        line.contains("12 login(s) spooled, not yet stored"),
        "{line}"
    );
    all_stored_after_the_next_login(&s, &f2b, &log, &s.db());
}

#[test]
fn logins_during_a_lock_past_record_wait_are_all_stored_once_it_is_released() {
    let s = Sandbox::new("record_wait = \"1s\"");
    let (f2b, log) = fail2ban(&s);
    login(&log, 50, "carol@example.com", "192.0.2.80");
    wait_until("the database exists", Duration::from_secs(30), || {
        s.account("carol@example.com", now()).is_some()
    });
    let mut holder = rusqlite::Connection::open(s.db()).expect("open");
    let tx = holder
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .expect("write lock");
    tx.execute("UPDATE users SET level = level", [])
        .expect("write");
    botnet_during_fault(&f2b, &log, &s.db(), true);
    tx.rollback().expect("rollback");
    drop(holder);
    all_stored_after_the_next_login(&s, &f2b, &log, &s.db());
}

#[test]
fn logins_during_a_full_disk_are_all_stored_once_there_is_room() {
    let s = Sandbox::new("");
    let disk = SmallDisk::mount(s.path().join("small"), "2m");
    let db = database_on(&s, &disk);
    let (f2b, log) = fail2ban(&s);
    login(&log, 50, "carol@example.com", "192.0.2.80");
    wait_until("the database exists", Duration::from_secs(30), || {
        spooled(&db) == 0 && s.account("carol@example.com", now()).is_some()
    });
    disk.fill();
    botnet_during_fault(&f2b, &log, &db, false);
    disk.unfill();
    all_stored_after_the_next_login(&s, &f2b, &log, &db);
    assert_eq!(support::integrity(&db), "ok");
}

#[test]
fn two_racing_drainers_store_each_spooled_login_once() {
    let s = Sandbox::new("");
    s.write_config("mode = \"enforc\"");
    for i in 0..50 {
        let out = s.try_record(
            None,
            ALICE,
            &format!("198.51.100.{}", i + 1),
            Some(support::T0 + i),
        );
        support::assert_success("record", &out);
    }
    assert_eq!(spooled(&s.db()), 50);
    s.write_config("");
    let drainers: Vec<_> = (0..2)
        .map(|_| {
            s.cmd()
                .arg("run-actions")
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("run-actions")
        })
        .collect();
    let mut drained = 0;
    for d in drainers {
        let out = d.wait_with_output().expect("wait");
        support::assert_success("run-actions", &out);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        drained += text
            .lines()
            .filter_map(|l| {
                l.strip_prefix("spool: ")?
                    .split(' ')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .sum::<usize>();
    }
    assert_eq!(drained, 50, "one drainer took each login");
    assert_eq!(spooled(&s.db()), 0);
    assert_eq!(s.rows("events"), 50);
}

#[test]
fn a_database_another_program_holds_keeps_logins_after_a_short_wait() {
    // busy_timeout is how long the other commands wait; `record` waits briefly.
    let s = Sandbox::new("busy_timeout = \"30s\"");
    s.record("smtp", "carol@example.com", "192.0.2.80", T0);
    let lock = SqliteLock::hold(&s.db());
    for i in 0..2 {
        let start = Instant::now();
        let out = s.try_record(
            None,
            ALICE,
            &format!("198.51.100.{}", i + 1),
            Some(T0 + 1 + i),
        );
        let took = start.elapsed();
        support::assert_success("record", &out);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("database is locked") && err.contains("kept in"),
            "{err}"
        );
        // A liveness bound, far below busy_timeout: a call that waited for it took 30 s.
        assert!(took < Duration::from_secs(10), "record waited {took:?}");
    }
    assert_eq!(spooled(&s.db()), 2);
    lock.release();
    s.record("smtp", "bob@example.com", "203.0.113.50", T0 + 10);
    assert_eq!(spooled(&s.db()), 0);
    assert_eq!(stored(&s.db()), 2);
    assert_eq!(s.rows("events"), 4, "each login once");
}

#[test]
fn a_thousand_logins_kept_on_a_full_disk_are_stored_once_2_mb_are_free() {
    let s = Sandbox::new("");
    let disk = SmallDisk::mount(s.path().join("small"), "16m");
    let db = database_on(&s, &disk);
    let record = |user: &str, ip: &str, t: i64| {
        let out = s.try_record(None, user, ip, Some(t));
        support::assert_success("record", &out);
        out
    };
    record("carol@example.com", "192.0.2.80", T0);
    disk.fill();
    // 50 accounts, 20 networks each.
    for i in 0..1000 {
        record(
            &format!("u{}@example.com", i % 50),
            &format!("198.18.{}.{}", i / 250, i % 250 + 1),
            T0 + 1 + i,
        );
    }
    let events = |db: &Path| {
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| c.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0)))
            .expect("count events") as usize
    };
    assert_eq!(events(&db) + spooled(&db), 1001);
    assert!(spooled(&db) > 900, "the disk was full: {}", spooled(&db));
    disk.free(2 << 20);
    // Each later login stores what waits first, as much as its call has time for.
    let mut calls = 0;
    let drained = support::try_wait_until(Duration::from_secs(120), || {
        calls += 1;
        let out = record("bob@example.com", "203.0.113.50", T0 + 2000 + calls);
        spooled(&db) == 0 && out.stderr.is_empty()
    });
    assert!(
        drained,
        "{} still spooled after {calls} calls",
        spooled(&db)
    );
    assert_eq!(events(&db), 1001 + calls as usize, "each login once");
    assert_eq!(support::integrity(&db), "ok");
}
