//! f2b-mailguard on a shared PostgreSQL store (issue 19), against a private
//! PostgreSQL 15 started per test on a Unix socket (tests/support/postgres.rs).

mod support;

use support::postgres::Postgres;

#[test]
fn the_private_server_starts_stops_and_starts_again() {
    let mut pg = Postgres::start();
    assert_eq!(pg.psql("SELECT 1 + 1"), "2");
    pg.stop();
    assert!(!pg.running());
    pg.start_server();
    assert_eq!(pg.psql("SELECT current_database()"), support::postgres::DB);
}

#[test]
fn a_url_that_is_no_postgresql_url_is_refused_and_creates_nothing() {
    let s = support::Sandbox::new("");
    for (db, says) in [
        ("postgresql:", "invalid --db: postgresql: is not a URL"),
        (
            "mysql://mg:hunter2@db/mg",
            "invalid --db: looks like a URL (mysql:)",
        ),
        ("sqlite:mg.db", "invalid --db: looks like a URL (sqlite:)"),
        ("postgresql://mg:hunter2@/mg", "names no host"),
    ] {
        let out = s
            .cmd()
            .current_dir(s.path())
            .args(["--db", db, "status"])
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{db}: {err}");
        assert!(err.contains(says), "{db}: {err}");
        assert!(!err.contains("hunter2"), "{db}: {err}");
    }
    // The same in the config file, named with the key.
    s.write_config("");
    let text = std::fs::read_to_string(s.config_path()).expect("config");
    std::fs::write(
        s.config_path(),
        text.replace(
            &format!("{:?}", s.db().display().to_string()),
            "\"postgresql:\"",
        ),
    )
    .expect("config");
    let out = s
        .cmd()
        .current_dir(s.path())
        .args(["status"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("config.toml: database: postgresql: is not a URL"),
        "{err}"
    );
    assert!(!s.path().join("postgresql:").exists());
}
