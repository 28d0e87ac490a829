//! install.sh's prerequisites: Fail2ban new enough, and a Rust new enough to build
//! (each refused with the exact command to run; only a warning into a DESTDIR).

use crate::install::{install, run_install, tools_path};
use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
use support::BIN;

/// With the tools on `path`, install.sh on this system (no DESTDIR) fails before it
/// acts, saying `errors`; into a DESTDIR under `dir` (a package built elsewhere) it
/// succeeds with `warning`. Returns that DESTDIR.
fn refused_here_warned_into_destdir(
    dir: &Path,
    path: &Path,
    errors: &[&str],
    warning: &str,
) -> PathBuf {
    // --dry-run keeps a bug here from writing to /.
    let out = run_install(
        Path::new(ROOT),
        Path::new("/"),
        &["--dry-run", "--binary", BIN],
        Some(path),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(errors.iter().all(|e| err.contains(e)), "{err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "acted before refusing"
    );
    let root = dir.join("root");
    let out = run_install(Path::new(ROOT), &root, &["--binary", BIN], Some(path));
    support::assert_success("install.sh", &out);
    assert!(String::from_utf8_lossy(&out.stdout).contains(warning));
    root
}

#[test]
fn fail2ban_older_than_0_10_is_refused_with_what_to_do() {
    let d = tempfile::tempdir().unwrap();
    let path = tools_path(d.path(), &[("fail2ban-client", "echo 'Fail2Ban v0.9.6'")]);
    let root = refused_here_warned_into_destdir(
        d.path(),
        &path,
        &["Fail2ban 0.9.6 is too old: 0.10 or later"],
        "warning: Fail2ban 0.9.6 is too old",
    );
    assert!(root.join("usr/local/bin/f2b-mailguard").is_file());
}

#[test]
fn missing_fail2ban_is_an_error_but_only_a_warning_into_destdir() {
    let d = tempfile::tempdir().unwrap();
    let path = tools_path(d.path(), &[]);
    refused_here_warned_into_destdir(
        d.path(),
        &path,
        &["Fail2ban is not installed", "apt-get install fail2ban"],
        "warning: Fail2ban is not installed",
    );
    // The real one passes the check.
    let out = install(&d.path().join("root2"), &["--dry-run", "--binary", BIN]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Fail2ban 1."));
}

/// Building needs the Rust of Cargo.toml's rust-version; Debian 12's cargo is 1.63.
/// Without cargo, or with one too old, install.sh and tests/run stop before acting
/// and print the exact command: rustup's installer, or `rustup update stable` when
/// rustup is there.
#[test]
fn missing_or_old_cargo_prints_the_command_to_run() {
    let manifest = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).unwrap();
    let want = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap();
    let f2b = ("fail2ban-client", "echo 'Fail2Ban v1.0.2'");
    let old = ("cargo", "echo 'cargo 1.63.0'");
    let new = ("cargo", "echo 'cargo 1.99.0 (abc 2027-01-01)'");
    let rustup = ("rustup", "exit 0");
    let installer = "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal && . \"$HOME/.cargo/env\"";
    type Tools<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Tools, Option<String>); 4] = [
        (
            &[f2b],
            Some(format!("cargo not found: Rust {want} or later is needed")),
        ),
        (
            &[f2b, old],
            Some(format!("is Rust 1.63.0; {want} or later is needed")),
        ),
        (&[f2b, old, rustup], Some("  rustup update stable".into())),
        (&[f2b, new], None),
    ];
    for (i, (tools, error)) in cases.iter().enumerate() {
        let d = tempfile::tempdir().unwrap();
        let path = tools_path(d.path(), tools);
        // --dry-run: a bug here builds or writes nothing.
        let out = run_install(
            Path::new(ROOT),
            &d.path().join("root"),
            &["--dry-run"],
            Some(&path),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        match error {
            Some(e) => {
                assert_eq!(out.status.code(), Some(1), "case {i}: {err}");
                assert!(err.contains(e.as_str()), "case {i}: {err}");
                let fix = if tools.contains(&rustup) {
                    "  rustup update stable".to_owned()
                } else {
                    format!("  {installer}")
                };
                assert!(err.lines().any(|l| l == fix), "case {i}: {err}");
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(!stdout.contains("would "), "case {i}: acted: {stdout}");
                // tests/run checks first, before installing anything.
                let run = Command::new(Path::new(ROOT).join("tests/run"))
                    .env("PATH", &path)
                    .output()
                    .unwrap();
                assert_eq!(run.status.code(), Some(1), "tests/run, case {i}");
                let run_err = String::from_utf8_lossy(&run.stderr);
                assert!(
                    run_err.lines().any(|l| l == fix),
                    "tests/run, case {i}: {run_err}"
                );
                assert!(!run_err.contains("installing"), "{run_err}");
            }
            None => {
                support::assert_success(format_args!("case {i}"), &out);
                assert!(String::from_utf8_lossy(&out.stdout).contains("would run: env RUSTFLAGS"));
            }
        }
    }
}
