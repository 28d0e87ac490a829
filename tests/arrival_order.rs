//! Logins that arrive out of log-time order, as with several servers writing one store
//! at once: every login is stored once, no level is decided twice, and the
//! accounts end where the same logins recorded one by one in log-time order end.

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use support::postgres::Postgres;
use support::{processes_mentioning, wait_until, Sandbox, BIN, T0};

const SERVERS: usize = 4;
const WRITERS: usize = 4;
const PER_SERVER: usize = 500;

#[derive(Clone)]
struct Login {
    user: String,
    ip: String,
    time: i64,
}

/// The k-th network of a botnet: each its own /24 and /16, so no pool rule holds it.
fn botnet_ip(k: usize) -> String {
    format!("{}.{}.{}.9", 20 + k % 180, (k * 7) % 250, k % 250)
}

/// 2000 logins, one every 5 s (2.8 hours): honest accounts from their one or two
/// addresses, and four botnets: a dense one (40 networks in 200 s: lock), a slow
/// one (18 networks an hour: block, the windows sliding), a short one (12: block) and
/// one from 8 networks (notify).
fn logins() -> Vec<Login> {
    let mut out = Vec::new();
    let mut slow = 0;
    for i in 0..SERVERS * PER_SERVER {
        let (user, ip) = if (200..240).contains(&i) {
            ("dense@example.com".into(), botnet_ip(i - 200))
        } else if i % 40 == 7 {
            slow += 1;
            ("slow@example.com".into(), botnet_ip(100 + slow))
        } else if (1500..1520).contains(&i) {
            ("short@example.com".into(), botnet_ip(50 + i % 12))
        } else if (900..1000).contains(&i) && i % 4 == 0 {
            ("eight@example.com".into(), botnet_ip(70 + (i / 4) % 8))
        } else {
            let n = i % 37;
            let ip = if i % 3 == 0 {
                format!("2001:db8:{n:x}::1")
            } else {
                format!("192.0.2.{}", n + 1)
            };
            (format!("user{n}@example.com"), ip)
        };
        out.push(Login {
            user,
            ip,
            time: T0 + 5 * i as i64,
        });
    }
    out
}

/// A server's config: the store, its name, an action on every level that does
/// nothing (doveadm is /bin/true), so duplicated actions would show.
/// Writers wait on each other's transactions: `record_wait` long enough that none
/// spools on a loaded machine (this test is about order, not the wait's bound).
fn server(database: &str, name: &str) -> Sandbox {
    Sandbox::server(
        database,
        name,
        "mode = \"enforce\"\nrecord_wait = \"30s\"\n[actions]\nnotify = [\"dovecot_kick\"]\n\
         block = [\"dovecot_kick\"]\nlock = [\"dovecot_kick\"]\n\
         [dovecot]\ndoveadm = \"/bin/true\"\n",
    )
}

fn record(s: &Sandbox, login: &Login) -> Result<(), String> {
    // --config on the command line: the worker a record starts names it too, so the
    // sandbox finds and stops it.
    let out = Command::new(BIN)
        .arg("--config")
        .arg(s.config_path())
        .args([
            "record",
            "--source=smtp",
            "--jail=t",
            &format!("--user={}", login.user),
            &format!("--ip={}", login.ip),
            &format!("--time={}", login.time),
        ])
        .env_remove("F2B_MAILGUARD_DB")
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Records `logins` through `servers`, each with `WRITERS` writers at once: login i
/// goes to server i % servers, and on it to writer (i / servers) % WRITERS. The
/// writers go newest first, a step at a time together, so each step's 16 records run
/// at once and the logins arrive about in reverse log-time order: judged only at its
/// own time, each would see none of the later logins already stored.
fn in_parallel(servers: &[Sandbox], logins: &[Login]) {
    let writers = servers.len() * WRITERS;
    let mut lists: Vec<Vec<Login>> = vec![Vec::new(); writers];
    for (i, l) in logins.iter().enumerate().rev() {
        let s = i % servers.len();
        lists[s * WRITERS + (i / servers.len()) % WRITERS].push(l.clone());
    }
    let steps = Barrier::new(writers);
    let failures: Vec<String> = thread::scope(|scope| {
        let running: Vec<_> = lists
            .iter()
            .enumerate()
            .map(|(w, list)| {
                let (s, steps) = (&servers[w / WRITERS], &steps);
                scope.spawn(move || {
                    let mut failed = Vec::new();
                    for l in list {
                        steps.wait();
                        failed.extend(record(s, l).err());
                    }
                    failed
                })
            })
            .collect();
        running
            .into_iter()
            .flat_map(|w| w.join().expect("writer"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} records failed, first: {:?}",
        failures.len(),
        failures.first()
    );
}

fn in_order(s: &Sandbox, logins: &[Login]) {
    let mut sorted = logins.to_vec();
    sorted.sort_by_key(|l| l.time);
    for l in &sorted {
        record(s, l).expect("record");
    }
}

/// Waits for the workers the records started, then stops any left, by pid.
fn settle(servers: &[&Sandbox]) {
    for s in servers {
        let config = s.config_path().display().to_string();
        wait_until(
            "the action workers to finish",
            Duration::from_secs(30),
            || processes_mentioning(&config).is_empty(),
        );
    }
}

/// Where the accounts ended: each one's level, its level changes in order and its
/// actions by level, from the rows themselves.
#[derive(Debug, PartialEq)]
struct Outcome {
    levels: BTreeMap<String, String>,
    steps: BTreeMap<String, Vec<String>>,
    actions: BTreeMap<String, Vec<String>>,
}

const LEVELS_SQL: &str = "SELECT name, level FROM users ORDER BY name";
const STEPS_SQL: &str = "SELECT u.name, c.from_level || '>' || c.to_level FROM level_changes c
     JOIN users u ON u.id = c.user_id ORDER BY u.name, c.id";
const ACTIONS_SQL: &str = "SELECT u.name, a.level || ':' || a.kind FROM actions a
     JOIN users u ON u.id = a.user_id ORDER BY u.name, a.id";

/// Gathers rows of two columns, (account, value), by account.
fn by_account(rows: Vec<(String, String)>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in rows {
        out.entry(k).or_default().push(v);
    }
    out
}

fn outcome(query: impl Fn(&str) -> Vec<(String, String)>) -> Outcome {
    Outcome {
        levels: query(LEVELS_SQL).into_iter().collect(),
        steps: by_account(query(STEPS_SQL)),
        actions: by_account(query(ACTIONS_SQL)),
    }
}

fn pg_rows(pg: &Postgres, db: &str, sql: &str) -> Vec<(String, String)> {
    pg.psql_in(db, sql)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (a, b) = l.split_once('|').expect("two columns");
            (a.to_owned(), b.to_owned())
        })
        .collect()
}

fn sqlite_rows(db: &Path, sql: &str) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(db).expect("open");
    let mut stmt = conn.prepare(sql).expect("prepare");
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query");
    rows.collect::<Result<_, _>>().expect("rows")
}

/// What the sequential run must show for the comparison to mean something.
fn assert_escalated(o: &Outcome) {
    let level = |u: &str| o.levels.get(u).map(String::as_str);
    assert_eq!(level("dense@example.com"), Some("lock"), "{o:#?}");
    assert_eq!(level("slow@example.com"), Some("block"), "{o:#?}");
    assert_eq!(level("short@example.com"), Some("block"), "{o:#?}");
    assert_eq!(level("eight@example.com"), Some("notify"), "{o:#?}");
    assert_eq!(level("user1@example.com"), Some("ok"), "{o:#?}");
    assert_eq!(
        o.steps["dense@example.com"],
        ["ok>notify", "notify>block", "block>lock"]
    );
}

#[test]
fn four_servers_times_four_writers_end_where_log_time_order_ends_on_postgresql() {
    let pg = Postgres::start();
    pg.psql("CREATE DATABASE sequential");
    let logins = logins();
    let servers: Vec<Sandbox> = (1..=SERVERS)
        .map(|n| server(&pg.url(), &format!("mx{n}")))
        .collect();
    in_parallel(&servers, &logins);
    let one = server(&pg.url_of("sequential"), "mx1");
    in_order(&one, &logins);
    settle(&servers.iter().chain([&one]).collect::<Vec<_>>());

    assert_eq!(pg.psql("SELECT count(*) FROM events"), "2000");
    assert_eq!(
        pg.psql("SELECT count(*) FROM (SELECT DISTINCT user_id, ts_ms, ip FROM events) e"),
        "2000"
    );
    assert_eq!(
        pg.psql("SELECT string_agg(server || '=' || n, ',' ORDER BY server) FROM (SELECT server, count(*) n FROM events GROUP BY server) s"),
        "mx1=500,mx2=500,mx3=500,mx4=500"
    );
    let sequential = outcome(|sql| pg_rows(&pg, "sequential", sql));
    assert_escalated(&sequential);
    let parallel = outcome(|sql| pg_rows(&pg, support::postgres::DB, sql));
    assert_eq!(parallel, sequential);
}

#[test]
fn parallel_writers_end_where_log_time_order_ends_on_sqlite() {
    let logins = logins();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("shared.db");
    let servers: Vec<Sandbox> = (1..=SERVERS)
        .map(|n| server(&db.display().to_string(), &format!("mx{n}")))
        .collect();
    in_parallel(&servers, &logins);
    let seq_db = dir.path().join("sequential.db");
    let one = server(&seq_db.display().to_string(), "mx1");
    in_order(&one, &logins);
    settle(&servers.iter().chain([&one]).collect::<Vec<_>>());

    let events = sqlite_rows(&db, "SELECT 'n', CAST(count(*) AS TEXT) FROM events");
    assert_eq!(events[0].1, "2000");
    let sequential = outcome(|sql| sqlite_rows(&seq_db, sql));
    assert_escalated(&sequential);
    assert_eq!(outcome(|sql| sqlite_rows(&db, sql)), sequential);
}

/// The smallest case: the 11th network of an hour arrives last, after logins later
/// than it. Judged only at its own time it would see 5 networks; the later moments
/// it belongs to must be judged again, and the account blocks as in log-time order.
#[test]
fn a_late_login_completes_the_windows_of_the_logins_after_it() {
    let s = Sandbox::new("");
    for i in (0..11).filter(|i| *i != 4) {
        s.record(
            "smtp",
            "late@example.com",
            &botnet_ip(i),
            T0 + 60 * i as i64,
        );
    }
    let steps = |s: &Sandbox| -> Vec<(String, String)> {
        sqlite_rows(&s.db(), &STEPS_SQL.replace("u.name,", "u.name || c.ts_ms,"))
    };
    assert_eq!(steps(&s).len(), 1, "10 networks: notify only");
    s.record("smtp", "late@example.com", &botnet_ip(4), T0 + 240);
    let got: Vec<String> = steps(&s).into_iter().map(|(_, v)| v).collect();
    assert_eq!(got, ["ok>notify", "notify>block"]);
    // Decided at the last login's moment, the first that held 11 networks when judged.
    let at = sqlite_rows(
        &s.db(),
        "SELECT 'b', CAST(max(ts_ms) AS TEXT) FROM level_changes",
    )[0]
    .1
    .clone();
    assert_eq!(at, ((T0 + 600) * 1000).to_string());
}
