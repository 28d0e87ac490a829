//! Several mail servers, one database: a block decided from one server's logins takes
//! effect in every server's real Postfix (map and held mail) at its next run-actions,
//! and a release on any server undoes it on all, releasing only the mail each server
//! held itself. Here two servers share one SQLite file; `contain_on_two_servers` takes
//! the database's location, and runs against a shared PostgreSQL too.

use crate::support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::imap::Session;
use support::mailstack::{mail_server, submit, Dovecot, Postfix};
use support::smtp_sink::SmtpSink;
use support::{now, Sandbox};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const USERS: &[(&str, &str)] = &[(ALICE, "alice-pw"), (BOB, "bob-pw")];
const FRIEND: &str = "friend@remote.example";

/// One server: its own Postfix, Dovecot and state directory, the shared database at
/// `location` (a path or a URL, as `--db` takes it).
/// A botnet's envelope sender is not the login: only the login Postfix wrote into the
/// queue file (postcat) ties such mail to the account.
fn envelope_sender(login: &str) -> String {
    format!("not-{login}")
}

struct Server {
    dv: Dovecot,
    pf: Postfix,
    guard: Sandbox,
}

fn server(dir: &Path, location: &str, sink: &SmtpSink) -> Server {
    server_with(dir, location, sink, "")
}

/// As `server`, with `postfix` (settings) added to its `[postfix]` table.
fn server_with(dir: &Path, location: &str, sink: &SmtpSink, postfix: &str) -> Server {
    let (dv, pf) = mail_server(dir, USERS, sink.port);
    let mut guard = Sandbox::acting(&format!(
        "mode = \"enforce\"\n\
         local_dir = {:?}\n\
         [actions]\nretry_base = \"1s\"\ncommand_timeout = \"10s\"\n\
         [mail]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\nfrom = \"mailguard@example.test\"\nto = [\"postmaster@example.test\"]\n\
         [postfix]\nsasl_map = {:?}\n{postfix}\n\
         [dovecot]\ndoveadm = {:?}\n",
        dir.join("guard-state").display().to_string(),
        sink.port,
        pf.sasl_map.display().to_string(),
        dv.doveadm.display().to_string(),
    ));
    let (k, v) = pf.env();
    guard.env.push((k.into(), v.to_path_buf()));
    guard.env.push(("F2B_MAILGUARD_DB".into(), location.into()));
    Server { dv, pf, guard }
}

impl Server {
    fn send(&self, login: &str, password: &str) -> Result<String, String> {
        submit(
            self.pf.submission_port,
            "203.0.113.9",
            (login, password),
            &envelope_sender(login),
            FRIEND,
        )
    }

    fn alice_refused(&self) -> bool {
        match self.send(ALICE, "alice-pw") {
            Ok(_) => false,
            Err(e) => {
                assert!(
                    e.contains("Account suspended"),
                    "refused for another reason: {e}"
                );
                true
            }
        }
    }

    fn in_map(&self, user: &str) -> bool {
        self.pf.map_lookup(user).is_some()
    }

    /// Queue ids of `login`'s messages in `queue` ("hold", or "" for any other).
    fn ids(&self, login: &str, queue: &str) -> Vec<String> {
        let sender = envelope_sender(login);
        self.pf
            .queue()
            .iter()
            .filter(|m| m["sender"] == sender.as_str())
            .filter(|m| (m["queue_name"] == "hold") == (queue == "hold"))
            .map(|m| m["queue_id"].as_str().expect("queue_id").to_owned())
            .collect()
    }

    fn run_actions(&self) -> String {
        self.guard.ok(&["run-actions"])
    }
}

fn postsuper_hold(pf: &Postfix, id: &str) {
    let st = Command::new("/usr/sbin/postsuper")
        .args(["-h", id])
        .env("MAIL_CONFIG", &pf.config_dir)
        .output()
        .expect("postsuper");
    assert!(st.status.success(), "{st:?}");
}

/// The whole scenario against the database at `location`.
pub fn contain_on_two_servers(location: &str) {
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let a = server(&dir.path().join("a"), location, &sink);
    let b = server(&dir.path().join("b"), location, &sink);

    // Before: alice sends through both servers. On B, the admin puts one of her
    // messages on hold by hand (not ours to release); bob has mail queued on B.
    b.send(ALICE, "alice-pw").expect("B accepts alice");
    b.pf.wait_queue("alice's first message queued on B", |_| {
        b.ids(ALICE, "").len() == 1
    });
    let by_admin = b.ids(ALICE, "")[0].clone();
    postsuper_hold(&b.pf, &by_admin);
    for _ in 0..2 {
        b.send(ALICE, "alice-pw").expect("B accepts alice");
    }
    b.send(BOB, "bob-pw").expect("B accepts bob");
    a.send(ALICE, "alice-pw").expect("A accepts alice");
    b.pf.wait_queue("B's queue", |_| {
        b.ids(ALICE, "").len() == 2 && b.ids(BOB, "").len() == 1
    });
    a.pf.wait_queue("A's queue", |_| a.ids(ALICE, "").len() == 1);

    // A botnet's logins reach server A: A decides and contains on A at once.
    a.guard.burst(ALICE, 11, now() - 300);
    a.guard.wait_user(ALICE, "A's block actions done", |d| {
        let acts = d["actions"].as_array().expect("actions");
        // notify: the quarantine's map entry and the mail; block: the map's refusal,
        // the hold and the mail.
        acts.len() == 5 && acts.iter().all(|x| x["state"] == "done")
    });
    assert!(a.in_map(ALICE));
    assert!(a.alice_refused(), "A refuses alice");
    assert_eq!(a.ids(ALICE, "hold").len(), 1, "A held alice's mail");
    // B has done nothing yet: nothing ran there.
    assert!(!b.in_map(ALICE), "B's map is B's worker's business");
    assert_eq!(b.ids(ALICE, "").len(), 2);

    // B's next worker run (its timer) converges B from the shared decision.
    let out = b.run_actions();
    assert!(out.contains("2 message(s) held"), "{out}");
    assert!(b.in_map(ALICE) && !b.in_map(BOB));
    assert!(b.alice_refused(), "B refuses alice");
    b.send(BOB, "bob-pw").expect("B still accepts bob");
    assert_eq!(b.ids(ALICE, "").len(), 0, "alice's mail on B held");
    assert_eq!(b.ids(ALICE, "hold").len(), 3, "ours and the admin's");
    assert_eq!(b.ids(BOB, "").len(), 2, "bob's mail untouched");
    // A second run changes nothing.
    let again = b.run_actions();
    assert!(
        again.contains("map unchanged, 0 message(s) held, 0 released"),
        "{again}"
    );

    // Released on B: B at once, A at its next run.
    let out = b.guard.ok(&["release", ALICE]);
    assert!(out.contains("2 held message(s) released"), "{out}");
    assert!(!b.in_map(ALICE));
    b.send(ALICE, "alice-pw")
        .expect("B accepts alice after the release");
    assert_eq!(
        b.ids(ALICE, "hold"),
        std::slice::from_ref(&by_admin),
        "the admin's hold stays"
    );
    assert!(a.in_map(ALICE), "A follows at its next run");
    let out = a.run_actions();
    assert!(out.contains("1 released"), "{out}");
    assert!(!a.in_map(ALICE));
    a.send(ALICE, "alice-pw")
        .expect("A accepts alice after the release");
    assert!(a.ids(ALICE, "hold").is_empty(), "A released what it held");
    // Later runs on B never touch the admin's hold.
    b.run_actions();
    assert_eq!(b.ids(ALICE, "hold"), [by_admin]);
    assert_eq!(a.guard.status_user(ALICE, now())["level"], "ok");
}

/// Blocked from A's logins, two accounts are released on B: A's next run releases
/// the mail it held for both from one listing of its queue. A wrapper around the real
/// postqueue notes each call.
#[test]
fn a_run_that_releases_two_accounts_lists_the_queue_once() {
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared/mailguard.db").display().to_string();
    let calls = dir.path().join("postqueue.calls");
    let wrapper = dir.path().join("postqueue");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >>{}\nexec /usr/sbin/postqueue \"$@\"\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let postqueue = format!("postqueue = {:?}", wrapper.display().to_string());
    let a = server_with(&dir.path().join("a"), &shared, &sink, &postqueue);
    let b = server(&dir.path().join("b"), &shared, &sink);
    for (user, password) in USERS {
        a.send(user, password).expect("A accepts");
    }
    a.pf.wait_queue("both queued on A", |_| {
        a.ids(ALICE, "").len() == 1 && a.ids(BOB, "").len() == 1
    });
    for (user, _) in USERS {
        a.guard.burst(user, 11, now() - 300);
        a.guard.wait_user(user, "A's block actions done", |d| {
            let acts = d["actions"].as_array().expect("actions");
            acts.len() == 5 && acts.iter().all(|x| x["state"] == "done")
        });
        assert_eq!(a.ids(user, "hold").len(), 1, "A held {user}'s mail");
    }
    for (user, _) in USERS {
        b.guard.ok(&["release", user]);
    }
    // The workers A's records started have exited: this run is the only caller.
    let config = a.guard.config_path().display().to_string();
    support::wait_until("A's workers done", Duration::from_secs(30), || {
        support::processes_mentioning(&config).is_empty()
    });
    std::fs::write(&calls, "").unwrap();
    let out = a.run_actions();
    assert!(out.contains("2 released"), "{out}");
    let listed = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(listed.lines().filter(|l| *l == "-j").count(), 1, "{listed}");
    assert!(a.ids(ALICE, "hold").is_empty() && a.ids(BOB, "hold").is_empty());
}

/// A lock decided on A: B kicks alice's sessions on its own Dovecot at its next run,
/// and only once per lock.
pub fn kick_once_per_lock_on_every_server(location: &str) {
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let a = server(&dir.path().join("a"), location, &sink);
    let b = server(&dir.path().join("b"), location, &sink);
    let mut alice_on_b = Session::login(b.dv.imap_port, (ALICE, "alice-pw"));
    let mut bob_on_b = Session::login(b.dv.imap_port, (BOB, "bob-pw"));

    a.guard.burst(ALICE, 21, now() - 300);
    let d = a.guard.wait_user(ALICE, "A's kick done", |d| {
        d["actions"]
            .as_array()
            .expect("actions")
            .iter()
            .any(|x| x["kind"] == "dovecot_kick" && x["state"] == "done")
    });
    assert_eq!(d["state"], "lock");
    assert!(alice_on_b.alive(), "B kicks at its own run");
    let out = b.run_actions();
    assert!(out.contains("1 account(s) kicked"), "{out}");
    assert!(!alice_on_b.alive(), "alice kicked on B");
    assert!(bob_on_b.alive(), "bob stays");
    // Once per lock: a session opened since survives B's next runs.
    let mut again = Session::login(b.dv.imap_port, (ALICE, "alice-pw"));
    let out = b.run_actions();
    assert!(out.contains("0 account(s) kicked"), "{out}");
    assert!(again.alive());
}

#[test]
fn a_lock_from_one_server_kicks_the_account_once_on_the_other() {
    let shared = tempfile::tempdir().unwrap();
    let db = shared.path().join("shared/mailguard.db");
    kick_once_per_lock_on_every_server(&db.display().to_string());
}

#[test]
fn a_block_from_one_server_contains_the_account_on_both_and_a_release_on_either_undoes_it() {
    let shared = tempfile::tempdir().unwrap();
    let db = shared.path().join("shared/mailguard.db");
    contain_on_two_servers(&db.display().to_string());
}

/// The same two scenarios with the servers sharing a private PostgreSQL 15:
/// each server's `record` writes there, each server converges from it.
#[test]
fn on_postgresql_a_block_from_one_server_contains_on_both_and_a_release_on_either_undoes_it() {
    let pg = support::postgres::Postgres::start();
    contain_on_two_servers(&pg.url());
}

#[test]
fn on_postgresql_a_lock_from_one_server_kicks_the_account_once_on_the_other() {
    let pg = support::postgres::Postgres::start();
    kick_once_per_lock_on_every_server(&pg.url());
}
