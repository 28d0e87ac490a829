//! A shared store's password never reaches output: not Nagios's (`check`), not
//! Fail2ban's log (`record`'s stderr), not the admin's terminal. A password may hold
//! `?`, `+` and `=` as written (libpq and the client library read them alike); one
//! with an unencoded `/` is refused with a clear message (libpq reads another host,
//! user and database there) and works written as %2F.

use crate::support;

use support::postgres::{Postgres, DB};
use support::{described, Sandbox, NO_ACTIONS};

/// The password's parts between its special characters: none may be shown.
const PARTS: [&str; 3] = ["Qz7k", "Wk3m", "Vb9p"];

fn url(pg: &Postgres, password: &str, db: &str) -> String {
    pg.url_as(&format!("mgpw:{password}"), db)
}

/// What each command that shows the database prints with `url` as `database`.
fn outputs(s: &Sandbox) -> Vec<(&'static str, std::process::Output)> {
    [
        ("check", &["check"][..]),
        (
            "record",
            &[
                "record",
                "--source=smtp",
                "--jail=test",
                "--user=alice@example.com",
                "--ip=198.51.100.7",
            ][..],
        ),
        ("run-actions", &["run-actions"][..]),
        ("doctor", &["doctor"][..]),
        ("status", &["status"][..]),
        ("config check", &["config", "check"][..]),
    ]
    .into_iter()
    .map(|(name, args)| (name, s.run(args)))
    .collect()
}

fn shows_no_part(url: &str) -> (Sandbox, Vec<(&'static str, std::process::Output)>) {
    let s = Sandbox::server(url, "mx1", NO_ACTIONS);
    let outs = outputs(&s);
    for (name, out) in &outs {
        let text = described(out);
        for part in PARTS {
            assert!(!text.contains(part), "{name} shows {part:?}: {text}");
        }
    }
    (s, outs)
}

/// A running store whose role mgpw has the password PARTS joined by `sep`, `+`, `=`.
fn role_with_password(sep: char) -> (Postgres, String) {
    let pg = Postgres::start();
    let password = format!("{}{sep}{}+{}=", PARTS[0], PARTS[1], PARTS[2]);
    pg.password_role("mgpw", &password);
    (pg, password)
}

#[test]
fn a_password_with_query_characters_connects_and_is_never_shown() {
    let (pg, password) = role_with_password('?');

    // It connects as written: `record` stores the login, `status` lists it.
    let (_, outs) = shows_no_part(&url(&pg, &password, DB));
    for (name, out) in &outs {
        if ["check", "record", "status", "config check"].contains(name) {
            assert!(out.status.success(), "{name}: {}", described(out));
        }
    }
    assert_eq!(pg.psql("SELECT count(*) FROM users"), "1");

    // Every error that names the store (here: no such database) hides it too.
    let (_, outs) = shows_no_part(&url(&pg, &password, "nodb"));
    let (_, check) = &outs[0];
    let check = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.contains("postgresql://mgpw:***@/nodb") && check.contains("CRITICAL"),
        "{check}"
    );
}

#[test]
fn a_password_with_a_slash_is_refused_clearly_and_works_encoded() {
    let (pg, password) = role_with_password('/');

    let (s, outs) = shows_no_part(&url(&pg, &password, DB));
    for (name, out) in outs {
        let text = described(&out);
        // `record` keeps the login in this server's spool (exit 0), the rest fail.
        assert_eq!(out.status.success(), name == "record", "{name}: {text}");
        assert!(
            text.contains("write '/' in the user name or password as %2F"),
            "{name}: {text}"
        );
    }
    assert_eq!(s.spooled_shared(), 1, "the login waits in local_dir");
    assert_eq!(
        pg.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'users'"),
        "0"
    );

    let encoded = password.replace('/', "%2F");
    shows_no_part(&url(&pg, &encoded, DB));
    assert_eq!(pg.psql("SELECT count(*) FROM users"), "1");
}
