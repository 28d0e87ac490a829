//! Detection through the real binary: distinct networks per account per sliding window.

use crate::support;

use support::{Sandbox, T0};

const ALICE: &str = "alice@example.com";

/// `n` logins of `user` from `n` botnet hosts (`support::bot`), one every `step` seconds.
fn logins(s: &Sandbox, user: &str, n: usize, step: i64) -> i64 {
    let mut t = T0;
    for i in 0..n {
        t = T0 + i as i64 * step;
        s.record("smtp", user, &support::bot(i as i64), t);
    }
    t
}

/// A sandbox with `config` after [`logins`] of Alice: the last time and her overview row.
fn alice(config: &str, n: usize, step: i64) -> (Sandbox, i64, serde_json::Value) {
    let s = Sandbox::new(config);
    let last = logins(&s, ALICE, n, step);
    let a = s.account(ALICE, last).expect("alice listed");
    (s, last, a)
}

#[test]
fn six_networks_in_an_hour_notify_with_reason() {
    let (s, last, a) = alice("", 6, 60);
    assert_eq!(a["level"], "notify");
    assert_eq!(a["networks"], 6);
    assert_eq!(a["reason"], "smtp: 6 networks/1h > 5");
    let history = &s.status_user(ALICE, last)["history"];
    assert_eq!(history.as_array().unwrap().len(), 1);
    assert_eq!(history[0]["from"], "ok");
    assert_eq!(history[0]["to"], "notify");
    assert_eq!(history[0]["time"], last as f64);
}

#[test]
fn five_networks_stay_ok() {
    let (s, last, a) = alice("", 5, 60);
    assert_eq!(a["level"], "ok");
    assert_eq!(a["networks"], 5);
    assert!(s.status_user(ALICE, last)["history"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn six_networks_over_two_hours_stay_ok() {
    let s = Sandbox::new("");
    // 24 minutes apart: any one-hour window holds at most 3 of them.
    let last = logins(&s, ALICE, 6, 24 * 60);
    assert_eq!(last - T0, 2 * 3600);
    assert_eq!(s.status_user(ALICE, last)["level"], "ok");
    assert_eq!(s.rows("level_changes"), 0);
}

#[test]
fn ipv6_addresses_in_one_64_are_one_network() {
    let s = Sandbox::new("");
    s.each(6, T0, "smtp", ALICE, |i| {
        format!("2001:db8:77:1:{:x}::{}", 0x1000 + i, i + 1)
    });
    let a = s.account(ALICE, T0 + 10).expect("listed");
    assert_eq!(a["networks"], 1);
    assert_eq!(a["logins"], 6);
    assert_eq!(a["level"], "ok");
    let nets = &s.status_user(ALICE, T0 + 10)["networks"];
    assert_eq!(nets.as_array().unwrap().len(), 1);
    assert_eq!(nets[0]["network"], "2001:db8:77:1::/64");
    assert_eq!(nets[0]["count"], 6);
}

#[test]
fn ipv6_prefix_is_configurable() {
    let s = Sandbox::new("[detection]\nipv6_prefix = 128");
    s.each(6, T0, "smtp", ALICE, |i| {
        format!("2001:db8:77:1::{}", i + 1)
    });
    assert_eq!(s.account(ALICE, T0 + 10).unwrap()["level"], "notify");
}

#[test]
fn office_cidr_on_the_whitelist_is_not_counted() {
    // From the config file.
    let config = "[detection]\nwhitelist = [\"198.48.0.0/13\", \"198.56.0.0/15\"]";
    let (_, _, a) = alice(config, 9, 30); // 198.51-57 whitelisted, 198.58 and 198.59 count
    assert_eq!(a["level"], "ok");
    assert_eq!(a["networks"], 2);
    assert_eq!(a["logins"], 9);

    // From `whitelist add`, effective at the next evaluation, per user.
    let s = Sandbox::new("");
    s.ok(&[
        "whitelist",
        "add",
        "203.0.113.0/24",
        "--user",
        ALICE,
        "--note",
        "Head office NAT",
    ]);
    for user in [ALICE, "bob@example.com"] {
        s.each(8, T0, "smtp", user, |i| format!("203.0.113.{}", 10 + i));
    }
    assert_eq!(s.account(ALICE, T0 + 10).unwrap()["level"], "ok");
    assert_eq!(
        s.account("bob@example.com", T0 + 10).unwrap()["level"],
        "notify"
    );
    let nets = &s.status_user(ALICE, T0 + 10)["networks"];
    assert!(nets
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["whitelisted"] == true));
}

#[test]
fn private_addresses_are_whitelisted_unless_switched_off() {
    for (config, level) in [
        ("", "ok"),
        ("[detection]\nwhitelist_builtin = false", "notify"),
    ] {
        let s = Sandbox::new(config);
        s.each(8, T0, "smtp", ALICE, |i| format!("127.0.0.{}", i + 2));
        assert_eq!(s.account(ALICE, T0 + 10).unwrap()["level"], level);
    }
}

#[test]
fn exempt_user_is_never_flagged() {
    let s = Sandbox::new("[users.\"news@example.com\"]\nexempt = true");
    let last = logins(&s, "news@example.com", 30, 10);
    let a = s.account("news@example.com", last).unwrap();
    assert_eq!(a["level"], "ok");
    assert_eq!(a["networks"], 30);
    assert_eq!(a["reason"], "exempt by configuration");
    assert_eq!(s.rows("level_changes"), 0);
}

#[test]
fn per_user_thresholds_override_global() {
    let s = Sandbox::new("[users.\"road@example.com\".smtp]\nnotify = 8");
    let last = logins(&s, "road@example.com", 8, 10);
    assert_eq!(s.account("road@example.com", last).unwrap()["level"], "ok");
    let last = logins(&s, "road@example.com", 9, 10);
    assert_eq!(
        s.account("road@example.com", last).unwrap()["level"],
        "notify"
    );
}

#[test]
fn eleven_networks_block_would_block_in_warn_enforced_in_enforce() {
    let (warn, last, a) = alice("", 11, 30);
    assert_eq!(a["level"], "block");
    assert_eq!(a["enforced"], false);
    assert_eq!(a["state"], "would block");
    assert_eq!(a["reason"], "smtp: 11 networks/1h > 10");
    let text = warn.ok(&["status", &format!("--at={last}")]);
    assert!(text.contains("would block"), "{text}");

    let (enforce, last, a) = alice("mode = \"enforce\"", 11, 30);
    assert_eq!(a["level"], "block");
    assert_eq!(a["enforced"], true);
    assert_eq!(a["state"], "block");
    let history = &enforce.status_user(ALICE, last)["history"];
    let levels: Vec<_> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["to"].clone())
        .collect();
    assert_eq!(levels, ["notify", "block"]);
}

#[test]
fn switching_to_enforce_enforces_a_would_block() {
    let (s, last, a) = alice("", 11, 30);
    assert_eq!(a["enforced"], false);
    s.write_config("mode = \"enforce\"");
    s.record("smtp", ALICE, "198.51.100.200", last + 1);
    let a = s.account(ALICE, last + 1).unwrap();
    assert_eq!(
        (a["level"].as_str(), a["enforced"].as_bool()),
        (Some("block"), Some(true))
    );
}

#[test]
fn twenty_one_networks_lock() {
    assert_eq!(alice("", 21, 10).2["state"], "would lock");
}

#[test]
fn notify_clears_after_quiet_period_block_stays() {
    let s = Sandbox::new("");
    let last = logins(&s, ALICE, 6, 10);
    let later = last + 24 * 3600 + 1;
    // Shown as ok once quiet, even before anything is written.
    assert_eq!(s.status_user(ALICE, later)["level"], "ok");
    // The next login writes the change into the audit trail.
    s.record("smtp", ALICE, "198.51.100.1", later);
    let h = s.status_user(ALICE, later)["history"].clone();
    assert_eq!(h[1]["from"], "notify");
    assert_eq!(h[1]["to"], "ok");
    assert_eq!(h[1]["reason"], "no threshold crossed for 1d");

    let s = Sandbox::new("");
    let last = logins(&s, "bob@example.com", 11, 10);
    let later = last + 7 * 24 * 3600;
    s.record("smtp", "bob@example.com", "198.51.100.1", later);
    assert_eq!(s.status_user("bob@example.com", later)["level"], "block");
}

#[test]
fn same_event_twice_is_stored_once() {
    let s = Sandbox::new("");
    for _ in 0..3 {
        s.record("smtp", ALICE, "198.51.100.1", T0);
    }
    s.record("imap", ALICE, "198.51.100.1", T0);
    assert_eq!(s.rows("events"), 2);
    // Fail2ban passes fractional times; equal times are the same event.
    s.ok(&[
        "record",
        "--source=smtp",
        "--jail=x",
        "--user",
        ALICE,
        "--ip",
        "198.51.100.1",
        "--time",
        &format!("{T0}"),
    ]);
    assert_eq!(s.rows("events"), 2);
}

/// One call as the bounce or rate jail makes it: a message count with its ticket id.
fn counted(s: &Sandbox, source: &str, fid: &str, time: i64) {
    s.ok(&[
        "record",
        &format!("--source={source}"),
        "--jail=mailguard-bounce",
        &format!("--user={ALICE}"),
        "--ip=198.51.100.1",
        &format!("--time={time}.0"),
        &format!("--fid={fid}"),
        "--count=1",
    ]);
}

#[test]
fn ten_bounced_recipients_in_one_second_are_ten_and_a_retried_call_is_one() {
    let s = Sandbox::new("");
    // One message, ten recipients bounced in the same second: ten tickets.
    for r in 0..10 {
        counted(
            &s,
            "bounces",
            &format!("('4F1A32C0D1', 'r{r}@remote.example')"),
            T0,
        );
    }
    // Fail2ban re-runs a failed action once: the same id, time and count again.
    counted(&s, "bounces", "('4F1A32C0D1', 'r3@remote.example')", T0);
    // Messages of one second, each its own queue id, and one of them retried.
    for q in ["4F1A32C0D2", "4F1A32C0D3", "4F1A32C0D4", "4F1A32C0D3"] {
        counted(&s, "rate", &format!("('{ALICE}', '{q}')"), T0);
    }
    assert_eq!(s.rows("events"), 13);
    let a = s.status_user(ALICE, T0);
    assert_eq!(
        (a["messages"].as_u64(), a["bounces"].as_u64()),
        (Some(3), Some(10)),
        "{a:#}"
    );
}

#[test]
fn a_ticket_id_as_long_as_fail2ban_can_build_is_accepted() {
    let s = Sandbox::new("");
    // The longest valid user (320 bytes), 64 of them backslashes that Python's repr
    // doubles, in a tuple with an IPv6 address and a recipient of 320 characters repr
    // writes as \U000e0001: the id Fail2ban builds for that login.
    let user = format!("{}@{}", "\\".repeat(64), "a".repeat(255));
    assert_eq!(user.len(), 320);
    let fid = format!(
        "('{}', '2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', '{}')",
        user.replace('\\', "\\\\"),
        "\\U000e0001".repeat(320)
    );
    assert!(fid.len() > 3500, "{}", fid.len());
    s.ok(&[
        "record",
        "--source=bounces",
        "--jail=mailguard-bounce",
        &format!("--user={user}"),
        "--ip=2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
        &format!("--time={T0}.0"),
        &format!("--fid={fid}"),
    ]);
    assert_eq!(s.rows("events"), 1);
}

#[test]
fn ipv4_mapped_ipv6_counts_as_ipv4() {
    let s = Sandbox::new("");
    s.record("smtp", ALICE, "::ffff:198.51.100.7", T0);
    s.record("smtp", ALICE, "198.51.100.7", T0 + 1);
    let nets = &s.status_user(ALICE, T0 + 5)["networks"];
    assert_eq!(nets.as_array().unwrap().len(), 1);
    assert_eq!(nets[0]["network"], "198.51.100.7/32");
}

#[test]
fn imap_logins_are_shown_but_do_not_escalate_by_default() {
    let imap = |config| {
        let s = Sandbox::new(config);
        s.each(12, T0, "imap", ALICE, |i| format!("198.51.{}.7", 100 + i));
        s.account(ALICE, T0 + 20).unwrap()
    };
    let a = imap("");
    assert_eq!(a["level"], "ok");
    assert_eq!(a["networks"], 12);
    // With its own threshold configured, IMAP escalates too.
    let a = imap("[thresholds.imap]\nnotify = 10");
    // The reason is the figure when the level was reached (the 11th network).
    assert_eq!(a["reason"], "imap: 11 networks/1h > 10");
}

#[test]
fn status_orders_worst_first_and_fits_80_columns() {
    let s = Sandbox::new("");
    logins(&s, "calm@example.com", 2, 10);
    logins(
        &s,
        "busy-account-with-a-very-long-name-indeed@example.com",
        12,
        10,
    );
    logins(&s, ALICE, 7, 10);
    let st = s.status(T0 + 200);
    let users: Vec<_> = st["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["user"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(users[1], ALICE);
    assert_eq!(users[2], "calm@example.com");
    assert_eq!(st["window_secs"], 3600);
    let text = s.ok(&["status", &format!("--at={}", T0 + 200)]);
    for line in text.lines() {
        assert!(line.chars().count() <= 80, "line over 80 columns: {line:?}");
    }
    // A wider window shows older activity.
    assert_eq!(
        s.status(T0 + 7200)["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["level"] == "ok")
            .count(),
        0
    );
    let wide = s.ok(&[
        "status",
        "--json",
        "--window=24h",
        &format!("--at={}", T0 + 7200),
    ]);
    assert!(wide.contains("calm@example.com"));
}
