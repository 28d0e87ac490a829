//! `queue-scan` on the shared PostgreSQL store: each server scans its own
//! Postfix queue, its snapshot replaces only its own rows, and detection counts an
//! account's deferred mail over every server's.

use crate::support;

use support::mailstack::{submit, Dovecot, Postfix};
use support::postgres::Postgres;
use support::smtp_sink::SmtpSink;
use support::{now, Sandbox, NO_ACTIONS};

const ALICE: &str = "alice@example.com";

/// Server `server` on the shared store, scanning the private Postfix `pf`.
fn server(pg: &Postgres, pf: &Postfix, server: &str) -> Sandbox {
    let mut s = pg.server(
        server,
        &format!("[thresholds.queue]\nnotify = 5\nblock = 8\n{NO_ACTIONS}"),
    );
    let (k, v) = pf.env();
    s.env.push((k.into(), v.to_path_buf()));
    s
}

fn postfix(root: &std::path::Path, sink: &SmtpSink, dv: &Dovecot) -> Postfix {
    std::fs::create_dir_all(root).expect("root");
    Postfix::submitting(root, sink.port, &dv.auth_socket)
}

/// Submits `n` messages as alice through `pf` and waits until all are deferred.
fn defer(pf: &Postfix, n: usize) {
    for i in 0..n {
        submit(
            pf.submission_port,
            "203.0.113.9",
            (ALICE, "a-pw"),
            ALICE,
            &format!("rcpt{i}@remote.example"),
        )
        .expect("submit");
    }
    pf.wait_queue("alice's mail deferred by the sink's 451", |pf| {
        pf.queued(ALICE, "deferred") == n
    });
}

#[test]
fn each_server_scans_its_own_queue_and_detection_counts_both() {
    let sink = SmtpSink::start();
    sink.set_tempfail(true);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut dv = Dovecot::configure(dir.path(), &[(ALICE, "a-pw")]);
    dv.start();
    let pf1 = postfix(&dir.path().join("mx1"), &sink, &dv);
    let pf2 = postfix(&dir.path().join("mx2"), &sink, &dv);
    let pg = Postgres::start();
    let (mx1, mx2) = (server(&pg, &pf1, "mx1"), server(&pg, &pf2, "mx2"));
    mx1.record("smtp", ALICE, "203.0.113.9", now());
    // 5 on mx1, 4 on mx2: neither server's queue passes notify (5) alone; both pass
    // block (8) together.
    defer(&pf1, 5);
    defer(&pf2, 4);

    mx1.ok(&["queue-scan", "--quiet"]);
    assert_eq!(mx1.account(ALICE, now()).expect("listed")["level"], "ok");
    mx2.ok(&["queue-scan", "--quiet"]);
    let row = mx2.account(ALICE, now()).expect("listed");
    assert_eq!(row["level"], "block", "{row:#}");
    assert_eq!(row["reason"], "queue: 9 deferred > 8", "{row:#}");
    assert_eq!(row["deferred"], 9, "{row:#}");

    // mx1 scans again: its snapshot replaces its rows only, mx2's stay.
    mx1.ok(&["queue-scan", "--quiet"]);
    assert_eq!(
        pg.psql(
            "SELECT string_agg(server || '=' || n, ',' ORDER BY server) FROM \
             (SELECT server, sum(messages) n FROM queue_senders \
              WHERE queue = 'deferred' GROUP BY server) q"
        ),
        "mx1=5,mx2=4"
    );
    assert_eq!(
        mx1.status_user(ALICE, now())["history"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let q: serde_json::Value =
        serde_json::from_str(&mx1.ok(&["status", "--queue", "--json"])).expect("json");
    assert_eq!(q["queues"]["deferred"]["messages"], 9, "{q:#}");
    assert_eq!(q["queues"]["deferred"]["top"][0]["sender"], ALICE, "{q:#}");

    // mx2's queue emptied: its next scan takes its 4 away, mx1's 5 stay.
    let purge = std::process::Command::new("/usr/sbin/postsuper")
        .args(["-d", "ALL", "deferred"])
        .env("MAIL_CONFIG", &pf2.config_dir)
        .output()
        .expect("postsuper");
    assert!(purge.status.success());
    mx2.ok(&["queue-scan", "--quiet"]);
    assert_eq!(mx1.account(ALICE, now()).expect("listed")["deferred"], 5);
}
