//! Permissions, colour, and faults: a clear error, no corruption, and the next run
//! recovers.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{now, Sandbox, T0};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_state_directory_writable_by_others_is_refused() {
    let s = Sandbox::new("");
    let dir = s.path().join("shared");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let db = dir.join("mg.db");
    let out = s
        .cmd()
        .args([
            "--db",
            db.to_str().unwrap(),
            "record",
            "--source=smtp",
            "--jail=j",
            "--user=a@example.com",
            "--ip=198.51.100.1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is writable by other users (mode 1777)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1);
    assert!(!db.exists(), "nothing may be created there");
}

#[test]
fn a_config_with_a_password_readable_by_others_is_reported() {
    let s = Sandbox::new("[mail]\nsmtp_user = \"mg\"\nsmtp_password = \"s3cret\"");
    std::fs::set_permissions(s.config_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = s.run(&["config", "check"]);
    assert!(out.status.success());
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
    for i in 0..11 {
        s.record(
            "smtp",
            "alice@example.com",
            &format!("198.51.100.{}", i + 1),
            now() - 60 + i,
        );
    }
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

#[test]
fn a_corrupt_database_is_a_clear_error_not_a_crash() {
    let s = Sandbox::new("");
    s.record("smtp", "alice@example.com", "198.51.100.1", T0);
    std::fs::write(s.db(), vec![0x5a; 8192]).unwrap();
    let _ = std::fs::remove_file(format!("{}-wal", s.db().display()));
    let _ = std::fs::remove_file(format!("{}-shm", s.db().display()));
    let out = s.run(&[
        "record",
        "--source=smtp",
        "--jail=j",
        "--user=a@example.com",
        "--ip=198.51.100.2",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("file is not a database"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1);
    let (code, line) = {
        let o = s.cmd().arg("check").output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    assert_eq!(code, Some(3), "{line}");
}

#[test]
fn a_lock_held_past_the_busy_timeout_fails_cleanly_and_the_next_run_recovers() {
    let s = Sandbox::new("busy_timeout = \"1s\"");
    s.record("smtp", "alice@example.com", "198.51.100.1", T0);
    let mut holder = rusqlite::Connection::open(s.db()).unwrap();
    let tx = holder
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .unwrap();
    let start = Instant::now();
    let out = s.run(&[
        "record",
        "--source=smtp",
        "--jail=j",
        "--user=alice@example.com",
        "--ip=198.51.100.2",
        &format!("--time={}", T0 + 1),
    ]);
    let waited = start.elapsed();
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit 1 lets Fail2ban retry: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("database is locked"),
        "{}",
        stderr(&out)
    );
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    tx.rollback().unwrap();
    drop(holder);
    // Fail2ban's retry now succeeds, and the event is stored once.
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
    let conn = rusqlite::Connection::open(s.db()).unwrap();
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
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
