//! Permissions, colour, and faults: a clear error, no corruption, and the next run
//! recovers.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{integrity, now, Sandbox, SmallDisk, T0};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit `code` (`why` it is that one) and one line on stderr, containing one of
/// `expected`: what Fail2ban's log shows. Returns that line.
fn one_line(out: &std::process::Output, code: i32, why: &str, expected: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{why}: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        expected.iter().any(|e| err.contains(e)),
        "expected one of {expected:?}: {err}"
    );
    err
}

/// A runtime failure as Fail2ban sees it: exit 1 (so it retries), one line on stderr,
/// containing one of `expected`.
fn fails_cleanly(out: &std::process::Output, expected: &[&str]) {
    one_line(out, 1, "exit 1 lets Fail2ban retry", expected);
}

/// A new directory `name` in the sandbox, with `mode`.
fn state_dir(s: &Sandbox, name: &str, mode: u32) -> std::path::PathBuf {
    let dir = s.path().join(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
    dir
}

/// `record` into a database in `dir` fails cleanly with `expected` and creates nothing.
fn refused_in(s: &Sandbox, dir: &std::path::Path, expected: &str) -> std::process::Output {
    let db = dir.join("mg.db");
    let out = s.try_record(Some(&db), "a@example.com", "198.51.100.1", None);
    fails_cleanly(&out, &[expected]);
    assert!(!db.exists(), "nothing may be created there");
    out
}

#[test]
fn a_state_directory_writable_by_others_is_refused() {
    let s = Sandbox::new("");
    let dir = state_dir(&s, "shared", 0o1777);
    refused_in(&s, &dir, "is writable by other users (mode 1777)");
}

#[test]
fn a_state_directory_writable_by_its_group_or_owned_by_another_user_is_refused() {
    // Either can swap the database, and the evidence in it, under root's feet.
    let s = Sandbox::new("");
    let dir = state_dir(&s, "group", 0o770);
    let out = refused_in(&s, &dir, "is writable by other users (mode 770)");
    assert!(stderr(&out).contains("chmod go-w"), "{}", stderr(&out));

    // Only root can give a directory away; as another user this part cannot run.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let theirs = state_dir(&s, "theirs", 0o755);
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let out = refused_in(&s, &theirs, "is owned by another user (uid 65534)");
    assert!(stderr(&out).contains("chown"), "{}", stderr(&out));

    // Root's own directory and the caller's own are fine.
    std::os::unix::fs::chown(&theirs, Some(0), Some(0)).unwrap();
    assert!(s
        .try_record(
            Some(&theirs.join("mg.db")),
            "a@example.com",
            "198.51.100.1",
            None
        )
        .status
        .success());
}

#[test]
fn a_config_with_a_password_readable_by_others_is_reported() {
    let s = Sandbox::new("[mail]\nsmtp_user = \"mg\"\nsmtp_password = \"s3cret\"");
    std::fs::set_permissions(s.config_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = s.run(&["config", "check"]);
    support::assert_success("config check", &out);
    assert!(
        stderr(&out).contains("readable by other users and holds mail.smtp_password"),
        "{}",
        stderr(&out)
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("s3cret"),
        "config check must not print the secret"
    );
    let check = s.cmd().arg("check").output().unwrap();
    assert_eq!(
        check.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    std::fs::set_permissions(s.config_path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = s.run(&["config", "check"]);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    assert_eq!(
        s.cmd().arg("check").output().unwrap().status.code(),
        Some(0)
    );
}

#[test]
fn status_uses_colour_only_on_a_terminal_and_never_with_no_color() {
    let s = Sandbox::new("");
    s.burst("alice@example.com", 11, now() - 60);
    let piped = s.ok(&["status"]);
    assert!(!piped.contains('\x1b'), "colour in a pipe");
    // `script` gives the command a terminal.
    let on_tty = |no_color: Option<&str>| {
        let mut c = Command::new("script");
        c.args(["-qec", &format!("{} status", support::BIN), "/dev/null"])
            .env("F2B_MAILGUARD_CONFIG", s.config_path())
            .env_remove("NO_COLOR");
        if let Some(v) = no_color {
            c.env("NO_COLOR", v);
        }
        String::from_utf8_lossy(&c.output().expect("script (util-linux)").stdout).into_owned()
    };
    assert!(
        on_tty(None).contains("\x1b[31mwould block\x1b[0m"),
        "{:?}",
        on_tty(None)
    );
    assert!(!on_tty(Some("1")).contains('\x1b'));
}

/// A login that could not be stored, as Fail2ban sees it: exit 0 (a retry would only
/// add it twice), one line on stderr naming the cause and the spool that keeps it.
fn kept(out: &std::process::Output, expected: &[&str]) {
    let err = one_line(out, 0, "kept in the spool", expected);
    assert!(
        err.contains(".spool and stored once this is fixed"),
        "{err}"
    );
}

#[test]
fn a_corrupt_database_is_a_clear_error_and_keeps_the_login_for_a_new_one() {
    let s = Sandbox::new("");
    s.record("smtp", "alice@example.com", "198.51.100.1", T0);
    std::fs::write(s.db(), vec![0x5a; 8192]).unwrap();
    let _ = std::fs::remove_file(format!("{}-wal", s.db().display()));
    let _ = std::fs::remove_file(format!("{}-shm", s.db().display()));
    let out = s.try_record(None, "a@example.com", "198.51.100.2", Some(T0 + 5));
    kept(&out, &["file is not a database"]);
    let check = s.run(&["check"]);
    assert_eq!(
        check.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    // The admin moves the broken file away; the next login stores the kept one first.
    std::fs::rename(s.db(), s.path().join("broken.db")).unwrap();
    s.record("smtp", "b@example.com", "198.51.100.3", T0 + 6);
    assert!(s.account("a@example.com", T0 + 10).is_some());
    assert_eq!(s.rows("events"), 2);
}

#[test]
fn a_lock_held_past_record_wait_keeps_the_login_and_the_next_run_stores_it() {
    // `record` waits record_wait, not the other commands' busy_timeout.
    let s = Sandbox::new("record_wait = \"1s\"\nbusy_timeout = \"30s\"");
    s.record("smtp", "alice@example.com", "198.51.100.1", T0);
    let mut holder = rusqlite::Connection::open(s.db()).unwrap();
    let tx = holder
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .unwrap();
    let start = Instant::now();
    let out = s.try_record(None, "alice@example.com", "198.51.100.2", Some(T0 + 1));
    let waited = start.elapsed();
    kept(&out, &["database is locked"]);
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    tx.rollback().unwrap();
    drop(holder);
    // The next record stores the kept login first; the same login again is no-op.
    s.record("smtp", "alice@example.com", "198.51.100.2", T0 + 1);
    s.record("smtp", "alice@example.com", "198.51.100.2", T0 + 1);
    assert_eq!(s.rows("events"), 2);
}

#[test]
fn kill_9_during_record_loses_no_committed_login_and_corrupts_nothing() {
    let s = Sandbox::new("");
    let mut killed = 0;
    for i in 0..60 {
        let mut child = s
            .cmd()
            .args([
                "record",
                "--source=smtp",
                "--jail=j",
                &format!("--user=u{}@example.com", i % 5),
                &format!("--ip=198.51.100.{}", i + 1),
                &format!("--time={}", T0 + i),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill some at varying points of their short life.
        std::thread::sleep(Duration::from_micros(300 * (i as u64 % 7)));
        if i % 2 == 0 {
            let _ = child.kill();
            killed += 1;
        }
        let _ = child.wait();
    }
    assert!(killed > 0);
    assert_eq!(integrity(&s.db()), "ok");
    let conn = rusqlite::Connection::open(s.db()).unwrap();
    let dupes: i64 = conn
        .query_row("SELECT count(*) FROM (SELECT 1 FROM events GROUP BY user_id, ts_ms, source, ip HAVING count(*) > 1)", [], |r| r.get(0))
        .unwrap();
    assert_eq!(dupes, 0);
    let before = s.rows("events");
    // Replaying every login (as Fail2ban's retry would) fills in exactly the lost ones.
    for i in 0..60 {
        s.record(
            "smtp",
            &format!("u{}@example.com", i % 5),
            &format!("198.51.100.{}", i + 1),
            T0 + i,
        );
    }
    assert_eq!(s.rows("events"), 60, "{before} survived the kills");
}

#[test]
fn a_full_disk_keeps_logins_in_the_reserved_spool_and_they_are_stored_when_space_returns() {
    let s = Sandbox::new("");
    let disk = SmallDisk::mount(s.path().join("small"), "2m");
    let db = disk.path.join("mg.db");
    let rec = |i: i64| {
        s.try_record(
            Some(&db),
            "alice@example.com",
            &format!("198.51.100.{}", i % 250 + 1),
            Some(T0 + i),
        )
    };
    support::assert_success("record", &rec(0));
    disk.fill();
    let spool = disk.path.join("mg.db.spool");
    let mut i = 1;
    while std::fs::metadata(&spool).map_or(0, |m| m.len()) == 0 {
        assert!(i < 200, "the disk never filled up");
        let out = rec(i);
        support::assert_success("record", &out);
        i += 1;
    }
    let out = rec(i);
    kept(&out, &["disk is full", "No space left"]);
    disk.unfill();
    support::assert_success("record", &rec(500));
    assert_eq!(std::fs::metadata(&spool).unwrap().len(), 0, "drained");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let stored: i64 = conn
        .query_row("SELECT count(DISTINCT ts_ms) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, i + 2, "every login, 0 to {i} and the last");
    assert_eq!(integrity(&db), "ok");
}

#[test]
fn a_read_only_database_is_a_clear_error_and_writes_resume_after_remount() {
    let s = Sandbox::new("");
    let disk = SmallDisk::mount(s.path().join("ro"), "4m");
    let db = disk.path.join("mg.db");
    let rec = |ip: &str| s.try_record(Some(&db), "alice@example.com", ip, None);
    support::assert_success("record", &rec("198.51.100.1"));
    disk.remount("ro");
    let out = rec("198.51.100.2");
    // The error names the database.
    fails_cleanly(&out, &[&db.display().to_string()]);
    disk.remount("rw");
    support::assert_success("record", &rec("198.51.100.3"));
    assert_eq!(integrity(&db), "ok");
}

#[test]
fn kill_9_of_the_worker_mid_send_loses_no_mail_and_sends_none_twice() {
    use support::smtp_sink::SmtpSink;
    let sink = SmtpSink::start();
    sink.set_delay(Duration::from_secs(30));
    let s = Sandbox::acting(&format!(
        "[mail]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\n",
        sink.port
    ));
    s.burst("alice@example.com", 6, now() - 60);
    // The worker record started is now waiting for the sink to accept the mail.
    let config = s.config_path().display().to_string();
    let mut worker = None;
    support::wait_until("a worker to start", Duration::from_secs(10), || {
        worker = support::processes_mentioning(&config).into_iter().next();
        worker.is_some()
    });
    let worker = worker.expect("waited for it");
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill")
        .args(["-9", &worker.to_string()])
        .status();
    std::thread::sleep(Duration::from_millis(300));
    let d = s.status_user("alice@example.com", now());
    assert_eq!(
        d["actions"][0]["state"], "pending",
        "the killed attempt left the action queued"
    );
    // The next worker (the timer's) sends it, once.
    sink.set_delay(Duration::ZERO);
    s.ok(&["run-actions"]);
    let d = s.status_user("alice@example.com", now());
    assert_eq!(d["actions"][0]["state"], "done");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(sink.messages().len(), 1, "exactly one mail");
}
