//! The package's first hour in tests/deb_package.rs's Debian 12 root: the jails on the
//! journal where rsyslog is missing, the backend file regenerated once it is there, and
//! a server moved from install.sh to the package.

use crate::deb_package::{doctor, version, with_fail2ban, ROOT};
use crate::doctor::fix_of;
use crate::support::debian_root::root_ok;

use std::path::Path;

/// Debian 12 without rsyslog: postinst chose the journal for the jails (no
/// /var/log/mail.log). The admin enables the jails as the docs say, and the stock sshd
/// jail as doctor's fix says; `fail2ban-client -t` passes, and with Fail2ban running
/// doctor finds nothing to fix on Fail2ban's side or its own (no Postfix here).
/// Fail2ban's server ends with the root's pid namespace, whatever happens.
pub(crate) fn journal_jails_start(root: &Path) {
    let backend = std::fs::read_to_string(root.join("etc/fail2ban/jail.d/mailguard-backend.local"))
        .expect("postinst wrote jail.d/mailguard-backend.local");
    assert!(
        backend.contains("\n[mailguard-smtp]\nbackend = systemd\n"),
        "{backend}"
    );
    assert!(!root.join("var/log/mail.log").exists());
    std::fs::write(
        root.join("etc/fail2ban/jail.d/mailguard.local"),
        "[mailguard-smtp]\nenabled = true\n\n[mailguard-smtp-refused]\nenabled = true\n",
    )
    .unwrap();
    // Debian's own sshd jail reads /var/log/auth.log, missing without rsyslog too:
    // doctor's fix for it, as printed.
    let fix = fix_of(&doctor(root), "jail sshd: Have not found any log file");
    let paste = fix.split(" && ").next().unwrap();
    assert!(paste.starts_with("printf '[sshd]"), "{fix}");
    root_ok(root, &["sh", "-c", paste]);
    root_ok(root, &["fail2ban-client", "-t"]);
    let out = with_fail2ban(root, "fail2ban-journal", "");
    eprintln!("Fail2ban on the journal in the root:\n{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok ")
                && l.contains("jail mailguard-smtp reads the systemd journal")),
        "{out}"
    );
    let bad: Vec<&str> = out
        .lines()
        .filter(|l| {
            (l.starts_with("fail") || l.starts_with("warn"))
                && (l.contains(" fail2ban ") || l.contains(" mailguard "))
                // Warn mode is the package's default on purpose.
                && !l.contains("mode warn")
                // True in this root: its timers' links exist but systemd does not run.
                && !l.contains("but systemd is not running here")
        })
        .collect();
    assert!(bad.is_empty(), "doctor not clean:\n{out}");
    assert!(
        out.lines().any(|l| l.starts_with("warn ")
            && l.contains(
                "f2b-mailguard-actions.timer is enabled, but systemd is not running here"
            )),
        "{out}"
    );
}

/// rsyslog installed later writes /var/log/mail.log: doctor says the backend file must
/// be generated again, and the command it gives does it.
pub(crate) fn rsyslog_later(root: &Path) {
    std::fs::write(root.join("var/log/mail.log"), "").unwrap();
    let stale = "mailguard-backend.local no longer fits the log files here";
    let fix = fix_of(&doctor(root), stale);
    assert_eq!(
        fix,
        "f2b-mailguard generate fail2ban-backend && fail2ban-client reload"
    );
    root_ok(root, &["f2b-mailguard", "generate", "fail2ban-backend"]);
    let backend =
        std::fs::read_to_string(root.join("etc/fail2ban/jail.d/mailguard-backend.local")).unwrap();
    assert!(
        backend.contains("# [mailguard-smtp] reads /var/log/mail.log"),
        "{backend}"
    );
    assert!(doctor(root)
        .lines()
        .any(|l| l.starts_with("ok ") && l.contains("mailguard-backend.local is current")));
}

/// Copies a file or a directory tree from the repository to `to`.
fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
}

/// A server set up with install.sh moves to the package as the docs say:
/// `install.sh --uninstall` (removes what it installed, keeps the edited config and
/// the database), then the package with --force-confold, which keeps that config
/// instead of stopping at dpkg's conffile prompt.
pub(crate) fn from_install_sh_to_the_package(root: &Path, binary: &Path, deb: &Path) {
    let src = root.join("tmp/src");
    for f in [
        "install.sh",
        "fail2ban",
        "systemd",
        "config.example.toml",
        "README.md",
        "docs",
    ] {
        copy_tree(&Path::new(ROOT).join(f), &src.join(f));
    }
    std::fs::copy(binary, src.join("f2b-mailguard")).unwrap();
    root_ok(
        root,
        &[
            "sh",
            "/tmp/src/install.sh",
            "--binary",
            "/tmp/src/f2b-mailguard",
        ],
    );
    let config = root.join("etc/f2b-mailguard/config.toml");
    let edited = std::fs::read_to_string(&config)
        .unwrap()
        .replace("# retention = \"30d\"", "retention = \"40d\"");
    std::fs::write(&config, &edited).unwrap();

    root_ok(root, &["sh", "/tmp/src/install.sh", "--uninstall"]);
    for gone in [
        "usr/local/bin/f2b-mailguard",
        "usr/local/share/man/man1",
        "usr/local/share/bash-completion",
    ] {
        assert!(!root.join(gone).exists(), "{gone} left by --uninstall");
    }
    std::fs::copy(deb, root.join("tmp/switch.deb")).unwrap();
    root_ok(root, &["dpkg", "-i", "--force-confold", "/tmp/switch.deb"]);
    assert_eq!(version(root), "0.1.0-2");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited);
    let action =
        std::fs::read_to_string(root.join("etc/fail2ban/action.d/mailguard.conf")).unwrap();
    assert!(
        action.contains("\nbinary = /usr/bin/f2b-mailguard\n"),
        "{action}"
    );
    root_ok(root, &["fail2ban-client", "-t"]);
    assert!(config_check_ok(root).contains("retention = \"40d\""));
}

fn config_check_ok(root: &Path) -> String {
    root_ok(root, &["f2b-mailguard", "config", "check"])
}
