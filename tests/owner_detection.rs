//! Detection with network owners: a provider's pool spread over many /24s
//! of one AS is one party and no alarm, a botnet of many owners is blocked and its
//! reason names them, and IMAP logins from many owners escalate. `record` and
//! `ingest` judge alike with the same database.

use crate::support;

use std::path::Path;

use serde_json::json;
use support::mmdb;
use support::{Sandbox, T0};

/// 198.18.N.0/24 belongs to AS(64500 + N) for N < 12 ("Net N"); 198.51.100.0/22 (four
/// /24s) to one mail provider, AS64520.
fn owners_db(path: &Path) {
    let mut networks: Vec<serde_json::Value> = (0..12)
        .map(|n| {
            json!([format!("198.18.{n}.0/24"),
                   {"autonomous_system_number": 64500 + n,
                    "autonomous_system_organization": format!("Net {n}")}])
        })
        .collect();
    networks.push(json!(["198.51.100.0/22",
        {"autonomous_system_number": 64520, "autonomous_system_organization": "Pool Provider"}]));
    mmdb::asn_networks(path, json!(networks));
}

/// A provider sending "as" the user from its pool: 11 addresses over four /24s.
const POOL: &str = "pool@example.com";
fn pool_addr(i: u8) -> String {
    format!("198.51.{}.{}", 100 + i % 4, 10 + i)
}
/// A botnet: 12 addresses of 12 owners.
const BOTNET: &str = "victim@example.com";
fn botnet_addr(i: u8) -> String {
    format!("198.18.{i}.7")
}

fn record_all(s: &Sandbox) -> Vec<String> {
    let mut calls = Vec::new();
    for i in 0..11u8 {
        calls.push((POOL, pool_addr(i), T0 + i64::from(i)));
    }
    for i in 0..12u8 {
        calls.push((BOTNET, botnet_addr(i), T0 + 100 + i64::from(i)));
    }
    let mut lines = Vec::new();
    for (user, ip, t) in calls {
        s.record("smtp", user, &ip, t);
        lines.push(json!({"time": t, "user": user, "ip": ip, "source": "smtp"}).to_string());
    }
    lines
}

#[test]
fn owners_make_a_providers_pool_no_alarm_and_name_a_botnets_owners() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("asn.mmdb");
    owners_db(&db);

    // Without owners, the pool's four /24s look spread enough to block, but on the
    // account's first day its one /16 holds it at notify.
    let plain = Sandbox::with_asn(None);
    record_all(&plain);
    let pool = plain.status_user(POOL, T0 + 200);
    assert_eq!(pool["level"], "notify", "{pool:#}");

    let s = Sandbox::with_asn(Some(&db));
    let mut lines = record_all(&s);
    let pool = s.status_user(POOL, T0 + 200);
    assert_eq!(pool["level"], "ok", "{pool:#}");
    assert_eq!(
        pool["history"].as_array().map(Vec::len),
        Some(0),
        "{pool:#}"
    );
    let victim = s.status_user(BOTNET, T0 + 200);
    assert_eq!(victim["level"], "block", "{victim:#}");
    let block = victim["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["to"] == "block")
        .expect("block")["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    // Seven owners in a day are more than a traveller's: blocked at the seventh.
    assert!(
        block.starts_with("spread: 7 owners/1d > 6; smtp: 7 networks of 7 owners/1h > 5"),
        "{block}"
    );
    assert!(
        block.contains("; owners: AS64500 Net 0, AS64501 Net 1, AS64502 Net 2, ... (7)"),
        "{block}"
    );
    // A credential checker over IMAP: 12 owners in minutes block the account, though
    // IMAP's own network thresholds are off; without a database nothing would.
    const CHECKED: &str = "checked@example.com";
    for i in 0..12u8 {
        let (ip, t) = (botnet_addr(i), T0 + 300 + i64::from(i));
        s.record("imap", CHECKED, &ip, t);
        plain.record("imap", CHECKED, &ip, t);
        lines.push(json!({"time": t, "user": CHECKED, "ip": ip, "source": "imap"}).to_string());
    }
    let checked = s.status_user(CHECKED, T0 + 400);
    assert_eq!(checked["level"], "block", "{checked:#}");
    assert!(
        checked["history"][1]["reason"]
            .as_str()
            .unwrap()
            .starts_with("imap: 11 owners/1h > 10"),
        "{checked:#}"
    );
    assert_eq!(plain.status_user(CHECKED, T0 + 400)["level"], "ok");

    // The backtest with the same database judges alike, word for word.
    s.assert_backtest_agrees(&lines);
}

#[test]
fn an_offices_newsletter_from_one_owner_is_no_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("asn.mmdb");
    owners_db(&db);
    const NEWS: &str = "news@example.com";
    let send = |s: &Sandbox| {
        s.record("smtp", NEWS, "198.51.100.50", T0);
        // 1,500 messages in the hour, 4 % bouncing: a campaign, not spam.
        for (source, count) in [("rate", 1500), ("bounces", 60)] {
            s.record_count(source, NEWS, "198.51.100.50", T0 + 60, count);
        }
        s.status_user(NEWS, T0 + 120)
    };
    // Without owners its one wider network (/24) is one party too.
    let without = send(&Sandbox::with_asn(None));
    assert_eq!(without["level"], "ok", "{without:#}");
    let with = send(&Sandbox::with_asn(Some(&db)));
    assert_eq!(with["level"], "ok", "{with:#}");
}
