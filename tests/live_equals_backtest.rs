//! The promise behind every figure in BENCHMARKS.md: `ingest` (the backtest) and
//! `record` (the live path, one process per Fail2ban call) given the same events end
//! with the same level changes, to the millisecond and word for word.
//!
//! The events are the labelled quality corpus (examples/scenario: every class, two
//! days, same-second bursts) through the shipped filters, as the jails hand them over:
//! a login once per (user, address) per bantime, every accepted message and every
//! bounced recipient as its own call, and some calls retried as Fail2ban retries a
//! failed action.

use crate::gen;
use crate::support;

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use support::Sandbox;

const PARAMS: gen::Params = gen::Params {
    seed: 3,
    days: 2,
    users: 20,
    without: &[],
};

/// The login jails' bantime: a (user, address) pair is reported again only after it.
const LOGIN_BANTIME: f64 = 900.0;

/// One `record` call.
#[derive(Clone)]
struct Call {
    time: String,
    user: String,
    ip: String,
    source: &'static str,
    fid: String,
}

impl Call {
    /// The call as Fail2ban's action makes it: one `record` process.
    fn record(&self, s: &Sandbox) {
        let out = s.run(&[
            "record",
            &format!("--source={}", self.source),
            "--jail=test",
            &format!("--user={}", self.user),
            &format!("--ip={}", self.ip),
            &format!("--time={}", self.time),
            &format!("--fid={}", self.fid),
            "--count=1",
        ]);
        support::assert_success(format_args!("record {}", self.json()), &out);
    }

    fn json(&self) -> String {
        serde_json::json!({
            "time": self.time, "user": self.user, "ip": self.ip,
            "source": self.source, "count": 1, "fid": self.fid,
        })
        .to_string()
    }
}

/// The corpus's events as the shipped jails would hand them to `record`, in log order;
/// made once for the tests that replay them (the corpus and four `fail2ban-regex`
/// runs over it).
fn calls() -> &'static [Call] {
    static CALLS: OnceLock<Vec<Call>> = OnceLock::new();
    CALLS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let corpus = gen::generate(&PARAMS);
        corpus.write(dir.path()).expect("write corpus");
        as_reported(support::corpus::found(dir.path()))
    })
}

/// The filters' matches as the jails report them: a login once per (user, address,
/// source) per bantime, and each accepted message (rate) and bounce as its own call.
fn as_reported(matched: Vec<support::corpus::Found>) -> Vec<Call> {
    let mut reported: HashMap<(String, String, &str), f64> = HashMap::new();
    let mut calls = Vec::new();
    for (n, f) in matched.into_iter().enumerate() {
        let (t, source, time, user, ip) = (f.t, f.source, f.time, f.user, f.ip);
        let call = |source: &'static str, fid: String| Call {
            time: time.clone(),
            user: user.clone(),
            ip: ip.clone(),
            source,
            fid,
        };
        let message = |kind: &str| format!("{kind}-{n}");
        match source {
            "bounces" => calls.push(call("bounces", message("rcpt"))),
            login => {
                let login: &'static str = match login {
                    "smtp" => "smtp",
                    "imap" => "imap",
                    _ => "pop3",
                };
                let key = (user.clone(), ip.clone(), login);
                if reported.get(&key).is_none_or(|at| t - at >= LOGIN_BANTIME) {
                    reported.insert(key, t);
                    calls.push(call(login, format!("('{user}', '{ip}')")));
                }
                if login == "smtp" {
                    calls.push(call("rate", message("queue")));
                }
            }
        }
        // Fail2ban runs a failed action once more: every 97th call arrives twice.
        if n % 97 == 0 {
            if let Some(last) = calls.last().cloned() {
                calls.push(last);
            }
        }
    }
    calls
}

/// A level change as (user, time ms, from, to, reason).
type Change = (String, i64, String, String, String);

/// Level changes in order, from a database.
fn changes(db: &std::path::Path) -> Vec<Change> {
    let conn = rusqlite::Connection::open(db).expect("open db");
    let mut stmt = conn
        .prepare(
            "SELECT u.name, c.ts_ms, c.from_level, c.to_level, c.reason
             FROM level_changes c JOIN users u ON u.id = c.user_id
             ORDER BY u.name, c.ts_ms, c.id",
        )
        .expect("query");
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .expect("rows");
    rows.collect::<Result<_, _>>().expect("read changes")
}

#[test]
fn record_and_ingest_give_the_same_level_changes_for_the_same_events() {
    // A `record` that waits past record_wait spools its login (exit 0) for a later
    // call: stored later, or never if it was a lane's last. On a loaded machine two
    // lanes of writers can wait that long, and the stored events then differ.
    let s = Sandbox::new("record_wait = \"60s\"");
    let calls = calls();
    assert!(calls.len() > 5_000, "{} calls", calls.len());

    // Live: one `record` process per call, as Fail2ban's action runs it. Accounts are
    // independent, so each account's calls run in order on one of two threads.
    let mut by_user: BTreeMap<&str, Vec<&Call>> = BTreeMap::new();
    for c in calls {
        by_user.entry(&c.user).or_default().push(c);
    }
    let mut lanes: [Vec<&Call>; 2] = [Vec::new(), Vec::new()];
    for (i, user_calls) in by_user.into_values().enumerate() {
        lanes[i % 2].extend(user_calls);
    }
    std::thread::scope(|scope| {
        for lane in &lanes {
            let s = &s;
            scope.spawn(move || {
                for c in lane {
                    c.record(s);
                }
            });
        }
    });

    same_outcome(&s.db());
}

/// Stored events in a SQLite database.
fn events(db: &std::path::Path) -> i64 {
    rusqlite::Connection::open(db)
        .expect("open")
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .expect("count")
}

/// The backtest: all calls as JSON lines through `ingest` into a scratch database;
/// its level changes and stored events, once for the tests that compare with them.
fn backtest() -> &'static (Vec<Change>, i64) {
    static BACKTEST: OnceLock<(Vec<Change>, i64)> = OnceLock::new();
    BACKTEST.get_or_init(|| {
        let s = Sandbox::new("");
        let scratch = s.path().join("scratch.db");
        s.ingest(&scratch, calls().iter().map(|c| c.json() + "\n").collect());
        (changes(&scratch), events(&scratch))
    })
}

/// The same level changes as the backtest, word for word, and the same number of
/// stored events.
fn same_outcome(live_db: &std::path::Path) {
    let (backtest_changes, backtest_events) = backtest();
    same_changes(&changes(live_db), backtest_changes);
    assert_eq!(events(live_db), *backtest_events);
}

fn same_changes(live: &[Change], backtest: &[Change]) {
    assert!(
        live.iter().any(|c| c.3 == "block"),
        "the corpus's compromised accounts reach block: {live:#?}"
    );
    if live != backtest {
        let first = live
            .iter()
            .zip(backtest)
            .position(|(a, b)| a != b)
            .unwrap_or(live.len().min(backtest.len()));
        panic!(
            "live and backtest differ from change {first}:\nlive:     {:#?}\nbacktest: {:#?}",
            &live[first..live.len().min(first + 5)],
            &backtest[first..backtest.len().min(first + 5)]
        );
    }
}

/// Every call as one ticket line into one `stream` process (the Python action's
/// path), which stores them in batches of up to 64, one transaction each.
fn stream(s: &Sandbox, calls: &[Call]) {
    let tickets: String = calls
        .iter()
        .map(|c| {
            serde_json::json!({
                "source": c.source, "jail": "test", "user": c.user, "ip": c.ip,
                "time": c.time, "fid": c.fid, "count": "1",
            })
            .to_string()
                + "\n"
        })
        .collect();
    let mut child = s
        .cmd()
        .args(["stream", "--batch", "64"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("stream");
    let mut stdin = child.stdin.take().expect("stdin");
    let feed = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(tickets.as_bytes())
    });
    let out = child.wait_with_output().expect("stream");
    feed.join().expect("feed").expect("write stdin");
    support::assert_success("stream", &out);
    let mut total = BTreeMap::new();
    let mut batches = 0;
    for line in String::from_utf8(out.stdout).expect("utf-8").lines() {
        let ack: serde_json::Value = serde_json::from_str(line).expect("an ack line");
        batches += 1;
        for k in ["done", "stored", "duplicates", "kept", "refused"] {
            *total.entry(k).or_insert(0) += ack[k].as_u64().expect("a count");
        }
    }
    let n = calls.len() as u64;
    assert_eq!(total["done"], n, "{total:?}");
    assert_eq!(total["stored"] + total["duplicates"], n, "{total:?}");
    assert_eq!(
        (total["kept"], total["refused"]),
        (0, 0),
        "{total:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(batches < calls.len(), "{batches} batches for {n} calls");
}

#[test]
fn stream_and_ingest_give_the_same_level_changes_for_the_same_events() {
    let s = Sandbox::new("");
    stream(&s, calls());
    same_outcome(&s.db());
}

/// The same through a shared PostgreSQL store, whose batches lock their accounts first.
#[test]
fn stream_into_postgresql_and_ingest_give_the_same_level_changes() {
    let pg = support::postgres::Postgres::start();
    // Judgement, not outages (pg_outage's): a statement slower than the default 2 s
    // on a loaded machine would keep its batch in the spool, and the accounts' next
    // logins behind it.
    let s = pg.server(
        "mx1",
        &format!("connect_timeout = \"60s\"\n{}", support::NO_ACTIONS),
    );
    stream(&s, calls());
    let rows = pg.psql(
        "SELECT coalesce(json_agg(json_build_array(u.name, c.ts_ms, c.from_level, c.to_level, c.reason)
                ORDER BY u.name, c.ts_ms, c.id), '[]')
         FROM level_changes c JOIN users u ON u.id = c.user_id",
    );
    let live: Vec<Change> = serde_json::from_str(&rows).expect("changes as JSON");
    let (backtest_changes, backtest_events) = backtest();
    same_changes(&live, backtest_changes);
    let stored: i64 = pg
        .psql("SELECT count(*) FROM events")
        .parse()
        .expect("a count");
    assert_eq!(stored, *backtest_events);
}

/// Refused smtp logins count only for an account blocked in enforce mode, and
/// `record` and `ingest` judge them alike. In enforce mode: mallory, never blocked,
/// gets 25 refused logins from 25 networks (what a port-25 client could make the
/// refused jail report) and stays ok; alice is blocked by 11 networks, and 10 refused
/// ones then take her to lock. In warn mode nothing is ever refused by Postfix, so the
/// same refused logins leave alice at block. Both accounts' refused logins are stored
/// and shown by `status USER`, saying whether they count.
#[test]
fn refused_logins_count_only_for_an_account_blocked_in_enforce_mode_live_and_replayed() {
    let t0 = support::T0;
    // `n` calls of `user` through `source`, one a second from t0 + `first`, the i-th
    // from the address `net(i)`.
    let calls_of =
        |first: i64, n: i64, source: &'static str, user: &str, net: &dyn Fn(i64) -> String| {
            (0..n)
                .map(|i| {
                    let ip = net(i);
                    Call {
                        time: format!("{}.0", t0 + first + i),
                        user: user.into(),
                        fid: format!("('{user}', '{ip}')"),
                        ip,
                        source,
                    }
                })
                .collect::<Vec<_>>()
        };
    let calls = [
        calls_of(0, 25, "smtp-refused", "mallory@example.com", &|i| {
            format!("203.0.{}.{}", 100 + i % 5, 10 + i)
        }),
        calls_of(100, 11, "smtp", "alice@example.com", &support::bot),
        calls_of(200, 10, "smtp-refused", "alice@example.com", &|i| {
            format!("192.{}.0.9", 100 + i)
        }),
    ]
    .concat();
    let at = t0 + 300;
    for (mode, alice) in [("enforce", "lock"), ("warn", "block")] {
        let s = Sandbox::new(&format!("mode = \"{mode}\""));
        let scratch = s.path().join("scratch.db");
        s.ingest(&scratch, calls.iter().map(|c| c.json() + "\n").collect());
        for c in &calls {
            c.record(&s);
        }
        let live = changes(&s.db());
        assert_eq!(live, changes(&scratch), "{mode}: live and backtest");
        let levels: Vec<(&str, &str)> = live.iter().map(|c| (c.0.as_str(), c.3.as_str())).collect();
        let mut want = vec![
            ("alice@example.com", "notify"),
            ("alice@example.com", "block"),
        ];
        if alice == "lock" {
            want.push(("alice@example.com", "lock"));
        }
        assert_eq!(levels, want, "{mode}: {live:#?}");
        assert_eq!(
            s.status_user("mallory@example.com", at)["level"],
            "ok",
            "{mode}"
        );
        let mallory = s.ok(&["status", &format!("--at={at}"), "--", "mallory@example.com"]);
        assert!(
            mallory.contains("NOT COUNTED: 25 refused login(s) from 25 network(s)"),
            "{mode}: {mallory}"
        );
        let json = s.status_user("alice@example.com", at);
        assert_eq!(json["refused_logins"], 10, "{mode}: {json:#}");
        assert_eq!(
            json["refused_counted"],
            mode == "enforce",
            "{mode}: {json:#}"
        );
    }
}
