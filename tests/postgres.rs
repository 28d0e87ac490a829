//! f2b-mailguard on a shared PostgreSQL store, against a private
//! PostgreSQL 15 started per test on a Unix socket (tests/support/postgres.rs).

use std::time::Duration;

use crate::support;

use support::postgres::{Bouncer, Postgres};
use support::{described as text, Sandbox, NO_ACTIONS, T0};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const CAROL: &str = "carol@example.com";

/// A sandbox whose config names the shared database, as a server `server` would.
fn on_postgres(pg: &Postgres, server: &str, extra: &str) -> Sandbox {
    pg.server(server, &format!("{extra}\n{NO_ACTIONS}"))
}

/// The same admin session on any backend; returns what each command printed.
fn session(s: &Sandbox) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    let mut run = |args: &[&str]| {
        let out = s.run(args);
        seen.push((args.join(" "), text(&out)));
        out
    };
    run(&["whitelist", "add", "203.0.113.0/24", "--note", "office"]);
    run(&["whitelist", "add", "192.0.2.0/24", "--user", CAROL]);
    // Adding again updates the note and says the entry existed.
    run(&["whitelist", "add", "203.0.113.0/24", "--note", "office NAT"]);
    s.burst(ALICE, 12, T0);
    for i in 0..3 {
        s.record("imap", BOB, &format!("198.51.100.{}", 10 + i), T0 + i);
    }
    for i in 0..8 {
        s.record("smtp", CAROL, &format!("192.0.2.{}", 10 + i), T0 + i);
    }
    s.record("smtp", CAROL, "203.0.113.9", T0 + 9);
    // A retry of the same Fail2ban call is stored once.
    s.record("smtp", ALICE, "198.51.100.7", T0);
    run(&[
        "record",
        "--source=rate",
        "--jail=t",
        &format!("--user={BOB}"),
        "--ip=198.51.100.10",
        &format!("--time={}", T0 + 20),
        "--count=40",
        "--fid=m1",
    ]);
    let at = format!("--at={}", T0 + 100);
    run(&["status", "--json", &at]);
    run(&["status", &at]);
    run(&["status", "--json", &at, "--", ALICE]);
    run(&["status", &at, "--", ALICE]);
    run(&["status", "--json", &at, "--", BOB]);
    run(&["status", "--json", &at, "--", CAROL]);
    run(&["whitelist", "list", "--json"]);
    run(&["check"]);
    run(&["metrics"]);
    run(&["run-actions"]);
    run(&["release", ALICE]);
    run(&["whitelist", "remove", "203.0.113.0/24"]);
    run(&["whitelist", "remove", "203.0.113.0/24"]);
    run(&["whitelist", "list"]);
    run(&["prune", "--older-than", "1h", "--force"]);
    run(&["status", "--json", &at]);
    run(&["check"]);
    seen
}

/// What differs by nature between two runs: the file's size, and the wall clock
/// (whitelist entries' and releases' times, as epoch seconds or today's date).
fn comparable(out: &str) -> String {
    let today = chrono::Utc::now().format("%Y-%m-%d ").to_string();
    let mut masked = String::new();
    for line in out.lines().filter(|l| !l.contains("database_bytes")) {
        let mut rest = line;
        while let Some(i) = rest.find(&today) {
            // "YYYY-MM-DD HH:MM:SS" or "YYYY-MM-DD HH:MM".
            let end = (i + today.len() + 8).min(rest.len());
            masked.push_str(&rest[..i]);
            masked.push_str("TODAY");
            rest = &rest[end..];
        }
        let mut digits = String::new();
        for c in rest.chars().chain(['\n']) {
            if c.is_ascii_digit() || (c == '.' && !digits.is_empty()) {
                digits.push(c);
                continue;
            }
            let wall = digits
                .parse::<f64>()
                .is_ok_and(|n| n > (T0 + 7 * 86_400) as f64 && n < 1e10);
            masked.push_str(if wall { "NOW" } else { &digits });
            digits.clear();
            masked.push(c);
        }
    }
    masked
}

/// Each command printed the same in both sessions, but for what `comparable` masks.
fn assert_same(on_pg: &[(String, String)], on_file: &[(String, String)]) {
    assert_eq!(on_pg.len(), on_file.len());
    for ((cmd, pg_out), (_, file_out)) in on_pg.iter().zip(on_file) {
        assert_eq!(
            comparable(pg_out),
            comparable(file_out),
            "`{cmd}` differs between PostgreSQL (left) and SQLite (right)"
        );
    }
}

#[test]
fn every_command_through_pgbouncer_prints_what_it_prints_on_sqlite() {
    let pg = Postgres::start();
    let bouncer = Bouncer::start(&pg);
    let pooled = Sandbox::server(&bouncer.url(), "mx1", NO_ACTIONS);
    let file = Sandbox::new("server_name = \"mx1\"");
    pg.psql("ALTER SYSTEM SET log_connections = on");
    pg.psql("SELECT pg_reload_conf()");
    support::wait_until("log_connections", Duration::from_secs(60), || {
        pg.psql("SHOW log_connections") == "on"
    });
    let log_before = pg.log().len();
    // Each record is checked to print nothing (a spooled login says so on stderr).
    assert_same(&session(&pooled), &session(&file));
    let opened = pg.log()[log_before..]
        .matches("connection authorized: user=postgres database=mailguard")
        .count();
    // Stored in PostgreSQL (the session's prune found the 25 logins SQLite had),
    // nothing kept back in the spool.
    assert_eq!(pg.psql("SELECT count(*) FROM users"), "3");
    let spooled = std::fs::read_to_string(pooled.shared_spool()).unwrap_or_default();
    assert!(spooled.is_empty(), "spooled: {spooled}");
    // Every command was a session of its own, yet PostgreSQL started one backend for
    // them all, which the pool keeps (without PgBouncer: one per command, none left).
    assert_eq!(opened, 1, "{}", &pg.log()[log_before..]);
    let backends = pg.psql(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' \
         AND datname = 'mailguard' AND pid <> pg_backend_pid()",
    );
    assert_eq!(backends, "1");
}

#[test]
fn every_command_on_postgresql_prints_what_it_prints_on_sqlite() {
    let pg = Postgres::start();
    let shared = on_postgres(&pg, "mx1", "");
    let file = Sandbox::new("server_name = \"mx1\"");
    let on_pg = session(&shared);
    let on_file = session(&file);
    assert_same(&on_pg, &on_file);
    // Not vacuous: the session escalated, listed and released.
    let all: String = on_pg.iter().map(|(_, o)| o.as_str()).collect();
    for expected in [
        "now: smtp: 12 networks/1h > 10",
        "updated 203.0.113.0/24",
        "F2B-MAILGUARD CRITICAL - 1 would block: alice@example.com",
        "alice@example.com: would block -> ok",
        "is not on the whitelist",
        "pruned 25 logins",
        "f2b_mailguard_accounts{state=\"would_block\"} 1",
    ] {
        assert!(all.contains(expected), "{expected:?} missing from:\n{all}");
    }
    // The rows are in PostgreSQL, none in a local file.
    assert_eq!(pg.psql("SELECT count(*) FROM users"), "3");
    assert!(!shared.db().exists());
    // Exit 2 here: no Fail2ban or Postfix runs for this test; only the store matters.
    let doctor = shared.run(&["doctor", "--json"]);
    let doctor: serde_json::Value = serde_json::from_slice(&doctor.stdout).expect("doctor --json");
    let text = doctor.to_string();
    assert!(
        text.contains(&format!("database {} opens, is writable", pg.url())),
        "{doctor:#}"
    );
}

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
        err.contains("config.toml:1:12: database: postgresql: is not a URL"),
        "{err}"
    );
    assert!(!s.path().join("postgresql:").exists());
}

/// The level history of `user` as "from>to" steps.
fn steps(s: &Sandbox, user: &str) -> Vec<String> {
    s.status_user(user, T0 + 100)["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| format!("{}>{}", h["from"], h["to"]).replace('"', ""))
        .collect()
}

#[test]
fn a_botnet_split_over_two_servers_is_blocked_by_the_shared_store() {
    let pg = Postgres::start();
    let mx1 = on_postgres(&pg, "mx1", "mode = \"enforce\"");
    let mx2 = on_postgres(&pg, "mx2", "mode = \"enforce\"");
    // 12 networks, 6 through each server, interleaved as round-robin DNS does.
    for i in 0..12 {
        let server = if i % 2 == 0 { &mx1 } else { &mx2 };
        server.record("smtp", ALICE, &support::bot(i), T0 + i);
    }
    assert_eq!(steps(&mx2, ALICE), ["ok>notify", "notify>block"]);
    assert_eq!(
        mx1.account(ALICE, T0 + 100).expect("listed")["level"],
        "block"
    );
    assert_eq!(
        pg.psql("SELECT string_agg(server || '=' || n, ',') FROM (SELECT server, count(*) n FROM events GROUP BY server ORDER BY server) s"),
        "mx1=6,mx2=6"
    );
    // Each server alone (its own SQLite file) sees its 6 networks: notify, no block.
    for server in 0..2 {
        let alone = Sandbox::new("mode = \"enforce\"");
        for i in (server..12).step_by(2) {
            alone.record("smtp", ALICE, &support::bot(i), T0 + i);
        }
        assert_eq!(steps(&alone, ALICE), ["ok>notify"]);
    }
}

#[test]
fn servers_recording_one_account_at_once_decide_each_level_once_as_in_log_time_order() {
    let pg = Postgres::start();
    let servers = [on_postgres(&pg, "mx1", ""), on_postgres(&pg, "mx2", "")];
    // 24 logins from 24 networks, all started at once, half through each server.
    let children: Vec<_> = (0..24)
        .map(|i| {
            servers[i % 2]
                .cmd()
                .args([
                    "record",
                    "--source=smtp",
                    "--jail=t",
                    &format!("--user={ALICE}"),
                    &format!("--ip={}", support::bot(i as i64)),
                    &format!("--time={}", T0 + i as i64),
                ])
                .spawn()
                .expect("record")
        })
        .collect();
    for mut c in children {
        assert!(c.wait().expect("wait").success());
    }
    assert_eq!(pg.psql("SELECT count(*) FROM events"), "24");
    // Whatever order they committed in, each level was decided once, and the account
    // went where log-time order takes it (tests/arrival_order.rs has the large case).
    let got = steps(&servers[0], ALICE);
    assert_eq!(got, ["ok>notify", "notify>block", "block>lock"]);
    assert_eq!(
        pg.psql("SELECT count(*) FROM level_changes"),
        got.len().to_string()
    );
}
