//! `config check`, config errors, and one source of truth for the reference:
//! the code's defaults == config.example.toml (docs/configuration.md is generated from
//! it: tests/config_reference.rs).

use crate::support;

use support::Sandbox;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn defaults_from_check() -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let out = std::process::Command::new(support::BIN)
        .args(["--config", empty.to_str().unwrap(), "config", "check"])
        .env_remove("F2B_MAILGUARD_DB")
        .output()
        .unwrap();
    support::assert_success("config check", &out);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// `# key = value` and `# [table]` lines: the documented defaults.
fn documented(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn example_config_documents_exactly_the_defaults() {
    let example = std::fs::read_to_string(format!("{ROOT}/config.example.toml")).unwrap();
    assert_eq!(documented(&example), defaults_from_check());
}

#[test]
fn example_config_is_valid_and_equal_to_defaults() {
    // The example with every setting uncommented is a config an admin could save, and
    // what it sets is exactly the defaults: `config check` prints the same effective
    // configuration for it as for an empty file (the database path aside, which the
    // sandbox sets).
    let example = std::fs::read_to_string(format!("{ROOT}/config.example.toml")).unwrap();
    let uncommented: String = documented(&example)
        .into_iter()
        .filter(|l| !l.starts_with("database ="))
        .map(|l| l + "\n")
        .collect();
    assert!(uncommented.contains("[detection]"), "{uncommented}");
    let s = Sandbox::acting(&uncommented);
    let effective: Vec<String> = s
        .ok(&["config", "check"])
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("database ="))
        .map(str::to_owned)
        .collect();
    let defaults: Vec<String> = defaults_from_check()
        .into_iter()
        .filter(|l| !l.starts_with("database ="))
        .collect();
    assert_eq!(effective, defaults);
}

#[test]
fn config_check_names_file_place_key_and_reason() {
    // Line 1 of the sandbox's config is its `database`; the text starts on line 2.
    for (text, at, expect) in [
        (
            "mode = \"block\"",
            "2:8",
            "mode: \"block\" is not \"warn\" or \"enforce\"",
        ),
        (
            "colour = true",
            "2:1",
            "colour: unknown key (known: database, local_dir, server_name, connect_timeout, mode,",
        ),
        (
            "[detection]\nwindow = \"soon\"",
            "3:10",
            "detection.window: \"soon\" is not a duration",
        ),
        (
            "[detection]\nipv6_prefix = 200",
            "3:15",
            "detection.ipv6_prefix: 200 is outside 1..=128",
        ),
        (
            "[detection]\nwhitelist = [\"192.0.2.0/24\", \"192.0.2.1/24\"]",
            "3:30",
            "detection.whitelist: \"192.0.2.1/24\" has host bits set",
        ),
        (
            "[thresholds.smtp]\nblock = 3",
            "2:1",
            "thresholds.smtp: notify (5) must be below block (3)",
        ),
        (
            "[thresholds.smpt]\nblock = 3",
            "2:13",
            "thresholds.smpt: unknown key (known: smtp, imap,",
        ),
        (
            "[users.\"a b\"]\nexempt = true",
            "2:8",
            "users.\"a b\": contains whitespace",
        ),
        (
            "[users.\"bob\"]\nexempt = \"yes\"",
            "3:10",
            "users.bob.exempt: must be a boolean, not a string",
        ),
        (
            "[ownership]\nasn_database = \"GeoLite2-ASN.mmdb\"",
            "3:16",
            "ownership.asn_database: \"GeoLite2-ASN.mmdb\" must be an absolute path",
        ),
        (
            "[ownership]\ncity_database = \"/x.mmdb\"",
            "3:1",
            "ownership.city_database: unknown key",
        ),
        (
            "[detection]\nwhitelist = \"192.0.2.0/24\"",
            "3:13",
            "detection.whitelist: must be an array, not a string",
        ),
        (
            "[password]\nbackend = \"dovecot-passwd-file\"",
            "2:1",
            "password.passwd_file: backend \"dovecot-passwd-file\" needs passwd_file",
        ),
    ] {
        let (file, err) = refused(text);
        assert!(
            err.contains(&format!("{file}:{at}: {expect}")),
            "{text}: got {err:?}"
        );
    }
}

/// `config check` of a config holding `text`: refused with one line on stderr.
/// The config's path and that line.
fn refused(text: &str) -> (String, String) {
    let s = Sandbox::new(text);
    let out = s.run(&["config", "check"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{text}: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    (s.config_path().display().to_string(), err)
}

#[test]
fn a_toml_syntax_error_names_the_line_and_column() {
    // Line 1 of the sandbox's config is its `database`; the text starts on line 2.
    for (text, at) in [
        ("mode = ", "2:8"),
        ("mode = \"warn\"\n\n[detection]\nwindow = 1h\n", "5:10"),
        // Columns count characters, not bytes.
        ("[mail]\nto = [\"\u{e9}@b\" \"c@d\"]\n", "3:13"),
    ] {
        let (file, err) = refused(text);
        assert!(
            err.contains(&format!("{file}:{at}: syntax error: ")),
            "{text}: got {err:?}"
        );
    }
}

#[test]
fn missing_explicit_config_is_an_error_missing_default_is_not() {
    let out = std::process::Command::new(support::BIN)
        .args(["--config", "/nonexistent/mailguard.toml", "config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/mailguard.toml"));
}

#[test]
fn config_check_prints_the_effective_values() {
    let s = Sandbox::new(
        "mode = \"enforce\"\n[detection]\nwindow = \"2h\"\nwhitelist = [\"192.0.2.0/24\"]",
    );
    let out = s.ok(&["config", "check"]);
    assert!(out.contains("mode = \"enforce\""));
    assert!(out.contains("window = \"2h\""));
    assert!(out.contains("whitelist = [\"192.0.2.0/24\"]"));
    assert!(out.contains("[thresholds.smtp]\nnotify = 5"));
}

#[test]
fn whitelist_lists_config_and_database_entries() {
    let s = Sandbox::new("[detection]\nwhitelist = [\"192.0.2.0/24\"]");
    s.ok(&["whitelist", "add", "203.0.113.0/24", "--note", "VPN exit"]);
    let out = s.ok(&[
        "whitelist",
        "add",
        "203.0.113.0/24",
        "--note",
        "VPN exit (new)",
    ]);
    assert!(out.starts_with("updated"));
    let list: serde_json::Value =
        serde_json::from_str(&s.ok(&["whitelist", "list", "--json"])).unwrap();
    let find = |cidr: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|e| e["cidr"] == cidr)
            .cloned()
            .unwrap()
    };
    assert_eq!(find("192.0.2.0/24")["origin"], "config");
    assert_eq!(find("203.0.113.0/24")["origin"], "database");
    assert_eq!(find("203.0.113.0/24")["note"], "VPN exit (new)");
    assert_eq!(find("127.0.0.0/8")["origin"], "builtin");
    // Config entries are edited in the file, not here.
    let out = s.run(&["whitelist", "remove", "192.0.2.0/24"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("edit it there"));
    s.ok(&["whitelist", "remove", "203.0.113.0/24"]);
    assert_eq!(
        s.run(&["whitelist", "remove", "203.0.113.0/24"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn whitelist_add_keeps_a_note_and_remove_says_where_an_entry_is() {
    let s = Sandbox::new("");
    s.ok(&["whitelist", "add", "203.0.113.0/24", "--note", "VPN exit"]);
    // Adding again without --note (say, to be sure it is there) keeps the note.
    assert!(s
        .ok(&["whitelist", "add", "203.0.113.0/24"])
        .starts_with("updated"));
    let list: serde_json::Value =
        serde_json::from_str(&s.ok(&["whitelist", "list", "--json"])).unwrap();
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["cidr"] == "203.0.113.0/24")
        .unwrap();
    assert_eq!(entry["note"], "VPN exit");

    let refused = |args: &[&str]| {
        let out = s.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // Built in: on the whitelist, and not removable.
    let err = refused(&["whitelist", "remove", "127.0.0.0/8"]);
    assert!(
        err.contains("127.0.0.0/8 is on the whitelist built in"),
        "{err}"
    );
    assert!(err.contains("cannot be removed"), "{err}");
    assert!(err.contains("detection.whitelist_builtin = false"), "{err}");

    // A per-user entry removed without --user: name the accounts it is for.
    for user in ["alice@example.com", "bob@example.com"] {
        s.ok(&["whitelist", "add", "198.51.100.0/24", "--user", user]);
    }
    let err = refused(&["whitelist", "remove", "198.51.100.0/24"]);
    assert!(
        err.contains(
            "198.51.100.0/24 is not on the whitelist for every account; it is for \
             --user alice@example.com, --user bob@example.com"
        ),
        "{err}"
    );
    // And the other way round.
    let err = refused(&[
        "whitelist",
        "remove",
        "203.0.113.0/24",
        "--user",
        "alice@example.com",
    ]);
    assert!(err.contains("it is for every account (no --user)"), "{err}");
    s.ok(&[
        "whitelist",
        "remove",
        "198.51.100.0/24",
        "--user",
        "alice@example.com",
    ]);
}
