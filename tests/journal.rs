//! Journal first (Debian 12 without rsyslog: no /var/log/mail.log). A real Fail2ban
//! reads a real journal file (written by systemd-journal-remote) with the shipped
//! jail, filter and action, and the login reaches `record`; the backend choice that
//! install.sh and the package share makes the shipped jails load where the log file
//! is missing; and doctor names a jail that keeps Fail2ban from starting, with a fix
//! that works.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::fail2ban::{conf_dir, Fail2ban};
use support::journal::journal_file;
use support::{wait_until, Sandbox, BIN};

const CLIENT: &str = "/usr/bin/fail2ban-client";

/// One journal entry in export format, written `ago` seconds before now.
fn entry(ago: u64, unit: &str, ident: &str, message: &str, seq: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_micros() as u64;
    format!(
        "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID=5e1f0c2a9b8d4e7fa1c3b5d7e9f00112\n\
         _HOSTNAME=mx\n_SYSTEMD_UNIT={unit}\n_SYSTEMD_SLICE={slice}\n\
         SYSLOG_IDENTIFIER={ident}\n_PID=4101\nPRIORITY=6\nMESSAGE={message}\n\n",
        now - ago * 1_000_000,
        seq * 1_000_000,
        // As systemd places them: a user's session is in the user's slice.
        slice = if unit.starts_with("postfix") {
            "system-postfix.slice"
        } else {
            "user-1000.slice"
        },
    )
}

fn smtp_login(user: &str, addr: &str) -> String {
    format!("8FEF0C037B: client=unknown[{addr}], sasl_method=PLAIN, sasl_username={user}")
}

/// `fail2ban-client -c CONF -t`: its exit status and what it printed.
fn config_test(conf: &Path) -> (bool, String) {
    let out = Command::new(CLIENT)
        .arg("-c")
        .arg(conf)
        .arg("-t")
        .output()
        .expect("fail2ban-client");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// `f2b-mailguard generate fail2ban-backend --stdout ROOT`: the file it would write.
fn backend_local(root: &Path) -> String {
    let out = Command::new(BIN)
        .args(["generate", "fail2ban-backend", "--stdout"])
        .arg(root)
        .output()
        .expect("generate");
    support::assert_success("generate fail2ban-backend", &out);
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn a_login_in_the_journal_reaches_record_through_the_shipped_jail() {
    let s = Sandbox::new("");
    s.ok(&["status"]); // creates the database the test counts rows in
    let journal = s.path().join("mail.journal");
    // Postfix as Debian 12 runs it (postfix@-.service), and a line forged from a
    // user's session with the same text: the filter's journalmatch keeps it out.
    let export = entry(
        3,
        "postfix@-.service",
        "postfix/submission/smtpd",
        &smtp_login("alice@example.com", "198.51.100.61"),
        1,
    ) + &entry(
        2,
        "session-7.scope",
        "postfix/submission/smtpd",
        &smtp_login("mallory@example.com", "192.0.2.61"),
        2,
    ) + &entry(
        1,
        "postfix.service",
        "postfix/smtps/smtpd",
        &smtp_login("bob@example.com", "2001:db8:61::1"),
        3,
    );
    journal_file(export.as_bytes(), &journal);
    let jail = format!(
        "[mailguard-smtp]\nenabled = true\nbackend = systemd[journalfiles={}]\n",
        journal.display()
    );
    let f2b = Fail2ban::start_with(
        s.path(),
        Path::new(BIN),
        &s.config_path(),
        &[],
        &[],
        &[("jail.d/zz-journal.local", &jail)],
    );
    // Entries are read in order: once bob's is stored, mallory's was passed over.
    wait_until(
        "the logins in the journal to be recorded",
        Duration::from_secs(30),
        || s.rows("events") >= 2,
    );
    let status = f2b
        .client(&["status", "mailguard-smtp"])
        .expect("jail status");
    assert!(status.contains("Journal matches:"), "{status}");
    let users = |s: &Sandbox| -> Vec<String> {
        // Past the newest entry's fractional second, so every login is in the window.
        let v = s.status(support::now() + 2);
        let mut u: Vec<String> = v["accounts"]
            .as_array()
            .expect("accounts")
            .iter()
            .map(|a| a["user"].as_str().expect("user").to_owned())
            .collect();
        u.sort();
        u
    };
    assert_eq!(
        users(&s),
        ["alice@example.com", "bob@example.com"],
        "{}",
        f2b.log()
    );

    // A line the mail server logs while Fail2ban runs: appended to the journal file.
    journal_file(
        entry(
            0,
            "postfix@-.service",
            "postfix/submission/smtpd",
            &smtp_login("carol@example.com", "203.0.113.61"),
            4,
        )
        .as_bytes(),
        &journal,
    );
    wait_until(
        "the appended login to be recorded",
        Duration::from_secs(30),
        || s.rows("events") >= 3,
    );
    assert_eq!(
        users(&s),
        ["alice@example.com", "bob@example.com", "carol@example.com"]
    );
    drop(f2b);
}

/// The shipped jails enabled on a system without /var/log/mail.log: with the
/// generated backend file they load; without it Fail2ban refuses to start.
#[test]
fn the_generated_backend_lets_the_shipped_jails_load_without_mail_log() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).expect("root");
    let generated = backend_local(&root);
    let enable: String = ["mailguard-smtp", "mailguard-imap", "mailguard-webmail"]
        .iter()
        .map(|j| format!("[{j}]\nenabled = true\n"))
        .collect();
    let make = |name: &str, with_backend: bool| -> PathBuf {
        let mut extra = vec![("jail.d/zz-enable.local", enable.as_str())];
        if with_backend {
            extra.push(("jail.d/mailguard-backend.local", generated.as_str()));
        }
        let d = dir.path().join(name);
        let conf = conf_dir(&d, Path::new(BIN), Path::new("/dev/null"), &[], &extra);
        std::fs::copy("/etc/fail2ban/fail2ban.conf", conf.join("fail2ban.conf")).expect("copy");
        // conf_dir's jail.conf reads files by polling; a Debian system reads what the
        // jails say: the shipped logpath, and the generated backend.
        std::fs::write(conf.join("jail.conf"), "[DEFAULT]\nbackend = auto\n").expect("jail.conf");
        conf
    };

    let (ok, text) = config_test(&make("without", false));
    assert!(!ok, "{text}");
    assert!(
        text.contains("Have not found any log file for mailguard-"),
        "{text}"
    );

    let (ok, text) = config_test(&make("with", true));
    assert!(ok, "{generated}\n{text}");
}

/// Debian 12's stock sshd jail on a missing /var/log/auth.log: doctor fails it, names
/// the jail and gives a fix, which `fail2ban-client -t` then accepts.
#[test]
fn doctor_names_the_jail_that_stops_fail2ban_and_its_fix_works() {
    let s = Sandbox::new("");
    let missing = s.path().join("auth.log");
    let sshd = format!(
        "[sshd]\nenabled = true\nfilter = sshd\nlogpath = {}\nbackend = auto\n",
        missing.display()
    );
    let filter = std::fs::read_to_string("/etc/fail2ban/filter.d/sshd.conf").expect("sshd filter");
    let conf = conf_dir(
        &s.path().join("f2b"),
        Path::new(BIN),
        &s.config_path(),
        &[],
        &[
            ("jail.d/defaults-debian.conf", &sshd),
            ("filter.d/sshd.conf", &filter),
        ],
    );
    std::fs::copy("/etc/fail2ban/fail2ban.conf", conf.join("fail2ban.conf")).expect("copy");
    s.write_config(&format!(
        "[fail2ban]\nconfig_dir = \"{}\"\nsocket = \"{}\"\n[dovecot]\ndoveadm = \"/nonexistent/doveadm\"\n",
        conf.display(),
        s.path().join("no-server.sock").display()
    ));
    let doctor = || {
        let out = s.cmd().arg("doctor").output().expect("doctor");
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let out = doctor();
    let lines: Vec<&str> = out.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.contains("Fail2ban cannot start"))
        .unwrap_or_else(|| panic!("no start failure in\n{out}"));
    assert!(lines[i].starts_with("fail  fail2ban"), "{out}");
    assert!(lines[i].contains("jail sshd"), "{out}");
    assert!(
        lines[i].contains("Have not found any log file for sshd jail"),
        "{out}"
    );
    let fix = lines[i + 1].trim().strip_prefix("fix: ").expect("a fix");
    assert!(fix.contains("backend = systemd"), "{fix}");
    assert!(fix.contains("apt-get install rsyslog"), "{fix}");
    // Starting the server is not the fix while its configuration fails.
    let down = lines
        .iter()
        .position(|l| l.contains("the server does not answer"))
        .expect("server down");
    assert!(
        !lines[down + 1].ends_with("fix: systemctl enable --now fail2ban"),
        "{out}"
    );

    // The fix's first command, as the admin pastes it.
    let first = fix.split(" && ").next().expect("command");
    let ran = Command::new("/bin/sh")
        .args(["-c", first])
        .status()
        .expect("sh");
    assert!(ran.success(), "{first}");
    let (ok, text) = config_test(&conf);
    assert!(ok, "{text}");
    let out = doctor();
    assert!(!out.contains("Fail2ban cannot start"), "{out}");
    let loads = out
        .lines()
        .find(|l| l.contains("(fail2ban-client -t)"))
        .expect("config test line");
    assert!(loads.starts_with("ok    fail2ban"), "{loads}");
}
