//! One account, one spelling: names that differ only in case are one account, in the
//! database, in Postfix's map (real postmap, real Postfix refusing over SMTP) and in
//! `release`; a database from before the rule has its spellings merged.

use crate::support;

use support::mailstack::{mail_server, submit};
use support::smtp_sink::SmtpSink;
use support::{now, Sandbox};

const MALLORY: &str = "mallory@example.test";

/// A sandbox that blocks through `pf`'s SASL map with its real postmap.
fn blocking(pf: &support::mailstack::Postfix) -> Sandbox {
    let mut s = Sandbox::acting(&format!(
        "mode = \"enforce\"\n\
         [actions]\nnotify = []\nblock = [\"sasl_block\"]\nretry_base = \"1s\"\ncommand_timeout = \"10s\"\n\
         [postfix]\nsasl_map = \"{}\"\n",
        pf.sasl_map.display()
    ));
    let (k, v) = pf.env();
    s.env.push((k.into(), v.to_path_buf()));
    s
}

/// The overview lists `name` alone, whose `sasl_block` (asked for under `spelling`)
/// is done and left one key in the map.
fn one_blocked_account(s: &Sandbox, pf: &support::mailstack::Postfix, spelling: &str, name: &str) {
    let overview = s.status(now());
    let names = support::texts(&overview["accounts"], "user");
    assert_eq!(names, [name], "one account");
    let (d, _) = s.wait_action(spelling, "sasl_block", |a| a["state"] == "done");
    assert_eq!(d["state"], "block");
    let map_text = std::fs::read_to_string(&pf.sasl_map).unwrap();
    assert_eq!(
        map_text.lines().filter(|l| !l.starts_with('#')).count(),
        1,
        "{map_text}"
    );
}

#[test]
fn spellings_of_one_login_are_one_account_blocked_and_released_in_real_postfix() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start();
    let (_dv, pf) = mail_server(dir.path(), &[(MALLORY, "m-pw")], sink.port);
    let send = |login: &str, addr: &str| {
        submit(
            pf.submission_port,
            addr,
            (login, "m-pw"),
            MALLORY,
            "friend@remote.example",
        )
    };
    send("Mallory@Example.TEST", "203.0.113.1").expect("any spelling logs in");

    let s = blocking(&pf);
    // Two spellings, as two clients of one botnet might log in: six networks each.
    let t = now() - 300;
    for i in 0..6 {
        s.record("smtp", "Mallory@example.test", &support::bot(i), t + i);
        s.record("smtp", MALLORY, &support::bot(10 + i), t + 10 + i);
    }
    one_blocked_account(&s, &pf, "MALLORY@example.test", MALLORY);
    for key in [MALLORY, "Mallory@Example.Test"] {
        assert!(pf.map_lookup(key).is_some(), "{key}");
    }
    let refused = send("MALLORY@example.test", "203.0.113.2").expect_err("blocked");
    assert!(refused.starts_with("550 5.7.1"), "{refused}");

    // Released under yet another spelling: Postfix lets every spelling send again.
    let out = s.ok(&["release", "mAllory@example.test"]);
    assert!(out.contains("sending unblocked"), "{out}");
    assert_eq!(pf.map_lookup(MALLORY), None);
    send("Mallory@example.test", "203.0.113.3").expect("released");
}

/// SQL for what an older version could have stored under a second spelling `name`:
/// the account, blocked, with one SMTP login at each (time in ms, address).
fn blocked_spelling(name: &str, logins: &[(i64, &str)]) -> String {
    let mut sql =
        format!("INSERT INTO users (name, level, enforced) VALUES ('{name}', 'block', 1);\n");
    for (ms, ip) in logins {
        sql.push_str(&format!(
            "INSERT INTO events (user_id, ts_ms, source, ip, jail, count)
             SELECT id, {ms}, 'smtp', '{ip}', 'test', 1 FROM users WHERE name = '{name}';\n"
        ));
    }
    sql
}

/// Writes `sql` into the sandbox's database as an older version could have left it;
/// the binary, opening it, finds one account, blocked (`user` in any spelling), with
/// `events` logins.
fn migrated_to_one_blocked_account(s: &Sandbox, sql: &str, user: &str, events: i64) {
    let conn = rusqlite::Connection::open(s.db()).unwrap();
    conn.execute_batch(sql).unwrap();
    drop(conn);
    let d = s.status_user(user, now());
    assert_eq!(d["level"], "block", "{d:#}");
    assert_eq!(s.rows("users"), 1);
    assert_eq!(s.rows("events"), events);
}

#[test]
fn a_database_with_two_spellings_merges_them_keeping_the_worse_level() {
    let s = Sandbox::new("");
    let t = now() - 600;
    s.record("smtp", "bob@example.test", "198.51.100.1", t);
    s.record("imap", "bob@example.test", "198.51.100.2", t + 1);
    // What a database written before the rule could hold: a second spelling, blocked,
    // with a login of its own and one the same instant as the other spelling's (3
    // logins once merged: the shared one is one).
    migrated_to_one_blocked_account(
        &s,
        &format!(
        "{spelling}
         INSERT INTO level_changes (user_id, ts_ms, from_level, to_level, enforced, reason, actor)
             SELECT id, {b}, 'ok', 'block', 1, 'smtp: test', 'detector' FROM users WHERE name = 'Bob@Example.test';
         INSERT INTO whitelist (cidr, user, note, added_ms) VALUES
             ('192.0.2.0/24', 'bob@example.test', 'office', 1),
             ('192.0.2.0/24', 'BOB@example.test', 'dup', 2);
         ALTER TABLE events DROP COLUMN server;
         ALTER TABLE actions DROP COLUMN server;
         PRAGMA user_version = 4;",
        spelling = blocked_spelling(
            "Bob@Example.test",
            &[(t * 1000, "198.51.100.1"), ((t + 2) * 1000, "198.51.100.9")]
        ),
        b = (t + 2) * 1000,
        ),
        "bob@example.test",
        3,
    );
    assert_eq!(s.rows("level_changes"), 1);
    assert_eq!(s.rows("whitelist"), 1);
    let conn = rusqlite::Connection::open(s.db()).unwrap();
    let (name, note): (String, String) = conn
        .query_row("SELECT u.name, w.note FROM users u, whitelist w", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(
        (name.as_str(), note.as_str()),
        ("bob@example.test", "office")
    );
}

/// Postfix folds map keys fully (`ß` is `ss`): `Straße@` and `STRASSE@` are one key
/// there, so one account here, blocked once, one line in the map, and the real
/// Postfix refuses the login `straße@` that Dovecot knows.
#[test]
fn names_postfix_folds_alike_are_one_account() {
    const STRASSE: &str = "strasse@example.test";
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start();
    let (_dv, pf) = mail_server(dir.path(), &[("straße@example.test", "s-pw")], sink.port);
    let send = |addr: &str| {
        submit(
            pf.submission_port,
            addr,
            ("straße@example.test", "s-pw"),
            "straße@example.test",
            "friend@remote.example",
        )
    };
    send("203.0.113.1").expect("logs in");

    let s = blocking(&pf);
    // Six networks under each spelling: eleven or more block one account.
    let t = now() - 300;
    for i in 0..6 {
        s.record("smtp", "Straße@example.test", &support::bot(i), t + i);
        s.record(
            "smtp",
            "STRASSE@example.test",
            &support::bot(10 + i),
            t + 10 + i,
        );
    }
    one_blocked_account(&s, &pf, "straße@example.test", STRASSE);
    for key in ["straße@example.test", "STRASSE@example.test", STRASSE] {
        assert!(pf.map_lookup(key).is_some(), "{key}");
    }
    let refused = send("203.0.113.2").expect_err("blocked");
    assert!(refused.starts_with("550 5.7.1"), "{refused}");

    s.ok(&["release", "Straße@example.test"]);
    assert_eq!(pf.map_lookup("straße@example.test"), None);
    send("203.0.113.3").expect("released");
}

/// A database written when names were only lower-cased may hold `straße@` and
/// `strasse@` apart: opening it merges them, keeping the worse level.
#[test]
fn a_database_with_names_postfix_folds_alike_merges_them() {
    let s = Sandbox::new("");
    let t = now() - 600;
    s.record("smtp", "strasse@example.test", "198.51.100.1", t);
    migrated_to_one_blocked_account(
        &s,
        &format!(
            "{}PRAGMA user_version = 8;",
            blocked_spelling("straße@example.test", &[((t + 2) * 1000, "198.51.100.9")])
        ),
        "Straße@example.test",
        2,
    );
    // The party of strasse@'s login, now the merged account's.
    assert_eq!(s.rows("parties"), 1);
}

/// A shared store written when names were only lower-cased may hold `straße@` and
/// `strasse@` apart: the next server to open it merges them, keeping the worse level,
/// one login of a call stored under both, the parties of both and one whitelist entry.
#[test]
fn a_shared_database_with_names_postfix_folds_alike_merges_them() {
    let pg = support::postgres::Postgres::start();
    let s = pg.server("mx1", support::NO_ACTIONS);
    let t = now() - 600;
    s.record("smtp", "strasse@example.test", "198.51.100.1", t);
    let straße = "(SELECT id FROM users WHERE name = 'straße@example.test')";
    pg.psql(&format!(
        "INSERT INTO users (name, level, enforced) VALUES ('straße@example.test', 'block', true);
         INSERT INTO events (user_id, ts_ms, source, ip, jail, count, server) VALUES
             ({straße}, {a}, 'smtp', '198.51.100.1', 'mailguard', 1, 'mx1'),
             ({straße}, {b}, 'smtp', '198.51.100.9', 'test', 1, 'mx1');
         INSERT INTO parties (user_id, scheme, party, first_ms, last_ms)
             SELECT {straße}, scheme, party, first_ms - 1000, last_ms + 1000 FROM parties;
         INSERT INTO whitelist (cidr, account, note, added_ms) VALUES
             ('192.0.2.0/24', 'strasse@example.test', 'home', 1),
             ('192.0.2.0/24', 'straße@example.test', 'home, again', 2);
         UPDATE mailguard_schema SET version = 3;",
        a = t * 1000,
        b = (t + 2) * 1000,
    ));
    let d = s.status_user("Straße@example.test", now());
    assert_eq!(d["level"], "block", "{d:#}");
    let count = |sql: &str| pg.psql(sql).trim().to_owned();
    assert_eq!(count("SELECT count(*) FROM users"), "1");
    assert_eq!(count("SELECT name FROM users"), "strasse@example.test");
    assert_eq!(count("SELECT count(*) FROM events"), "2");
    // The merged party spans both spellings' first and last log times.
    assert_eq!(
        count("SELECT count(*), bool_and(last_ms - first_ms = 2000) FROM parties"),
        "1|t"
    );
    assert_eq!(
        count("SELECT account || ' ' || note FROM whitelist"),
        "strasse@example.test home"
    );
}
