//! The policy service counts every message at its end of data. A Fail2ban jail that
//! counts messages (`mailguard-rate`) left enabled beside it reads the same messages
//! from Postfix's log: none may count twice, and `doctor` says to disable the jail.
//! Real Postfix, Dovecot and Fail2ban with the shipped rate jail and Python action.

use crate::quarantine::Stack;
use crate::support;
use crate::support::smtp_sink::TO;

use std::time::Duration;

use support::smtp_client::{message, Session};
use support::wait_until;

const ALICE: &str = "alice@example.test";
const PASSWORD: &str = "alice-pw";
const MESSAGES: usize = 5;

/// The jail of each stored rate event.
fn rate_jails(st: &Stack) -> Vec<String> {
    if !st.s.db().exists() {
        return Vec::new();
    }
    let conn = rusqlite::Connection::open(st.s.db()).unwrap();
    let mut stmt = conn
        .prepare("SELECT jail FROM events WHERE source = 'rate' ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn total_banned(st: &Stack, jail: &str) -> u64 {
    (st.f2b.client(&["status", jail]).unwrap_or_default().lines())
        .find_map(|l| l.split_once("Total banned:"))
        .and_then(|(_, n)| n.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_rate_jail_beside_the_service_counts_no_message_twice() {
    let mut st = Stack::start_jails(
        &[(ALICE, PASSWORD)],
        "warn",
        "",
        true,
        &["mailguard-smtp", "mailguard-rate"],
    );
    let mut c = Session::open(
        st.pf.submission_port,
        "198.51.100.40",
        Some((ALICE, PASSWORD)),
    )
    .unwrap();
    for i in 0..MESSAGES {
        c.send(ALICE, TO, &message(ALICE, TO, &format!("m{i}"), "hello"))
            .unwrap();
    }
    c.quit();
    wait_until("the service's count", Duration::from_secs(30), || {
        rate_jails(&st).len() >= MESSAGES
    });
    // The jail read each message from the log and handed it to its action...
    wait_until("the jail's tickets", Duration::from_secs(30), || {
        total_banned(&st, "mailguard-rate") == MESSAGES as u64
    });
    let doctor = st.s.run(&["doctor", "--json"]);
    // ...which, at Fail2ban's stop, has every ticket acknowledged by `stream`.
    assert!(st.f2b.stop(), "{}", st.f2b.log());
    let stream = format!("{}\0stream", st.s.config_path().display());
    wait_until("stream to finish", Duration::from_secs(30), || {
        support::processes_mentioning(&stream).is_empty()
    });
    let jails = rate_jails(&st);
    assert_eq!(jails.len(), MESSAGES, "{jails:?}\n{}", st.f2b.log());
    assert!(jails.iter().all(|j| j == "policy-postfix"), "{jails:?}");

    // The command action's `record` call for the same message: not counted either.
    let qid = (st.pf.log().lines())
        .find_map(|l| l.split_once(": client=").map(|(head, _)| head.to_owned()))
        .and_then(|head| head.rsplit(' ').next().map(str::to_owned))
        .unwrap();
    st.s.ok(&[
        "record",
        "--source=rate",
        "--jail=mailguard-rate",
        &format!("--user={ALICE}"),
        "--ip=198.51.100.40",
        &format!("--time={}", support::now()),
        &format!("--fid=('{ALICE}', '{qid}')"),
        "--count=1",
    ]);
    assert_eq!(rate_jails(&st).len(), MESSAGES);

    // doctor named the jail and the line that disables it; pasted, Fail2ban reads
    // its config without the jail.
    let findings: Vec<serde_json::Value> = serde_json::from_slice(&doctor.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", support::described(&doctor)));
    let f = (findings.iter())
        .find(|f| {
            (f["message"].as_str().unwrap()).starts_with("jail mailguard-rate counts the messages")
        })
        .unwrap_or_else(|| panic!("no finding about the rate jail: {findings:#?}"));
    assert_eq!(f["status"], "warn", "{f:#}");
    let fix = f["fix"].as_str().unwrap();
    let local = st.f2b.conf.join("jail.d/mailguard.local");
    assert!(fix.contains(&local.display().to_string()), "{fix}");
    let edit = fix.strip_suffix(" && fail2ban-client reload").unwrap();
    support::assert_success(
        edit,
        &std::process::Command::new("/bin/sh")
            .args(["-c", edit])
            .output()
            .unwrap(),
    );
    let dump = std::process::Command::new("/usr/bin/fail2ban-client")
        .arg("-c")
        .arg(&st.f2b.conf)
        .arg("-d")
        .output()
        .unwrap();
    support::assert_success("fail2ban-client -d", &dump);
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("'add', 'mailguard-smtp'"), "{dump}");
    assert!(!dump.contains("'mailguard-rate'"), "{dump}");
}

/// A rate ticket kept in the spool (the config unreadable when the jail handed it
/// over) is not counted either once the config says the service counts messages;
/// the service's own kept messages and the logins are stored.
#[test]
fn a_spooled_rate_ticket_is_not_counted_when_the_service_counts_messages() {
    let policy = "[policy]\nenabled = true\ndovecot_listen = \"\"\npostfix_listen = \"unix:/run/f2b-mailguard-test/none.sock\"\n";
    let s = support::Sandbox::new(policy);
    s.ok(&["status"]);
    // A value out of range: the config does not load, but names its database, so the
    // spool is the sandbox's (an unparsable file would spool in /var/lib).
    s.write_config(&format!("{policy}max_connections = 0\n"));
    let t = support::now();
    for (source, jail, fid) in [
        (
            "rate",
            "mailguard-rate",
            format!("('{ALICE}', 'B1C2D3E4F5')"),
        ),
        ("rate", "policy-postfix", "B1C2D3E4F5".to_owned()),
        (
            "smtp",
            "mailguard-smtp",
            format!("('{ALICE}', '198.51.100.41')"),
        ),
    ] {
        let out = s.run(&[
            "record",
            &format!("--source={source}"),
            &format!("--jail={jail}"),
            &format!("--user={ALICE}"),
            "--ip=198.51.100.41",
            &format!("--time={t}"),
            &format!("--fid={fid}"),
        ]);
        assert!(out.status.success(), "{}", support::described(&out));
    }
    assert_eq!(s.rows("events"), 0);
    let spool = s.db().with_extension("db.spool");
    let kept = std::fs::read_to_string(&spool).unwrap_or_default();
    assert_eq!(kept.lines().count(), 3, "{kept}");
    s.write_config(policy);
    // --db: the drain takes this database's spool only, not the default one other
    // tests' broken configs may fill.
    s.ok(&["--db", &s.db().display().to_string(), "run-actions"]);
    let conn = rusqlite::Connection::open(s.db()).unwrap();
    let stored: Vec<(String, String)> = conn
        .prepare("SELECT source, jail FROM events ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let want = [("rate", "policy-postfix"), ("smtp", "mailguard-smtp")];
    let mut got: Vec<(&str, &str)> = stored
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    got.sort();
    assert_eq!(got, want, "{stored:?}");
    let left = std::fs::read_to_string(&spool).unwrap_or_default();
    assert_eq!(left, "", "left in the spool");
}
