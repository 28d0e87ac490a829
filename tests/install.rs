//! install.sh into a DESTDIR: the expected tree, idempotence, dry run, uninstall.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_f2b-mailguard");

fn install(destdir: &Path, args: &[&str]) -> Output {
    let out = run_install(Path::new(ROOT), destdir, args, None);
    assert!(
        out.status.success(),
        "install.sh {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// install.sh from `tree`, into `destdir` (none: the real root), with `path` as PATH.
fn run_install(tree: &Path, destdir: &Path, args: &[&str], path: Option<&Path>) -> Output {
    let mut cmd = Command::new(tree.join("install.sh"));
    cmd.args(args);
    if destdir != Path::new("/") {
        cmd.env("DESTDIR", destdir);
    } else {
        cmd.env_remove("DESTDIR");
    }
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    cmd.output().expect("install.sh")
}

/// A PATH holding only the tools install.sh uses, plus `extra` scripts (name, body).
fn tools_path(dir: &Path, extra: &[(&str, &str)]) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in [
        "awk", "basename", "cat", "cmp", "dirname", "head", "install", "mktemp", "rm", "rmdir",
        "sed", "stat",
    ] {
        let real = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{tool} not found"));
        std::os::unix::fs::symlink(real, bin.join(tool)).unwrap();
    }
    for (name, body) in extra {
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

/// Every path below `root` with its mode, size, content hash and mtime.
fn listing(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir") {
            let p = e.expect("entry").path();
            let m = std::fs::symlink_metadata(&p).expect("meta");
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let content = if m.is_file() {
                std::fs::read(&p).expect("read")
            } else {
                Vec::new()
            };
            let sum: u64 = content.iter().fold(1469598103934665603u64, |h, b| {
                (h ^ *b as u64).wrapping_mul(1099511628211)
            });
            out.insert(
                rel,
                format!(
                    "{:o} {} {:x} {}",
                    m.permissions().mode() & 0o7777,
                    m.len(),
                    sum,
                    m.mtime_nsec()
                ),
            );
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("meta").permissions().mode() & 0o7777
}

#[test]
fn installs_the_expected_tree_twice_without_change() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    install(root, &["--binary", BIN]);
    let bin = root.join("usr/local/bin/f2b-mailguard");
    assert_eq!(mode(&bin), 0o755);
    for f in [
        "mailguard-postfix-sasl",
        "mailguard-dovecot-login",
        "mailguard-roundcube-login",
    ] {
        let p = root.join(format!("etc/fail2ban/filter.d/{f}.conf"));
        assert_eq!(
            std::fs::read(&p).unwrap(),
            std::fs::read(format!("{ROOT}/fail2ban/filter.d/{f}.conf")).unwrap()
        );
        assert_eq!(mode(&p), 0o644);
    }
    assert!(root.join("etc/fail2ban/jail.d/mailguard.conf").is_file());
    let action =
        std::fs::read_to_string(root.join("etc/fail2ban/action.d/mailguard.conf")).unwrap();
    assert!(action.contains("\nbinary = /usr/local/bin/f2b-mailguard\n"));
    let config = root.join("etc/f2b-mailguard/config.toml");
    assert_eq!(mode(&config), 0o600);
    assert_eq!(
        std::fs::read(&config).unwrap(),
        std::fs::read(format!("{ROOT}/config.example.toml")).unwrap()
    );
    assert_eq!(mode(&root.join("var/lib/f2b-mailguard")), 0o700);
    let unit =
        std::fs::read_to_string(root.join("etc/systemd/system/f2b-mailguard-actions.service"))
            .unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/f2b-mailguard run-actions"));
    for t in ["actions", "prune", "metrics"] {
        assert!(root
            .join(format!("etc/systemd/system/f2b-mailguard-{t}.timer"))
            .is_file());
    }
    // The installed binary accepts the installed config.
    let check = Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .args(["config", "check"])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let before = listing(root);
    let out = install(root, &["--binary", BIN]);
    assert_eq!(listing(root), before, "second run changed the tree");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("\ninstalled "),
        "second run installed something"
    );
}

#[test]
fn prefix_moves_the_binary_and_the_action_follows() {
    let d = tempfile::tempdir().unwrap();
    install(d.path(), &["--prefix", "/opt/mailguard", "--binary", BIN]);
    assert!(d.path().join("opt/mailguard/bin/f2b-mailguard").is_file());
    let action =
        std::fs::read_to_string(d.path().join("etc/fail2ban/action.d/mailguard.conf")).unwrap();
    assert!(action.contains("\nbinary = /opt/mailguard/bin/f2b-mailguard\n"));
}

#[test]
fn dry_run_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let out = install(d.path(), &["--dry-run", "--binary", BIN]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("would run: install"));
    assert!(
        listing(d.path()).is_empty(),
        "dry run wrote {:?}",
        listing(d.path())
    );
}

#[test]
fn existing_config_is_never_overwritten() {
    let d = tempfile::tempdir().unwrap();
    let config = d.path().join("etc/f2b-mailguard/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, "mode = \"enforce\"\n").unwrap();
    install(d.path(), &["--binary", BIN]);
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "mode = \"enforce\"\n"
    );
}

#[test]
fn uninstall_removes_what_it_installed_and_keeps_database_and_edited_config() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    install(root, &["--binary", BIN]);
    let config = root.join("etc/f2b-mailguard/config.toml");
    std::fs::write(
        &config,
        format!(
            "{}mode = \"enforce\"\n",
            std::fs::read_to_string(&config).unwrap()
        ),
    )
    .unwrap();
    let db = root.join("var/lib/f2b-mailguard/mailguard.db");
    std::fs::write(&db, "data").unwrap();
    install(root, &["--uninstall"]);
    assert!(!root.join("usr/local/bin/f2b-mailguard").exists());
    for dir in [
        "etc/fail2ban/filter.d",
        "etc/fail2ban/action.d",
        "etc/fail2ban/jail.d",
        "etc/systemd/system",
    ] {
        let left: Vec<_> = std::fs::read_dir(root.join(dir)).unwrap().collect();
        assert!(left.is_empty(), "{dir} not emptied: {left:?}");
    }
    assert!(
        !root.join("usr/local/share/f2b-mailguard").exists(),
        "manifest and pristine config left behind"
    );
    assert!(config.exists(), "edited config removed");
    assert!(db.exists(), "database removed");

    // An untouched config goes with the rest.
    let d = tempfile::tempdir().unwrap();
    install(d.path(), &["--binary", BIN]);
    install(d.path(), &["--uninstall"]);
    assert!(!d.path().join("etc/f2b-mailguard/config.toml").exists());
    assert!(d.path().join("var/lib/f2b-mailguard").is_dir());
}

#[test]
fn bad_options_are_refused() {
    let out = run_install(Path::new(ROOT), Path::new("/"), &["--frobnicate"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown option --frobnicate"));
}

#[test]
fn dry_run_uninstall_removes_nothing() {
    let d = tempfile::tempdir().unwrap();
    install(d.path(), &["--binary", BIN]);
    let before = listing(d.path());
    let out = install(d.path(), &["--uninstall", "--dry-run"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("would run: rm"));
    assert_eq!(
        listing(d.path()),
        before,
        "dry-run uninstall changed the tree"
    );
}

#[test]
fn uninstall_warns_about_a_jail_local_that_still_enables_the_jails() {
    let d = tempfile::tempdir().unwrap();
    install(d.path(), &["--binary", BIN]);
    let local = d.path().join("etc/fail2ban/jail.d/mailguard.local");
    std::fs::write(&local, "[mailguard-smtp]\nenabled = true\n").unwrap();
    let out = install(d.path(), &["--uninstall"]);
    assert!(
        local.exists(),
        "the admin's .local file is not ours to remove"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("mailguard.local still enables"));
}

/// Without config.example.toml in the tree, the default config is a minimal one:
/// comments and mode = "warn", which the binary accepts.
#[test]
fn without_config_example_a_minimal_warn_config_is_installed() {
    let tree = tempfile::tempdir().unwrap();
    std::fs::copy(
        Path::new(ROOT).join("install.sh"),
        tree.path().join("install.sh"),
    )
    .unwrap();
    for d in ["filter.d", "action.d", "jail.d"] {
        let to = tree.path().join("fail2ban").join(d);
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(Path::new(ROOT).join("fail2ban").join(d)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    let d = tempfile::tempdir().unwrap();
    let out = run_install(tree.path(), d.path(), &["--binary", BIN], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = d.path().join("etc/f2b-mailguard/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let settings: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(settings, ["mode = \"warn\""]);
    let check = Command::new(BIN)
        .arg(format!("--config={}", config.display()))
        .args(["config", "check"])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Untouched, it goes with --uninstall.
    let out = run_install(tree.path(), d.path(), &["--uninstall"], None);
    assert!(out.status.success());
    assert!(!config.exists());
}

#[test]
fn fail2ban_older_than_0_10_is_refused_with_what_to_do() {
    let d = tempfile::tempdir().unwrap();
    let path = tools_path(d.path(), &[("fail2ban-client", "echo 'Fail2Ban v0.9.6'")]);
    // On this system (no DESTDIR): an error. --dry-run keeps a bug here from writing to /.
    let out = run_install(
        Path::new(ROOT),
        Path::new("/"),
        &["--dry-run", "--binary", BIN],
        Some(&path),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Fail2ban 0.9.6 is too old: 0.10 or later"),
        "{err}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "acted before refusing"
    );
    // Into a DESTDIR (a package built elsewhere): a warning.
    let root = d.path().join("root");
    let out = run_install(Path::new(ROOT), &root, &["--binary", BIN], Some(&path));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("warning: Fail2ban 0.9.6 is too old"));
    assert!(root.join("usr/local/bin/f2b-mailguard").is_file());
}

#[test]
fn missing_fail2ban_is_an_error_but_only_a_warning_into_destdir() {
    let d = tempfile::tempdir().unwrap();
    let path = tools_path(d.path(), &[]);
    let out = run_install(
        Path::new(ROOT),
        Path::new("/"),
        &["--dry-run", "--binary", BIN],
        Some(&path),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Fail2ban is not installed") && err.contains("apt-get install fail2ban"),
        "{err}"
    );
    let root = d.path().join("root");
    let out = run_install(Path::new(ROOT), &root, &["--binary", BIN], Some(&path));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("warning: Fail2ban is not installed"));
    // The real one passes the check.
    let out = install(&d.path().join("root2"), &["--dry-run", "--binary", BIN]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Fail2ban 1."));
}
