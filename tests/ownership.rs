//! Network ownership: `.mmdb` databases written by the test set-up with
//! Debian's writer, read by the real binary as admins and Fail2ban run it.

use crate::support;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::mmdb::{self, days_ago};
use support::{Sandbox, T0};

const USER: &str = "alice@example.com";

fn sandbox(asn: Option<&Path>, country: Option<&Path>) -> Sandbox {
    let key = |k: &str, p: Option<&Path>| {
        p.map_or(String::new(), |p| {
            format!("{k} = {:?}\n", p.display().to_string())
        })
    };
    Sandbox::new(&format!(
        "[ownership]\n{}{}",
        key("asn_database", asn),
        key("country_database", country)
    ))
}

/// The logins every test records: owned IPv4, owned IPv6, IPv4-mapped IPv6 (stored
/// as IPv4), an owner with a bidi override in its name, and an address nobody owns.
fn record_logins(s: &Sandbox) {
    s.record("smtp", USER, "203.0.113.9", T0);
    s.record("imap", USER, "2a00:1450:4001:80b::200e", T0 + 60);
    s.record("smtp", USER, "::ffff:198.51.100.20", T0 + 120);
    s.record("smtp", USER, "198.18.0.1", T0 + 150);
    s.record("smtp", USER, "192.0.2.7", T0 + 180);
}

/// `network` -> (asn, as_org, country) from `status USER --json`.
fn owners(s: &Sandbox) -> Vec<(String, Value, Value, Value)> {
    let d = s.status_user(USER, T0 + 200);
    let mut out: Vec<_> = d["networks"]
        .as_array()
        .expect("networks")
        .iter()
        .map(|n| {
            (
                n["network"].as_str().expect("network").to_owned(),
                n["asn"].clone(),
                n["as_org"].clone(),
                n["country"].clone(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// What every schema's fixture says about `record_logins`' networks, sorted by network.
fn expected() -> Vec<(String, Value, Value, Value)> {
    [
        ("192.0.2.7/32", None),
        ("198.18.0.1/32", Some((64502, "Evil\u{202e}Corp", "NL"))),
        // IPv4-mapped, stored as IPv4; no country, only where it is registered.
        ("198.51.100.20/32", Some((64501, "Pool Provider", "US"))),
        ("203.0.113.9/32", Some((64500, "Example Transit", "DE"))),
        ("2a00:1450:4001:80b::/64", Some((15169, "Google LLC", "IE"))),
    ]
    .into_iter()
    .map(|(net, owner)| match owner {
        Some((asn, org, cc)) => (net.into(), json!(asn), json!(org), json!(cc)),
        None => (net.into(), Value::Null, Value::Null, Value::Null),
    })
    .collect()
}

fn text_line(out: &str, needle: &str) -> String {
    out.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in\n{out}"))
        .to_owned()
}

/// doctor's lines about ownership.
fn doctor_ownership(s: &Sandbox) -> Vec<String> {
    let out = s.run(&["doctor"]);
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .skip_while(|l| !l.contains(" ownership "))
        .take_while(|l| l.contains(" ownership ") || l.starts_with("   "))
        .map(str::to_owned)
        .collect()
}

fn fixtures(dir: &Path, epoch: i64) -> (PathBuf, PathBuf) {
    let asn = dir.join("GeoLite2-ASN.mmdb");
    let country = dir.join("GeoLite2-Country.mmdb");
    mmdb::geolite_asn(&asn, epoch);
    mmdb::geolite_country(&country, epoch);
    (asn, country)
}

#[test]
fn status_names_each_networks_owner_ipv4_ipv6_and_none() {
    let dir = tempfile::tempdir().unwrap();
    let (asn, country) = fixtures(dir.path(), days_ago(3));
    // libmaxminddb (another reader) reads the fixture the same way.
    let look = std::process::Command::new("mmdblookup")
        .arg("-f")
        .arg(&asn)
        .args(["-i", "::ffff:203.0.113.77", "autonomous_system_number"])
        .output()
        .expect("mmdblookup (Debian: mmdb-bin)");
    assert!(String::from_utf8_lossy(&look.stdout).contains("64500 <uint32>"));

    let s = sandbox(Some(&asn), Some(&country));
    s.ok(&["config", "check"]);
    record_logins(&s);
    assert_eq!(owners(&s), expected());

    let text = s.ok(&["status", &format!("--at={}", T0 + 200), USER]);
    assert!(
        text_line(&text, "NETWORK").ends_with("SOURCES       OWNER"),
        "{text}"
    );
    let l = text_line(&text, "203.0.113.9/32");
    assert!(
        l.ends_with("smtp          AS64500 Example Transit, DE"),
        "{l}"
    );
    let l = text_line(&text, "2a00:1450:4001:80b::/64");
    assert!(l.ends_with("imap          AS15169 Google LLC, IE"), "{l}");
    // The name an AS holder chose cannot reorder the admin's terminal line.
    let l = text_line(&text, "198.18.0.1/32");
    assert!(l.ends_with(r"AS64502 Evil\u{202e}Corp, NL"), "{l}");
    assert!(text_line(&text, "192.0.2.7/32").ends_with("smtp"), "{text}");

    let doc = doctor_ownership(&s);
    assert_eq!(doc.len(), 2, "{doc:?}");
    for (line, key, path, kind) in [
        (&doc[0], "asn_database", &asn, "GeoLite2-ASN"),
        (&doc[1], "country_database", &country, "GeoLite2-Country"),
    ] {
        let want = format!(
            "ok    ownership ownership.{key} {}: {kind}, built ",
            path.display()
        );
        assert!(
            line.starts_with(&want) && line.ends_with("(3 days ago)"),
            "{line}"
        );
    }
}

#[test]
fn ipinfo_lite_gives_owner_and_country_from_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let lite = dir.path().join("ipinfo_lite.mmdb");
    mmdb::ipinfo_lite(&lite, days_ago(1));
    let s = sandbox(Some(&lite), None);
    record_logins(&s);
    assert_eq!(owners(&s), expected());
}

#[test]
fn without_a_database_nothing_changes_and_doctor_says_where_to_get_one() {
    let s = sandbox(None, None);
    s.ok(&["config", "check"]);
    record_logins(&s);
    for (net, asn, org, cc) in owners(&s) {
        assert_eq!(
            (&asn, &org, &cc),
            (&Value::Null, &Value::Null, &Value::Null),
            "{net}"
        );
    }
    let text = s.ok(&["status", &format!("--at={}", T0 + 200), USER]);
    assert!(
        text_line(&text, "NETWORK").ends_with("COUNT  SOURCES"),
        "{text}"
    );
    let doc = doctor_ownership(&s).join("\n");
    assert!(doc.starts_with("ok    ownership no ASN database"), "{doc}");
    for needle in [
        "GeoLite2-ASN via geoipupdate",
        "DB-IP IP-to-ASN Lite (CC BY 4.0)",
        "IPinfo Lite (CC BY-SA 4.0)",
        "asn_database = ",
    ] {
        assert!(doc.contains(needle), "{needle}: {doc}");
    }
}

#[test]
fn missing_or_corrupt_database_is_a_clear_error_but_record_keeps_the_login() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = fixtures(dir.path(), days_ago(1));
    let bytes = std::fs::read(&good).unwrap();
    let bad = |name: &str, content: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    };
    // Damaged inside: the organisation's string header says 1 byte where there are 15,
    // so the record decodes as garbage; only a walk of the file notices.
    let org = bytes
        .windows(15)
        .position(|w| w == b"Example Transit")
        .unwrap();
    let mut damaged = bytes.clone();
    damaged[org - 1] = 0x5e;
    let cases = [
        (dir.path().join("missing.mmdb"), "No such file or directory"),
        (
            bad("junk.mmdb", b"GIF89a not a database"),
            "not a usable MaxMind DB (.mmdb) file",
        ),
        (
            bad("truncated.mmdb", &bytes[..bytes.len() / 2]),
            "not a usable MaxMind DB (.mmdb) file",
        ),
        (
            bad("damaged.mmdb", &damaged),
            "damaged MaxMind DB (.mmdb) file",
        ),
    ];
    for (i, (path, reason)) in cases.iter().enumerate() {
        let s = sandbox(Some(path), None);
        let shown = path.display().to_string();

        let out = s.run(&["config", "check"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{shown}: {err}");
        let want = format!(
            "{}: ownership.asn_database: {shown}: {reason}",
            s.config_path().display()
        );
        assert!(err.starts_with(&format!("f2b-mailguard: {want}")), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");

        let doc = doctor_ownership(&s).join("\n");
        assert!(
            doc.starts_with("fail  ownership ownership.asn_database"),
            "{doc}"
        );
        assert!(doc.contains(&shown) && doc.contains(reason), "{doc}");

        // Fail2ban's call still stores the login, and says why owners are missing.
        let out = s.try_record(None, USER, "203.0.113.9", Some(T0 + i as i64));
        let err = String::from_utf8_lossy(&out.stderr);
        support::assert_success(format_args!("{shown}"), &out);
        if i < 3 {
            assert!(err.contains("warning") && err.contains(&shown), "{err}");
        }
        assert_eq!(s.rows("events"), 1, "{shown}");
        let d = s.status_user(USER, T0 + 10);
        assert_eq!(d["networks"][0]["asn"], Value::Null, "{shown}");
    }
}

#[test]
fn doctor_warns_about_a_database_older_than_60_days() {
    let dir = tempfile::tempdir().unwrap();
    let (asn, country) = fixtures(dir.path(), days_ago(90));
    let s = sandbox(Some(&asn), Some(&country));
    // Old is not broken: config check passes, lookups work.
    s.ok(&["config", "check"]);
    let doc = doctor_ownership(&s);
    assert_eq!(doc.len(), 4, "{doc:?}");
    assert!(
        doc[0].starts_with(&format!(
            "warn  ownership ownership.asn_database {}",
            asn.display()
        )),
        "{doc:?}"
    );
    assert!(
        doc[0].ends_with("(90 days ago): older than 60 days, and networks change hands"),
        "{doc:?}"
    );
    assert!(doc[1].contains("fix: update it regularly"), "{doc:?}");
    assert!(
        doc[2].starts_with("warn  ownership ownership.country_database"),
        "{doc:?}"
    );

    let (fresh, _) = fixtures(&dir.path().join("fresh").tap_mkdir(), days_ago(59));
    let s = sandbox(Some(&fresh), None);
    let doc = doctor_ownership(&s);
    assert!(
        doc[0].starts_with("ok    ownership") && doc[0].ends_with("(59 days ago)"),
        "{doc:?}"
    );
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}
