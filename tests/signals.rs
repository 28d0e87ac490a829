//! The signals beside distinct networks, through the real binary, each just below and
//! just above its threshold: sending rate, hard bounces, spread over a day, the
//! account's own baseline, and the new-network note.

use crate::support;

use support::{Sandbox, T0};

const ALICE: &str = "alice@example.com";
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// `count` messages (or bounces) of `user` in one call, all from 198.51.100.7.
fn counted(s: &Sandbox, source: &str, user: &str, count: u32, time: i64) {
    s.record_count(source, user, "198.51.100.7", time, count);
}

/// `total` messages, 10 to a call, the last one smaller.
fn send(s: &Sandbox, source: &str, user: &str, total: u32, first: i64) -> i64 {
    let (mut left, mut t) = (total, first);
    while left > 0 {
        let n = left.min(10);
        counted(s, source, user, n, t);
        left -= n;
        t += 30;
    }
    t - 30
}

fn level_and_reason(s: &Sandbox, user: &str, at: i64) -> (String, String) {
    let a = s.account(user, at).expect("account listed");
    (
        a["level"].as_str().unwrap().to_owned(),
        a["reason"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn rate_notifies_above_100_messages_an_hour() {
    let s = Sandbox::new("");
    let last = send(&s, "rate", ALICE, 100, T0);
    let a = s.account(ALICE, last).unwrap();
    assert_eq!(a["level"], "ok");
    assert_eq!(a["messages"], 100);

    counted(&s, "rate", ALICE, 1, last + 1);
    let (level, reason) = level_and_reason(&s, ALICE, last + 1);
    assert_eq!(level, "notify");
    assert_eq!(reason, "rate: 101 msgs/1h > 100");
    // Messages are not networks: one address, and never more than notify by default.
    send(&s, "rate", ALICE, 1000, last + 2);
    assert_eq!(s.account(ALICE, last + 600).unwrap()["level"], "notify");
}

#[test]
fn rate_counts_only_the_window_and_bulk_senders_get_their_own_thresholds() {
    let s = Sandbox::new(
        "[users.\"news@example.com\".rate]\nnotify = 300\nblock = 2000\n\
         [thresholds.rate]\nblock = 400\n",
    );
    // 90 messages, then 90 more 61 minutes later: never 101 in one hour.
    send(&s, "rate", ALICE, 90, T0);
    let last = send(&s, "rate", ALICE, 90, T0 + HOUR + 60 * 10);
    assert_eq!(level_and_reason(&s, ALICE, last).0, "ok");

    // The same 450 messages block an ordinary account and only notify for the
    // newsletter account, which has its own thresholds.
    let last = send(&s, "rate", "news@example.com", 450, T0);
    let (level, reason) = level_and_reason(&s, "news@example.com", last);
    assert_eq!(level, "notify");
    assert_eq!(reason, "rate: 310 msgs/1h > 300");
    let last = send(&s, "rate", "bob@example.com", 450, T0);
    assert_eq!(
        level_and_reason(&s, "bob@example.com", last),
        ("block".into(), "rate: 410 msgs/1h > 400".into())
    );
}

#[test]
fn bounces_notify_above_20_an_hour() {
    let s = Sandbox::new("");
    let last = send(&s, "bounces", ALICE, 20, T0);
    let a = s.account(ALICE, last).unwrap();
    assert_eq!(a["level"], "ok");
    assert_eq!(a["bounces"], 20);
    counted(&s, "bounces", ALICE, 1, last + 1);
    assert_eq!(
        level_and_reason(&s, ALICE, last + 1),
        ("notify".into(), "bounces: 21 bounces/1h > 20".into())
    );
}

/// One SMTP login from a new /24 every 68 minutes: never two in one hour.
fn drip(s: &Sandbox, user: &str, n: usize) -> i64 {
    let mut t = T0;
    for i in 0..n {
        t = T0 + i as i64 * 68 * 60;
        s.record("smtp", user, &format!("203.0.{}.9", i + 1), t);
    }
    t
}

#[test]
fn spread_over_a_day_catches_a_slow_drip_of_new_networks() {
    let s = Sandbox::new("");
    let last = drip(&s, ALICE, 20);
    let d = s.status_user(ALICE, last);
    assert_eq!(d["level"], "ok", "{d:#}");

    let s = Sandbox::new("");
    let last = drip(&s, ALICE, 21);
    let history = &s.status_user(ALICE, last)["history"];
    assert_eq!(history[0]["to"], "notify", "{history:#}");
    // Each drop is a network the account had not used: the rise says so.
    assert_eq!(
        history[0]["reason"],
        "spread: 21 networks/1d > 20; new: 1 of 1 network not seen in 30d"
    );
    assert_eq!(history[0]["time"], last as f64);
}

#[test]
fn spread_counts_wider_networks_so_one_provider_range_is_one() {
    // 30 addresses in one /24 over the day (a provider sending on the user's behalf).
    let s = Sandbox::new("");
    let mut t = T0;
    for i in 0..30 {
        t = T0 + i * 45 * 60;
        s.record("smtp", ALICE, &format!("198.51.100.{}", i + 1), t);
    }
    assert_eq!(s.status_user(ALICE, t)["level"], "ok");
}

/// Eight days of history, each with a busiest hour of `per_day` messages and one
/// network, ending the day before `T0`'s day.
fn history(s: &Sandbox, per_day: u32) -> i64 {
    let today = T0 - T0.rem_euclid(DAY);
    for d in 1..=8 {
        let t = today - d * DAY + 9 * HOUR;
        s.record("smtp", ALICE, "192.0.2.10", t);
        send(s, "rate", ALICE, per_day, t + 1);
    }
    today + 10 * HOUR
}

#[test]
fn baseline_flags_sending_above_three_times_the_usual_busiest_hour() {
    let s = Sandbox::new("");
    let start = history(&s, 20);
    // Usual 20: the threshold is 3 x 20 = 60 (above the floor of 30), below rate's 100.
    let last = send(&s, "rate", ALICE, 60, start);
    assert_eq!(level_and_reason(&s, ALICE, last).0, "ok");
    counted(&s, "rate", ALICE, 1, last + 1);
    let h = &s.status_user(ALICE, last + 1)["history"];
    assert_eq!(h[0]["to"], "notify");
    assert_eq!(h[0]["reason"], "baseline: 61 msgs/1h > 60 (3x usual 20)");
}

#[test]
fn baseline_floor_keeps_a_quiet_account_quiet() {
    let s = Sandbox::new("");
    let start = history(&s, 2);
    // 3 x 2 = 6, but the floor is 30.
    let last = send(&s, "rate", ALICE, 30, start);
    assert_eq!(level_and_reason(&s, ALICE, last).0, "ok");
    counted(&s, "rate", ALICE, 1, last + 1);
    assert_eq!(
        s.status_user(ALICE, last + 1)["history"][0]["reason"],
        "baseline: 31 msgs/1h > 30 (3x usual 2)"
    );
}

#[test]
fn no_baseline_before_seven_active_days() {
    let s = Sandbox::new("");
    let today = T0 - T0.rem_euclid(DAY);
    for d in 1..=6 {
        send(&s, "rate", ALICE, 2, today - d * DAY + 9 * HOUR);
    }
    let last = send(&s, "rate", ALICE, 90, today + 10 * HOUR);
    assert_eq!(level_and_reason(&s, ALICE, last).0, "ok");
}

#[test]
fn baseline_flags_a_spread_above_three_times_the_usual() {
    let s = Sandbox::new("");
    let start = history(&s, 1);
    // Usual spread 1 network a day: threshold max(3 x 1, floor 5) = 5. Warm, the day's
    // spread counts parties new to the account (without an ASN database, /16s): six
    // networks in six /16s it never used, two hours apart, so the hourly count stays
    // at one.
    let mut t = start;
    for i in 0..6 {
        t = start + i * 2 * HOUR;
        s.record("smtp", ALICE, &format!("203.{}.0.9", i + 1), t);
        let level = s.status_user(ALICE, t)["level"].clone();
        assert_eq!(
            level,
            if i < 5 { "ok" } else { "notify" },
            "{} networks",
            i + 1
        );
    }
    assert_eq!(
        s.status_user(ALICE, t)["history"][0]["reason"],
        "baseline: 6 new wider networks/1d > 5 (3x usual 1); new: 1 of 1 network not seen \
         in 30d; new to this account: 203.6.0.0/16"
    );
}

#[test]
fn a_rise_says_how_many_networks_are_new_for_the_account() {
    let s = Sandbox::new("");
    let start = history(&s, 1);
    // Seven networks in ten minutes: the usual one and six never seen before, each of a
    // party (a /16 without an ASN database) new to the account. Once the account has
    // history only the six new ones count, towards smtp (above 5 at the sixth) and the
    // day's spread (above three times its usual day).
    s.record("smtp", ALICE, "192.0.2.10", start);
    for i in 0..5 {
        s.record(
            "smtp",
            ALICE,
            &format!("198.{}.100.7", 60 + i),
            start + 60 * (i + 1),
        );
    }
    let h = &s.status_user(ALICE, start + 300)["history"];
    assert_eq!(h.as_array().unwrap().len(), 0, "{h:#}");
    s.record("smtp", ALICE, "198.65.100.7", start + 400);
    let h = &s.status_user(ALICE, start + 400)["history"];
    assert_eq!(
        h[0]["reason"],
        "smtp: 6 new networks/1h > 5; baseline: 6 new wider networks/1d > 5 (3x usual 1); \
         new: 6 of 7 networks not seen in 30d; new to this account: 198.60.0.0/16, \
         198.61.0.0/16, 198.62.0.0/16, ... (6)"
    );
}

#[test]
fn every_signal_that_fires_is_named_strongest_first() {
    let s = Sandbox::new("");
    send(&s, "rate", ALICE, 150, T0);
    send(&s, "bounces", ALICE, 30, T0 + 10);
    s.burst(ALICE, 11, T0 + 500);
    let at = T0 + 600;
    let a = s.account(ALICE, at).unwrap();
    assert_eq!(a["level"], "block");
    assert_eq!(
        a["signals"],
        serde_json::json!([
            "smtp: 11 networks/1h > 10",
            "rate: 150 msgs/1h > 100",
            "bounces: 30 bounces/1h > 20"
        ])
    );
    let text = s.ok(&["status", &format!("--at={at}")]);
    assert!(text.contains("MSGS"), "{text}");
}

#[test]
fn bounces_corroborate_a_widely_spread_network_count_into_block() {
    // A botnet's first minutes: 6 /24s (notify alone), then its bounces come back.
    let s = Sandbox::new("");
    s.burst(ALICE, 6, T0);
    assert_eq!(level_and_reason(&s, ALICE, T0 + 10).0, "notify");
    send(&s, "bounces", ALICE, 21, T0 + 60);
    let history = &s.status_user(ALICE, T0 + 600)["history"];
    let rise = &history[1];
    assert_eq!(
        (&rise["from"], &rise["to"]),
        (&"notify".into(), &"block".into()),
        "{history:#}"
    );
    assert_eq!(
        rise["reason"],
        "smtp: 6 networks/1h > 5 (block: corroborated by bounces); bounces: 21 bounces/1h > 20"
    );
    assert_eq!(rise["enforced"], false, "warn mode: would block");

    // The same from six addresses of one provider /24 stays at notify.
    let s = Sandbox::new("");
    for i in 0..6 {
        s.record("smtp", ALICE, &format!("192.0.2.{}", 10 + i), T0 + i);
    }
    send(&s, "bounces", ALICE, 21, T0 + 60);
    assert_eq!(level_and_reason(&s, ALICE, T0 + 600).0, "notify");

    // So does the widely spread count with corroboration switched off.
    let s = Sandbox::new("[detection]\ncorroborate = false\n");
    s.burst(ALICE, 6, T0);
    send(&s, "bounces", ALICE, 21, T0 + 60);
    assert_eq!(level_and_reason(&s, ALICE, T0 + 600).0, "notify");
}
