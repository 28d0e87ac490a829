//! `doctor` against a real Postfix set up wrongly on purpose, then right.

use crate::support;

use std::path::Path;
use std::time::Duration;

use support::mailstack::{Postfix, PostfixSetup};
use support::smtp_sink::SmtpSink;
use support::Sandbox;

/// A private Postfix (not started: doctor reads its configuration) whose submission
/// service has these recipient restrictions, and a sandbox pointed at it.
pub(crate) fn setup(dir: &Path, restrictions: Option<&str>, sink_port: u16) -> (Postfix, Sandbox) {
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

pub(crate) fn doctor(s: &Sandbox, args: &[&str]) -> (i32, String) {
    let out = s.cmd().arg("doctor").args(args).output().expect("doctor");
    (
        out.status.code().expect("code"),
        String::from_utf8(out.stdout).expect("utf-8"),
    )
}

/// The exit code doctor owes for its output: 2 with a fail, 1 with a warn, else 0.
pub(crate) fn worst(out: &str) -> i32 {
    if out.lines().any(|l| l.starts_with("fail ")) {
        2
    } else if out.lines().any(|l| l.starts_with("warn ")) {
        1
    } else {
        0
    }
}

pub(crate) fn line<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in\n{text}"))
}

/// The fix printed under the finding whose line contains `needle`.
pub(crate) fn fix_of(text: &str, needle: &str) -> String {
    let mut lines = text.lines().skip_while(|l| !l.contains(needle));
    lines
        .next()
        .unwrap_or_else(|| panic!("no {needle:?} in\n{text}"));
    let fix = lines.next().unwrap_or_default().trim();
    fix.strip_prefix("fix: ")
        .unwrap_or_else(|| panic!("no fix under {needle:?} in\n{text}"))
        .to_owned()
}

/// A shell command as an admin pastes it, with the private Postfix's MAIL_CONFIG.
pub(crate) fn paste(pf: &Postfix, command: &str) {
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", command])
        .env("MAIL_CONFIG", &pf.config_dir)
        .output()
        .expect("sh");
    support::assert_success(format_args!("{command}"), &out);
}

/// One unauthenticated message to the port-25 stand-in; then the log up to its end.
pub(crate) fn port_25_session(pf: &Postfix) -> String {
    let before = pf.log().matches("disconnect from").count();
    support::mailstack::deliver_unauthenticated(
        pf.mx_port,
        "203.0.113.5",
        "someone@example.net",
        &format!("bob@{}", support::mailstack::RELAYED_DOMAIN),
    )
    .expect("port 25 delivery");
    support::wait_until("the session in the log", Duration::from_secs(10), || {
        pf.log().matches("disconnect from").count() > before
    });
    pf.log()
}

/// Something must run run-actions periodically: the timer enabled, or a cron line
/// in a file cron reads.
#[test]
fn doctor_checks_that_run_actions_runs_periodically() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start();
    let (_pf, mut s) = setup(&dir.path().join("pf"), None, sink.port);
    let systemd = dir.path().join("systemd");
    let cron = dir.path().join("cron.d");
    std::fs::create_dir_all(&systemd).unwrap();
    std::fs::create_dir_all(&cron).unwrap();
    s.env
        .push(("F2B_MAILGUARD_SYSTEMD_DIR".into(), systemd.clone()));
    s.env.push(("F2B_MAILGUARD_CRON_DIR".into(), cron.clone()));

    let (_, out) = doctor(&s, &[]);
    let none = line(&out, "nothing runs run-actions periodically");
    assert!(none.starts_with("warn  mailguard"), "{out}");
    let fix = fix_of(&out, "nothing runs run-actions periodically");
    assert!(
        fix.starts_with("systemctl enable --now f2b-mailguard-actions.timer"),
        "{fix}"
    );
    // The cron alternative, pasted as given.
    let cron_cmd = fix
        .split_once("without systemd: ")
        .expect("cron alternative")
        .1
        .trim_end_matches(')');
    std::process::Command::new("/bin/sh")
        .args(["-c", cron_cmd])
        .status()
        .unwrap();
    let (_, out) = doctor(&s, &[]);
    let file = cron.join("f2b-mailguard");
    assert!(
        line(&out, &format!("{} runs run-actions", file.display())).starts_with("ok    mailguard"),
        "{out}"
    );

    // cron skips a file with a dot in its name.
    let dotted = cron.join("f2b-mailguard.cron");
    std::fs::rename(&file, &dotted).unwrap();
    let (_, out) = doctor(&s, &[]);
    assert!(
        line(&out, "cron skips files").starts_with("warn  mailguard"),
        "{out}"
    );
    assert_eq!(
        fix_of(&out, "cron skips files"),
        format!("mv {} {}", dotted.display(), file.display())
    );
    std::fs::remove_file(&dotted).unwrap();

    // The timer, enabled as systemctl enable links it.
    let unit = systemd.join("f2b-mailguard-actions.timer");
    std::fs::write(&unit, "[Timer]\n").unwrap();
    std::fs::create_dir_all(systemd.join("timers.target.wants")).unwrap();
    std::os::unix::fs::symlink(
        &unit,
        systemd.join("timers.target.wants/f2b-mailguard-actions.timer"),
    )
    .unwrap();
    // Its link alone means nothing where systemd does not run (a container, a
    // chroot): doctor looks for /run/systemd/system.
    let running = dir.path().join("run-systemd-system");
    s.env
        .push(("F2B_MAILGUARD_SYSTEMD_RUNNING".into(), running.clone()));
    let (_, out) = doctor(&s, &[]);
    let l = line(&out, "f2b-mailguard-actions.timer is enabled");
    assert!(l.starts_with("warn  mailguard"), "{out}");
    assert!(l.contains("systemd is not running here"), "{out}");
    assert!(
        fix_of(&out, "f2b-mailguard-actions.timer is enabled").starts_with("cron instead: printf"),
        "{out}"
    );
    std::fs::create_dir_all(&running).unwrap();
    let (_, out) = doctor(&s, &[]);
    assert!(
        line(&out, "f2b-mailguard-actions.timer is enabled").starts_with("ok    mailguard"),
        "{out}"
    );
}

/// The docs' cron lines are the ones doctor prints (for the installed binary and the
/// default config, which needs no --config), not a copy that drifts.
#[test]
fn the_docs_cron_lines_are_the_ones_doctor_prints() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start();
    let (_pf, mut s) = setup(&dir.path().join("pf"), None, sink.port);
    let cron = dir.path().join("cron.d");
    std::fs::create_dir_all(&cron).unwrap();
    s.env
        .push(("F2B_MAILGUARD_SYSTEMD_DIR".into(), dir.path().join("none")));
    s.env.push(("F2B_MAILGUARD_CRON_DIR".into(), cron.clone()));
    let (_, out) = doctor(&s, &[]);
    let fix = fix_of(&out, "nothing runs run-actions periodically");
    let printf = fix.split_once("without systemd: ").expect("cron").1;
    let printf = printf.strip_suffix(')').unwrap();
    // What cron gets, as the pasted command writes it.
    paste_plain(printf);
    let written = std::fs::read_to_string(cron.join("f2b-mailguard")).unwrap();
    let config = format!(" --config {}", s.config_path().display());
    let as_installed: Vec<String> = written
        .lines()
        .map(|l| {
            assert!(l.contains(&config), "{l}");
            l.replace(&config, "")
                .replace(support::BIN, "/usr/local/bin/f2b-mailguard")
        })
        .collect();
    assert_eq!(as_installed.len(), 3, "{written}");
    let page =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/install.md"))
            .unwrap();
    let block: Vec<&str> = page
        .lines()
        .skip_while(|l| !l.starts_with("Without systemd, the same from cron"))
        .skip_while(|l| !l.starts_with("```"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .collect();
    assert_eq!(
        block, as_installed,
        "docs/install.md's cron block vs doctor's lines"
    );
}

fn paste_plain(command: &str) {
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", command])
        .output()
        .expect("sh");
    support::assert_success(format_args!("{command}"), &out);
}

/// A config that does not load is one failure, and the rest of the checklist still
/// runs (Fail2ban, Postfix), with the built-in defaults.
#[test]
fn a_broken_config_is_reported_and_the_other_checks_still_run() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start();
    let (_pf, s) = setup(&dir.path().join("pf"), None, sink.port);
    s.write_config("mode = \"enforc\"\n");
    let (code, out) = doctor(&s, &[]);
    assert_eq!(code, 2, "{out}");
    let l = line(&out, "the checks below use the built-in defaults");
    assert!(l.starts_with("fail  mailguard"), "{out}");
    assert!(l.contains("enforc"), "{out}");
    assert!(
        line(&out, "Fail2Ban v").starts_with("ok    fail2ban"),
        "{out}"
    );
    assert!(out.lines().any(|l| l.contains(" postfix ")), "{out}");
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
    support::wait_until("fail2ban-server to answer", Duration::from_secs(20), || {
        idle.client(&["ping"]).is_ok()
    });
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
        &[
            Jail {
                name: "mailguard-smtp",
                logpath: &log,
            },
            Jail {
                name: "mailguard-rate",
                logpath: &log,
            },
        ],
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
    // Nothing matched yet is a note: it does not hold the exit code at 1 (a POP3 jail
    // on a server with no POP3 user would, for good).
    assert!(
        line(&out, "has matched no login").starts_with("note  fail2ban"),
        "{out}"
    );
    // The fix names the jail's own log and filter, not placeholders.
    let fix = fix_of(&out, "jail mailguard-smtp: its filter has matched no login");
    assert_eq!(
        fix,
        format!(
            "fail2ban-regex -c {} {} 'mailguard-postfix-sasl'   shows whether its lines match",
            on.conf.display(),
            log.display()
        )
    );
    // A rate jail counts messages, not logins.
    assert!(
        line(
            &out,
            "jail mailguard-rate: its filter has matched no message"
        )
        .starts_with("note"),
        "{out}"
    );
    assert!(!out.contains("no mailguard jail"));
    let empty = format!("{} is empty", log.display());
    assert!(line(&out, &empty).starts_with("warn  fail2ban"), "{out}");

    append(&log, &[format!(
        "{} mx postfix/submission/smtpd[77]: ABCDEF1234: client=unknown[198.51.100.9], sasl_method=PLAIN, sasl_username=alice@example.com",
        syslog_now()
    )]);
    support::wait_until("the login to reach record", Duration::from_secs(10), || {
        s.rows("events") >= 1
    });
    let (_, out) = doctor(&s, &[]);
    assert!(
        line(&out, "matched 1 login(s)").starts_with("ok    fail2ban"),
        "{out}"
    );
    assert!(
        line(&out, "jail mailguard-rate matched 1 message(s)").starts_with("ok"),
        "{out}"
    );
    // The jail's filter, run by fail2ban-regex on the log's last lines.
    let tail = line(&out, "mailguard-postfix-sasl matches 1 of the last 1 lines");
    assert!(tail.starts_with("ok    fail2ban"), "{out}");
    drop(on);
}

/// The submission service of docs/install.md's mail-stack recipe, its restrictions as
/// written (the map's path aside): doctor finds the block consulted in time.
#[test]
fn the_install_pages_submission_restrictions_pass_doctor() {
    let page = std::fs::read_to_string(format!("{}/docs/install.md", env!("CARGO_MANIFEST_DIR")))
        .expect("docs/install.md");
    let restrictions = page
        .lines()
        .find_map(|l| l.trim().strip_prefix("-o smtpd_recipient_restrictions="))
        .expect("the recipe's -o smtpd_recipient_restrictions= line");
    let map = "lmdb:/etc/postfix/mailguard_sasl_access";
    assert!(restrictions.contains(map), "{restrictions}");
    let restrictions = restrictions.replace(map, "{map}");
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start();
    let (_pf, s) = setup(dir.path(), Some(&restrictions), sink.port);
    let (_, out) = doctor(&s, &[]);
    assert!(
        line(&out, "before permitting SASL users").starts_with("ok    postfix"),
        "{out}"
    );
}
