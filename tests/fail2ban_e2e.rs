//! The shipped Fail2ban files in a real, private fail2ban-server: log lines appended
//! to a polled log reach `f2b-mailguard record` once per (user, address) pair, with
//! hostile values intact, and the action's exit-code policy holds.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::fail2ban::{append, postfix_login, syslog_now, Fail2ban, Jail};

use support::{Sandbox, BIN};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// `status USER --json`, none before the user's first login.
fn user_status(s: &Sandbox, user: &str) -> Option<serde_json::Value> {
    let out = s.run(&["status", "--json", "--", user]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn networks(v: &serde_json::Value) -> Vec<String> {
    v["networks"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| n["network"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn each_user_address_pair_is_recorded_once_and_hostile_user_names_arrive_literally() {
    // 12 networks are above the default block threshold (10): this scenario is about
    // the notify level, so block and lock start higher; actions are off (no mail).
    let s =
        Sandbox::new("mode = \"warn\"\n\n[thresholds.smtp]\nnotify = 5\nblock = 20\nlock = 40\n");
    let mail_log = s.path().join("mail.log");
    std::fs::write(&mail_log, "").expect("log");
    let mut f2b = Fail2ban::start(
        s.path(),
        Path::new(BIN),
        &s.config_path(),
        &[Jail {
            name: "mailguard-smtp",
            logpath: &mail_log,
        }],
    );

    let pwned = s.path().join("pwned");
    // Postfix logs no spaces in a SASL name (the filter takes \S+): everything else.
    let evil = format!(
        "x$(touch${{IFS}}{});y'\"|&*`id`\\<>@example.com",
        pwned.display()
    );
    let mut lines = Vec::new();
    for i in 1..=12u32 {
        lines.push(postfix_login(
            4000 + i,
            &format!("A{i:09X}"),
            &format!("198.51.100.{i}"),
            "alice@example.com",
        ));
    }
    for i in 1..=3u32 {
        lines.push(postfix_login(
            5000,
            &format!("B{i:09X}"),
            "203.0.113.9",
            "bob@example.com",
        ));
    }
    lines.push(postfix_login(5001, "C0FFEE1234", "203.0.113.66", &evil));
    append(&mail_log, &lines);

    // Within a minute (seconds on a quiet machine): alice from 12 networks, bob from 1, the odd user from 1.
    let count = |user: &str| user_status(&s, user).map_or(0, |v| networks(&v).len());
    let mut seen = (0, 0, 0);
    let arrived = support::try_wait_until(Duration::from_secs(60), || {
        seen = (
            count("alice@example.com"),
            count("bob@example.com"),
            count(&evil),
        );
        seen == (12, 1, 1)
    });
    let (a, b, e) = seen;
    assert!(
        arrived,
        "after 60 s: alice {a}/12, bob {b}/1, odd user {e}/1 networks; fail2ban log:\n{}",
        f2b.log()
    );
    // Let any duplicate arrive before counting.
    std::thread::sleep(Duration::from_secs(2));

    let alice = user_status(&s, "alice@example.com").expect("alice");
    let mut nets = networks(&alice);
    nets.sort();
    let mut want: Vec<String> = (1..=12).map(|i| format!("198.51.100.{i}/32")).collect();
    want.sort();
    assert_eq!(nets, want, "alice's 12 pairs");
    assert_eq!(alice["level"], "notify", "{alice:#}");
    assert_eq!(alice["enforced"], false);
    for n in alice["networks"].as_array().expect("networks") {
        assert_eq!(n["count"], 1, "each alice pair once: {n}");
        assert_eq!(n["sources"], serde_json::json!(["smtp"]));
        // The log's time (<time>), not the arrival's.
        let seen = n["last_seen"].as_f64().expect("last_seen");
        assert!((now() as f64 - seen).abs() < 60.0, "last_seen {seen}");
    }

    let bob = user_status(&s, "bob@example.com").expect("bob");
    assert_eq!(networks(&bob), ["203.0.113.9/32"]);
    assert_eq!(
        bob["networks"][0]["count"], 1,
        "three logins of one busy pair are reported once: {bob:#}"
    );
    assert_eq!(bob["level"], "ok");

    let odd = user_status(&s, &evil).expect("odd user");
    // Byte for byte, but for the one rule every name follows: lower case.
    assert_eq!(
        odd["user"],
        evil.to_lowercase().as_str(),
        "the user name arrived byte for byte"
    );
    assert!(!pwned.exists(), "a shell ran part of the user name");

    // Fail2ban itself saw 14 distinct tickets: 12 + 1 + 1 pairs.
    let status = f2b.client(&["status", "mailguard-smtp"]).expect("status");
    assert!(
        status.contains("Total banned:\t14"),
        "fail2ban status:\n{status}"
    );
    assert!(f2b.stop(), "fail2ban-server did not stop on SIGTERM");
}

/// A stand-in for the binary: writes each invocation's argv (NUL-separated, one record
/// per call) to `calls`, and exits 2 or 1 for users named so.
fn fake_binary(dir: &Path) -> (PathBuf, PathBuf) {
    let calls = dir.join("calls");
    let bin = dir.join("fake-mailguard");
    std::fs::write(
        &bin,
        format!(
            "#!/bin/sh\nprintf '%s\\0' \"$@\" >> '{calls}'\nprintf '\\036\\n' >> '{calls}'\n\
             for a in \"$@\"; do\n  case \"$a\" in\n    --user=exit-two) exit 2 ;;\n    --user=exit-one) exit 1 ;;\n  esac\ndone\nexit 0\n",
            calls = calls.display()
        ),
    )
    .expect("fake binary");
    let mut perm = std::fs::metadata(&bin).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&bin, perm).expect("chmod");
    (bin, calls)
}

fn read_calls(calls: &Path) -> Vec<Vec<String>> {
    let raw = std::fs::read(calls).unwrap_or_default();
    String::from_utf8(raw)
        .expect("utf-8")
        .split("\u{1e}\n")
        .filter(|c| !c.is_empty())
        .map(|c| {
            c.split('\0')
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

/// The shipped action with a test-only filter that lets any text through as the user
/// (no shipped filter does: they stop at white space), so the quoting is tested on
/// the worst values, and the exit-code policy on a binary that fails on purpose.
#[test]
fn the_action_passes_every_value_as_one_argument_and_retries_only_exit_1() {
    let dir = tempfile::tempdir().expect("tmp");
    let (bin, calls) = fake_binary(dir.path());
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "mode = \"warn\"\n").expect("config");
    let log = dir.path().join("any.log");
    std::fs::write(&log, "").expect("log");
    let pwned = dir.path().join("pwned");
    let filter = "[Definition]\nfailregex = ^\\s*user=<F-USER><F-ID>.+</F-ID></F-USER> addr=<F-TUPLE_ID><ADDR></F-TUPLE_ID>$\n";
    let jail = "[mg-test]\nfilter = mg-test-any\naction = mailguard[source=imap]\n\
                maxretry = 1\nfindtime = 10m\nbantime = 15m\nusedns = no\n";
    let mut f2b = Fail2ban::start_with(
        dir.path(),
        &bin,
        &config,
        &[Jail {
            name: "mg-test",
            logpath: &log,
        }],
        &[],
        &[
            ("filter.d/mg-test-any.conf", filter),
            ("jail.d/mg-test.conf", jail),
        ],
    );

    let users = [
        "a b --evil".to_string(),
        format!("$(touch {})", pwned.display()),
        format!("x;touch {};y", pwned.display()),
        format!("`touch {}`", pwned.display()),
        "-n".to_string(),
        "--user=mallory".to_string(),
        "it's \"quoted\"".to_string(),
        "/etc/pass*".to_string(),
        "back\\slash & pipe | tilde ~ <tag>".to_string(),
        "exit-two".to_string(),
        "exit-one".to_string(),
    ];
    let lines: Vec<String> = users
        .iter()
        .enumerate()
        .map(|(i, u)| format!("{} user={u} addr=192.0.2.{}", syslog_now(), i + 10))
        .collect();
    append(&log, &lines);

    let record_calls = || -> Vec<Vec<String>> {
        read_calls(&calls)
            .into_iter()
            .filter(|c| c.get(1).map(String::as_str) == Some("record"))
            .collect()
    };
    // Every user once, exit-one twice (the retry).
    assert!(
        support::try_wait_until(Duration::from_secs(60), || {
            record_calls().len() > users.len()
        }),
        "{} of {} record calls; fail2ban log:\n{}",
        record_calls().len(),
        users.len() + 1,
        f2b.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    let got = record_calls();
    let config_arg = format!("--config={}", config.display());
    for (i, u) in users.iter().enumerate() {
        let mine: Vec<&Vec<String>> = got
            .iter()
            .filter(|c| c.contains(&format!("--user={u}")))
            .collect();
        let want = if u == "exit-one" { 2 } else { 1 };
        assert_eq!(mine.len(), want, "calls for {u:?}: {got:#?}");
        let c = mine[0];
        assert_eq!(c.len(), 9, "argv for {u:?}: {c:?}");
        assert_eq!(c[0], config_arg);
        assert_eq!(c[1], "record");
        assert_eq!(c[2], "--source=imap");
        assert_eq!(c[3], "--jail=mg-test");
        assert_eq!(c[4], format!("--user={u}"));
        assert_eq!(c[5], format!("--ip=192.0.2.{}", i + 10));
        let time: f64 = c[6]
            .strip_prefix("--time=")
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("time in {c:?}"));
        assert!((now() as f64 - time).abs() < 60.0, "{c:?}");
        // The ticket ID is Python's repr of the (user, address) tuple.
        assert!(
            c[7].starts_with("--fid=(") && c[7].ends_with(&format!(", '192.0.2.{}')", i + 10)),
            "{c:?}"
        );
        // maxretry = 1: one login per ticket.
        assert_eq!(c[8], "--count=1");
    }
    assert!(!pwned.exists(), "a shell ran part of a user name");
    // actionstart checked the config and the database with the same config.
    let all = read_calls(&calls);
    assert!(all.contains(&vec![config_arg.clone(), "config".into(), "check".into()]));
    assert!(all.contains(&vec![config_arg, "status".into(), "--json".into()]));
    // Exit 2 was taken as done, exit 1 failed twice and was logged as such.
    let log = f2b.log();
    let errors = |u: &str| {
        log.lines()
            .filter(|l| l.contains("ERROR") && l.contains(u))
            .count()
    };
    assert_eq!(errors("exit-two"), 0, "exit 2 reached fail2ban:\n{log}");
    assert!(errors("exit-one") >= 2, "exit 1 not reported:\n{log}");
    assert!(f2b.stop(), "fail2ban-server did not stop on SIGTERM");
}

/// The shipped jails as Fail2ban reads them together with Debian's own jail.conf: all
/// disabled by default; when enabled, each reports once per pair (maxretry 1), runs
/// only the mailguard action with its source, and never resolves names.
/// Whether an `addaction` line loads the shipped Python action file.
fn conf_py(line: &str) -> bool {
    line.contains("/action.d/f2b_mailguard.py'")
}

#[test]
fn shipped_jails_are_off_by_default_and_only_record() {
    support::fail2ban::need("/usr/bin/fail2ban-client");
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("mail.log");
    std::fs::write(&log, "").expect("log");
    let names = [
        ("mailguard-smtp", "smtp"),
        ("mailguard-imap", "imap"),
        ("mailguard-pop3", "pop3"),
        ("mailguard-webmail", "webmail"),
    ];
    let config = dir.path().join("config.toml");
    let dump_with = |jails: &[Jail], extra: &[(&str, &str)]| -> String {
        let d = tempfile::tempdir_in(dir.path()).expect("tmp");
        let conf = support::fail2ban::conf_dir(d.path(), Path::new(BIN), &config, jails, extra);
        for f in [
            "jail.conf",
            "paths-common.conf",
            "paths-debian.conf",
            "fail2ban.conf",
        ] {
            std::fs::copy(Path::new("/etc/fail2ban").join(f), conf.join(f)).expect(f);
        }
        support::fail2ban::stdout_of(
            Command::new("/usr/bin/fail2ban-client")
                .arg("-c")
                .arg(&conf)
                .arg("-d"),
        )
    };
    let dump = |jails: &[Jail]| dump_with(jails, &[]);

    let off = dump(&[]);
    for (name, _) in names {
        assert!(
            !off.contains(&format!("'{name}'")),
            "{name} enabled by default:\n{off}"
        );
    }

    let jails: Vec<Jail> = names
        .iter()
        .map(|(name, _)| Jail {
            name,
            logpath: &log,
        })
        .collect();
    let on = dump(&jails);
    for (name, source) in names {
        let mine: Vec<&str> = on
            .lines()
            .filter(|l| l.contains(&format!("'{name}'")))
            .collect();
        let has = |s: &str| mine.iter().any(|l| l.contains(s));
        assert!(has("'maxretry', 1]"), "{name}: {mine:#?}");
        assert!(has("'bantime', '15m']"), "{name}: {mine:#?}");
        assert!(has("'usedns', 'no']"), "{name}: {mine:#?}");
        let actions: Vec<&&str> = mine.iter().filter(|l| l.contains("'addaction'")).collect();
        assert_eq!(
            actions.len(),
            1,
            "{name} must have exactly one action: {actions:?}"
        );
        // The Python action by default; its options reach it as JSON keyword arguments.
        let py = conf_py(actions[0]);
        assert!(
            actions[0].contains("'f2b_mailguard'") && py,
            "{name}: {actions:?}"
        );
        assert!(
            actions[0].contains(&format!("'{{\"source\": \"{source}\"}}'")),
            "{name}: {actions:?}"
        );
    }

    // `mailguard_action = mailguard` in the admin's .local brings the command action back.
    let extra = [(
        "jail.d/mailguard-z.local",
        "[DEFAULT]\nmailguard_action = mailguard\n",
    )];
    let on = dump_with(&jails, &extra);
    for (name, source) in names {
        let mine: Vec<&str> = on
            .lines()
            .filter(|l| l.contains(&format!("'{name}'")))
            .collect();
        let actions: Vec<&&str> = mine.iter().filter(|l| l.contains("'addaction'")).collect();
        assert_eq!(actions.len(), 1, "{name}: {actions:?}");
        assert!(actions[0].contains("'mailguard'"), "{name}: {actions:?}");
        let settings = mine
            .iter()
            .find(|l| l.starts_with("['multi-set'") && l.contains("'action', 'mailguard'"))
            .unwrap_or_else(|| panic!("{name}: no action settings: {mine:#?}"));
        for want in [
            format!("['source', '{source}']"),
            "['norestored', True]".to_string(),
            "['actionunban', '']".to_string(),
        ] {
            assert!(settings.contains(&want), "{name}: {want} not in {settings}");
        }
    }
}
