//! `doctor` on Postfix's side against a real Postfix: where check_sasl_access and the
//! sender-login check live (main.cf or a service's -o override), and the SASL recipe
//! of docs/mail-stack.md run as written.

use crate::doctor::{doctor, fix_of, line, paste, port_25_session, setup, worst};
use crate::support;

use std::path::Path;
use std::time::Duration;

use support::mailstack::{Postfix, PostfixSetup};
use support::smtp_sink::SmtpSink;
use support::Sandbox;

/// The sender-login check belongs in the SASL services' -o overrides. In
/// main.cf (the old advice) port 25 logs "no SASL support" for every client; doctor
/// says so, and its fix, pasted as given, ties senders on submission only.
#[test]
fn sender_login_fix_goes_to_the_submission_service_and_port_25_stays_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start();

    // The old advice, in main.cf.
    let (mut pf, s) = setup(&dir.path().join("main"), None, sink.port);
    let login_map = pf.config_dir.join("sender_login");
    std::fs::write(&login_map, "alice@example.com alice@example.com\n").unwrap();
    paste(&pf, &format!("postmap lmdb:{0} && postconf -e 'smtpd_sender_login_maps = lmdb:{0}' 'smtpd_sender_restrictions = reject_authenticated_sender_login_mismatch'", login_map.display()));
    let (_, out) = doctor(&s, &[]);
    let noisy = line(&out, "no SASL support");
    assert!(noisy.starts_with("warn  postfix"), "{out}");
    assert!(
        noisy.contains(&format!("127.0.0.1:{}/inet", pf.mx_port)),
        "{noisy}"
    );
    pf.start();
    let log = port_25_session(&pf);
    assert!(log.contains("ignored: no SASL support"), "{log}");
    drop(pf);

    // No check at all: doctor's fix, pasted once the login map is filled.
    let (mut pf, s) = setup(&dir.path().join("fixed"), None, sink.port);
    let (_, out) = doctor(&s, &[]);
    assert!(line(&out, "may send as any address").starts_with("warn  postfix"));
    let fix = fix_of(&out, "may send as any address");
    let login_map = pf.config_dir.join("sender_login");
    assert!(
        fix.starts_with(&format!("fill {}", login_map.display())),
        "{fix}"
    );
    assert!(!fix.contains("postconf -e"), "main.cf is left alone: {fix}");
    std::fs::write(&login_map, "alice@example.com alice@example.com\n").unwrap();
    paste(&pf, &format!("postmap lmdb:{}", login_map.display()));
    let postconf = fix.split_once("then: ").expect("then").1;
    // Postfix is not running yet: its reload is for a live server.
    paste(&pf, postconf.trim_end_matches(" && postfix reload"));
    let (_, out) = doctor(&s, &[]);
    assert!(
        line(&out, "senders are tied to their login").starts_with("ok    postfix"),
        "{out}"
    );
    pf.start();
    let log = port_25_session(&pf);
    assert!(!log.contains("no SASL support"), "{log}");
}

/// check_sasl_access in main.cf (not a submission -o override) reaches port 25 too,
/// where Postfix logs "restriction `check_sasl_access' ignored: no SASL support" for
/// its mail. Doctor says where the restriction lives and warns; its fix, pasted,
/// moves it to the submission service and port 25 stays quiet.
#[test]
fn check_sasl_access_in_main_cf_is_a_warning_with_the_move_to_master_cf() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start();
    let (mut pf, s) = setup(&dir.path().join("main"), None, sink.port);
    let (_, out) = doctor(&s, &[]);
    assert!(
        line(&out, "before permitting SASL users")
            .contains("(set in its -o override in master.cf)"),
        "{out}"
    );
    let submission = format!("127.0.0.1:{}/inet", pf.submission_port);
    let map = format!("lmdb:{}", pf.sasl_map.display());
    let mx = format!("127.0.0.1:{}/inet", pf.mx_port);
    paste(&pf, &format!("postconf -PX '{submission}/smtpd_recipient_restrictions' '{mx}/smtpd_recipient_restrictions' && postconf -e 'smtpd_recipient_restrictions = permit_mynetworks, check_sasl_access {map}, permit_sasl_authenticated, reject_unauth_destination'"));
    let (_, out) = doctor(&s, &[]);
    assert!(
        line(&out, "before permitting SASL users").contains("(set in main.cf)"),
        "{out}"
    );
    let warn = line(
        &out,
        "check_sasl_access is in main.cf's smtpd_recipient_restrictions",
    );
    assert!(warn.starts_with("warn  postfix"), "{out}");
    assert!(
        warn.contains(&format!("127.0.0.1:{}/inet", pf.mx_port)),
        "{warn}"
    );
    pf.start();
    let log = port_25_session(&pf);
    assert!(
        log.contains("restriction `check_sasl_access' ignored: no SASL support"),
        "{log}"
    );

    // doctor's fix, pasted as given, on the running Postfix.
    let fix = fix_of(&out, "check_sasl_access is in main.cf's");
    paste(&pf, &fix);
    let (_, out) = doctor(&s, &[]);
    assert!(!out.contains("check_sasl_access is in main.cf's"), "{out}");
    assert!(
        line(
            &out,
            &format!("{submission}: smtpd_recipient_restrictions consults")
        )
        .contains("(set in its -o override in master.cf)"),
        "{out}"
    );
    let seen = log.len();
    let log = port_25_session(&pf);
    assert!(!log[seen..].contains("no SASL support"), "{}", &log[seen..]);
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

/// docs/mail-stack.md's Postfix lines, run on a private Postfix with no SASL (its
/// socket path and submission service in place of `private/auth` and
/// `submission/inet`; the service exists already, so `postconf -M` is skipped): the
/// submission service then authenticates through a real Dovecot and takes the mail,
/// and doctor's "no smtpd service has smtpd_sasl_auth_enable = yes" (with its fix
/// line, which points at the recipe) is gone.
#[test]
fn sasl_recipe_from_the_docs_makes_submission_authenticate() {
    use support::mailstack::Dovecot;
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start();
    let mut dv = Dovecot::configure(dir.path(), &[("alice@example.com", "secret")]);
    dv.start();
    let mut pf = Postfix::configure(
        &dir.path().join("pf"),
        &PostfixSetup {
            relay_port: sink.port,
            defer_outbound: false,
            sasl_socket: None,
            submission_restrictions: None,
        },
    );
    let mut s = Sandbox::new(&format!(
        "[postfix]\nsasl_map = \"{}\"\n[mail]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\n",
        pf.sasl_map.display(),
        sink.port
    ));
    s.env.push(("MAIL_CONFIG".into(), pf.config_dir.clone()));
    let (_, out) = doctor(&s, &[]);
    let none = "no smtpd service has smtpd_sasl_auth_enable = yes";
    assert!(line(&out, none).starts_with("warn  postfix"), "{out}");
    let fix = fix_of(&out, none);
    assert!(fix.contains("docs/mail-stack.md"), "{fix}");

    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/mail-stack.md"))
            .unwrap();
    let block: Vec<&str> = doc
        .lines()
        .skip_while(|l| !l.starts_with("## Postfix: a submission service with SASL"))
        .skip_while(|l| *l != "```sh")
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .collect();
    assert!(block.len() >= 4, "{block:?}");
    let service = format!("127.0.0.1:{}/inet", pf.submission_port);
    for l in &block {
        if l.starts_with("postconf -M") || l.starts_with("postfix reload") {
            continue;
        }
        let l = l
            .replace("submission/inet", &service)
            .replace("private/auth", &dv.auth_socket.display().to_string())
            .replace(
                "/etc/postfix/mailguard_sasl_access",
                &pf.sasl_map.display().to_string(),
            );
        paste(&pf, &l);
    }
    pf.start();
    let reply = support::mailstack::submit(
        pf.submission_port,
        "198.51.100.7",
        ("alice@example.com", "secret"),
        "alice@example.com",
        &format!("bob@{}", support::mailstack::RELAYED_DOMAIN),
    );
    assert!(
        reply.as_deref().is_ok_and(|r| r.starts_with("250")),
        "{reply:?}\n{}",
        pf.log()
    );
    let wrong = support::mailstack::submit(
        pf.submission_port,
        "198.51.100.7",
        ("alice@example.com", "wrong"),
        "alice@example.com",
        &format!("bob@{}", support::mailstack::RELAYED_DOMAIN),
    );
    assert!(wrong.is_err(), "{wrong:?}");
    let (_, out) = doctor(&s, &[]);
    assert!(!out.contains(none), "{out}");
    assert!(
        line(
            &out,
            &format!("{service}: smtpd_recipient_restrictions consults")
        )
        .starts_with("ok    postfix"),
        "{out}"
    );
}
