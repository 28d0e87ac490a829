//! New to this account: an account with a day of history is judged by the parties
//! (owners, or IPv4 /16s without an ASN database) it had not used. A pool it already
//! uses is no alarm however many addresses it shows; a hosting provider it never used
//! blocks with a dozen addresses, and a steady trickle of mail from a new server
//! blocks within the hour whatever bounces. `record` and `ingest` judge alike, and
//! `status USER` prints every reason whole.

use crate::support;

use std::path::Path;

use serde_json::json;
use support::mmdb;
use support::{Sandbox, T0};

const DAY: i64 = 86_400;

/// 203.0.113.0/24 is the account's home ISP, AS64510; 198.18.N.0/24 for N < 12 are
/// one hosting provider's, AS64511; 198.19.N.0/24 belong to AS(64530 + N).
fn owners_db(path: &Path) {
    let mut networks: Vec<serde_json::Value> = vec![
        json!(["203.0.113.0/24", {"autonomous_system_number": 64510,
                                  "autonomous_system_organization": "Home ISP"}]),
        json!(["198.18.0.0/20", {"autonomous_system_number": 64511,
                                 "autonomous_system_organization": "Example Hosting"}]),
    ];
    for n in 0..16 {
        networks.push(json!([format!("198.19.{n}.0/24"),
            {"autonomous_system_number": 64530 + n,
             "autonomous_system_organization": format!("Proxy {n}")}]));
    }
    mmdb::asn_networks(path, json!(networks));
}

/// A sandbox with `owners_db` as its ASN database (kept in the returned temp dir).
fn with_owners() -> (tempfile::TempDir, Sandbox) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("asn.mmdb");
    owners_db(&db);
    let s = Sandbox::with_asn(Some(&db));
    (dir, s)
}

/// Records `count` of `source` and returns its ingest line.
fn record(s: &Sandbox, source: &str, user: &str, ip: &str, t: i64, count: u32) -> String {
    s.record_count(source, user, ip, t, count);
    json!({"time": t, "user": user, "ip": ip, "source": source, "count": count}).to_string()
}

/// A day and a half of honest use from home: an hourly login, a message now and then.
fn history(s: &Sandbox, user: &str, lines: &mut Vec<String>) {
    for h in 0..36 {
        let t = T0 + h * 3600;
        lines.push(record(s, "smtp", user, "203.0.113.7", t, 1));
        lines.push(record(s, "rate", user, "203.0.113.7", t, 1));
    }
}

/// A drip's `i`th host, in a /16 of its own, logs in at `t` and sends a message:
/// returns its address.
fn drip_host(s: &Sandbox, user: &str, i: i64, t: i64, lines: &mut Vec<String>) -> String {
    let ip = format!("{}.{}.7.9", 20 + i, 30 + i);
    lines.push(record(s, "smtp", user, &ip, t, 1));
    lines.push(record(s, "rate", user, &ip, t + 5, 1));
    ip
}

/// `user` is at block at `at`, and the reason of its rise begins with `prefix`.
fn assert_blocked(s: &Sandbox, user: &str, at: i64, prefix: &str) {
    let st = s.status_user(user, at);
    assert_eq!(st["level"], "block", "{st:#}");
    let block = reason(&st, "block");
    assert!(block.starts_with(prefix), "{block}");
}

fn reason(status: &serde_json::Value, level: &str) -> String {
    status["history"]
        .as_array()
        .and_then(|h| h.iter().find(|c| c["to"] == level))
        .and_then(|c| c["reason"].as_str())
        .unwrap_or_else(|| panic!("no rise to {level}: {status:#}"))
        .to_owned()
}

/// The case: twelve addresses in twelve /24s of one hosting provider the
/// account never used. With the database it stayed ok ("one owner's pool"); now it
/// blocks, and the reason names the new owner.
#[test]
fn a_botnet_inside_one_new_hosting_provider_blocks_with_a_database() {
    let (_owners, s) = with_owners();
    const USER: &str = "victim@example.com";
    let mut lines = Vec::new();
    history(&s, USER, &mut lines);
    let start = T0 + 2 * DAY;
    for i in 0..12 {
        let ip = format!("198.18.{i}.9");
        lines.push(record(&s, "smtp", USER, &ip, start + i * 20, 1));
    }
    let st = s.status_user(USER, start + 300);
    assert_eq!(st["level"], "block", "{st:#}");
    let block = reason(&st, "block");
    assert!(
        block.starts_with("smtp: 11 new networks of 1 owner/1h > 10"),
        "{block}"
    );
    assert!(
        block.contains("new to this account: AS64511 Example Hosting"),
        "{block}"
    );
    s.assert_backtest_agrees(&lines);
}

/// Without a database: a provider's pool over four /16s that the account has used
/// from its first day is no alarm on the third, however many addresses an hour
/// shows, while IMAP logins from twelve /16s it never used are.
#[test]
fn without_a_database_a_known_pool_is_no_alarm_and_imap_theft_is_seen() {
    let s = Sandbox::with_asn(None);
    const POOL: &str = "pool@example.com";
    const THEFT: &str = "theft@example.com";
    let pool = |i: i64| format!("{}.51.{}.{}", 100 + i % 4, i % 7, 10 + i);
    let mut lines = Vec::new();
    for h in 0..48 {
        let t = T0 + h * 3600;
        lines.push(record(&s, "smtp", POOL, &pool(h), t, 1));
    }
    history(&s, THEFT, &mut lines);
    let start = T0 + 2 * DAY;
    for i in 0..12 {
        lines.push(record(&s, "smtp", POOL, &pool(i), start + i * 60, 1));
    }
    let st = s.status_user(POOL, start + 900);
    assert_eq!(st["level"], "ok", "{st:#}");
    for i in 0..12 {
        let ip = format!("{}.18.7.9", 20 + i);
        lines.push(record(&s, "imap", THEFT, &ip, start + i * 30, 1));
    }
    let st = s.status_user(THEFT, start + 900);
    assert_eq!(st["level"], "block", "{st:#}");
    let block = reason(&st, "block");
    assert!(
        block.starts_with("imap: 11 new wider networks/1h > 10"),
        "{block}"
    );
    s.assert_backtest_agrees(&lines);
}

/// A rented server sending a message every 80 s to a clean list (nothing bounces)
/// blocks within a quarter hour, at its eleventh; the account's own newsletter from a whitelisted office
/// network, thousands in the hour, raises nothing.
#[test]
fn a_quiet_sender_from_a_new_server_blocks_and_a_whitelisted_newsletter_does_not() {
    let s = Sandbox::new("[detection]\nwhitelist = [\"192.0.2.0/24\"]\n");
    const USER: &str = "quiet@example.com";
    const NEWS: &str = "news@example.com";
    let mut lines = Vec::new();
    history(&s, USER, &mut lines);
    history(&s, NEWS, &mut lines);
    let start = T0 + 2 * DAY;
    for i in 0..45 {
        let t = start + i * 80;
        lines.push(record(&s, "smtp", USER, "198.18.3.9", t, 1));
        lines.push(record(&s, "rate", USER, "198.18.3.9", t, 1));
    }
    lines.push(record(&s, "smtp", NEWS, "192.0.2.10", start, 1));
    lines.push(record(&s, "rate", NEWS, "192.0.2.10", start + 60, 2500));
    lines.push(record(&s, "bounces", NEWS, "192.0.2.10", start + 60, 80));
    let st = s.status_user(USER, start + 900);
    assert_eq!(st["level"], "block", "{st:#}");
    let block = reason(&st, "block");
    assert!(
        block.starts_with("rate: 11 msgs from new parties/1h > 10"),
        "{block}"
    );
    let news = s.status_user(NEWS, start + 120);
    assert_eq!(news["level"], "ok", "{news:#}");
    s.assert_backtest_agrees(&lines);
}

/// An IMAP credential checker on an account whose phone sends by SMTP: the reason
/// names IMAP's owners, not the phone's; `status USER` prints it whole, wrapped.
#[test]
fn an_imap_reason_names_imaps_owners_and_status_never_cuts_it() {
    let (_owners, s) = with_owners();
    const USER: &str = "checked@example.com";
    let mut lines = Vec::new();
    history(&s, USER, &mut lines);
    let start = T0 + 2 * DAY;
    lines.push(record(&s, "smtp", USER, "203.0.113.7", start, 1));
    for i in 0..12 {
        let ip = format!("198.19.{i}.9");
        lines.push(record(&s, "imap", USER, &ip, start + 10 + i * 10, 1));
    }
    let st = s.status_user(USER, start + 300);
    assert_eq!(st["level"], "block", "{st:#}");
    let block = reason(&st, "block");
    assert!(block.starts_with("imap: 11 new owners/1h > 10"), "{block}");
    assert!(block.contains("owners: AS64530 Proxy 0"), "{block}");
    assert!(!block.contains("Home ISP"), "the phone's owner: {block}");
    let text = s.ok(&["status", &format!("--at={}", start + 300), "--", USER]);
    let words: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains(&block), "{block}\n{text}");
    assert!(!text.contains('~'), "{text}");
    s.assert_backtest_agrees(&lines);
}

/// A role mailbox five households share, on its first day (nothing is new yet): seven
/// owners (homes, phones) join over the morning, then all of them poll IMAP and now
/// and then send. Seven owners in an hour over IMAP, all in use for hours, and seven
/// in the day over SMTP without a burst are everyone's own, no alarm; they raised a
/// notify and a block before.
#[test]
fn a_shared_mailbox_on_its_first_day_is_no_alarm_with_a_database() {
    let (_owners, s) = with_owners();
    const USER: &str = "office@example.com";
    let home = |h: i64| format!("198.19.{h}.20");
    let mut lines = Vec::new();
    for h in 0..7 {
        let t = T0 + h * 1800;
        lines.push(record(&s, "imap", USER, &home(h), t, 1));
        lines.push(record(&s, "smtp", USER, &home(h), t + 60, 1));
    }
    let polls = T0 + 4 * 3600;
    for round in 0..6 {
        for h in 0..7 {
            let t = polls + round * 1200 + h * 30;
            lines.push(record(&s, "imap", USER, &home(h), t, 1));
        }
    }
    let st = s.status_user(USER, polls + 2 * 3600);
    assert_eq!(st["level"], "ok", "{st:#}");
    s.assert_backtest_agrees(&lines);
}

/// Without a database, an account with a week of history whose own ISP gives it an
/// address in another /24 of the same /16 at every login: seven /24s in a day are
/// more than three times its usual one, but none is of a party new to it, so no
/// baseline notify (there was one before).
#[test]
fn without_a_database_a_known_isps_addresses_are_no_baseline_alarm() {
    let s = Sandbox::with_asn(None);
    const USER: &str = "home@example.com";
    let mut lines = Vec::new();
    for day in 0..8 {
        for k in 0..2 {
            let t = T0 + day * DAY + 9 * 3600 + k * 4 * 3600;
            lines.push(record(&s, "smtp", USER, &format!("198.51.{day}.7"), t, 1));
        }
    }
    let day = T0 + 8 * DAY;
    for i in 0..7 {
        let t = day + 8 * 3600 + i * 2 * 3600;
        lines.push(record(
            &s,
            "smtp",
            USER,
            &format!("198.51.{}.9", 20 + i),
            t,
            1,
        ));
    }
    let st = s.status_user(USER, day + 22 * 3600);
    assert_eq!(st["level"], "ok", "{st:#}");
    s.assert_backtest_agrees(&lines);
}

/// A drip through a proxy list: a new owner every twelve minutes, a message from
/// each. Its third new owner in the hour with mail from them blocks (it waited for
/// the seventh new owner of the day before); a traveller's new owners of the day
/// (hotel, airport, venues), each sending a couple of messages, do not.
#[test]
fn mail_from_new_owners_in_the_hour_blocks() {
    let (_owners, s) = with_owners();
    const DRIP: &str = "drip@example.com";
    const TRAVEL: &str = "travel@example.com";
    let mut lines = Vec::new();
    history(&s, DRIP, &mut lines);
    history(&s, TRAVEL, &mut lines);
    let start = T0 + 2 * DAY;
    for i in 0..3 {
        if i == 2 {
            let st = s.status_user(DRIP, start + 720);
            assert_eq!(st["level"], "ok", "two new owners: {st:#}");
        }
        let t = start + i * 720;
        let ip = format!("198.19.{i}.9");
        lines.push(record(&s, "smtp", DRIP, &ip, t, 1));
        lines.push(record(&s, "rate", DRIP, &ip, t, 1));
    }
    assert_blocked(
        &s,
        DRIP,
        start + 2 * 720,
        "smtp: 3 new owners/1h > 2 (block: corroborated by rate)",
    );
    for i in 0..5 {
        let ip = format!("198.19.{}.9", 8 + i);
        for k in 0..2 {
            let t = start + i * 2 * 3600 + k * 60;
            lines.push(record(&s, "smtp", TRAVEL, &ip, t, 1));
            lines.push(record(&s, "rate", TRAVEL, &ip, t, 1));
        }
    }
    let travel = s.status_user(TRAVEL, start + 9 * 3600);
    assert_eq!(travel["level"], "ok", "{travel:#}");
    s.assert_backtest_agrees(&lines);
}

/// Without a database, a slow drip that starts on the account's first day: a new
/// /16 every quarter hour, a message from each. Nothing is new to the account before
/// it has a day of history, and by then the drip's parties are its own, so it stayed
/// at notify (the spread's /24s) all day; its 25th /16 within the day blocks it. A
/// day of travel, a provider's pool or a role mailbox's households and phones span
/// far fewer.
#[test]
fn without_a_database_a_drip_on_the_first_day_blocks_on_its_wider_networks() {
    let s = Sandbox::with_asn(None);
    const USER: &str = "drip@example.com";
    let mut lines = Vec::new();
    let at = |i: i64| T0 + i * 900;
    for i in 0..25 {
        if i == 24 {
            let st = s.status_user(USER, at(23));
            assert_eq!(st["level"], "notify", "24 wider networks: {st:#}");
        }
        drip_host(&s, USER, i, at(i), &mut lines);
    }
    let st = s.status_user(USER, at(24) + 5);
    assert_eq!(st["level"], "block", "{st:#}");
    let block = reason(&st, "block");
    assert!(
        block.starts_with("spread: 25 wider networks/1d > 24"),
        "{block}"
    );
    // A role mailbox on its first day: six households and phones in one busy hour
    // (a burst at notify), sixteen /16s by the evening, all its own.
    const ROLE: &str = "role@example.com";
    for i in 0..16 {
        let t = if i < 6 { T0 + i * 300 } else { T0 + i * 2400 };
        let ip = format!("{}.{}.8.9", 60 + i, 70 + i);
        lines.push(record(&s, "smtp", ROLE, &ip, t, 1));
    }
    let st = s.status_user(ROLE, T0 + 15 * 2400);
    assert_eq!(st["level"], "notify", "{st:#}");
    s.assert_backtest_agrees(&lines);
}

/// Without a database, on an account's first day (nothing is new yet): a big
/// provider sending "as" the user from its pool, eleven addresses in eight /24s of six
/// /16s within the hour, a message from each and nothing bouncing, is held at notify
/// (it blocked before: more than three /24s); once its mail bounces it blocks, and a
/// botnet's eleven hosts in eleven /16s block at once.
#[test]
fn without_a_database_a_first_day_block_needs_many_16s_or_mail_evidence() {
    let s = Sandbox::with_asn(None);
    const POOL: &str = "pool@example.com";
    const BOTNET: &str = "botnet@example.com";
    let nets = [
        "40.77.1", "41.77.1", "42.77.1", "43.77.1", "44.77.1", "45.77.1", "40.77.2", "41.77.2",
    ];
    let mut lines = Vec::new();
    for i in 0..11 {
        let ip = format!("{}.{}", nets[i % nets.len()], 10 + i);
        let t = T0 + i as i64 * 300;
        lines.push(record(&s, "smtp", POOL, &ip, t, 1));
        lines.push(record(&s, "rate", POOL, &ip, t + 1, 1));
    }
    let at = T0 + 10 * 300 + 1;
    let st = s.status_user(POOL, at);
    assert_eq!(st["level"], "notify", "11 networks in 6 /16s: {st:#}");
    lines.push(record(&s, "bounces", POOL, "40.77.1.10", at + 60, 25));
    let st = s.status_user(POOL, at + 60);
    assert_eq!(st["level"], "block", "{st:#}");
    let block = reason(&st, "block");
    assert!(
        block.starts_with("smtp: 11 networks/1h > 5 (block: corroborated by bounces)"),
        "{block}"
    );
    for i in 0..11 {
        let ip = format!("{}.51.100.9", 20 + i);
        lines.push(record(&s, "smtp", BOTNET, &ip, T0 + i * 20, 1));
    }
    let st = s.status_user(BOTNET, T0 + 300);
    assert_eq!(st["level"], "block", "{st:#}");
    assert!(
        reason(&st, "block").starts_with("smtp: 11 networks/1h > 10"),
        "{st:#}"
    );
    s.assert_backtest_agrees(&lines);
}

/// Without a database, a slow drip on an account with history: a new /16 every
/// quarter hour, a message from each, and some of it bounces. Its fourth new /16 in
/// the hour whose mail bounced twice blocks, within the hour (it waited for its
/// thirteenth new /16 of the day, past three hours); a traveller's five new /16s in
/// an hour (airport, carrier, hotel, venues), each sending, one bounce, do not. On an
/// account's first day the same drip blocks by the /16s first seen within the hour.
#[test]
fn without_a_database_a_drip_with_history_blocks_within_the_hour() {
    let s = Sandbox::with_asn(None);
    const DRIP: &str = "drip@example.com";
    const TRAVEL: &str = "travel@example.com";
    let mut lines = Vec::new();
    history(&s, DRIP, &mut lines);
    history(&s, TRAVEL, &mut lines);
    let start = T0 + 2 * DAY;
    let at = |i: i64| start + i * 900;
    for i in 0..4 {
        if i == 3 {
            let st = s.status_user(DRIP, at(2) + 5);
            assert_ne!(st["level"], "block", "three new /16s: {st:#}");
        }
        let ip = drip_host(&s, DRIP, i, at(i), &mut lines);
        if i % 2 == 1 {
            lines.push(record(&s, "bounces", DRIP, &ip, at(i) + 5, 1));
        }
    }
    assert_blocked(
        &s,
        DRIP,
        at(3) + 5,
        "smtp: 4 new wider networks/1h > 3 (block: corroborated by bounces)",
    );
    for i in 0..5 {
        let ip = format!("{}.{}.8.9", 60 + i, 70 + i);
        let t = start + i * 600;
        lines.push(record(&s, "smtp", TRAVEL, &ip, t, 1));
        lines.push(record(&s, "rate", TRAVEL, &ip, t + 5, 1));
    }
    lines.push(record(&s, "bounces", TRAVEL, "60.70.8.9", start + 5, 1));
    let travel = s.status_user(TRAVEL, start + 4 * 600 + 5);
    assert_ne!(travel["level"], "block", "{travel:#}");
    assert_ne!(travel["level"], "lock", "{travel:#}");
    // On an account's first day nothing is new: /16s first seen within the hour count.
    const FIRST: &str = "first@example.com";
    for i in 0..4 {
        let ip = drip_host(&s, FIRST, 10 + i, start + i * 900, &mut lines);
        lines.push(record(&s, "bounces", FIRST, &ip, start + i * 900 + 5, 1));
    }
    let prefix = "smtp: 4 fresh wider networks/1h > 3 (block: corroborated by bounces)";
    assert_blocked(&s, FIRST, start + 3 * 900 + 5, prefix);
    s.assert_backtest_agrees(&lines);
}
