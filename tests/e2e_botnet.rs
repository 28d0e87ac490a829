//! The whole chain on loopback, as on a mail server: real Postfix and Dovecot, a real
//! Fail2ban with the shipped files, f2b-mailguard, and an SMTP sink standing for the
//! Internet and the admin's mailbox. A botnet uses one stolen account from 12
//! addresses within a minute; another user sends from 2 addresses throughout. The
//! jails are those README.md's tour enables (mailguard-smtp and mailguard-smtp-refused),
//! read from its ini block.

use crate::support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::fail2ban::{Fail2ban, Jail};
use support::mailstack::{mail_server, submit, Dovecot, Postfix};
use support::smtp_sink::{with_subject, SmtpSink, TO};
use support::{now, Sandbox, BIN};

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";

struct Stack {
    _dir: tempfile::TempDir,
    sink: SmtpSink,
    pf: Postfix,
    // Kept alive for Postfix's SMTP AUTH; stopped by pid when dropped.
    dv: Dovecot,
    s: Sandbox,
    f2b: Fail2ban,
}

/// The jails the first ini block of `page` enables: `[name]` then `enabled = true`.
fn enabled_jails(page: &str) -> Vec<String> {
    let text = std::fs::read_to_string(format!("{}/{page}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{page}: {e}"));
    let block = text
        .split("```ini\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap_or_else(|| panic!("no ini block in {page}"));
    let mut jails = Vec::new();
    for section in block.split('[').skip(1) {
        let (name, body) = section.split_once("]\n").expect("[name]");
        assert_eq!(body.trim(), "enabled = true", "{page}: [{name}]");
        jails.push(name.to_owned());
    }
    jails
}

#[test]
fn the_readme_and_the_fail2ban_page_enable_the_same_jails() {
    let readme = enabled_jails("README.md");
    assert_eq!(readme, ["mailguard-smtp", "mailguard-smtp-refused"]);
    assert_eq!(readme, enabled_jails("docs/fail2ban.md"));
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
            "mode = \"{mode}\"\n[mail]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\nto = [\"postmaster@example.test\"]\n[postfix]\nsasl_map = \"{}\"\n[password]\nbackend = \"dovecot-passwd-file\"\npasswd_file = \"{}\"\n[dovecot]\ndoveadm = \"{}\"\n",
            sink.port,
            pf.sasl_map.display(),
            dv.users.display(),
            dv.doveadm.display()
        ));
        s.env.push(("MAIL_CONFIG".into(), pf.config_dir.clone()));
        let log = pf.root.join("postfix.log");
        let names = enabled_jails("README.md");
        let jails = Jail::each(names.iter().map(String::as_str), &log);
        let f2b = Fail2ban::start_with_env(
            dir.path(),
            Path::new(BIN),
            &s.config_path(),
            &jails,
            &[("MAIL_CONFIG", &pf.config_dir)],
        );
        Self {
            _dir: dir,
            sink,
            pf,
            dv,
            s,
            f2b,
        }
    }

    fn send(&self, user: &str, addr: &str) -> Result<String, String> {
        let pw = if user == ALICE { "alice-pw" } else { "bob-pw" };
        submit(self.pf.submission_port, addr, (user, pw), user, TO)
    }

    /// Waits until `ok` holds for alice's `status USER --json`, returning it.
    fn wait_status(
        &self,
        what: &str,
        mut ok: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        self.wait(what, Duration::from_secs(20), |st| {
            last = st.s.status_user(ALICE, now());
            ok(&last)
        });
        last
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

    /// Waits for the admin's mail about alice at `level` ("block", "would block").
    fn wait_admin_mail(&self, level: &str) {
        let subject = format!("[f2b-mailguard] {ALICE}: {level}");
        self.wait("admin mail", Duration::from_secs(15), |st| {
            with_subject(&st.sink.messages(), &subject).is_some()
        });
    }
}

/// The botnet: 12 authenticated sends as alice from 12 addresses (in 12 /16s) within a
/// minute.
fn botnet(st: &Stack) {
    for i in 1..=12 {
        // Once blocked, further attempts are refused; the botnet keeps trying.
        let _ = st.send(ALICE, &format!("203.{}.0.9", 100 + i));
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
    st.wait_admin_mail("block");
    // The normal user is unaffected throughout.
    st.send(BOB, "198.51.100.11")
        .expect("bob sends from his phone");
    // Postfix moves a new message through incoming and active before it defers it.
    st.pf
        .wait_queue("both of bob's messages queued normally", |pf| {
            pf.queued(BOB, "deferred") == 2
        });
    assert_eq!(st.pf.queued(BOB, "hold"), 0);
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
    st.wait_admin_mail("would block");
    st.send(ALICE, "203.0.113.200")
        .expect("warn mode blocks nothing");
    assert_eq!(st.pf.queued(ALICE, "hold"), 0);
    assert!(st.pf.queued(ALICE, "deferred") >= 12);
    assert_eq!(st.s.status_user(ALICE, now())["state"], "would block");
}

/// Blocked, the account's botnet goes on from new networks; Postfix
/// refuses every submission with our map's 550, and the shipped refused jail and filter
/// keep counting them as smtp logins, so the account reaches lock (more than 20
/// networks), which resets its password. Without that jail the count stops at the
/// block's 11 or 12 networks and lock never comes.
#[test]
fn enforce_a_blocked_accounts_botnet_keeps_counting_until_lock() {
    let st = Stack::start("enforce");
    st.send(ALICE, "198.51.100.20")
        .expect("alice sends before the compromise");
    botnet(&st);
    st.wait("block", Duration::from_secs(15), |st| {
        st.send(ALICE, "203.0.113.200")
            .is_err_and(|r| r.starts_with("550 5.7.1"))
    });
    // The botnet still has the password and tries from new networks, until the lock
    // resets the password (535: authentication failed).
    let mut refused = Vec::new();
    for i in 1..=20 {
        let addr = format!("203.{}.0.77", 150 + i);
        match st.send(ALICE, &addr) {
            Err(r) if r.starts_with("535") => break,
            Err(r) if r.starts_with("550 5.7.1") && r.contains("Account suspended") => {
                refused.push(addr)
            }
            other => panic!("{addr}: neither refused nor locked out: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // Home, at most 12 botnet networks and .200 were counted before: lock (> 20)
    // needs at least 7 of the refused ones.
    assert!(refused.len() >= 7, "{refused:?}");
    let took = st.wait("lock", Duration::from_secs(30), |st| {
        st.s.status_user(ALICE, now())["level"] == "lock"
    });
    eprintln!("locked {took:?} after the last refused login");
    let d = st.s.status_user(ALICE, now());
    let lock = d["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (lock["from"].as_str(), lock["to"].as_str()),
        (Some("block"), Some("lock"))
    );
    assert!(lock["enforced"].as_bool().unwrap(), "{lock:#}");
    assert!(
        lock["reason"].as_str().unwrap().starts_with("smtp: 2"),
        "counted as smtp networks: {lock:#}"
    );
    // status tells the refused logins apart: per network and in total.
    let d = st.wait_status("every refused network", |d| {
        let nets = d["networks"].as_array().unwrap();
        refused.iter().all(|a| {
            nets.iter().any(|n| {
                n["network"] == format!("{a}/32")
                    && n["sources"] == serde_json::json!(["smtp-refused"])
            })
        })
    });
    let n = refused.len() as u64;
    assert!(d["refused_networks"].as_u64().unwrap() >= n, "{d:#}");
    assert!(d["refused_logins"].as_u64().unwrap() >= n, "{d:#}");
    let text = st.s.ok(&["status", "--", ALICE]);
    assert!(
        text.contains("login(s) with the right password from") && text.contains("smtp-refused"),
        "{text}"
    );
    // Lock takes effect: the stolen password is gone, for IMAP as for SMTP AUTH.
    st.wait("password reset", Duration::from_secs(20), |st| {
        !st.dv.imap_login(ALICE, "alice-pw")
    });
    let after = st
        .send(ALICE, "203.0.199.77")
        .expect_err("old password refused");
    assert!(after.starts_with("535"), "{after}");
}
