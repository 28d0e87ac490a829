//! Containment through the real binary, a private real Postfix, and an SMTP sink:
//! admin mail (warn and enforce), the SASL block map, queue hold, release, retries.

use crate::support;

use std::process::Command;
use std::time::Duration;

use support::mailstack::Postfix;
use support::smtp_sink::{free_port, with_subject, SmtpSink};
use support::{now, Sandbox};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";

fn config(mode: &str, sink_port: u16, pf: Option<&Postfix>) -> String {
    let map = pf.map_or("/nonexistent/map".into(), |p| {
        p.sasl_map.display().to_string()
    });
    format!(
        "mode = \"{mode}\"\n\
         [actions]\nretry_base = \"1s\"\ncommand_timeout = \"10s\"\n\
         [mail]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {sink_port}\nfrom = \"mailguard@example.test\"\nto = [\"postmaster@example.test\"]\n\
         [postfix]\nsasl_map = \"{map}\"\n"
    )
}

fn sandbox(text: &str, pf: Option<&Postfix>) -> Sandbox {
    let mut s = Sandbox::acting(text);
    if let Some(pf) = pf {
        let (k, v) = pf.env();
        s.env.push((k.into(), v.to_path_buf()));
    }
    s
}

fn actions(d: &serde_json::Value) -> Vec<(String, String)> {
    d["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().unwrap().to_owned(),
                a["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn warn_mode_sends_only_mail_saying_what_would_be_done() {
    let sink = SmtpSink::start();
    let s = sandbox(&config("warn", sink.port, None), None);
    s.burst(ALICE, 11, now() - 300);
    let mails = sink.wait_for(2, Duration::from_secs(20));
    let subjects: Vec<String> = mails.iter().filter_map(|m| m.header("Subject")).collect();
    assert!(
        subjects.contains(&format!("[f2b-mailguard] {ALICE}: notify")),
        "{subjects:?}"
    );
    assert!(
        subjects.contains(&format!("[f2b-mailguard] {ALICE}: would block")),
        "{subjects:?}"
    );
    let block = with_subject(&mails, "would block").expect("would-block mail");
    assert_eq!(block.to, ["postmaster@example.test"]);
    // The envelope sender is mail.from.
    assert_eq!(block.from, "mailguard@example.test");
    assert!(
        block.data.contains("Would have done (mode is warn"),
        "{}",
        block.data
    );
    assert!(block
        .data
        .contains("refuse (block) or hold (quarantine) its mail: Postfix check_sasl_access"));
    assert!(block.data.contains("smtp: 11 networks/1h > 10"));
    assert!(block.data.contains("198.61.100.7/32"));
    assert!(block
        .data
        .contains(&format!("f2b-mailguard release -- '{ALICE}'")));
    let d = s.wait_user(ALICE, "mails done", |d| {
        actions(d).iter().all(|(_, st)| st == "done")
    });
    assert_eq!(
        actions(&d),
        [
            ("mail".into(), "done".into()),
            ("mail".into(), "done".into())
        ]
    );
}

#[test]
fn enforce_blocks_sending_holds_queued_mail_and_release_undoes_it() {
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let pf = Postfix::relaying(dir.path(), sink.port, true);
    for _ in 0..3 {
        pf.sendmail(ALICE, "friend@remote.example");
    }
    pf.sendmail(BOB, "friend@remote.example");
    pf.wait_queue("4 deferred messages", |p| {
        p.queued(ALICE, "deferred") == 3 && p.queued(BOB, "deferred") == 1
    });

    let s = sandbox(&config("enforce", sink.port, Some(&pf)), Some(&pf));
    s.burst(ALICE, 11, now() - 300);
    let d = s.wait_user(ALICE, "block actions done", |d| {
        let a = actions(d);
        a.len() == 5 && a.iter().all(|(_, st)| st == "done")
    });
    assert_eq!(d["state"], "block");
    let kinds: Vec<String> = actions(&d).into_iter().map(|(k, _)| k).collect();
    // Notify in enforce mode quarantines (sasl_block writes HOLD), block refuses.
    assert_eq!(
        kinds,
        ["sasl_block", "mail", "sasl_block", "hold_queue", "mail"]
    );
    assert_eq!(
        pf.map_lookup(ALICE).as_deref(),
        Some("550 5.7.1 Account suspended after suspicious logins, contact your postmaster")
    );
    assert_eq!(pf.map_lookup(BOB), None);
    assert_eq!(pf.queued(ALICE, "hold"), 3);
    assert_eq!(
        pf.queued(BOB, "deferred"),
        1,
        "another account's mail is untouched"
    );
    let mails = sink.wait_for(2, Duration::from_secs(60));
    let block = with_subject(&mails, ": block").expect("block mail");
    assert!(block.data.contains("Done:"), "{}", block.data);
    assert!(
        block.data.contains("3 queued message(s) put on hold"),
        "{}",
        block.data
    );

    // Release: unblocked, mail back in the queue, level ok, counting restarted.
    let out = s.ok(&["release", ALICE]);
    assert!(out.contains("3 held message(s) released"), "{out}");
    assert_eq!(pf.map_lookup(ALICE), None);
    // Released mail is flushed at once (postqueue -i), past defer_transports: the
    // sink, which stands for the Internet here too, receives it.
    pf.wait_queue("released mail delivered", |p| {
        p.queued(ALICE, "hold") == 0
            && sink.messages().iter().filter(|m| m.from == ALICE).count() == 3
    });
    let d = s.status_user(ALICE, now());
    assert_eq!(d["level"], "ok");
    let last = d["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["to"], "ok");
    assert!(last["actor"].as_str().unwrap().starts_with("admin"));
    // The old evidence no longer counts: one more login does not re-block.
    s.record("smtp", ALICE, "203.0.113.50", now() + 1);
    assert_eq!(s.status_user(ALICE, now() + 2)["level"], "ok");
}

#[test]
fn purge_held_deletes_the_held_mail() {
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let pf = Postfix::relaying(dir.path(), sink.port, true);
    pf.sendmail(ALICE, "friend@remote.example");
    pf.wait_queue("deferred", |p| p.queued(ALICE, "deferred") == 1);
    let s = sandbox(&config("enforce", sink.port, Some(&pf)), Some(&pf));
    s.burst(ALICE, 11, now() - 300);
    s.wait_user(ALICE, "held", |d| {
        actions(d)
            .iter()
            .any(|(k, st)| k == "hold_queue" && st == "done")
    });
    assert_eq!(pf.queued(ALICE, "hold"), 1);
    let out = s.ok(&["release", "--purge-held", ALICE]);
    assert!(out.contains("1 held message(s) deleted"), "{out}");
    assert!(pf.queue().is_empty());
}

#[test]
fn admin_mail_is_retried_until_the_smtp_server_is_back() {
    let port = free_port();
    let s = sandbox(&config("warn", port, None), None);
    s.burst(ALICE, 6, now() - 300);
    let d = s.wait_user(ALICE, "a failed attempt", |d| {
        d["actions"][0]["attempts"].as_u64() >= Some(1)
    });
    assert_eq!(d["actions"][0]["state"], "pending");
    assert!(
        d["actions"][0]["outcome"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1"),
        "{d:#}"
    );
    let sink = SmtpSink::start_on(port);
    let mails = sink.wait_for(1, Duration::from_secs(30));
    assert_eq!(mails.len(), 1);
    let d = s.wait_user(ALICE, "mail done", |d| d["actions"][0]["state"] == "done");
    assert!(d["actions"][0]["attempts"].as_u64().unwrap() >= 2);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sink.messages().len(), 1, "sent exactly once");
}

/// The default lock actions without a password backend: the reset can never succeed,
/// so it fails once and stays failed instead of being retried for hours.
#[test]
fn a_reset_without_a_password_backend_fails_once_and_is_not_retried() {
    let s = Sandbox::acting(
        "mode = \"enforce\"\n\
         [actions]\nnotify = []\nblock = []\nlock = [\"reset_password\"]\nretry_base = \"1s\"\n",
    );
    s.burst(ALICE, 21, now() - 300);
    // Attempts and state are written together: the first attempt's outcome is whole.
    let (_, reset) = s.wait_action(ALICE, "reset_password", |a| {
        a["attempts"].as_u64().unwrap_or(0) > 0
    });
    assert_eq!(reset["state"], "failed", "{reset:#}");
    assert_eq!(reset["attempts"], 1, "{reset:#}");
    assert!(
        reset["outcome"]
            .as_str()
            .is_some_and(|o| o.contains("no password backend")),
        "{reset:#}"
    );
}

#[test]
fn one_mail_per_account_and_level_within_the_cooldown() {
    let sink = SmtpSink::start();
    let text = config("warn", sink.port, None) + "[detection]\nnotify_quiet = \"10m\"\n";
    let s = sandbox(&text, None);
    let t = now() - 7200;
    s.burst(ALICE, 6, t);
    // Quiet for an hour: notify clears; then a second burst within the 6h cooldown.
    s.record("smtp", ALICE, "203.0.113.1", t + 3600);
    for i in 0..6 {
        s.record(
            "smtp",
            ALICE,
            &format!("203.0.113.{}", 10 + i),
            t + 3700 + i,
        );
    }
    let levels: Vec<String> = s.status_user(ALICE, now())["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["to"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(levels, ["notify", "ok", "notify"]);
    let d = s.wait_user(ALICE, "mail done", |d| {
        actions(d).iter().all(|(_, st)| st != "pending")
    });
    // The second notify's mail is recorded, as skipped, saying why.
    assert_eq!(
        actions(&d),
        [
            ("mail".into(), "done".into()),
            ("mail".into(), "skipped".into())
        ],
        "second notify within the cooldown: no second mail"
    );
    let why = d["actions"][1]["outcome"].as_str().unwrap();
    assert!(why.contains("within mail.cooldown (6h)"), "{why}");
    assert_eq!(sink.wait_for(1, Duration::from_secs(60)).len(), 1);
}

#[test]
fn a_burst_of_escalations_loses_no_action_and_piles_up_no_workers() {
    let sink = SmtpSink::start();
    let s = sandbox(&config("warn", sink.port, None), None);
    let config = s.config_path();
    let t = now() - 600;
    // 20 accounts reach notify at about the same time, from 4 parallel writers.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let config = config.clone();
            std::thread::spawn(move || {
                for u in (w..20).step_by(4) {
                    for i in 0..6 {
                        let st = Command::new(support::BIN)
                            .env("F2B_MAILGUARD_CONFIG", &config)
                            .args([
                                "record",
                                "--source=smtp",
                                "--jail=burst",
                                &format!("--user=user{u}@example.com"),
                                &format!("--ip=198.51.100.{}", i + 1),
                                &format!("--time={}", t + i),
                            ])
                            .status()
                            .expect("record");
                        assert!(st.success());
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    let mails = sink.wait_for(20, Duration::from_secs(30));
    assert_eq!(mails.len(), 20, "one notify mail per account");
    let running = support::processes_mentioning(&config.display().to_string());
    assert!(running.len() <= 1, "workers piled up: {running:?}");
}

#[test]
fn real_postfix_rejects_a_blocked_account_and_lock_resets_its_dovecot_password() {
    use support::mailstack::{mail_server, submit};
    const A: &str = "alice@example.test";
    const B: &str = "bob@example.test";
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start();
    let (dv, pf) = mail_server(dir.path(), &[(A, "alice-pw"), (B, "bob-pw")], sink.port);
    let send = |user: &str, pw: &str, addr: &str| {
        submit(
            pf.submission_port,
            addr,
            (user, pw),
            user,
            "friend@remote.example",
        )
    };
    send(A, "alice-pw", "203.0.113.1").expect("alice sends before");
    assert!(pf.log().contains(&format!(
        "client=unknown[203.0.113.1], sasl_method=PLAIN, sasl_username={A}"
    )));

    let text = config("enforce", sink.port, Some(&pf))
        + &format!(
            "[password]\nbackend = \"dovecot-passwd-file\"\npasswd_file = \"{}\"\n[dovecot]\ndoveadm = \"{}\"\n",
            dv.users.display(),
            dv.doveadm.display()
        );
    let s = sandbox(&text, Some(&pf));
    s.burst(A, 11, now() - 300);
    s.wait_user(A, "blocked", |d| {
        (d["actions"].as_array().unwrap().iter())
            .any(|a| a["kind"] == "sasl_block" && a["level"] == "block" && a["state"] == "done")
    });
    let rejected = send(A, "alice-pw", "203.0.113.2").expect_err("blocked account must not send");
    assert!(rejected.starts_with("550 5.7.1"), "{rejected}");
    assert!(rejected.contains("Account suspended"), "{rejected}");
    send(B, "bob-pw", "198.51.100.77").expect("another account still sends");

    // Lock: new password in Dovecot, the old one refused for IMAP and SMTP AUTH.
    assert!(dv.imap_login(A, "alice-pw"));
    s.burst(A, 21, now() - 200);
    let d = s.wait_user(A, "lock actions done", |d| {
        ["reset_password", "dovecot_kick"].iter().all(|k| {
            actions(d)
                .iter()
                .any(|(kind, st)| kind == k && st == "done")
        })
    });
    assert_eq!(d["state"], "lock");
    // Dovecot re-reads a passwd-file at most once a second.
    support::wait_until("the old password to fail", Duration::from_secs(30), || {
        !dv.imap_login(A, "alice-pw")
    });
    let users = std::fs::read_to_string(&dv.users).unwrap();
    assert!(
        users
            .lines()
            .any(|l| l.starts_with(&format!("{A}:{{SSHA512}}"))),
        "{users}"
    );
    assert!(
        users.contains(&format!("{B}:{{PLAIN}}bob-pw")),
        "other accounts untouched"
    );
    assert!(dv.imap_login(B, "bob-pw"));
    let kick = support::action(&d, "dovecot_kick")
        .expect("dovecot_kick")
        .clone();
    assert!(
        kick["outcome"].as_str().unwrap().contains("flushed"),
        "{kick:#}"
    );
    let mails = sink.wait_for(3, Duration::from_secs(60));
    let lock_mail = with_subject(&mails, ": lock").expect("lock mail");
    assert!(!lock_mail.data.contains("alice-pw"));
    assert!(
        lock_mail.data.contains("reset the password: done"),
        "{}",
        lock_mail.data
    );

    // Release (after the admin set a password with the user): sending works again.
    s.ok(&["release", A]);
    std::fs::write(
        &dv.users,
        format!("{A}:{{PLAIN}}new-pw::::::\n{B}:{{PLAIN}}bob-pw::::::\n"),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1100)); // passwd-file is re-read at most once a second
    send(A, "new-pw", "203.0.113.3").expect("released account sends again");
}

#[test]
fn hostile_user_names_reach_map_and_mail_literally_and_run_nothing() {
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let pf = Postfix::relaying(dir.path(), sink.port, true);
    let s = sandbox(&config("enforce", sink.port, Some(&pf)), Some(&pf));
    let marker = dir.path().join("pwned");
    let user = format!(
        "x%s%n'$(touch${{IFS}}{})`id`;|&<>*#@example.com",
        marker.display()
    );
    s.burst(&user, 11, now() - 300);
    s.wait_user(&user, "block actions", |d| {
        actions(d).len() == 5 && actions(d).iter().all(|(_, st)| st == "done")
    });
    // Postfix's own lookup finds the exact name.
    let found = pf
        .map_lookup(&user)
        .expect("the map has the hostile name as its key");
    assert!(found.starts_with("550 5.7.1"), "{found}");
    let mails = sink.wait_for(2, Duration::from_secs(60));
    let subjects: Vec<String> = mails.iter().filter_map(|m| m.header("Subject")).collect();
    assert!(
        // Names are folded to lower case, like Postfix's and Dovecot's lookups.
        subjects.contains(&format!("[f2b-mailguard] {}: block", user.to_lowercase())),
        "{subjects:?}"
    );
    assert!(!marker.exists(), "a shell ran part of the name");

    // A name Postfix would drop from its map ('"' unbalanced) fails loudly, at once,
    // and the map stays valid for the account already blocked.
    let quoted = "bad\"name@example.com";
    s.burst(quoted, 11, now() - 200);
    let (_, a) = s.wait_action(quoted, "sasl_block", |a| a["state"] == "failed");
    assert_eq!(a["attempts"], 1, "no retry can fix it");
    assert!(
        a["outcome"]
            .as_str()
            .unwrap()
            .contains("cannot be a key in a Postfix map"),
        "{a:#}"
    );
    assert!(
        pf.map_lookup(&user).is_some(),
        "the other block still holds"
    );
}
