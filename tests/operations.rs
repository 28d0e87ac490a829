//! Fitting into operations: the Nagios plugin, Prometheus metrics checked by promtool,
//! and the systemd units checked by systemd-analyze.

use crate::support;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::smtp_sink::free_port;
use support::{now, Sandbox};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn check(s: &Sandbox, extra: &[&str]) -> (i32, String) {
    let out = s.cmd().arg("check").args(extra).output().expect("check");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(
        text.lines().count(),
        1,
        "a plugin prints one line: {text:?}"
    );
    (
        out.status.code().expect("exit code"),
        text.trim_end().to_owned(),
    )
}

/// Nagios performance data: `label=value[UOM]` pairs after the `|`.
fn perfdata(line: &str) -> Vec<(String, String)> {
    let (_, perf) = line.split_once(" | ").expect("perfdata after ' | '");
    perf.split(' ')
        .map(|p| {
            let (k, v) = p.split_once('=').expect("label=value");
            assert!(
                k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "label {k:?}"
            );
            let num = v.trim_end_matches('s');
            assert!(num.parse::<u64>().is_ok(), "value {v:?}");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn check_reports_ok_warning_critical_and_unknown() {
    let s = Sandbox::new("");
    let (code, line) = check(&s, &[]);
    assert_eq!(code, 0, "{line}");
    assert!(
        line.starts_with("F2B-MAILGUARD OK - no account flagged"),
        "{line}"
    );
    let perf = perfdata(&line);
    assert_eq!(perf[0], ("notify".into(), "0".into()));

    s.burst("bob@example.com", 6, now() - 120);
    let (code, line) = check(&s, &[]);
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("1 notify: bob@example.com"), "{line}");

    s.burst("alice@example.com", 11, now() - 120);
    let (code, line) = check(&s, &[]);
    assert_eq!(code, 2, "{line}");
    assert!(line.contains("1 would block: alice@example.com"), "{line}");
    let perf = perfdata(&line);
    assert!(
        perf.contains(&("would_block".into(), "1".into())),
        "{perf:?}"
    );
    assert!(perf.contains(&("notify".into(), "1".into())), "{perf:?}");

    rusqlite::Connection::open(s.db())
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let (code, line) = check(&s, &[]);
    assert_eq!(code, 3, "{line}");
    assert!(
        line.starts_with("F2B-MAILGUARD UNKNOWN - database"),
        "{line}"
    );
}

#[test]
fn check_warns_when_actions_wait_too_long() {
    let s = Sandbox::acting(&format!(
        "[mail]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\n[actions]\nretry_base = \"1h\"\n",
        free_port()
    ));
    s.burst("bob@example.com", 6, now() - 120);
    s.wait_user("bob@example.com", "a failed attempt", |d| {
        d["actions"][0]["attempts"].as_u64() >= Some(1)
    });
    std::thread::sleep(Duration::from_millis(2100));
    let (code, line) = check(&s, &["--pending-age=1s"]);
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("is run-actions running?"), "{line}");
    assert!(perfdata(&line).contains(&("pending".into(), "1".into())));
}

fn promtool(text: &str) {
    assert!(
        Path::new("/usr/bin/promtool").exists(),
        "promtool is missing: run tests/run (package prometheus)"
    );
    let mut child = Command::new("/usr/bin/promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    support::assert_success("promtool check metrics", &out);
}

#[test]
fn metrics_pass_promtool_and_count_what_happened() {
    let s = Sandbox::new("");
    s.burst("alice@example.com", 11, now() - 120);
    s.record("imap", "alice@example.com", "198.51.100.1", now() - 10);
    s.ok(&["prune"]);
    let text = s.ok(&["metrics"]);
    promtool(&text);
    for want in [
        "f2b_mailguard_accounts{state=\"would_block\"} 1",
        "f2b_mailguard_accounts{state=\"block\"} 0",
        "f2b_mailguard_logins{source=\"smtp\"} 11",
        "f2b_mailguard_logins{source=\"imap\"} 1",
        "f2b_mailguard_actions{kind=\"mail\",state=\"done\"} 0",
        "f2b_mailguard_oldest_pending_action_age_seconds 0",
    ] {
        assert!(
            text.lines().any(|l| l == want),
            "missing {want:?} in\n{text}"
        );
    }
    let last_prune: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("f2b_mailguard_last_prune_timestamp_seconds "))
        .unwrap()
        .parse()
        .unwrap();
    assert!((now() - last_prune).abs() < 60);

    let file = s.path().join("textfile/f2b_mailguard.prom");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    s.ok(&["metrics", "--textfile", file.to_str().unwrap()]);
    promtool(&std::fs::read_to_string(&file).unwrap());
}

#[test]
fn systemd_units_verify() {
    assert!(
        Path::new("/usr/bin/systemd-analyze").exists(),
        "systemd-analyze is missing"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for e in std::fs::read_dir(Path::new(ROOT).join("systemd")).unwrap() {
        let e = e.unwrap();
        // As install.sh does: the units call the installed binary.
        let text = std::fs::read_to_string(e.path())
            .unwrap()
            .replace("/usr/local/bin/f2b-mailguard", support::BIN);
        let dest = dir.path().join(e.file_name());
        std::fs::write(&dest, text).unwrap();
        units.push(dest);
    }
    // actions, prune, queue-scan, metrics and ownership-update: a service and a
    // timer each; follow and the policy service: a service each.
    assert_eq!(units.len(), 12);
    // The units' Documentation= pages are the ones `generate man` writes (install.sh
    // and the package install them); verify checks the units, not this machine's man.
    let man = dir.path().join("man");
    std::fs::create_dir(&man).unwrap();
    let gen = Command::new(support::BIN)
        .args(["generate", "man"])
        .arg(&man)
        .output()
        .unwrap();
    support::assert_success("generate man", &gen);
    for unit in &units {
        let text = std::fs::read_to_string(unit).unwrap();
        for page in text
            .lines()
            .filter_map(|l| l.strip_prefix("Documentation=man:"))
        {
            let name = page.replace('(', ".").replace(')', "");
            assert!(man.join(&name).exists(), "{}: no {name}", unit.display());
        }
    }
    let out = Command::new("/usr/bin/systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .args(&units)
        .output()
        .unwrap();
    support::assert_success("systemd-analyze verify", &out);
}

#[test]
fn output_into_a_closed_pipe_stops_quietly() {
    let s = Sandbox::new("");
    s.burst("alice@example.com", 7, now() - 120);
    // `status | head -0`: the reader is gone before anything is written.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = s
        .cmd()
        .args(["status", "--window=30d"])
        .stdout(writer)
        .output()
        .expect("status");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Ended by SIGPIPE (13 on Linux), like `cat` into a closed pipe.
    assert_eq!(out.status.signal(), Some(13), "{:?}", out.status);
}
