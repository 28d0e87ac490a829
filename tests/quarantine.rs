//! Quarantine at the first suspicion, through real Postfix, Dovecot and Fail2ban with
//! the shipped jails, delivering to an SMTP sink that stands for the Internet: an
//! account at notify (enforce mode) has its new mail accepted into Postfix's hold
//! queue; `release` delivers it intact and leaves every other held message alone.

use crate::support;

use std::time::Duration;

use support::fail2ban::Fail2ban;
use support::mailstack::{Dovecot, Postfix};
use support::policy_service::{relay_stack, Service, Wiring};
use support::smtp_client::{message, Session};
use support::smtp_sink::{Received, SmtpSink, TO};
use support::{now, wait_until, Sandbox};

pub const CAROL: &str = "carol@example.test";
pub const DAVE: &str = "dave@example.test";
/// The jails the README enables for a Postfix server.
pub const SUBMISSION_JAILS: &[&str] = &["mailguard-smtp", "mailguard-smtp-refused"];

/// Postfix delivering to the sink, Dovecot for SMTP AUTH, Fail2ban with the jails the
/// README enables (mailguard-smtp, mailguard-smtp-refused), f2b-mailguard acting.
pub struct Stack {
    pub sink: SmtpSink,
    pub pf: Postfix,
    _dv: Dovecot,
    pub s: Sandbox,
    pub f2b: Fail2ban,
    _serve: Option<Service>,
    // Last: removed after the daemons above are stopped.
    _dir: tempfile::TempDir,
}

impl Stack {
    /// `actions`: the `[actions]` settings beside the test's own.
    pub fn start(users: &[(&str, &str)], mode: &str, actions: &str) -> Self {
        Self::start_with(users, mode, actions, false)
    }

    /// As `start`; with `policy`, Dovecot and Postfix also ask the in-band policy
    /// service (`serve`), which runs on the same config.
    pub fn start_with(users: &[(&str, &str)], mode: &str, actions: &str, policy: bool) -> Self {
        Self::start_jails(users, mode, actions, policy, SUBMISSION_JAILS)
    }

    /// As `start_with`, with these mailguard jails on Postfix's log; the config names
    /// this Fail2ban (`[fail2ban]`), so `doctor` looks at it.
    pub fn start_jails(
        users: &[(&str, &str)],
        mode: &str,
        actions: &str,
        policy: bool,
        jails: &[&'static str],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let wiring = policy.then(|| Wiring::new(dir.path()));
        let (sink, dv, mut pf) = relay_stack(dir.path(), users, wiring.as_ref());
        pf.start();
        let config = format!(
            "mode = \"{mode}\"\n[actions]\nretry_base = \"1s\"\ncommand_timeout = \"10s\"\n{actions}\n\
             [mail]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\nto = [\"postmaster@example.test\"]\n\
             [postfix]\nsasl_map = \"{}\"\n{}",
            sink.port,
            pf.sasl_map.display(),
            wiring.as_ref().map(Wiring::config).unwrap_or_default(),
        );
        let mut s = Sandbox::acting(&config);
        s.env.push(("MAIL_CONFIG".into(), pf.config_dir.clone()));
        let serve = wiring.map(|w| w.start(&s));
        let log = pf.root.join("postfix.log");
        let f2b = Fail2ban::mail_jails(dir.path(), &s.config_path(), &log, &pf.config_dir, jails);
        s.write_config(&format!(
            "{config}\n[fail2ban]\nsocket = \"{}\"\nconfig_dir = \"{}\"\n",
            f2b.socket.display(),
            f2b.conf.display()
        ));
        Self {
            sink,
            pf,
            _dv: dv,
            s,
            f2b,
            _serve: serve,
            _dir: dir,
        }
    }

    pub fn map(&self) -> String {
        std::fs::read_to_string(&self.pf.sasl_map).unwrap_or_default()
    }

    /// Waits until the account's level is `level`.
    pub fn wait_level(&self, user: &str, level: &str) {
        wait_until(
            &format!("{user} at {level}"),
            Duration::from_secs(30),
            // Listed once Fail2ban had a first login recorded.
            || (self.s.account(user, now())).is_some_and(|a| a["level"] == level),
        );
    }

    /// Queue ids of `sender`'s messages in `queue`.
    pub fn ids(&self, sender: &str, queue: &str) -> Vec<String> {
        (self.pf.queue().iter())
            .filter(|m| m["sender"] == sender && m["queue_name"] == queue)
            .filter_map(|m| m["queue_id"].as_str().map(str::to_owned))
            .collect()
    }

    /// Waits for a message the sink received whose subject passes `subject`; returns it.
    pub fn delivered(&self, what: &str, subject: impl Fn(&str) -> bool) -> Received {
        let mut found = None;
        wait_until(what, Duration::from_secs(30), || {
            found = (self.sink.messages().into_iter())
                .find(|m| m.header("Subject").is_some_and(|s| subject(&s)));
            found.is_some()
        });
        found.unwrap()
    }

    /// Runs a Postfix command of the private instance, as the admin would.
    pub fn postfix(&self, program: &str, args: &[&str]) {
        let out = std::process::Command::new(program)
            .args(args)
            .env("MAIL_CONFIG", &self.pf.config_dir)
            .output()
            .unwrap();
        support::assert_success(program, &out);
    }
}

/// One message sent in its own session; panics unless Postfix accepted it.
pub fn send(st: &Stack, user: &str, password: &str, addr: &str, data: &str) -> String {
    let mut session = Session::open(st.pf.submission_port, addr, Some((user, password)))
        .unwrap_or_else(|e| panic!("{user} from {addr}: {e}"));
    let reply = (session.send(user, TO, data)).unwrap_or_else(|e| panic!("{user}: {e}"));
    session.quit();
    reply
}

/// Carol sends a message with `subject` from home.
fn from_home(st: &Stack, subject: &str) -> String {
    let data = message(CAROL, TO, subject, subject);
    send(st, CAROL, "carol-pw", "198.51.100.20", &data)
}

/// Carol travels: six networks within the hour is notify, not block.
pub fn travel(st: &Stack) {
    for i in 1..=6 {
        let addr = format!("192.0.{}.7", 10 * i);
        send(
            st,
            CAROL,
            "carol-pw",
            &addr,
            &message(CAROL, TO, "trip", "z"),
        );
    }
    st.wait_level(CAROL, "notify");
}

/// A message as a mail client writes it: every header Postfix would otherwise add, so
/// the sink must receive exactly this after Postfix's Received header.
pub fn honest_message(n: u32) -> String {
    format!(
        "Date: Mon, 07 Dec 2026 03:00:0{n} +0000\r\n\
         Message-ID: <quarantine-{n}@client.example.net>\r\n\
         From: Carol <{CAROL}>\r\n\
         To: <{TO}>\r\n\
         Subject: Quarterly figures, part {n}\r\n\
         X-Custom: kept as written\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         Dear someone,\r\n\
         \r\n\
         .a line that starts with a dot, and trailing spaces   \r\n\
         figures: 1, 2, 3\r\n\
         -- \r\n\
         Carol\r\n"
    )
}

/// What the sink received minus the Received header Postfix put on top, in CRLF.
pub fn as_sent(data: &str) -> String {
    let mut lines = data.lines().peekable();
    if lines.peek().is_some_and(|l| l.starts_with("Received:")) {
        lines.next();
        while lines.peek().is_some_and(|l| l.starts_with([' ', '\t'])) {
            lines.next();
        }
    }
    lines.map(|l| format!("{l}\r\n")).collect()
}

#[test]
fn release_delivers_an_honest_users_quarantined_mail_intact_and_leaves_other_holds() {
    let st = Stack::start(&[(CAROL, "carol-pw"), (DAVE, "dave-pw")], "enforce", "");
    // Held by the admin before anything happened: one of carol's, one of dave's.
    st.sink.set_tempfail(true);
    from_home(&st, "earlier");
    send(
        &st,
        DAVE,
        "dave-pw",
        "198.51.100.30",
        &message(DAVE, TO, "dave's", "y"),
    );
    st.pf.wait_queue("both deferred", |pf| {
        pf.queued(CAROL, "deferred") == 1 && pf.queued(DAVE, "deferred") == 1
    });
    let mut admin_held = st.ids(CAROL, "deferred");
    admin_held.extend(st.ids(DAVE, "deferred"));
    for id in &admin_held {
        st.postfix("/usr/sbin/postsuper", &["-h", id]);
    }
    st.sink.set_tempfail(false);

    // The quarantine's mail is told from older holds by Postfix's arrival time, in
    // whole seconds: the admin's holds come a second before it starts, as they would.
    std::thread::sleep(Duration::from_millis(1100));
    travel(&st);
    // As smtpd reads it: the map's text is renamed into place before postmap builds
    // the table Postfix looks up.
    wait_until("carol held in the map", Duration::from_secs(30), || {
        (st.pf.map_lookup(CAROL)).is_some_and(|v| v.starts_with("HOLD "))
    });
    let map = st.map();
    assert!(!map.contains(DAVE), "{map}");

    // Her mail now: accepted (she sees success), held, not delivered.
    let sent = [honest_message(1), honest_message(2)];
    for m in &sent {
        let reply = send(&st, CAROL, "carol-pw", "198.51.100.20", m);
        assert!(reply.starts_with("250"), "{reply}");
    }
    st.pf.wait_queue("carol's two new messages held", |pf| {
        pf.queued(CAROL, "hold") == 3
    });
    let log = st.pf.log();
    assert!(log.contains("NOQUEUE: hold: RCPT from"), "{log}");
    let delivered = |st: &Stack, n: u32| {
        (st.sink.messages().iter()).any(|m| {
            m.header("Subject").as_deref() == Some(&format!("Quarterly figures, part {n}"))
        })
    };
    assert!(!delivered(&st, 1) && !delivered(&st, 2));
    // A HOLD line is not a refused login: nothing counted as smtp-refused.
    let d = st.s.status_user(CAROL, now());
    assert_eq!(d["refused_logins"].as_u64(), Some(0), "{d:#}");
    assert_eq!(d["postfix"], "HOLD", "{d:#}");
    let text = st.s.ok(&["status", "--", CAROL]);
    assert!(
        text.contains("quarantined: Postfix holds its new mail"),
        "{text}"
    );

    let out = st.s.ok(&["release", CAROL]);
    assert!(out.contains("2 held message(s) released"), "{out}");
    wait_until(
        "both released messages delivered",
        Duration::from_secs(30),
        || delivered(&st, 1) && delivered(&st, 2),
    );
    for (n, m) in (1..).zip(&sent) {
        let got = (st.sink.messages().into_iter())
            .find(|r| {
                r.header("Subject").as_deref() == Some(&format!("Quarterly figures, part {n}"))
            })
            .unwrap();
        assert_eq!(
            as_sent(&got.data),
            *m,
            "part {n} as delivered:\n{}",
            got.data
        );
        assert_eq!(got.from, CAROL);
        assert_eq!(got.to, [TO]);
    }
    // The admin's holds stay: carol's earlier message and dave's.
    let mut still = st.ids(CAROL, "hold");
    still.extend(st.ids(DAVE, "hold"));
    assert_eq!(still, admin_held);
    assert!(!st.map().contains(CAROL));
    assert_eq!(st.s.status_user(CAROL, now())["level"], "ok");
    // Released, she sends normally again.
    from_home(&st, "after");
    st.delivered("delivered after release", |s| s == "after");
}

#[test]
fn warn_mode_says_would_quarantine_and_holds_nothing() {
    let st = Stack::start(&[(CAROL, "carol-pw")], "warn", "");
    travel(&st);
    let mail = st.delivered("the admin mail", |s| s.ends_with(": notify"));
    assert!(
        mail.data.contains("Would quarantine (mode is warn)"),
        "{}",
        mail.data
    );
    from_home(&st, "still out");
    st.delivered("delivered in warn mode", |s| s == "still out");
    assert!(!st.map().contains(CAROL));
}
