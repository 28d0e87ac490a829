//! The policy service as the admin meets it: `doctor`, `check` and `metrics` watching
//! it, and the answers following levels set by other processes (real Dovecot and
//! Postfix, the harness of tests/policy.rs).

use crate::policy::{Stack, ALICE, ALICE_PW, BOB, BOB_PW};
use crate::support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::smtp_client::Session;
use support::wait_until;

/// `check`'s output, once it exited with `code`.
fn check_exits(st: &Stack, code: i32) -> String {
    let check = st.s.run(&["check"]);
    assert_eq!(
        check.status.code(),
        Some(code),
        "{}",
        support::described(&check)
    );
    String::from_utf8_lossy(&check.stdout).into_owned()
}

/// `doctor` finds the wiring right and the service answering; killed, `doctor`,
/// `check` and `metrics` say it is down. Unwired, doctor prints the lines to add.
#[test]
fn doctor_check_and_metrics_say_when_the_service_is_down() {
    let mut st = Stack::start("");
    let findings = |st: &Stack| -> Vec<serde_json::Value> {
        let out = st.s.run(&["doctor", "--json"]);
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", support::described(&out)))
    };
    let about = |f: &[serde_json::Value], needle: &str| -> serde_json::Value {
        f.iter()
            .find(|x| x["message"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no finding about {needle:?}: {f:#?}"))
            .clone()
    };
    let up = findings(&st);
    assert_eq!(
        about(&up, "answers on its dovecot listener")["status"],
        "ok"
    );
    assert_eq!(
        about(&up, "answers on its postfix listener")["status"],
        "ok"
    );
    assert_eq!(about(&up, "auth policy sent to")["status"], "ok", "{up:#?}");
    assert_eq!(
        about(&up, "counted and answered at end of data")["status"],
        "ok",
        "{up:#?}"
    );
    assert!(st
        .s
        .ok(&["metrics"])
        .contains("f2b_mailguard_policy_up{listener=\"postfix\"} 1"));
    check_exits(&st, 0);

    st.kill_service();
    let down = findings(&st);
    let d = about(&down, "does not answer on its dovecot listener");
    assert_eq!(d["status"], "fail");
    assert!(d["fix"]
        .as_str()
        .unwrap()
        .contains("f2b-mailguard-policy.service"));
    assert_eq!(
        about(&down, "does not answer on its postfix listener")["status"],
        "fail"
    );
    let metrics = st.s.ok(&["metrics"]);
    assert!(
        metrics.contains("f2b_mailguard_policy_up{listener=\"dovecot\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("f2b_mailguard_policy_up{listener=\"postfix\"} 0"),
        "{metrics}"
    );
    assert!(check_exits(&st, 2).contains("policy service (postfix) down"));

    // Unwired: doctor prints the exact lines.
    let out = Command::new("/usr/sbin/postconf")
        .arg("-c")
        .arg(&st.pf.config_dir)
        .args(["-e", "smtpd_end_of_data_restrictions ="])
        .output()
        .unwrap();
    support::assert_success("postconf", &out);
    let unwired = findings(&st);
    let p = about(&unwired, "does not ask the service");
    assert_eq!(p["status"], "fail");
    let fix = p["fix"].as_str().unwrap();
    assert!(
        fix.contains(&format!(
            "smtpd_end_of_data_restrictions = check_policy_service {{ unix:{}, timeout=1s, try_limit=1, default_action=DUNNO }}",
            st.socket.display()
        )),
        "{fix}"
    );
}

/// A level set by another process (here `record`, as Fail2ban's jails run it, and
/// `release`) reaches the answers within `refresh`. Blocked, the owner still logs in
/// from the network used before the trouble began; a new network is refused, SMTP
/// AUTH too; released, it is allowed again.
#[test]
fn a_blocked_owner_reads_mail_from_home_and_release_reaches_the_answers() {
    let st = Stack::start("mode = \"enforce\"");
    let now = support::now();
    st.s.record("imap", ALICE, "198.51.100.50", now - 3 * 3600);
    assert!(st.dv.imap_login_from("203.0.113.99", ALICE, ALICE_PW));
    st.s.burst(ALICE, 11, now - 20);
    let refused = |addr: &str| !st.dv.imap_login_from(addr, ALICE, ALICE_PW);
    let began = Instant::now();
    wait_until(
        "the block to reach Dovecot's answers",
        Duration::from_secs(60),
        || refused("203.0.113.100"),
    );
    println!("block reached the answers after {:?}", began.elapsed());
    assert!(
        st.dv.log().contains("Login refused from this network"),
        "{}",
        st.dv.log()
    );
    assert!(
        !refused("198.51.100.50"),
        "home refused:\n{}",
        st.serve_log()
    );
    let mut c = Session::connect(st.pf.submission_port, "203.0.113.101").unwrap();
    let auth = c.auth(ALICE, ALICE_PW);
    assert!(
        auth.as_ref().is_err_and(|r| r.starts_with("535")),
        "{auth:?}"
    );
    c.quit();
    // Bob is not touched.
    assert!(st.dv.imap_login_from("203.0.113.102", BOB, BOB_PW));

    st.s.ok(&["release", ALICE]);
    wait_until(
        "the release to reach Dovecot's answers",
        Duration::from_secs(60),
        || !refused("203.0.113.103"),
    );
}
