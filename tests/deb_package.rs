//! The Debian package as an admin meets it: pkg/deb/build.sh builds it with cargo-deb,
//! lintian finds no error or warning in it, and it installs into a clean Debian 12
//! root made by mmdebstrap in a temp dir, where apt resolves its Depends. There
//! `doctor` finds the package's own parts in order, and the installed Fail2ban hands a
//! login to the packaged binary; an upgrade to a newer package keeps an edited config
//! and the recorded logins; remove keeps both, purge removes them.
//!
//! Needs root (chroot), network access to Debian's archive and the tools tests/run
//! installs (mmdebstrap, lintian). Nothing outside the temp dir is changed: mmdebstrap
//! runs in its own mount namespace (`--mode=unshare`), and every command in the root
//! runs in a new mount and pid namespace (its /proc mount goes with it).

use crate::deb_first_hour::{from_install_sh_to_the_package, journal_jails_start, rsyslog_later};
use crate::support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use support::debian_root::{
    assert_nothing_mounted, in_root, make_devices, need, root_ok, run, text,
};

pub(crate) const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const PKG: &str = "f2b-mailguard";

/// Builds the package into `out` with extra cargo-deb arguments; returns its path.
fn build(out: &Path, extra: &[&str]) -> PathBuf {
    std::fs::create_dir_all(out).unwrap();
    let mut cmd = Command::new(Path::new(ROOT).join("pkg/deb/build.sh"));
    cmd.args(["--output", out.to_str().unwrap()]).args(extra);
    // What `cargo test` sets for this test only. Some build scripts (ring's) rerun when
    // CARGO_MANIFEST_DIR or OUT_DIR changes: passed on, each build here would redo the
    // release build that tests/run and a build by hand leave.
    for (key, _) in std::env::vars() {
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_")
            || key.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
            ]
            .contains(&key.as_str())
        {
            cmd.env_remove(key);
        }
    }
    run("pkg/deb/build.sh", &mut cmd);
    let debs: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    debs.into_iter().next().unwrap()
}

/// Whether an ELF file asks for a dynamic loader (has a PT_INTERP program header).
fn has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(&elf[..5], b"\x7fELF\x02", "a 64-bit ELF file");
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) == 3
    })
}

fn mode(p: &Path) -> (u32, u32) {
    let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.mode() & 0o7777, m.uid())
}

/// Checks the package file itself: control fields, conffiles, the static binary.
fn check_package(deb: &Path, scratch: &Path) {
    let field = |f: &str| {
        run(
            "dpkg-deb -f",
            Command::new("dpkg-deb").arg("-f").arg(deb).arg(f),
        )
    };
    assert!(
        field("Depends").contains("fail2ban"),
        "{}",
        field("Depends")
    );
    let conffiles = run(
        "dpkg-deb -I conffiles",
        Command::new("dpkg-deb").arg("-I").arg(deb).arg("conffiles"),
    );
    for f in [
        "/etc/f2b-mailguard/config.toml",
        "/etc/fail2ban/action.d/mailguard.conf",
        "/etc/fail2ban/jail.d/mailguard.conf",
        "/etc/fail2ban/filter.d/mailguard-postfix-sasl.conf",
    ] {
        assert!(conffiles.lines().any(|l| l == f), "{f} in\n{conffiles}");
    }
    let tree = scratch.join("extracted");
    run(
        "dpkg-deb -x",
        Command::new("dpkg-deb").arg("-x").arg(deb).arg(&tree),
    );
    let bin = std::fs::read(tree.join("usr/bin/f2b-mailguard")).unwrap();
    assert!(!has_interpreter(&bin), "the packaged binary is static");
    // The README and docs/ beside it, where the man pages and doctor point.
    let doc = tree.join("usr/share/doc/f2b-mailguard");
    for page in ["README.md", "docs/install.md", "docs/configuration.md"] {
        assert_eq!(
            std::fs::read(doc.join(page)).unwrap(),
            std::fs::read(format!("{ROOT}/{page}")).unwrap(),
            "{page}"
        );
    }
}

/// lintian on the package: no error (E:) or warning (W:) line. Returns its output.
fn lintian(deb: &Path) -> String {
    let out = Command::new("lintian")
        .args(["--allow-root", "--display-info", "--show-overrides"])
        .arg(deb)
        .stdin(Stdio::null())
        .output()
        .expect("lintian");
    let report = text(&out);
    // No error; and no warning either: each one the package has is overridden, with
    // its reason, in pkg/deb/lintian-overrides.
    let bad: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
        .collect();
    assert!(bad.is_empty(), "lintian errors or warnings:\n{report}");
    // Exit 1 means tags at or above its fail level (error); anything else is a crash.
    assert!(out.status.code() == Some(0), "lintian failed:\n{report}");
    report
}

pub(crate) fn doctor(root: &Path) -> String {
    let out = in_root(root, &["f2b-mailguard", "doctor"])
        .stdin(Stdio::null())
        .output()
        .expect("doctor");
    let report = text(&out);
    // 0, 1 or 2 by the worst finding (no Postfix here: some fail); never a crash.
    assert!(
        matches!(out.status.code(), Some(0..=2)),
        "doctor: {}\n{report}",
        out.status
    );
    for expect in [
        "config /etc/f2b-mailguard/config.toml is valid",
        "database /var/lib/f2b-mailguard/mailguard.db opens, is writable",
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with("ok ") && l.contains(expect)),
            "doctor: no ok line with {expect:?}:\n{report}"
        );
    }
    let mailguard_fails: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("fail") && l.contains(" mailguard "))
        .collect();
    assert!(mailguard_fails.is_empty(), "{report}");
    // The Fail2ban the package depends on is there (no server runs in the root).
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("ok ") && l.contains("Fail2Ban v")),
        "doctor does not see Fail2ban:\n{report}"
    );
    report
}

/// With the jails on /var/log/mail.log, Fail2ban starts in the root; doctor finds the
/// jail calling the package's binary with its config; then a Postfix login line
/// reaches `f2b-mailguard record` through the shipped filter and action.
fn fail2ban_records_a_login(root: &Path) {
    let out = with_fail2ban(
        root,
        "fail2ban-login",
        r#"echo "$(date '+%b %e %H:%M:%S') mx postfix/submission/smtpd[10150]: 8FEF0C037B: client=unknown[198.51.100.23], sasl_method=PLAIN, sasl_username=alice@example.com" >>/var/log/mail.log
i=0
until f2b-mailguard status alice@example.com 2>/dev/null | grep -q 198.51.100.23; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "no login recorded"; break; }; sleep 0.1
done
"#,
    );
    eprintln!("Fail2ban in the root:\n{out}");
    assert!(
        out.lines().any(|l| l.starts_with("ok ")
            && l.contains(
                "jail mailguard-smtp runs /usr/bin/f2b-mailguard with /etc/f2b-mailguard/config.toml"
            )),
        "{out}"
    );
    assert!(!out.contains("no login recorded"), "{out}");
}

/// Starts Fail2ban in the root, waits for the mailguard-smtp jail, runs doctor, then
/// the shell lines `then`, and stops Fail2ban (a script /tmp/NAME.sh in the root);
/// returns what it printed.
pub(crate) fn with_fail2ban(root: &Path, name: &str, then: &str) -> String {
    std::fs::create_dir_all(root.join("run/fail2ban")).unwrap();
    let script = format!("tmp/{name}.sh");
    std::fs::write(
        root.join(&script),
        format!(
            r#"set -e
fail2ban-client -x start
i=0
until fail2ban-client status mailguard-smtp >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 100 ] || {{ echo "the jail did not start"; exit 1; }}; sleep 0.1
done
f2b-mailguard doctor || true
{then}fail2ban-client stop
"#
        ),
    )
    .unwrap();
    root_ok(root, &["sh", &format!("/{script}")])
}

pub(crate) fn version(root: &Path) -> String {
    root_ok(root, &["dpkg-query", "-W", "-f=${Version}", PKG])
}

#[test]
fn package_builds_installs_upgrades_and_purges_in_a_clean_debian_12() {
    for p in ["mmdebstrap", "lintian", "dpkg-deb", "unshare", "chroot"] {
        need(p);
    }
    let start = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let scratch = tmp.path();

    let v1 = build(&scratch.join("v1"), &[]);
    let v2 = build(&scratch.join("v2"), &["--deb-revision", "2"]);
    eprintln!(
        "built {} ({} bytes) and its successor in {:?}",
        v1.display(),
        std::fs::metadata(&v1).unwrap().len(),
        start.elapsed()
    );
    check_package(&v1, scratch);
    let report = lintian(&v1);
    eprintln!("lintian:\n{report}");

    // A clean Debian 12 with only the package's own dependencies: apt installs v1 by
    // path, pulling Fail2ban in from its Depends (docs/install.md's `apt install ./….deb`),
    // as the last step of building the root. TMPDIR keeps mmdebstrap's own
    // temporary files in the temp dir too.
    let root = scratch.join("root");
    let t = Instant::now();
    run(
        "mmdebstrap",
        Command::new("mmdebstrap")
            .args(["--mode=unshare", "--variant=minbase", "--quiet"])
            // Copies the .deb to the same path inside the root for dpkg, removes it after.
            .arg("--hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount")
            .arg(format!("--include={}", v1.display()))
            .args(["bookworm"])
            .arg(&root)
            .env("TMPDIR", scratch),
    );
    eprintln!("mmdebstrap: {:?}", t.elapsed());
    make_devices(&root);
    let binary = scratch.join("extracted/usr/bin/f2b-mailguard");
    let result = std::panic::catch_unwind(|| {
        in_the_root(&root, &v2);
        from_install_sh_to_the_package(&root, &binary, &v2);
    });
    assert_nothing_mounted(scratch);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    eprintln!("whole test: {:?}", start.elapsed());
}

fn in_the_root(root: &Path, v2: &Path) {
    assert_eq!(version(root), "0.1.0-1");
    assert!(
        root.join("usr/bin/fail2ban-client").exists(),
        "Depends pulled in Fail2ban"
    );

    // What the package put in place.
    assert_eq!(
        mode(&root.join("etc/f2b-mailguard/config.toml")),
        (0o600, 0)
    );
    assert_eq!(mode(&root.join("var/lib/f2b-mailguard")), (0o700, 0));
    let action =
        std::fs::read_to_string(root.join("etc/fail2ban/action.d/mailguard.conf")).unwrap();
    assert!(
        action.contains("\nbinary = /usr/bin/f2b-mailguard\n"),
        "{action}"
    );
    for f in [
        "usr/share/man/man1/f2b-mailguard.1.gz",
        "usr/share/man/man1/f2b-mailguard-record.1.gz",
        "usr/share/bash-completion/completions/f2b-mailguard",
        "usr/share/zsh/vendor-completions/_f2b-mailguard",
        "usr/share/fish/vendor_completions.d/f2b-mailguard.fish",
        "usr/lib/systemd/system/f2b-mailguard-queue-scan.timer",
        "etc/fail2ban/filter.d/mailguard-dovecot-login.conf",
    ] {
        assert!(root.join(f).is_file(), "{f}");
    }
    let unit =
        std::fs::read_to_string(root.join("usr/lib/systemd/system/f2b-mailguard-actions.service"))
            .unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/f2b-mailguard run-actions"),
        "{unit}"
    );
    // Enabled on install: the timers that need no configuration; the others not.
    let wants = root.join("etc/systemd/system/timers.target.wants");
    assert!(wants.join("f2b-mailguard-actions.timer").is_symlink());
    assert!(wants.join("f2b-mailguard-prune.timer").is_symlink());
    assert!(!wants.join("f2b-mailguard-queue-scan.timer").exists());
    assert!(!wants.join("f2b-mailguard-metrics.timer").exists());
    // Downloads third-party data: installed, enabled only by the admin.
    assert!(root
        .join("usr/lib/systemd/system/f2b-mailguard-ownership-update.timer")
        .is_file());
    assert!(!wants.join("f2b-mailguard-ownership-update.timer").exists());
    assert!(root
        .join("usr/share/doc/f2b-mailguard/docs/ownership-data.md")
        .is_file());
    let report = doctor(root);
    eprintln!("doctor in the fresh root:\n{report}");

    // The admin edits the config, and Fail2ban records a login.
    let config = root.join("etc/f2b-mailguard/config.toml");
    let edited = std::fs::read_to_string(&config)
        .unwrap()
        .replace("# retention = \"30d\"", "retention = \"45d\"");
    assert!(edited.contains("\nretention = \"45d\""));
    std::fs::write(&config, &edited).unwrap();
    journal_jails_start(root);
    rsyslog_later(root);
    fail2ban_records_a_login(root);
    let status = |root: &Path| root_ok(root, &["f2b-mailguard", "status", "alice@example.com"]);
    assert!(
        status(root).contains("198.51.100.23/32"),
        "{}",
        status(root)
    );

    // Upgrade: dpkg keeps the edited conffile without asking, and the database.
    std::fs::copy(v2, root.join("tmp/next.deb")).unwrap();
    root_ok(root, &["dpkg", "-i", "/tmp/next.deb"]);
    assert_eq!(version(root), "0.1.0-2");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited);
    assert_eq!(mode(&config), (0o600, 0));
    assert!(
        status(root).contains("198.51.100.23/32"),
        "{}",
        status(root)
    );
    doctor(root);

    // Remove keeps the config and the database; purge removes them.
    root_ok(root, &["dpkg", "--remove", PKG]);
    assert!(!root.join("usr/bin/f2b-mailguard").exists());
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited);
    assert!(root.join("var/lib/f2b-mailguard/mailguard.db").is_file());
    root_ok(root, &["dpkg", "--purge", PKG]);
    for gone in [
        "etc/f2b-mailguard",
        "var/lib/f2b-mailguard",
        "etc/fail2ban/action.d/mailguard.conf",
        "etc/fail2ban/jail.d/mailguard.conf",
        "etc/systemd/system/timers.target.wants/f2b-mailguard-actions.timer",
    ] {
        assert!(!root.join(gone).exists(), "{gone} left after purge");
    }
    assert!(
        root.join("etc/fail2ban/jail.conf").is_file(),
        "Fail2ban's own files stay"
    );
}
