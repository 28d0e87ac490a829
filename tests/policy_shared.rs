//! The policy service on a shared PostgreSQL store: a level another server sets
//! reaches this server's answers at once (LISTEN/NOTIFY), not only at the refresh.

use crate::support;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::postgres::Postgres;
use support::smtp_sink::free_port;
use support::{now, wait_until};

const ALICE: &str = "alice@example.com";
const KEY: &str = "shared-test-key";

/// One auth policy request, as Dovecot sends it; the JSON answer.
fn ask(port: u16, command: &str, body: &str) -> serde_json::Value {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST /?command={command} HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let json = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
}

const QUIET: &str = "mode = \"enforce\"\n[actions]\nnotify = []\nblock = []\nlock = []\n";

/// Server `name` on `pg`, its policy service started (a Dovecot listener only, and a
/// refresh far longer than a test): the sandbox, the port, the process, its log.
fn serving(pg: &Postgres, name: &str) -> (support::Sandbox, u16, Child, PathBuf) {
    let port = free_port();
    let mx = pg.server(
        name,
        &format!(
            "{QUIET}[policy]\nenabled = true\ndovecot_listen = \"127.0.0.1:{port}\"\ndovecot_api_key = \"{KEY}\"\npostfix_listen = \"\"\nrefresh = \"10m\"\n"
        ),
    );
    let log = mx.path().join("serve.log");
    let serve = mx
        .cmd()
        .arg("serve")
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_until("the service", Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (mx, port, serve, log)
}

#[test]
fn a_block_on_another_server_reaches_the_answers_at_once() {
    let pg = Postgres::start();
    let mx1 = pg.server("mx1", QUIET);
    // Only the notification can be in time.
    let (_mx2, port, mut serve, log) = serving(&pg, "mx2");
    let login = format!(
        r#"{{"login":"{ALICE}","remote":"203.0.113.9","protocol":"imap","session_id":"","pwhash":"","tls":false}}"#
    );
    assert_eq!(ask(port, "allow", &login)["status"], 0);
    // Let the service's LISTEN connection settle before the change it must hear.
    std::thread::sleep(Duration::from_secs(1));
    mx1.burst(ALICE, 11, now() - 20);
    let began = Instant::now();
    let mut last = serde_json::Value::Null;
    let heard = support::try_wait_until(Duration::from_secs(30), || {
        last = ask(port, "allow", &login);
        last["status"] == -1
    });
    println!(
        "another server's block answered after {:?}",
        began.elapsed()
    );
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(
        heard,
        "still {last}\nserve:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// On PostgreSQL an answer whose login leaves the account at ok goes before the commit
/// (docs/policy-service.md#its-database-connections): every answer after the password
/// check is still the level stored for it, and the login that crosses to block is
/// itself refused.
#[test]
fn each_answer_after_auth_is_the_level_its_login_stored() {
    let pg = Postgres::start();
    let (_mx, port, mut serve, log) = serving(&pg, "mx");
    let stored = || {
        pg.psql(&format!(
            "SELECT level || ' ' || enforced FROM users WHERE name = '{ALICE}'"
        ))
        .trim()
        .to_owned()
    };
    let mut seen = Vec::new();
    for i in 0..14 {
        let login = format!(
            r#"{{"login":"{ALICE}","remote":"{}","protocol":"smtp","session_id":"s{i}","pwhash":"","tls":false}}"#,
            support::bot(i)
        );
        // SMTP AUTH through Dovecot: before the password check, then after it (recorded,
        // answered on its judgement).
        ask(port, "allow", &login);
        let status = ask(port, "allow", &login)["status"].clone();
        seen.push((status, stored()));
    }
    let _ = serve.kill();
    let _ = serve.wait();
    let serve_log = std::fs::read_to_string(&log).unwrap_or_default();
    println!("(status, stored level) after each login: {seen:?}");
    for (status, level) in &seen {
        let refused = level == "block true" || level == "lock true";
        let expected = if refused { -1 } else { 0 };
        assert_eq!(status, expected, "{seen:?}\nserve:\n{serve_log}");
    }
    // The crossing login itself was refused: its answer waited for its commit.
    assert!(seen.iter().any(|(s, _)| s == -1), "never blocked: {seen:?}");
}
