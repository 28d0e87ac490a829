//! The whole chain on loopback, as on a mail server: real Postfix and Dovecot, a real
//! Fail2ban with the shipped files, f2b-mailguard, and an SMTP sink standing for the
//! Internet and the admin's mailbox. A botnet uses one stolen account from 12
//! addresses within a minute; another user sends from 2 addresses throughout.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::fail2ban::{Fail2ban, Jail};
use support::mailstack::{mail_server, submit, Dovecot, Postfix};
use support::smtp_sink::SmtpSink;
use support::{now, Sandbox, BIN};

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";
const TO: &str = "someone@remote.example";

struct Stack {
    _dir: tempfile::TempDir,
    sink: SmtpSink,
    pf: Postfix,
    // Kept alive for Postfix's SMTP AUTH; stopped by pid when dropped.
    _dv: Dovecot,
    s: Sandbox,
    f2b: Fail2ban,
}

impl Stack {
    fn start(mode: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sink = SmtpSink::start();
        let (dv, pf) = mail_server(
            dir.path(),
            &[(ALICE, "alice-pw"), (BOB, "bob-pw")],
            sink.port,
        );
        let mut s = Sandbox::acting(&format!(
            "mode = \"{mode}\"\n[mail]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\nto = [\"postmaster@example.test\"]\n[postfix]\nsasl_map = \"{}\"\n",
            sink.port,
            pf.sasl_map.display()
        ));
        s.env.push(("MAIL_CONFIG".into(), pf.config_dir.clone()));
        let log = pf.root.join("postfix.log");
        let f2b = Fail2ban::start_with_env(
            dir.path(),
            Path::new(BIN),
            &s.config_path(),
            &[Jail {
                name: "mailguard-smtp",
                logpath: &log,
            }],
            &[("MAIL_CONFIG", &pf.config_dir)],
        );
        Self {
            _dir: dir,
            sink,
            pf,
            _dv: dv,
            s,
            f2b,
        }
    }

    fn send(&self, user: &str, addr: &str) -> Result<String, String> {
        let pw = if user == ALICE { "alice-pw" } else { "bob-pw" };
        submit(self.pf.submission_port, addr, (user, pw), user, TO)
    }

    fn wait(&self, what: &str, limit: Duration, mut ok: impl FnMut(&Self) -> bool) -> Duration {
        let start = Instant::now();
        while !ok(self) {
            assert!(
                start.elapsed() < limit,
                "no {what} within {limit:?}\nfail2ban:\n{}\nstatus:\n{}",
                self.f2b.log(),
                self.s.ok(&["status", "--", ALICE])
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        start.elapsed()
    }
}

/// The botnet: 12 authenticated sends as alice from 12 addresses within a minute.
fn botnet(st: &Stack) {
    for i in 1..=12 {
        // Once blocked, further attempts are refused; the botnet keeps trying.
        let _ = st.send(ALICE, &format!("203.0.{}.9", 100 + i));
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn enforce_a_botnet_is_stopped_within_15_s_and_release_restores_the_account() {
    let st = Stack::start("enforce");
    st.send(BOB, "198.51.100.10").expect("bob sends from home");
    st.send(ALICE, "198.51.100.20")
        .expect("alice sends before the compromise");
    botnet(&st);

    let took = st.wait("block", Duration::from_secs(15), |st| {
        st.send(ALICE, "203.0.113.200")
            .is_err_and(|r| r.starts_with("550 5.7.1"))
    });
    eprintln!("blocked {took:?} after the 12th botnet login");
    st.wait("held queue", Duration::from_secs(15), |st| {
        st.pf.queued(ALICE, "hold") > 0 && st.pf.queued(ALICE, "deferred") == 0
    });
    st.wait("admin mail", Duration::from_secs(15), |st| {
        st.sink.messages().iter().any(|m| {
            m.header("Subject")
                .is_some_and(|s| s == format!("[f2b-mailguard] {ALICE}: block"))
        })
    });
    // The normal user is unaffected throughout.
    st.send(BOB, "198.51.100.11")
        .expect("bob sends from his phone");
    assert_eq!(st.pf.queued(BOB, "hold"), 0);
    assert_eq!(
        st.pf.queued(BOB, "deferred"),
        2,
        "both of bob's messages queued normally"
    );
    assert_eq!(st.s.status_user(BOB, now())["level"], "ok");

    st.s.ok(&["release", ALICE]);
    st.send(ALICE, "198.51.100.20")
        .expect("released account sends again");
    assert_eq!(st.pf.queued(ALICE, "hold"), 0);
}

#[test]
fn warn_mode_only_mails_the_admin() {
    let st = Stack::start("warn");
    st.send(BOB, "198.51.100.10").expect("bob sends");
    botnet(&st);
    st.wait("admin mail", Duration::from_secs(15), |st| {
        st.sink.messages().iter().any(|m| {
            m.header("Subject")
                .is_some_and(|s| s == format!("[f2b-mailguard] {ALICE}: would block"))
        })
    });
    st.send(ALICE, "203.0.113.200")
        .expect("warn mode blocks nothing");
    assert_eq!(st.pf.queued(ALICE, "hold"), 0);
    assert!(st.pf.queued(ALICE, "deferred") >= 12);
    assert_eq!(st.s.status_user(ALICE, now())["state"], "would block");
}
