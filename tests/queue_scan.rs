//! `queue-scan` against a real Postfix whose next hop defers everything (an SMTP sink
//! answering 451), and `status --queue`, the admins' "top senders in the deferred queue".

use crate::support;

use support::mailstack::{deliver_unauthenticated, submit, Dovecot, Postfix, RELAYED_DOMAIN};
use support::smtp_sink::SmtpSink;
use support::{now, Sandbox};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const CAROL: &str = "carol@example.com";
const SCRIPT: &str = "script@example.com";

fn sandbox(pf: &Postfix, extra: &str) -> Sandbox {
    let mut s = Sandbox::new(&format!(
        "[thresholds.queue]\nnotify = 5\nblock = 8\n{extra}"
    ));
    let (k, v) = pf.env();
    s.env.push((k.into(), v.to_path_buf()));
    s
}

#[test]
fn deferred_mail_per_sender_flags_accounts_above_the_threshold() {
    let sink = SmtpSink::start();
    sink.set_tempfail(true);
    let dir = tempfile::tempdir().unwrap();
    let users = [(ALICE, "a-pw"), (BOB, "b-pw"), (CAROL, "c-pw")];
    let mut dv = Dovecot::configure(dir.path(), &users);
    dv.start();
    let pf = Postfix::submitting(dir.path(), sink.port, &dv.auth_socket);
    let s = sandbox(&pf, "");
    let t = now();
    for (i, user) in [ALICE, BOB, CAROL].iter().enumerate() {
        s.record("smtp", user, &format!("198.51.100.{}", i + 1), t);
    }
    // Just above notify (5), just at it, above block (8), each submitted by the account
    // itself; carol's client writes her address in capitals.
    let submitted = [
        (ALICE, ALICE, 6),
        (BOB, BOB, 5),
        (CAROL, "Carol@Example.COM", 9),
    ];
    for (login, from, n) in submitted {
        let password = users.iter().find(|u| u.0 == login).unwrap().1;
        for i in 0..n {
            submit(
                pf.submission_port,
                "203.0.113.9",
                (login, password),
                from,
                &format!("rcpt{i}@remote.example"),
            )
            .unwrap();
        }
    }
    // A sender that is no account (a local script), and ten messages anyone on the
    // Internet can hand to port 25 with bob's address in MAIL FROM: neither is mail an
    // account submitted, so neither may move bob (5 + 10 would pass block).
    for i in 0..2 {
        pf.sendmail(SCRIPT, &format!("rcpt{i}@remote.example"));
    }
    for i in 0..10 {
        deliver_unauthenticated(
            pf.mx_port,
            "192.0.2.66",
            BOB,
            &format!("victim{i}@{RELAYED_DOMAIN}"),
        )
        .unwrap();
    }
    let expected = [(ALICE, 6), (BOB, 15), (CAROL, 9), (SCRIPT, 2)];
    pf.wait_queue("every message deferred by the sink's 451", |pf| {
        let queue = pf.queue();
        expected.iter().all(|(from, n)| {
            queue
                .iter()
                .filter(|m| {
                    m["queue_name"] == "deferred"
                        && m["sender"]
                            .as_str()
                            .unwrap_or("")
                            .eq_ignore_ascii_case(from)
                })
                .count()
                == *n
        })
    });
    let deferred = pf.queue();
    assert!(
        deferred.iter().all(|m| m["recipients"][0]["delay_reason"]
            .as_str()
            .is_some_and(|r| r.contains("451 4.3.0"))),
        "{deferred:#?}"
    );

    let out = s.ok(&["queue-scan"]);
    assert_eq!(
        out.trim(),
        "queue: 32 message(s): 32 deferred; 4 sender(s); 0 action(s) queued"
    );
    let at = now();
    let row = |u: &str| s.account(u, at).unwrap_or_else(|| panic!("{u} listed"));
    assert_eq!(row(ALICE)["level"], "notify");
    assert_eq!(row(ALICE)["reason"], "queue: 6 deferred > 5");
    assert_eq!(row(ALICE)["deferred"], 6);
    assert_eq!(row(BOB)["level"], "ok");
    assert_eq!(row(BOB)["deferred"], 5);
    assert_eq!(row(CAROL)["level"], "block");
    assert_eq!(row(CAROL)["state"], "would block");
    assert_eq!(row(CAROL)["reason"], "queue: 9 deferred > 8");
    assert!(
        s.account(SCRIPT, at).is_none(),
        "a sender that never logged in"
    );

    // The top senders per queue, most first.
    let q: serde_json::Value =
        serde_json::from_str(&s.ok(&["status", "--queue", "--json"])).unwrap();
    let d = &q["queues"]["deferred"];
    assert_eq!(d["messages"], 32);
    assert_eq!(d["senders"], 4);
    let top: Vec<(&str, u64)> = d["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["sender"].as_str().unwrap(),
                t["messages"].as_u64().unwrap(),
            )
        })
        .collect();
    // The admin's view is per envelope sender, whoever wrote it.
    assert_eq!(top, [(BOB, 15), (CAROL, 9), (ALICE, 6), (SCRIPT, 2)]);
    assert_eq!(d["top"][1]["recipients"], 9);
    let text = s.ok(&["status", "--queue"]);
    assert!(
        text.contains("deferred: 32 message(s) from 4 sender(s)"),
        "{text}"
    );

    // A rescan of the same queue changes nothing; an emptied queue empties the view,
    // and the levels stay until the quiet period or a release, like every signal's.
    s.ok(&["queue-scan", "--quiet"]);
    assert_eq!(
        s.status_user(ALICE, now())["history"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let purge = std::process::Command::new("/usr/sbin/postsuper")
        .args(["-d", "ALL", "deferred"])
        .env("MAIL_CONFIG", &pf.config_dir)
        .output()
        .unwrap();
    support::assert_success("postsuper -d ALL", &purge);
    assert_eq!(s.ok(&["queue-scan", "--quiet"]), "");
    assert!(s
        .ok(&["status", "--queue"])
        .contains("all queues are empty"));
    assert_eq!(s.account(ALICE, now()).unwrap()["level"], "notify");
}

#[test]
fn a_failing_postqueue_is_one_line_and_exit_1() {
    let s = Sandbox::new("[postfix]\npostqueue = \"/nonexistent/postqueue\"\n");
    let out = s.run(&["queue-scan"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/postqueue"), "{err}");
}
