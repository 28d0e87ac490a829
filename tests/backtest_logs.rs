//! `ingest` fed from logs: Postfix's log through the real `fail2ban-regex` and the
//! shipped filters, as docs/commands.md's recipes run it, into a scratch database.

use crate::backtest::{ingest, ingest_json, DAY};
use crate::support;

use std::path::Path;

use support::{fail2ban, Sandbox};

fn syslog(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap()
        .format("%b %e %H:%M:%S")
        .to_string()
}

/// `fail2ban-regex -o '<time> <F-USER> <ip>' LOG FILTER` with the shipped filter, as
/// docs/commands.md's recipe runs it.
fn fail2ban_regex(s: &Sandbox, log: &Path, filter: &str) -> String {
    let fd = fail2ban::filter_dir(s.path());
    fail2ban::regex(
        log.to_str().expect("utf-8 path"),
        filter,
        &fd,
        Some("<time> <F-USER> <ip>"),
    )
}

/// Writes `lines` (time, text after the host name) to `path` in time order, as syslog.
fn write_log(path: &Path, mut lines: Vec<(i64, String)>) {
    lines.sort_by_key(|(t, _)| *t);
    let text: String = (lines.iter())
        .map(|(t, l)| format!("{} mx {l}\n", syslog(*t)))
        .collect();
    std::fs::write(path, text).unwrap();
}

/// A small deterministic generator (64-bit LCG), so the day's log is the same each run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// One accepted submission as Postfix logs it: connect, the SASL line, cleanup, qmgr,
/// delivery, removed, disconnect. Only the second line is a match.
fn transaction(out: &mut Vec<(i64, String)>, t: i64, qid: u64, user: &str, addr: &str) {
    let pid = 10_000 + qid % 5000;
    let id = format!("{:010X}", 0xB0_0000 + qid);
    let lines = [
        format!("postfix/submission/smtpd[{pid}]: connect from unknown[{addr}]"),
        format!("postfix/submission/smtpd[{pid}]: {id}: client=unknown[{addr}], sasl_method=PLAIN, sasl_username={user}"),
        format!("postfix/cleanup[77]: {id}: message-id=<{id}@example.com>"),
        format!("postfix/qmgr[78]: {id}: from=<{user}>, size=2214, nrcpt=1 (queue active)"),
        format!("postfix/smtp[79]: {id}: to=<friend{qid}@remote.example>, relay=mx.remote.example[192.0.2.200]:25, delay=0.4, delays=0.1/0/0.1/0.2, dsn=2.0.0, status=sent (250 2.0.0 Ok)"),
        format!("postfix/qmgr[78]: {id}: removed"),
        format!("postfix/submission/smtpd[{pid}]: disconnect from unknown[{addr}] ehlo=1 auth=1 mail=1 rcpt=1 data=1 quit=1 commands=6"),
    ];
    for l in lines {
        out.push((t, l));
    }
}

#[test]
fn a_generated_day_finds_exactly_the_compromised_account_at_the_expected_time() {
    let s = Sandbox::new("");
    let midnight = DAY - 10 * 3600;
    let mut rng = Lcg(2026);
    let mut lines: Vec<(i64, String)> = Vec::new();
    let mut qid = 0u64;
    let mut submit = |lines: &mut Vec<(i64, String)>, t: i64, user: &str, addr: &str| {
        qid += 1;
        transaction(lines, t, qid, user, addr);
    };
    // 150 people with a home address and a phone on a carrier /24 (a new address in
    // it now and then), 10 to 40 messages between 08:00 and 20:00.
    for u in 0..150u64 {
        let user = format!("user{u}@example.com");
        let home = format!("198.51.100.{}", u % 250 + 1);
        for _ in 0..10 + rng.below(31) {
            let t = midnight + 8 * 3600 + rng.below(12 * 3600) as i64;
            let addr = if rng.below(3) == 0 {
                format!("198.18.{}.{}", u % 200, rng.below(4) + 1)
            } else {
                home.clone()
            };
            submit(&mut lines, t, &user, &addr);
        }
    }
    // An office of 30 behind one NAT address.
    for u in 0..30u64 {
        for _ in 0..15 {
            let t = midnight + 9 * 3600 + rng.below(8 * 3600) as i64;
            submit(
                &mut lines,
                t,
                &format!("staff{u}@example.com"),
                "203.0.113.10",
            );
        }
    }
    // The victim: honest from home until 11:00; from 14:00 a botnet, a new address in
    // a new /16 every 8 seconds.
    const VICTIM: &str = "victim@example.com";
    for h in 8..11 {
        submit(&mut lines, midnight + h * 3600, VICTIM, "192.0.2.50");
    }
    let attack = midnight + 14 * 3600;
    for k in 0..30 {
        let addr = format!("{}.{}.7.{}", 45 + k, 10 + k, k + 1);
        submit(&mut lines, attack + 8 * k, VICTIM, &addr);
    }
    assert!(lines.len() > 5000, "{} lines", lines.len());
    let mail_log = s.path().join("mail.log");
    write_log(&mail_log, lines);

    let regex = fail2ban_regex(&s, &mail_log, "mailguard-postfix-sasl");
    assert_eq!(
        regex.lines().count() as u64,
        qid,
        "one match per submission"
    );
    let report = ingest_json(&s, &s.path().join("backtest.db"), regex.as_bytes());
    let accounts = report["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 1, "{report:#}");
    assert_eq!(accounts[0]["user"], VICTIM);
    let reached: Vec<(&str, f64, &str)> = accounts[0]["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["level"].as_str().unwrap(),
                l["time"].as_f64().unwrap(),
                l["reason"].as_str().unwrap(),
            )
        })
        .collect();
    // The 6th, 11th and 21st botnet address; the home address is older than the hour
    // but counts in the day's spread (22 /24s with the 21 botnet ones).
    let at = |k: i64| (attack + 8 * k) as f64;
    assert_eq!(
        reached,
        [
            ("notify", at(5), "smtp: 6 networks/1h > 5; new: 6 of 6 networks not seen in 30d"),
            ("block", at(10), "smtp: 11 networks/1h > 10; new: 11 of 11 networks not seen in 30d"),
            ("lock", at(20), "smtp: 21 networks/1h > 20; spread: 22 networks/1d > 20; new: 21 of 21 networks not seen in 30d"),
        ]
    );
}

#[test]
fn last_months_log_through_fail2ban_regex_shows_who_would_have_been_flagged_and_when() {
    let s = Sandbox::new("");
    // A botnet on alice (a new address in a new /16 every 20 s), bob on two devices
    // all day.
    let mut log = Vec::new();
    for i in 0..12 {
        log.push((
            DAY + 20 * i,
            format!(
                "client=unknown[203.{}.0.1], sasl_method=PLAIN, sasl_username=alice@example.com",
                i + 1
            ),
        ));
    }
    for i in 0..16 {
        log.push((
            DAY + 1800 * i,
            format!(
                "client=unknown[198.51.100.{}], sasl_method=PLAIN, sasl_username=bob@example.com",
                i % 2 + 1
            ),
        ));
    }
    log.sort();
    let text: String = log
        .iter()
        .enumerate()
        .map(|(n, (t, rest))| {
            format!(
                "{} mx postfix/submission/smtpd[9]: {:010X}: {rest}\n",
                syslog(*t),
                0xA000 + n
            )
        })
        .collect();
    let mail_log = s.path().join("mail.log");
    std::fs::write(&mail_log, text).unwrap();

    // The recipe of docs/commands.md: fail2ban-regex with the shipped filter, into ingest.
    let regex = fail2ban_regex(&s, &mail_log, "mailguard-postfix-sasl");
    assert_eq!(regex.lines().count(), 28);

    let scratch = s.path().join("backtest.db");
    let out = ingest(&s, &["--db", scratch.to_str().unwrap()], regex.as_bytes());
    support::assert_success("ingest", &out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("ingested 28 events"));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("alice@example.com                  notify  2026-11-20 10:01:40  smtp: 6 networks/1h > 5"), "{text}");
    assert!(
        text.contains("block   2026-11-20 10:03:20  smtp: 11 networks/1h > 10"),
        "{text}"
    );
    assert!(!text.contains("bob@example.com"), "{text}");
    assert!(!s.db().exists(), "the live database was not touched");

    // --json, and the same again with other thresholds (a fresh scratch database).
    let scratch2 = s.path().join("backtest2.db");
    s.write_config("[thresholds.smtp]\nnotify = 11\nblock = 20\nlock = 30");
    let out = ingest(&s, &["--db", scratch2.to_str().unwrap()], regex.as_bytes());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("notify  2026-11-20 10:03:40  smtp: 12 networks/1h > 11"),
        "{text}"
    );
    let v = ingest_json(&s, &s.path().join("b3.db"), regex.as_bytes());
    assert_eq!(v["events"], 28);
    assert_eq!(v["accounts"][0]["user"], "alice@example.com");
    assert_eq!(v["accounts"][0]["highest"], "notify");
    assert_eq!(v["accounts"][0]["levels"][0]["time"], (DAY + 220) as f64);
}

/// The code block of docs/commands.md that holds `needle`.
fn docs_recipe(needle: &str) -> String {
    let page = std::fs::read_to_string(format!("{}/docs/commands.md", env!("CARGO_MANIFEST_DIR")))
        .expect("docs/commands.md");
    page.split("```sh\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains(needle))
        .unwrap_or_else(|| panic!("no sh block with {needle} in docs/commands.md"))
        .to_owned()
}

#[test]
fn the_docs_recipe_with_bounces_runs_as_written() {
    // A day of honest submissions, and an account sending from one address whose
    // recipients bounce: only the bounce half of the recipe can block it.
    let s = Sandbox::new("");
    let mut lines: Vec<(i64, String)> = Vec::new();
    let mut qid = 0u64;
    for u in 0..20u64 {
        for k in 0..10 {
            qid += 1;
            let t = DAY + (u * 10 + k) as i64 * 97;
            let addr = format!("198.51.100.{}", u + 1);
            transaction(&mut lines, t, qid, &format!("user{u}@example.com"), &addr);
        }
    }
    const SPAMMER: &str = "spammer@example.com";
    for k in 0..160u64 {
        qid += 1;
        let t = DAY + 3600 + k as i64 * 10;
        let mut msg = Vec::new();
        transaction(&mut msg, t, qid, SPAMMER, "203.0.113.66");
        if k % 2 == 0 {
            // Its delivery line bounces instead.
            for (_, l) in msg.iter_mut().filter(|(_, l)| l.contains("status=sent")) {
                *l = l
                    .replace("dsn=2.0.0, status=sent (250 2.0.0 Ok)", "dsn=5.1.1, status=bounced (host mx.remote.example[192.0.2.200] said: 550 5.1.1 unknown user)");
            }
        }
        lines.extend(msg);
    }
    let mail_log = s.path().join("mail.log.1");
    write_log(&mail_log, lines);

    // The recipe as docs/commands.md has it, pointed at this sandbox: its filter
    // directory, its log, a scratch database, and this binary on PATH.
    let fd = fail2ban::filter_dir(s.path());
    let scratch = s.path().join("backtest.db");
    let mut script = docs_recipe("mailguard-postfix-bounce.conf");
    for (from, to) in [
        ("f=/etc/fail2ban/filter.d", format!("f={}", fd.display())),
        (
            "log=/var/log/mail.log.1",
            format!("log={}", mail_log.display()),
        ),
        ("/tmp/backtest.db", scratch.display().to_string()),
    ] {
        assert!(
            script.contains(from),
            "the recipe no longer has {from}:\n{script}"
        );
        script = script.replace(from, &to);
    }
    let bin = s.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(support::BIN, bin.join("f2b-mailguard")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("sh")
        .args(["-eu", "-c", &script])
        .env("PATH", path)
        .env("TZ", "UTC")
        .env("F2B_MAILGUARD_CONFIG", s.config_path())
        .env_remove("F2B_MAILGUARD_DB")
        .output()
        .unwrap();
    support::assert_success("the recipe", &out);
    let err = String::from_utf8_lossy(&out.stderr);
    // 360 logins and 360 messages, and the 80 bounced recipients.
    assert!(err.contains("ingested 800 events"), "{err}");
    let report = String::from_utf8(out.stdout).unwrap();
    let spammer: Vec<&str> = report
        .lines()
        .skip_while(|l| !l.starts_with(SPAMMER))
        .collect();
    assert!(
        spammer
            .iter()
            .any(|l| l.contains(" block ") && l.contains("bounces:")),
        "{report}"
    );
    assert!(!report.contains("user1@example.com"), "{report}");
}
