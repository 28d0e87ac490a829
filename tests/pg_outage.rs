//! The shared PostgreSQL store down: `record` keeps logins in this
//! server's spool and returns at once; the next `record` or `run-actions` with the
//! store back forwards them once, in log-time order. `check`, `doctor` and `metrics`
//! say the store is unreachable and how many logins wait.

use crate::support;

use std::process::Output;

use support::postgres::{Postgres, DB};
use support::{described as out, Sandbox, NO_ACTIONS, T0};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";

fn on_postgres(pg: &Postgres, server: &str) -> Sandbox {
    pg.server(server, NO_ACTIONS)
}

/// Login `i` of the run: alice from network i (`support::bot`), bob from network i % 3.
fn login(s: &Sandbox, i: i64) -> Output {
    let user = if i % 4 == 3 { BOB } else { ALICE };
    s.run(&[
        "record",
        "--source=smtp",
        "--jail=t",
        &format!("--user={user}"),
        &format!("--ip={}", support::bot(i % 17)),
        &format!("--time={}", T0 + i),
    ])
}

/// Records logins `range`, each stored.
fn logins(s: &Sandbox, range: std::ops::Range<i64>) {
    for i in range {
        support::assert_success(format_args!("login {i}"), &login(s, i));
    }
}

fn levels(s: &Sandbox) -> Vec<(String, Vec<String>)> {
    [ALICE, BOB]
        .iter()
        .map(|u| {
            let d = s.status_user(u, T0 + 100);
            let steps = d["history"]
                .as_array()
                .expect("history")
                .iter()
                .map(|h| format!("{}>{}@{}", h["from"], h["to"], h["time"]).replace('"', ""))
                .collect();
            (u.to_string(), steps)
        })
        .collect()
}

#[test]
fn an_outage_loses_no_login_and_changes_no_level() {
    // The same 30 logins on a store that never went down.
    let steady_pg = Postgres::start();
    let steady = on_postgres(&steady_pg, "mx1");
    logins(&steady, 0..30);

    let mut pg = Postgres::start();
    // The first record after the outage forwards all ten waiting logins: room for that
    // on a loaded machine (the per-call bound itself is nothing_lost's to show).
    let s = pg.server("mx1", &format!("record_wait = \"30s\"\n{NO_ACTIONS}"));
    logins(&s, 0..10);
    pg.stop();
    for i in 10..20 {
        let o = login(&s, i);
        // Kept, exit 0 (so Fail2ban does not retry), and said why on stderr.
        assert_eq!(o.status.code(), Some(0), "{}", out(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("is unreachable"), "{err}");
        assert!(err.contains("postgresql.spool"), "{err}");
    }
    assert_eq!(s.spooled_shared(), 10);

    // What monitoring says while it is down.
    let check = s.run(&["check"]);
    let text = out(&check);
    assert_eq!(check.status.code(), Some(2), "{text}");
    assert!(
        text.contains("F2B-MAILGUARD CRITICAL - shared database postgresql://postgres@/mailguard"),
        "{text}"
    );
    assert!(text.contains("is unreachable"), "{text}");
    assert!(text.contains("10 login(s) spooled"), "{text}");
    assert!(text.contains("spooled=10"), "{text}");

    let metrics = s.run(&["metrics"]);
    let text = out(&metrics);
    assert!(text.contains("f2b_mailguard_store_up 0\n"), "{text}");
    assert!(text.contains("f2b_mailguard_spooled_logins 10\n"), "{text}");
    assert!(text.contains("is unreachable"), "{text}");

    let doctor = s.run(&["doctor"]);
    let text = out(&doctor);
    assert!(
        text.lines().any(|l| l.starts_with("fail ")
            && l.contains("shared database postgresql://postgres@/mailguard")
            && l.contains("is unreachable")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("warn ") && l.contains("10 login(s) spooled")),
        "{text}"
    );

    pg.start_server();
    // The first record after the outage forwards the spool first, then its own login.
    for i in 20..25 {
        let o = login(&s, i);
        assert!(o.status.success(), "{}", out(&o));
        assert!(o.stderr.is_empty(), "{}", out(&o));
    }
    assert_eq!(s.spooled_shared(), 0);
    // A login left in the spool (as if the store fell again) is forwarded by the
    // worker's timer too, and a retry already stored is not stored twice.
    pg.stop();
    logins(&s, 25..30);
    assert!(login(&s, 24).status.success());
    assert_eq!(s.spooled_shared(), 6);
    pg.start_server();
    let ran = s.ok(&["run-actions"]);
    assert!(ran.contains("spool: 6 login(s) stored"), "{ran}");
    assert_eq!(s.spooled_shared(), 0);

    assert_eq!(pg.psql("SELECT count(*) FROM events"), "30");
    assert_eq!(
        pg.psql("SELECT count(*) FROM (SELECT DISTINCT user_id, ts_ms, ip FROM events) e"),
        "30"
    );
    assert_eq!(levels(&s), levels(&steady));
    assert!(
        levels(&s)[0].1.len() >= 2,
        "the run escalates: {:?}",
        levels(&s)
    );
    let check = s.run(&["check"]);
    assert!(out(&check).contains("spooled=0"), "{}", out(&check));
    let metrics = s.ok(&["metrics"]);
    assert!(metrics.contains("f2b_mailguard_store_up 1\n"), "{metrics}");
    assert!(
        metrics.contains("f2b_mailguard_spooled_logins 0\n"),
        "{metrics}"
    );
}

#[test]
fn metrics_give_the_shared_databases_size() {
    let pg = Postgres::start();
    let s = on_postgres(&pg, "mx1");
    logins(&s, 0..5);
    let metrics = s.ok(&["metrics"]);
    let bytes: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("f2b_mailguard_database_bytes "))
        .expect("database_bytes")
        .parse()
        .expect("a number");
    let size: i64 = pg
        .psql("SELECT pg_database_size(current_database())")
        .parse()
        .expect("size");
    // The same figure, give or take what PostgreSQL's own bookkeeping wrote between.
    assert!(
        bytes > 0 && (bytes - size).abs() < 1 << 20,
        "{bytes} vs {size}"
    );
}

#[test]
fn record_returns_within_the_connect_timeout_when_the_server_does_not_answer() {
    // A listening socket that never accepts: the connection hangs until the timeout.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let s = Sandbox::server(
        &format!("postgresql://mg@127.0.0.1:{port}/mg"),
        "mx1",
        "connect_timeout = \"1s\"\n[actions]\nnotify = []\nblock = []\nlock = []\n",
    );
    let o = record_within(&s, "a@example.com", "198.51.100.7", T0)
        .expect("record hangs on a server that never answers");
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert_eq!(s.spooled_shared(), 1);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is unreachable"), "{err}");
    drop(listener);
}

#[test]
fn a_least_privilege_role_with_its_password_in_pgpassfile_stores_logins() {
    let pg = Postgres::start();
    // docs/several-servers.md's set-up, as written: a role that owns one schema and
    // may only connect. The harness made the database and psql runs in it.
    let page = std::fs::read_to_string(format!(
        "{}/docs/several-servers.md",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("docs/several-servers.md");
    let recipe = page
        .split("```sql\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("an sql block in docs/several-servers.md");
    let mut sql = String::new();
    for line in recipe.lines() {
        if line == "CREATE DATABASE mailguard;" || line == "\\c mailguard" {
            continue;
        }
        sql.push_str(&line.replace("'a long random password'", "'s3cret:x'"));
        sql.push('\n');
    }
    assert!(
        sql.contains("'s3cret:x'") && sql.lines().count() == 5,
        "{recipe}"
    );
    pg.psql(&sql);
    let hba = pg.psql("SHOW hba_file");
    std::fs::write(
        &hba,
        "local all mailguard scram-sha-256\nlocal all all trust\n",
    )
    .expect("hba");
    assert_eq!(pg.psql("SELECT pg_reload_conf()"), "t");
    let mut s = Sandbox::server(&pg.url_as("mailguard", DB), "mx1", NO_ACTIONS);
    let pgpass = s.path().join("pgpass");
    s.env.push(("PGPASSFILE".into(), pgpass.clone()));

    // No password anywhere: refused, kept.
    assert!(login(&s, 0).status.success());
    assert_eq!(s.spooled_shared(), 1);
    // Readable by others: not used, as libpq would not.
    std::fs::write(&pgpass, "localhost:5432:mailguard:mailguard:s3cret\\:x\n").expect("pgpass");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let o = login(&s, 1);
    assert!(out(&o).contains("is readable by others"), "{}", out(&o));
    assert_eq!(s.spooled_shared(), 2);
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let o = login(&s, 2);
    assert!(o.stderr.is_empty(), "{}", out(&o));
    assert_eq!(s.spooled_shared(), 0);
    assert_eq!(pg.psql("SELECT count(*) FROM mailguard.events"), "3");
    assert_eq!(
        pg.psql(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'mailguard' AND tableowner <> 'mailguard'"
        ),
        "0"
    );
    assert_eq!(
        pg.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"),
        "0"
    );
}

/// `record` of one login, stopped by its pid if it has not returned within a minute:
/// a liveness bound, not a speed figure (unbounded, it would never return).
fn record_within(s: &Sandbox, user: &str, ip: &str, time: i64) -> Result<Output, Output> {
    let mut child = s
        .cmd()
        .args(["record", "--source=smtp", "--jail=t"])
        .args([
            format!("--user={user}"),
            format!("--ip={ip}"),
            format!("--time={time}"),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("record");
    let returned = support::try_wait_until(std::time::Duration::from_secs(60), || {
        child.try_wait().expect("wait").is_some()
    });
    if !returned {
        support::mailstack::kill(child.id());
    }
    let o = child.wait_with_output().expect("record");
    if returned {
        Ok(o)
    } else {
        Err(o)
    }
}

/// The advisory lock key `record` takes for `user` (src/store/postgres/write.rs).
fn account_key(user: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("f2b-mailguard account {user}"));
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Sets `connect_timeout`, stores a first login of alice, then has another session
/// take alice's lock and keep it until the returned session ends.
fn alice_held(pg: &Postgres, s: &Sandbox, connect_timeout: &str) -> support::postgres::Session {
    let config = std::fs::read_to_string(s.config_path()).expect("config");
    std::fs::write(
        s.config_path(),
        format!("connect_timeout = {connect_timeout:?}\n{config}"),
    )
    .expect("cfg");
    assert!(login(s, 0).status.success());
    let held = pg.hold(&format!("SELECT pg_advisory_lock({});", account_key(ALICE)));
    support::wait_until(
        "psql to hold the lock",
        std::time::Duration::from_secs(30),
        || pg.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted") == "1",
    );
    held
}

#[test]
fn record_blocked_mid_transaction_gives_up_and_keeps_the_login() {
    let pg = Postgres::start();
    let s = on_postgres(&pg, "mx1");
    // Another session holds alice's lock, as a stuck server or admin could.
    let held = alice_held(&pg, &s, "1s");
    let o = record_within(&s, ALICE, "198.51.100.99", T0 + 1)
        .unwrap_or_else(|o| panic!("record waits for the lock: {}", out(&o)));
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(
        out(&o).contains("canceling statement due to"),
        "{}",
        out(&o)
    );
    assert_eq!(s.spooled_shared(), 1);
    let stored = "SELECT count(*) FROM events WHERE ip = '198.51.100.99'";
    assert_eq!(pg.psql(stored), "0");
    held.end();
    // The next record forwards it, once; a retry of it is recognised.
    assert!(login(&s, 2).status.success());
    assert_eq!(s.spooled_shared(), 0);
    assert_eq!(pg.psql(stored), "1");
    let again = s.run(&[
        "record",
        "--source=smtp",
        "--jail=t",
        &format!("--user={ALICE}"),
        "--ip=198.51.100.99",
        &format!("--time={}", T0 + 1),
    ]);
    assert!(
        again.status.success() && again.stderr.is_empty(),
        "{}",
        out(&again)
    );
    assert_eq!(pg.psql(stored), "1");
}

#[test]
fn a_login_stuck_on_its_accounts_lock_holds_up_no_other_account() {
    let pg = Postgres::start();
    let s = on_postgres(&pg, "mx1");
    // Any role that may connect can take an account's lock and keep it.
    let held = alice_held(&pg, &s, "5s");
    let o = record_within(&s, ALICE, "198.51.100.99", T0 + 1)
        .unwrap_or_else(|o| panic!("record waits for the lock: {}", out(&o)));
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert_eq!(s.spooled_shared(), 1);
    // Every other account's logins are stored by their own call, which does not wait
    // for the stuck one (a liveness bound: waiting for it takes connect_timeout).
    let others = ["bob", "carol", "dave", "erin", "frank"];
    for (i, name) in others.iter().enumerate() {
        let start = std::time::Instant::now();
        let o = record_within(
            &s,
            &format!("{name}@example.com"),
            &format!("203.0.113.{}", i + 1),
            T0 + 2 + i as i64,
        )
        .unwrap_or_else(|o| panic!("{}", out(&o)));
        let took = start.elapsed();
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "{name}: {}",
            out(&o)
        );
        assert!(took < std::time::Duration::from_secs(5), "{name}: {took:?}");
    }
    assert_eq!(
        pg.psql("SELECT count(*) FROM events WHERE ip::text LIKE '203.0.113.%'"),
        "5"
    );
    // Alice's next login waits behind her first, in order, without a second wait.
    let start = std::time::Instant::now();
    let o = record_within(&s, ALICE, "198.51.100.98", T0 + 20)
        .unwrap_or_else(|o| panic!("{}", out(&o)));
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(s.spooled_shared(), 2);
    let alices = "SELECT count(*) FROM events WHERE ip IN ('198.51.100.99', '198.51.100.98')";
    assert_eq!(pg.psql(alices), "0");
    held.end();
    // The next login, of any account, stores both, once.
    let o = login(&s, 21);
    assert!(o.status.success() && o.stderr.is_empty(), "{}", out(&o));
    assert_eq!(s.spooled_shared(), 0);
    assert_eq!(pg.psql(alices), "2");
    let again =
        record_within(&s, ALICE, "198.51.100.99", T0 + 1).unwrap_or_else(|o| panic!("{}", out(&o)));
    assert!(
        again.status.success() && again.stderr.is_empty(),
        "{}",
        out(&again)
    );
    assert_eq!(pg.psql(alices), "2");
    assert_eq!(
        pg.psql("SELECT count(*) FROM (SELECT DISTINCT user_id, ts_ms, ip FROM events) e"),
        pg.psql("SELECT count(*) FROM events")
    );
}
