//! `doctor` against a real Postfix set up wrongly on purpose, then right.

mod support;

use std::path::Path;
use std::time::Duration;

use support::mailstack::{Postfix, PostfixSetup};
use support::smtp_sink::SmtpSink;
use support::Sandbox;

/// A private Postfix (not started: doctor reads its configuration) whose submission
/// service has these recipient restrictions, and a sandbox pointed at it.
fn setup(dir: &Path, restrictions: Option<&str>, sink_port: u16) -> (Postfix, Sandbox) {
    let pf = Postfix::configure(
        dir,
        &PostfixSetup {
            relay_port: sink_port,
            defer_outbound: false,
            sasl_socket: Some(Path::new("/run/mailguard-test-no-such-socket")),
            submission_restrictions: restrictions,
        },
    );
    let mut s = Sandbox::new(&format!(
        "mode = \"enforce\"\n[postfix]\nsasl_map = \"{}\"\n[mail]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {sink_port}\n[dovecot]\ndoveadm = \"/nonexistent/doveadm\"\n",
        pf.sasl_map.display()
    ));
    s.env.push(("MAIL_CONFIG".into(), pf.config_dir.clone()));
    (pf, s)
}

fn doctor(s: &Sandbox, args: &[&str]) -> (i32, String) {
    let out = s.cmd().arg("doctor").args(args).output().expect("doctor");
    (
        out.status.code().expect("code"),
        String::from_utf8(out.stdout).expect("utf-8"),
    )
}

/// The exit code doctor owes for its output: 2 with a fail, 1 with a warn, else 0.
fn worst(out: &str) -> i32 {
    if out.lines().any(|l| l.starts_with("fail ")) {
        2
    } else if out.lines().any(|l| l.starts_with("warn ")) {
        1
    } else {
        0
    }
}

fn line<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in\n{text}"))
}

#[test]
fn missing_misplaced_and_correct_check_sasl_access() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start();

    let (pf, s) = setup(
        &dir.path().join("missing"),
        Some("permit_sasl_authenticated,reject"),
        sink.port,
    );
    let (code, out) = doctor(&s, &[]);
    assert_eq!(code, 2, "{out}");
    let l = line(&out, "is in no restriction list");
    assert!(l.starts_with("fail  postfix"), "{l}");
    assert!(out.contains(&format!("fix: postconf -P '127.0.0.1:{}/inet/smtpd_recipient_restrictions=check_sasl_access,lmdb:", pf.submission_port)), "{out}");
    drop((pf, s));

    let (pf, s) = setup(
        &dir.path().join("after"),
        Some("permit_sasl_authenticated,check_sasl_access,{map},reject"),
        sink.port,
    );
    let (code, out) = doctor(&s, &[]);
    assert_eq!(code, 2, "{out}");
    let l = line(
        &out,
        "comes after permit_sasl_authenticated in smtpd_recipient_restrictions",
    );
    assert!(l.starts_with("fail  postfix"), "{l}");
    drop((pf, s));

    let (pf, s) = setup(&dir.path().join("right"), None, sink.port);
    let (code, out) = doctor(&s, &[]);
    let l = line(&out, "before permitting SASL users");
    assert!(l.starts_with("ok    postfix"), "{l}");
    assert!(line(&out, "is built and current").starts_with("ok"));
    assert!(
        !out.lines().any(|l| l.starts_with("fail  postfix")),
        "{out}"
    );
    assert_eq!(code, worst(&out), "the exit code is the worst finding's");
    assert!(line(&out, "may send as any address").starts_with("warn"));

    // --json: the same findings as data.
    let (_, json) = doctor(&s, &["--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let items = v.as_array().unwrap();
    assert!(items.iter().any(|f| f["status"] == "ok"
        && f["area"] == "postfix"
        && f["message"].as_str().unwrap().contains("before permitting")));
    assert!(items
        .iter()
        .all(|f| ["ok", "warn", "fail"].contains(&f["status"].as_str().unwrap())));

    // A stale built map is caught.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&pf.sasl_map, "someone@example.com 550 5.7.1 x\n").unwrap();
    let (code, out) = doctor(&s, &[]);
    assert_eq!(code, 2);
    assert!(line(&out, "older than its source").starts_with("fail"));
}

#[test]
fn send_test_mail_reports_the_smtp_answer() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start();
    let (_pf, s) = setup(dir.path(), None, sink.port);
    let (_, out) = doctor(&s, &["--send-test-mail"]);
    let l = line(&out, "test mail sent to");
    assert!(l.starts_with("ok    mail"), "{l}");
    assert!(l.contains("250 2.0.0"), "{l}");
    let got = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(
        got[0].header("Subject").as_deref(),
        Some("[f2b-mailguard] test mail from doctor")
    );

    drop(sink);
    let (code, out) = doctor(&s, &["--send-test-mail"]);
    assert_eq!(code, 2);
    assert!(line(&out, "test mail failed").starts_with("fail  mail"));
}

#[test]
fn fail2ban_jail_disabled_then_enabled() {
    use support::fail2ban::{append, syslog_now, Fail2ban, Jail};
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start();
    let (_pf, s) = setup(&dir.path().join("pf"), None, sink.port);

    // Fail2ban runs, but no mailguard jail is enabled.
    let idle = Fail2ban::start(
        &dir.path().join("off"),
        Path::new(support::BIN),
        &s.config_path(),
        &[],
    );
    // With no jail to wait for, start() returns before the server answers.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while idle.client(&["ping"]).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "fail2ban-server never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    s.write_config(&format!(
        "[postfix]\nsasl_map = \"{}\"\n[fail2ban]\nsocket = \"{}\"\n",
        _pf.sasl_map.display(),
        idle.socket.display()
    ));
    let (code, out) = doctor(&s, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(line(&out, "Fail2Ban v").starts_with("ok    fail2ban"));
    assert!(
        line(&out, "no mailguard jail is enabled").starts_with("fail  fail2ban"),
        "{out}"
    );
    drop(idle);

    // The smtp jail enabled on a log the mail server writes.
    let log = dir.path().join("mail.log");
    std::fs::write(&log, "").unwrap();
    let on = Fail2ban::start(
        &dir.path().join("on"),
        Path::new(support::BIN),
        &s.config_path(),
        &[Jail {
            name: "mailguard-smtp",
            logpath: &log,
        }],
    );
    s.write_config(&format!(
        "[postfix]\nsasl_map = \"{}\"\n[fail2ban]\nsocket = \"{}\"\nconfig_dir = \"{}\"\n",
        _pf.sasl_map.display(),
        on.socket.display(),
        on.conf.display()
    ));
    let (_, out) = doctor(&s, &[]);
    let runs = line(&out, "jail mailguard-smtp runs");
    assert!(runs.starts_with("ok    fail2ban"), "{runs}");
    assert!(
        runs.contains(&s.config_path().display().to_string()),
        "{runs}"
    );
    assert!(line(
        &out,
        &format!("jail mailguard-smtp reads {}", log.display())
    )
    .starts_with("ok"));
    assert!(
        line(&out, "has matched no login").starts_with("warn  fail2ban"),
        "{out}"
    );
    assert!(!out.contains("no mailguard jail"));
    let empty = format!("{} is empty", log.display());
    assert!(line(&out, &empty).starts_with("warn  fail2ban"), "{out}");

    append(&log, &[format!(
        "{} mx postfix/submission/smtpd[77]: ABCDEF1234: client=unknown[198.51.100.9], sasl_method=PLAIN, sasl_username=alice@example.com",
        syslog_now()
    )]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.rows("events") < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the login never reached record"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, out) = doctor(&s, &[]);
    assert!(
        line(&out, "matched 1 login(s)").starts_with("ok    fail2ban"),
        "{out}"
    );
    // The jail's filter, run by fail2ban-regex on the log's last lines.
    let tail = line(&out, "mailguard-postfix-sasl matches 1 of the last 1 lines");
    assert!(tail.starts_with("ok    fail2ban"), "{out}");
    drop(on);
}
