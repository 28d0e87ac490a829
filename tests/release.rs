//! `release` as the audit trail and the next escalation see it: what it says it undid,
//! who did it, and a fresh start for the admin mail's cooldown.

use crate::support;

use std::time::Duration;

use support::smtp_sink::SmtpSink;
use support::{now, Sandbox};

const ALICE: &str = "alice@example.com";

fn warn_mode(sink: &SmtpSink) -> Sandbox {
    Sandbox::acting(&format!(
        "mode = \"warn\"\n\
         [actions]\nretry_base = \"1s\"\n\
         [mail]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\nfrom = \"mailguard@example.test\"\nto = [\"postmaster@example.test\"]\n",
        sink.port
    ))
}

fn subjects(sink: &SmtpSink, n: usize) -> Vec<String> {
    sink.wait_for(n, Duration::from_secs(20))
        .iter()
        .filter_map(|m| m.header("Subject"))
        .collect()
}

#[test]
fn a_warn_mode_release_says_nothing_was_held_and_names_the_admin() {
    let sink = SmtpSink::start();
    let s = warn_mode(&sink);
    s.burst(ALICE, 11, now() - 300);
    assert_eq!(subjects(&sink, 2).len(), 2, "notify and would-block mails");
    // As root from a console or cron: no SUDO_USER, LOGNAME or USER.
    let out = s
        .cmd()
        .args(["release", ALICE])
        .env_remove("SUDO_USER")
        .env_remove("LOGNAME")
        .env_remove("USER")
        .output()
        .unwrap();
    support::assert_success("release", &out);
    let me = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    let me = String::from_utf8(me.stdout).unwrap();

    let d = s.status_user(ALICE, now());
    let last = d["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["from"], "block");
    assert_eq!(last["to"], "ok");
    let reason = last["reason"].as_str().unwrap();
    assert_eq!(
        reason,
        "released (nothing was blocked or held); counting restarts now"
    );
    assert_eq!(last["actor"], format!("admin:{}", me.trim()));

    // With SUDO_USER, the admin behind sudo.
    s.burst(ALICE, 11, now() + 1);
    let out = s
        .cmd()
        .args(["release", ALICE])
        .env("SUDO_USER", "carol")
        .output()
        .unwrap();
    support::assert_success("release", &out);
    let d = s.status_user(ALICE, now() + 20);
    let last = d["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["actor"], "admin:carol");
}

#[test]
fn after_a_release_the_next_notify_mails_again() {
    let sink = SmtpSink::start();
    let s = warn_mode(&sink);
    s.burst(ALICE, 6, now() - 300);
    assert_eq!(
        subjects(&sink, 1),
        [format!("[f2b-mailguard] {ALICE}: notify")]
    );
    s.ok(&["release", ALICE]);
    // Within mail.cooldown (6h) of the first mail, but the admin released the account:
    // a new compromise is news.
    s.burst(ALICE, 6, now() + 1);
    let got = subjects(&sink, 2);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[1].ends_with(": notify"), "{got:?}");
    let d = s.status_user(ALICE, now() + 10);
    let states = support::texts(&d["actions"], "state");
    assert!(!states.contains(&"skipped"), "{d:#}");
}

#[test]
fn a_release_that_cannot_update_postfix_fails_at_runtime_and_can_be_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("sasl_access");
    let config = |postmap: &str| {
        format!(
            "mode = \"enforce\"\n[postfix]\nsasl_map = {:?}\npostmap = {postmap:?}\npostqueue = \"/bin/true\"\n",
            map.display().to_string()
        )
    };
    let s = Sandbox::new(&config("/bin/false"));
    s.burst(ALICE, 11, now() - 300);
    assert_eq!(s.status_user(ALICE, now())["state"], "block");
    // The map as the block left it (the actions are off in this sandbox).
    std::fs::write(&map, format!("{ALICE} 550 5.7.1 blocked\n")).unwrap();
    // Postfix's map cannot be rebuilt: a runtime failure (exit 1, "retrying may
    // help"), not a usage error, and the account stays blocked.
    let out = s.run(&["release", ALICE]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("/bin/false"));
    assert_eq!(s.status_user(ALICE, now())["state"], "block");
    // Fixed, the same command succeeds.
    s.write_config(&config("/bin/true"));
    s.ok(&["release", ALICE]);
    assert_eq!(s.status_user(ALICE, now())["level"], "ok");
}
