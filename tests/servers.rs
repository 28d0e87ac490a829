//! The server that saw each login and queued each action (`server_name`), stored and
//! shown by `status` the same on SQLite and on the shared PostgreSQL store.

use crate::support;

use serde_json::Value;
use support::postgres::Postgres;
use support::{Sandbox, T0};

const ALICE: &str = "alice@example.com";

/// A config for server `server` on the store `database`, queueing only the admin
/// mail, handed to /bin/true: an action row without a mail server.
fn server(database: &str, server: &str) -> Sandbox {
    Sandbox::server(
        database,
        server,
        "[actions]\nnotify = [\"mail\"]\nblock = []\nlock = []\n\
         [mail]\ntransport = \"sendmail\"\nsendmail = \"/bin/true\"\n",
    )
}

/// Six networks, alternately through mx1 and mx2; returns what `status` shows.
fn shown(mx1: &Sandbox, mx2: &Sandbox) -> (Value, String) {
    for i in 0..6 {
        let via = if i % 2 == 0 { mx1 } else { mx2 };
        via.record("smtp", ALICE, &format!("198.51.{}.7", 100 + i), T0 + i);
    }
    let json = mx1.status_user(ALICE, T0 + 100);
    let text = mx2.ok(&["status", &format!("--at={}", T0 + 100), ALICE]);
    (json, text)
}

fn line<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines()
        .find(|l| l.trim_start().starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?} in:\n{text}"))
}

fn check(json: &Value, text: &str) {
    let nets = json["networks"].as_array().expect("networks");
    assert_eq!(nets.len(), 6, "{json:#}");
    for n in nets {
        let third: u32 = n["network"].as_str().expect("network")[7..10]
            .parse()
            .expect("third octet");
        let want = if third.is_multiple_of(2) {
            "mx1"
        } else {
            "mx2"
        };
        assert_eq!(n["servers"], serde_json::json!([want]), "{n:#}");
    }
    // The sixth network (through mx2) raised the account: mx2 queued the mail.
    let actions = json["actions"].as_array().expect("actions");
    assert_eq!(actions.len(), 1, "{json:#}");
    assert_eq!(actions[0]["server"], "mx2", "{json:#}");
    assert!(line(text, "NETWORK").contains("SERVERS"), "{text}");
    assert!(line(text, "198.51.104.7/32").contains(" mx1 "), "{text}");
    assert!(line(text, "198.51.105.7/32").contains(" mx2 "), "{text}");
    assert!(line(text, "#1 mail").contains(" on mx2: "), "{text}");
}

#[test]
fn status_names_the_server_of_each_login_and_action_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("shared.db").display().to_string();
    let (mx1, mx2) = (server(&db, "mx1"), server(&db, "mx2"));
    let (json, text) = shown(&mx1, &mx2);
    check(&json, &text);
}

#[test]
fn status_names_the_server_of_each_login_and_action_on_postgresql() {
    let pg = Postgres::start();
    let (mx1, mx2) = (server(&pg.url(), "mx1"), server(&pg.url(), "mx2"));
    let (json, text) = shown(&mx1, &mx2);
    check(&json, &text);
}

#[test]
fn logins_stored_before_servers_were_show_none() {
    let s = Sandbox::new("");
    s.record("smtp", ALICE, "198.51.100.7", T0);
    // As a database from before migration 8 holds them.
    let conn = rusqlite::Connection::open(s.db()).expect("open");
    conn.execute("UPDATE events SET server = NULL", [])
        .expect("update");
    drop(conn);
    let json = s.status_user(ALICE, T0 + 100);
    assert_eq!(json["networks"][0]["servers"], serde_json::json!([]));
    let text = s.ok(&["status", &format!("--at={}", T0 + 100), ALICE]);
    assert!(!text.contains("SERVERS"), "{text}");
}
