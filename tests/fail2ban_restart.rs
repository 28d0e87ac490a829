//! A Fail2ban restart, as `systemctl restart fail2ban` does it, with its database in a
//! file (Debian's default): the bans of the mailguard jails are (user, address) and
//! (user, queue id) tickets, which Fail2ban stores and at its next start would
//! "Restore" as plain strings. That must add no login to the store and no error to
//! Fail2ban's log, neither at the restart nor at the next stop.

use crate::support;

use std::path::Path;
use std::time::Duration;

use support::fail2ban::{append, postfix_login, Fail2ban, Jail};
use support::{Sandbox, BIN};

const PAIRS: u32 = 20;

#[test]
fn a_restart_adds_no_login_and_no_error() {
    let s = Sandbox::new("");
    let mail_log = s.path().join("mail.log");
    std::fs::write(&mail_log, "").expect("log");
    let jails = Jail::each(["mailguard-smtp", "mailguard-rate"], &mail_log);
    let mut f2b =
        Fail2ban::start_persistent(s.path(), Path::new(BIN), &s.config_path(), &jails, &[]);
    // Pairs `from..to`, each with one accepted message: a login and a rate event each.
    let pairs = |from: u32, to: u32| -> Vec<String> {
        (from..to)
            .map(|i| {
                postfix_login(
                    7000 + i,
                    &format!("R{i:09X}"),
                    &format!("198.51.100.{}", 10 + i),
                    &format!("user{i}@example.com"),
                )
            })
            .collect()
    };
    append(&mail_log, &pairs(0, PAIRS));
    let want = i64::from(2 * PAIRS);
    support::wait_until(
        "every login and message stored",
        Duration::from_secs(30),
        || s.rows("events") == want,
    );
    let banned = |f2b: &Fail2ban| {
        f2b.client(&["status", "mailguard-smtp"])
            .unwrap_or_default()
            .contains(&format!("Currently banned:\t{PAIRS}"))
    };
    assert!(
        banned(&f2b),
        "{:?}",
        f2b.client(&["status", "mailguard-smtp"])
    );

    f2b.restart(&jails);
    // Restored tickets would go through the jails' actions threads after the start.
    std::thread::sleep(Duration::from_secs(5));
    let stored = s.rows("events");
    // New pairs after the restart are still counted, each once.
    append(&mail_log, &pairs(PAIRS, PAIRS + 5));
    support::wait_until("the new pairs stored", Duration::from_secs(30), || {
        s.rows("events") == want + 10
    });
    assert!(f2b.stop(), "fail2ban stops on SIGTERM");
    let log = f2b.log();
    // The test's own `status` polls while the restarted server adds its jails answer
    // UnknownJailException: not an error of the jails'.
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" ERROR ") || l.contains("familyStr"))
        .filter(|l| !l.contains("UnknownJailException"))
        .collect();
    assert!(
        errors.is_empty(),
        "{} error line(s) in Fail2ban's log, e.g.:\n{}",
        errors.len(),
        errors
            .iter()
            .take(5)
            .copied()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(stored, want, "the restart added logins");
    assert_eq!(s.rows("events"), want + 10);
    assert!(!log.contains("Restore Ban"), "{log}");
}
