//! The in-band policy service (`serve`) between a real Dovecot (auth policy over HTTP)
//! and a real Postfix (policy delegation at end of data, SMTP AUTH through Dovecot),
//! delivering to an SMTP sink that stands for the Internet.

use crate::support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::mailstack::{Dovecot, Postfix};
use support::policy_service::{relay_stack, Service, Wiring};
use support::smtp_client::{message, Session};
use support::smtp_sink::{SmtpSink, TO};
use support::Sandbox;

pub const ALICE: &str = "alice@example.test";
pub const ALICE_PW: &str = "alice-pw";
pub const BOB: &str = "bob@example.test";
pub const BOB_PW: &str = "bob-pw";

pub struct Stack {
    pub sink: SmtpSink,
    pub dv: Dovecot,
    pub pf: Postfix,
    pub s: Sandbox,
    serve: Option<Service>,
    wiring: Wiring,
    pub socket: PathBuf,
    // Last: the daemons above live in it.
    _dir: tempfile::TempDir,
}

impl Stack {
    /// Dovecot and Postfix wired to the service as docs/policy-service.md says, the
    /// service started with `config` (TOML) added to its own settings.
    pub fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let wiring = Wiring::new(dir.path());
        let (sink, dv, mut pf) = relay_stack(
            dir.path(),
            &[(ALICE, ALICE_PW), (BOB, BOB_PW)],
            Some(&wiring),
        );
        // doctor finds doveconf beside doveadm: both bound to this instance.
        let doveconf = dv.doveadm.with_file_name("doveconf");
        std::fs::write(
            &doveconf,
            format!(
                "#!/bin/sh\nexec /usr/bin/doveconf -c {} \"$@\"\n",
                dv.config.display()
            ),
        )
        .unwrap();
        support::assert_success(
            "chmod",
            &Command::new("chmod")
                .arg("755")
                .arg(&doveconf)
                .output()
                .unwrap(),
        );
        // Every containment action off unless the test names its own; whatever it
        // names writes this Postfix's map, never the host's.
        let actions = if config.contains("[actions]") {
            ""
        } else {
            "[actions]\nnotify = []\nblock = []\nlock = []\n"
        };
        let mut s = Sandbox::acting(&format!(
            "{config}\n{actions}[postfix]\nsasl_map = \"{}\"\n{}[dovecot]\ndoveadm = \"{}\"\n",
            pf.sasl_map.display(),
            wiring.config(),
            dv.doveadm.display()
        ));
        pf.start();
        s.env.push(("MAIL_CONFIG".into(), pf.config_dir.clone()));
        let mut st = Self {
            sink,
            dv,
            pf,
            s,
            serve: None,
            socket: wiring.socket.clone(),
            wiring,
            _dir: dir,
        };
        st.start_service();
        st
    }

    pub fn start_service(&mut self) {
        self.serve = Some(self.wiring.start(&self.s));
    }

    /// Kills the service (SIGKILL, by pid) and waits for it.
    pub fn kill_service(&mut self) {
        self.serve = None;
    }

    pub fn serve_log(&self) -> String {
        std::fs::read_to_string(self.s.path().join("serve.log")).unwrap_or_default()
    }

    /// alice's stored events: (source, address, jail), in order.
    pub fn events(&self, user: &str) -> Vec<(String, String, String)> {
        let conn = rusqlite::Connection::open(self.s.db()).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT e.source, e.ip, e.jail FROM events e JOIN users u ON u.id = e.user_id
                 WHERE u.name = ?1 ORDER BY e.id",
            )
            .unwrap();
        stmt.query_map([user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    pub fn wait_events(&self, what: &str, mut ok: impl FnMut(&[(String, String, String)]) -> bool) {
        let start = Instant::now();
        loop {
            let ev = if self.s.db().exists() {
                self.events(ALICE)
            } else {
                Vec::new()
            };
            if ok(&ev) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no {what}: {ev:?}\nserve:\n{}\ndovecot:\n{}",
                self.serve_log(),
                self.dv.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn has(ev: &[(String, String, String)], source: &str, ip: &str) -> bool {
    ev.iter().any(|(s, a, _)| s == source && a == ip)
}

#[test]
fn an_smtp_auth_without_mail_and_an_imap_login_are_recorded() {
    let st = Stack::start("");
    let mut c = Session::connect(st.pf.submission_port, "198.51.100.7").unwrap();
    c.auth(ALICE, ALICE_PW).unwrap();
    c.quit();
    assert!(st.dv.imap_login_from("198.51.100.8", ALICE, ALICE_PW));
    // A wrong password is no login.
    let mut c = Session::connect(st.pf.submission_port, "198.51.100.9").unwrap();
    assert!(c.auth(ALICE, "wrong").is_err());
    c.quit();
    assert!(!st.dv.imap_login_from("198.51.100.10", ALICE, "wrong"));
    st.wait_events("SMTP AUTH and IMAP logins", |ev| {
        has(ev, "smtp", "198.51.100.7") && has(ev, "imap", "198.51.100.8")
    });
    let ev = st.events(ALICE);
    assert!(
        !has(&ev, "smtp", "198.51.100.9") && !has(&ev, "imap", "198.51.100.10"),
        "{ev:?}"
    );
    // Each login once, by the Dovecot listener; no message was sent, so no rate.
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert!(
        ev.iter().all(|(_, _, jail)| jail == "policy-dovecot"),
        "{ev:?}"
    );
}

#[test]
fn each_message_is_counted_once_at_its_end_of_data() {
    let st = Stack::start("");
    let mut c = Session::connect(st.pf.submission_port, "198.51.100.20").unwrap();
    c.auth(ALICE, ALICE_PW).unwrap();
    for i in 0..3 {
        c.send(ALICE, TO, &message(ALICE, TO, &format!("m{i}"), "hello"))
            .unwrap();
    }
    c.quit();
    st.wait_events("3 messages", |ev| {
        ev.iter().filter(|(s, _, _)| s == "rate").count() == 3
    });
    let conn = rusqlite::Connection::open(st.s.db()).unwrap();
    let fids: Vec<String> = conn
        .prepare("SELECT fid FROM events WHERE source = 'rate' ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // The queue ids Postfix logged for the three messages, in order.
    let log = st.pf.log();
    for fid in &fids {
        assert!(
            log.contains(&format!("{fid}: client=")),
            "{fid} not a queue id in:\n{log}"
        );
    }
    assert_eq!(st.sink.wait_for(3, Duration::from_secs(20)).len(), 3);
}

/// The botnet of the README's example at 50 messages a second, each message from a
/// new address in a new session, plus a session the botnet opened (and
/// authenticated) before the account was blocked, which goes on sending after it.
#[test]
fn a_botnet_at_50_messages_a_second_gets_nothing_out_after_the_block() {
    // Block refuses mail only with sasl_block among its actions (the map says so too);
    // without quarantine, what was accepted before the block is delivered.
    let st = Stack::start(
        "mode = \"enforce\"\n[actions]\nnotify = []\nblock = [\"sasl_block\"]\nlock = [\"sasl_block\"]\nquarantine = false\n",
    );
    let early = Arc::new(Mutex::new(
        Session::connect(st.pf.submission_port, "203.0.200.9").unwrap(),
    ));
    early.lock().unwrap().auth(ALICE, ALICE_PW).unwrap();
    // (subject, when its end of data went out) for every attack message Postfix accepted.
    let accepted: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let mut threads = Vec::new();
    let start = Instant::now();
    for i in 0..40u32 {
        let due = start + Duration::from_millis(20 * u64::from(i));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let (port, accepted) = (st.pf.submission_port, accepted.clone());
        threads.push(std::thread::spawn(move || {
            let subject = format!("attack {i}");
            let Ok(mut c) = Session::connect(port, &format!("203.{}.0.9", 100 + i)) else {
                return;
            };
            if c.auth(ALICE, ALICE_PW).is_ok()
                && c.send(ALICE, TO, &message(ALICE, TO, &subject, "hello"))
                    .is_ok()
            {
                accepted.lock().unwrap().push((subject, c.data_end_ms));
            }
            c.quit();
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    // The session opened before the block sends on.
    for i in 0..3 {
        let subject = format!("attack early {i}");
        let mut c = early.lock().unwrap();
        if c.send(ALICE, TO, &message(ALICE, TO, &subject, "hello"))
            .is_ok()
        {
            accepted.lock().unwrap().push((subject, c.data_end_ms));
        }
    }
    let conn = rusqlite::Connection::open(st.s.db()).unwrap();
    let crossing: i64 = conn
        .query_row(
            "SELECT min(ts_ms) FROM level_changes WHERE to_level = 'block'",
            [],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("never blocked ({e}):\n{}", st.serve_log()));
    let accepted = accepted.lock().unwrap().clone();
    let after: Vec<&(String, i64)> = accepted.iter().filter(|(_, t)| *t >= crossing).collect();
    // Everything Postfix accepted reaches the sink; nothing else does.
    let delivered = st.sink.wait_for(accepted.len(), Duration::from_secs(30));
    let subjects: Vec<String> = delivered
        .iter()
        .filter_map(|m| m.header("Subject"))
        .filter(|s| s.starts_with("attack"))
        .collect();
    let late: Vec<&String> = subjects
        .iter()
        .filter(|s| after.iter().any(|(a, _)| a == *s) || s.starts_with("attack early"))
        .collect();
    println!(
        "botnet at 50 msgs/s: {} of 40 accepted before the block; after it {} accepted and {} delivered, the session opened before the block included",
        accepted.len(),
        after.len(),
        late.len()
    );
    assert!(after.is_empty(), "accepted after the block: {after:?}");
    assert!(late.is_empty(), "delivered after the block: {late:?}");
    assert!(!accepted.is_empty() && accepted.len() < 15, "{accepted:?}");
    assert_eq!(subjects.len(), accepted.len(), "{subjects:?}");
    // The early session's three messages were refused in-band: at their end of data
    // by the service, or at RCPT by the map once the block's sasl_block action has
    // rewritten it (which of the two comes first is a race; both are in-band).
    let log = st.pf.log();
    let refused = log
        .lines()
        .filter(|l| l.contains("reject: ") && l.contains("[203.0.200.9]"))
        .filter(|l| l.contains("reject: END-OF-MESSAGE") || l.contains("reject: RCPT"))
        .count();
    assert_eq!(refused, 3, "{log}");
}

#[test]
fn with_the_service_killed_mail_and_logins_flow() {
    let mut st = Stack::start("mode = \"enforce\"");
    st.kill_service();
    let began = Instant::now();
    assert!(st.dv.imap_login_from("198.51.100.30", ALICE, ALICE_PW));
    let mut c = Session::connect(st.pf.submission_port, "198.51.100.31").unwrap();
    c.auth(ALICE, ALICE_PW).unwrap();
    c.send(
        ALICE,
        TO,
        &message(ALICE, TO, "while the service is down", "hello"),
    )
    .unwrap();
    c.quit();
    println!(
        "login and message with the service down: {:?}",
        began.elapsed()
    );
    let got = st.sink.wait_for(1, Duration::from_secs(20));
    assert!(got
        .iter()
        .any(|m| m.header("Subject").as_deref() == Some("while the service is down")));
    // Loud: both daemons say the service was not there.
    assert!(st.dv.log().contains("Policy server"), "{}", st.dv.log());
    assert!(
        st.pf.log().contains("problem talking to server"),
        "{}",
        st.pf.log()
    );
}

/// Level changes as stored: (time, from, to, enforced, reason).
fn changes(db: &std::path::Path) -> Vec<(i64, String, String, bool, String)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT c.ts_ms, c.from_level, c.to_level, c.enforced, c.reason
             FROM level_changes c JOIN users u ON u.id = c.user_id ORDER BY u.name, c.id",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// One judgement: what the service stored from real logins and messages, handed to
/// `record` as Fail2ban would hand it (same source, user, address, time, ticket),
/// gives the same level changes, reasons included.
#[test]
fn the_service_and_record_judge_the_same_events_alike() {
    let config = "[thresholds.imap]\nnotify = 2\nblock = 4\n[thresholds.rate]\nnotify = 3\n";
    let st = Stack::start(config);
    for i in 0..6 {
        assert!(st
            .dv
            .imap_login_from(&format!("198.51.{i}.1"), ALICE, ALICE_PW));
    }
    for i in 0..12 {
        let mut c =
            Session::connect(st.pf.submission_port, &format!("203.{}.0.7", 10 + i)).unwrap();
        c.auth(ALICE, ALICE_PW).unwrap();
        if i % 3 == 0 {
            c.send(ALICE, TO, &message(ALICE, TO, &format!("m{i}"), "hello"))
                .unwrap();
        }
        c.quit();
    }
    assert!(st.dv.imap_login_from("198.51.100.1", BOB, BOB_PW));
    st.wait_events("every login and message", |ev| ev.len() == 6 + 12 + 4);
    let via_service = changes(&st.s.db());
    assert!(
        via_service.iter().any(|c| c.2 == "block"),
        "{via_service:?}"
    );
    let replay = Sandbox::new(config);
    let conn = rusqlite::Connection::open(st.s.db()).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT e.source, e.jail, u.name, e.ip, e.ts_ms, e.fid, e.count
             FROM events e JOIN users u ON u.id = e.user_id ORDER BY e.id",
        )
        .unwrap();
    // Each stored event as the `record` call Fail2ban's action would make.
    let calls: Vec<Vec<String>> = stmt
        .query_map([], |r| {
            let ts: i64 = r.get(4)?;
            let mut args = vec![
                "record".to_owned(),
                format!("--source={}", r.get::<_, String>(0)?),
                format!("--jail={}", r.get::<_, String>(1)?),
                format!("--user={}", r.get::<_, String>(2)?),
                format!("--ip={}", r.get::<_, String>(3)?),
                format!("--time={}.{:03}", ts / 1000, ts % 1000),
                format!("--count={}", r.get::<_, i64>(6)?),
            ];
            if let Some(f) = r.get::<_, Option<String>>(5)? {
                args.push(format!("--fid={f}"));
            }
            Ok(args)
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(calls.len(), 6 + 12 + 4 + 1);
    for args in calls {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        replay.ok(&args);
    }
    assert_eq!(changes(&replay.db()), via_service);
}
