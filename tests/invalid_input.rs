//! Bad input from Fail2ban or an admin: one line naming the field, exit 2, nothing written.

use crate::support;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use support::{Sandbox, T0};

fn rejects(s: &Sandbox, args: &[&OsStr], field: &str) {
    let before = s.rows("events");
    let out = s.cmd().args(args).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
    assert_eq!(err.lines().count(), 1, "one line expected, got {err:?}");
    // A positional argument is named as in the usage line (CIDR), an option with --.
    let named = if field.bytes().all(|b| b.is_ascii_uppercase()) {
        format!("invalid {field}:")
    } else {
        format!("--{field}")
    };
    assert!(
        err.contains(&named),
        "{args:?}: {err:?} does not name {named}"
    );
    assert_eq!(s.rows("events"), before, "{args:?} wrote a row");
    assert_eq!(s.rows("users"), 1, "{args:?} created an account");
}

fn record(source: &str, user: &[u8], ip: &str, time: &str) -> Vec<std::ffi::OsString> {
    let mut u = b"--user=".to_vec();
    u.extend_from_slice(user);
    [
        "record",
        &format!("--source={source}"),
        "--jail=mailguard-smtp",
    ]
    .iter()
    .map(|s| (*s).into())
    .chain([OsStr::from_bytes(&u).to_owned()])
    .chain([format!("--ip={ip}").into(), format!("--time={time}").into()])
    .collect()
}

#[test]
fn every_invalid_field_is_refused_by_name() {
    let s = Sandbox::new("");
    s.record("smtp", "alice@example.com", "198.51.100.1", T0);
    let t = &T0.to_string();
    let long = vec![b'a'; 10 * 1024];
    // Each case is a valid call with one field made invalid.
    let ip = "198.51.100.1";
    let mut cases: Vec<(Vec<std::ffi::OsString>, &str)> = Vec::new();
    for bad in ["198.51.100.300", "not-an-ip", "", "[2001:db8::1]"] {
        cases.push((record("smtp", b"bob", bad, t), "ip"));
    }
    let users: [&[u8]; 9] = [
        b"",
        b"bob\nevil",
        b"bob\r",
        b"a b",
        b"a\tb",
        b"a\x01b",
        b"a\x7fb",
        b"a\xffb",
        &long,
    ];
    for bad in users {
        cases.push((record("smtp", bad, ip, t), "user"));
    }
    for bad in ["yesterday", "nan", "inf", "-5", "1e300"] {
        cases.push((record("smtp", b"bob", ip, bad), "time"));
    }
    // queue and spread are computed by f2b-mailguard, never recorded.
    for bad in ["smtpx", "", "SMTP;id", "queue", "spread"] {
        cases.push((record(bad, b"bob", ip, t), "source"));
    }
    for (args, field) in &cases {
        let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        rejects(&s, &args, field);
    }
    // Fail2ban's <failures>: a whole number from 1 to a million.
    for count in [
        "0",
        "-1",
        "1.5",
        "ten",
        "",
        "1000001",
        "99999999999999999999",
    ] {
        let mut args = record("rate", b"bob", "198.51.100.1", t);
        args.push(format!("--count={count}").into());
        let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        rejects(&s, &args, "count");
    }
    // Missing options and an empty jail, too.
    let missing: &[(&[&str], &str)] = &[
        (
            &["record", "--jail=j", "--user=bob", "--ip=198.51.100.1"],
            "source",
        ),
        (
            &["record", "--source=smtp", "--jail=j", "--ip=198.51.100.1"],
            "user",
        ),
        (&["record", "--source=smtp", "--jail=j", "--user=bob"], "ip"),
        (
            &[
                "record",
                "--source=smtp",
                "--jail=",
                "--user=bob",
                "--ip=198.51.100.1",
            ],
            "jail",
        ),
        (
            &[
                "record",
                "--source=smtp",
                "--jail=j",
                "--user=bob",
                "--ip=198.51.100.1",
                "--fid=a\nb",
            ],
            "fid",
        ),
    ];
    for (args, field) in missing {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        rejects(&s, &args, field);
    }
    assert_eq!(s.rows("events"), 1);
}

#[test]
fn nul_in_a_user_cannot_reach_the_binary_and_is_refused_by_the_parser() {
    // argv cannot carry NUL (the kernel ends the string there), so Fail2ban cannot
    // send one; the type still refuses it for input that arrives by other routes.
    let err = std::process::Command::new(support::BIN)
        .arg("--user=a\0b")
        .output();
    assert!(err.is_err(), "NUL must not be passable in argv");
}

#[test]
fn attacker_text_is_one_literal_argument() {
    // Values that look like options or shell are data: stored exactly, nothing run.
    let s = Sandbox::new("");
    for user in [
        "-n", "--evil", "$(id)", "x;y", "a'b\"c", "`touch`", "%s%n", "*",
    ] {
        s.record("smtp", user, "198.51.100.1", T0);
        assert_eq!(s.status_user(user, T0)["user"], user);
    }
    assert_eq!(s.rows("users"), 8);
}

#[test]
fn bad_cidr_and_window_are_refused() {
    let s = Sandbox::new("");
    s.record("smtp", "alice@example.com", "198.51.100.1", T0);
    for (args, field) in [
        (&["whitelist", "add", "10.0.0.300/8"][..], "CIDR"),
        (&["whitelist", "add", "10.0.0.1/8"][..], "CIDR"),
        (&["whitelist", "add", "10.0.0.0/33"][..], "CIDR"),
        (
            &["whitelist", "add", "192.0.2.0/24", "--user", "a b"][..],
            "user",
        ),
        (
            &["whitelist", "add", "192.0.2.0/24", "--note", "a\nb"][..],
            "note",
        ),
        (&["whitelist", "remove", "nope"][..], "CIDR"),
        (&["status", "--", "a b"][..], "USER"),
        (&["release", "--", "a b"][..], "USER"),
        (&["status", "--window", "forever"][..], "window"),
        (&["prune", "--older-than", "30x"][..], "older-than"),
    ] {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        rejects(&s, &args, field);
    }
    assert_eq!(s.rows("whitelist"), 0);
}

#[test]
fn addresses_that_are_never_a_client_are_refused() {
    // Unspecified, broadcast and multicast addresses cannot open a TCP connection, so
    // a login "from" one is forged or garbage, never a network to count.
    let s = Sandbox::new("");
    s.record("smtp", "alice@example.com", "198.51.100.1", T0);
    let t = &T0.to_string();
    for ip in [
        "0.0.0.0",
        "255.255.255.255",
        "::",
        "::ffff:0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "ff02::1",
    ] {
        let args = record("smtp", b"bob", ip, t);
        let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        rejects(&s, &args, "ip");
    }
}

#[test]
fn leading_zeros_are_refused_by_one_rule() {
    // `010` is octal 8 to inet_aton and ten to others: refused in addresses and
    // prefix lengths alike, for --ip and whitelist CIDRs, with the same reason.
    let s = Sandbox::new("");
    s.record("smtp", "alice@example.com", "198.51.100.1", T0);
    let reason = |args: &[&str]| {
        let out = s.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?} must be refused");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for args in [
        &[
            "record",
            "--source=smtp",
            "--jail=j",
            "--user=bob",
            "--ip=01.2.3.4",
        ][..],
        &["whitelist", "add", "010.0.0.0/8"][..],
        &["whitelist", "add", "10.0.0.0/08"][..],
        &["whitelist", "add", "::ffff:010.0.0.0/104"][..],
    ] {
        let err = reason(args);
        assert!(err.contains("leading zero"), "{args:?}: {err}");
    }
    // A sign is not a digit either.
    let err = reason(&["whitelist", "add", "10.0.0.0/+8"]);
    assert!(err.contains("prefix length"), "{err}");
    assert_eq!(s.rows("whitelist"), 0);
    assert_eq!(s.rows("users"), 1);
}

#[test]
fn the_whole_address_space_is_never_whitelisted() {
    // It would switch detection off; `exempt = true` is the way to do that per account.
    let s = Sandbox::new("");
    s.record("smtp", "alice@example.com", "198.51.100.1", T0);
    for args in [
        &["whitelist", "add", "0.0.0.0/0"][..],
        &["whitelist", "add", "::/0"][..],
        &["whitelist", "add", "::ffff:0.0.0.0/96"][..],
        &[
            "whitelist",
            "add",
            "0.0.0.0/0",
            "--user",
            "alice@example.com",
        ][..],
    ] {
        let out = s.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("every address"), "{args:?}: {err}");
        assert!(err.contains("exempt = true"), "{args:?}: {err}");
    }
    assert_eq!(s.rows("whitelist"), 0);
    s.write_config("[detection]\nwhitelist = [\"::/0\"]\n");
    let out = s.run(&["config", "check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("detection.whitelist") && err.contains("every address"),
        "{err}"
    );
}

#[test]
fn a_mapped_network_is_stored_as_the_ipv4_network_it_means() {
    // Addresses are counted as IPv4 (`::ffff:4.4.4.9` is 4.4.4.9), so a mapped
    // network must be too, or it never matches.
    let s = Sandbox::new("");
    let out = s.ok(&["whitelist", "add", "::ffff:4.4.4.0/120"]);
    assert_eq!(out.trim(), "added 4.4.4.0/24 for every account");
    s.record("smtp", "alice@example.com", "::ffff:4.4.4.9", T0);
    s.record("smtp", "alice@example.com", "4.4.4.10", T0 + 1);
    let d = s.status_user("alice@example.com", T0 + 2);
    let nets = d["networks"].as_array().expect("networks");
    assert_eq!(nets.len(), 2, "{d:#}");
    assert!(nets.iter().all(|n| n["whitelisted"] == true), "{d:#}");
    let list = s.ok(&["whitelist", "list", "--json"]);
    assert!(list.contains("\"4.4.4.0/24\""), "{list}");
}

#[test]
fn rejected_logins_are_counted_in_status_check_metrics_and_doctor() {
    let s = Sandbox::new("");
    s.record("smtp", "alice@example.com", "198.51.100.1", T0);
    let t = T0.to_string();
    for ip in ["198.51.100.300", "not-an-ip"] {
        let args = record("smtp", b"bob", ip, &t);
        let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        rejects(&s, &args, "ip");
    }
    // Rejections land beside the database even when the config is broken.
    s.write_config("mode = \"enforc\"");
    let args = record("smtp", b"a\x01b", "198.51.100.1", &t);
    let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    rejects(&s, &args, "user");
    s.write_config("");

    let want = "3 login(s) rejected in 24h, last: ";
    let last = "invalid --user: contains a control character (U+0001)";
    let status = s.ok(&["status"]);
    assert!(status.contains(want) && status.contains(last), "{status}");
    let json: serde_json::Value = serde_json::from_str(&s.ok(&["status", "--json"])).unwrap();
    assert_eq!(json["backlog"]["rejected_24h"], 3, "{json:#}");
    assert_eq!(json["backlog"]["last_reason"], last);

    let check = s.run(&["check"]);
    let line = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{line}");
    assert!(
        line.contains(want) && line.contains("rejected_24h=3"),
        "{line}"
    );

    let metrics = s.ok(&["metrics"]);
    assert!(
        metrics.contains("\nf2b_mailguard_rejected_logins 3\n"),
        "{metrics}"
    );

    let doctor = s.run(&["doctor"]);
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("warn") && l.contains(want) && l.contains(last)),
        "{text}"
    );
}

#[test]
fn any_fid_fail2ban_builds_from_a_valid_user_and_address_is_accepted() {
    let s = Sandbox::new("");
    // Python's repr doubles each backslash: a 320-byte user becomes a 640-byte id.
    let user = format!("{}@x", "\\".repeat(318));
    let fid = format!("('{}', '2001:db8::1')", user.replace('\\', "\\\\"));
    assert!(fid.len() > 256, "{}", fid.len());
    let out = s
        .cmd()
        .args([
            "record",
            "--source=smtp",
            "--jail=j",
            &format!("--user={user}"),
            "--ip=2001:db8::1",
            &format!("--time={T0}"),
            &format!("--fid={fid}"),
        ])
        .output()
        .unwrap();
    support::assert_success("record", &out);
    assert_eq!(s.rows("events"), 1);
}
