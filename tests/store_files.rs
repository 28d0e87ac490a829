//! The database is created private, and the schema is versioned.

use crate::support;

use std::os::unix::fs::PermissionsExt;

use support::{Sandbox, T0};

#[test]
fn database_is_0600_in_a_0700_directory_and_wal() {
    let s = Sandbox::new("");
    s.record("smtp", "alice@example.com", "198.51.100.1", T0);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&s.db()), 0o600);
    assert_eq!(mode(s.db().parent().unwrap()), 0o700);
    let conn = rusqlite::Connection::open(s.db()).unwrap();
    let jm: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(jm, "wal");
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert!(v >= 1);
}

#[test]
fn db_option_and_env_override_the_config() {
    let s = Sandbox::new("");
    let other = s.path().join("other.db");
    s.ok(&[
        "--db",
        other.to_str().unwrap(),
        "record",
        "--source=smtp",
        "--jail=j",
        "--user=a",
        "--ip=198.51.100.1",
    ]);
    assert!(other.exists());
    assert!(!s.db().exists());
    let third = s.path().join("third.db");
    let out = s
        .cmd()
        .env("F2B_MAILGUARD_DB", &third)
        .args([
            "record",
            "--source=smtp",
            "--jail=j",
            "--user=a",
            "--ip=198.51.100.1",
        ])
        .output()
        .unwrap();
    support::assert_success("record", &out);
    assert!(third.exists());
}

#[test]
fn a_newer_schema_is_refused_not_misread() {
    let s = Sandbox::new("");
    s.record("smtp", "alice@example.com", "198.51.100.1", T0);
    rusqlite::Connection::open(s.db())
        .unwrap()
        .pragma_update(None, "user_version", 999)
        .unwrap();
    let out = s.run(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("schema version 999 is newer"));
}

#[test]
fn prune_deletes_old_logins_and_keeps_recent_ones() {
    let s = Sandbox::new("");
    let now = support::now();
    s.each(30, now - 40 * 86_400, "smtp", "alice@example.com", |i| {
        format!("198.51.100.{}", i + 1)
    });
    s.record("smtp", "alice@example.com", "198.51.100.200", now - 60);
    let out = s.ok(&["prune"]);
    assert!(out.starts_with("pruned 30 logins older than 30d"), "{out}");
    assert_eq!(s.rows("events"), 1);
    // The account's one party (198.51.0.0/16) was used again a minute ago: kept.
    assert_eq!(s.rows("parties"), 1);
    // Inside the detection lookback (the 1d spread window): refused without --force.
    let out = s.run(&["prune", "--older-than", "1m"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--older-than 1m is shorter than what detection looks back over (1d:"),
        "{err}"
    );
    assert!(err.contains("--force"), "{err}");
    assert_eq!(s.rows("events"), 1);
    let out = s.ok(&["prune", "--older-than", "30s", "--force"]);
    assert!(out.starts_with("pruned 1 login older than 30s"), "{out}");
    assert_eq!(s.rows("events"), 0);
    assert_eq!(s.rows("parties"), 0, "the party goes with its last login");
}

#[test]
fn retention_is_applied_automatically_while_recording() {
    let s = Sandbox::new("retention = \"1d\"");
    let now = support::now();
    // 600 old logins, then enough new ones to pass an automatic prune point.
    for i in 0..600 {
        s.record(
            "smtp",
            &format!("u{}@example.com", i % 7),
            "198.51.100.1",
            now - 5 * 86_400 + i,
        );
    }
    assert!(s.rows("events") < 600, "old logins were never pruned");
}
