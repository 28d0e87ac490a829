//! `ownership update`: free ownership databases downloaded from a local HTTP server
//! (tests/support/http.rs, on 127.0.0.1 only), checked, and installed by rename; a
//! failed download keeps the installed file, and `record` goes on using it.

use crate::support;

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use chrono::Datelike;
use serde_json::{json, Value};
use support::http::{FileServer, Reply};
use support::mmdb::{self, days_ago};
use support::{Sandbox, T0};

pub(crate) const USER: &str = "alice@example.com";
const ATTRIBUTION: &str = "IP Geolocation by DB-IP (https://db-ip.com)";

/// This month and the one before, as DB-IP names its files (UTC).
pub(crate) fn months() -> (String, String) {
    let now = chrono::Utc::now();
    let (y, m) = (now.year(), now.month());
    let (py, pm) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
    (format!("{y:04}-{m:02}"), format!("{py:04}-{pm:02}"))
}

fn dbip_path(what: &str, month: &str) -> String {
    format!("/free/dbip-{what}-lite-{month}.mmdb.gz")
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A fixture's bytes, written by Debian's MaxMind DB writer.
pub(crate) fn fixture(write: impl Fn(&Path)) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f.mmdb");
    write(&p);
    std::fs::read(p).unwrap()
}

pub(crate) fn asn_fixture(days: i64) -> Vec<u8> {
    fixture(|p| mmdb::dbip_asn(p, days_ago(days), true))
}

pub(crate) fn country_fixture(days: i64) -> Vec<u8> {
    fixture(|p| mmdb::dbip_country(p, days_ago(days)))
}

/// A sandbox downloading DB-IP Lite from `server`, with a size floor the small
/// fixtures pass and a short timeout; `extra` goes into `[ownership]`.
fn sandbox(server: &FileServer, extra: &str) -> Sandbox {
    Sandbox::new(&config(server, extra))
}

fn config(server: &FileServer, extra: &str) -> String {
    format!(
        "[ownership]\nbase_url = {:?}\ndownload_timeout = \"2s\"\n{extra}\n",
        server.url("/free")
    )
}

pub(crate) fn small_floor() -> &'static str {
    "min_size = 1000"
}

pub(crate) fn dir(s: &Sandbox) -> PathBuf {
    s.path().join("state/ownership")
}

pub(crate) fn installed(s: &Sandbox, name: &str) -> PathBuf {
    dir(s).join(name)
}

/// Anything in the download directory besides the databases: a half file.
fn leftovers(s: &Sandbox) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir(s)) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "asn.mmdb" && n != "country.mmdb")
        .collect()
}

pub(crate) fn update(s: &Sandbox) -> (Output, String, String) {
    let out = s.run(&["ownership", "update"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// `status USER --json`'s owner of `network`: (asn, as_org, country).
pub(crate) fn owner(s: &Sandbox, network: &str, at: i64) -> (Value, Value, Value) {
    let d = s.status_user(USER, at);
    let n = d["networks"]
        .as_array()
        .expect("networks")
        .iter()
        .find(|n| n["network"] == network)
        .unwrap_or_else(|| panic!("no {network} in {d}"))
        .clone();
    (n["asn"].clone(), n["as_org"].clone(), n["country"].clone())
}

pub(crate) fn doctor_ownership(s: &Sandbox) -> String {
    let out = s.run(&["doctor"]);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .skip_while(|l| !l.contains(" ownership "))
        .take_while(|l| l.contains(" ownership ") || l.starts_with("   "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn serve_month(server: &FileServer, month: &str, asn: &[u8], country: &[u8]) {
    server.set(&dbip_path("asn", month), Some(Reply::File(gz(asn))));
    server.set(&dbip_path("country", month), Some(Reply::File(gz(country))));
}

/// A server with DB-IP Lite files `days` old for `month`, and a sandbox downloading
/// from it.
pub(crate) fn serving(month: &str, days: i64) -> (FileServer, Sandbox) {
    let server = FileServer::start();
    let s = sandbox(&server, small_floor());
    serve_month(&server, month, &asn_fixture(days), &country_fixture(days));
    (server, s)
}

#[test]
fn a_good_download_is_installed_by_rename_and_detection_uses_it() {
    let server = FileServer::start();
    let (cur, _) = months();
    let s = sandbox(&server, small_floor());

    // Before: no owners, and doctor offers the command.
    s.record("smtp", USER, "203.0.113.9", T0);
    assert_eq!(owner(&s, "203.0.113.9/32", T0 + 10).0, Value::Null);
    let doc = doctor_ownership(&s);
    assert!(doc.starts_with("ok    ownership no ASN database"), "{doc}");
    assert!(doc.contains("f2b-mailguard ownership update"), "{doc}");
    assert!(
        doc.contains("systemctl enable --now f2b-mailguard-ownership-update.timer"),
        "{doc}"
    );

    // What a run killed mid-download left, two days ago.
    std::fs::create_dir_all(dir(&s)).unwrap();
    let abandoned = std::fs::File::create(dir(&s).join(".download-abandoned")).unwrap();
    abandoned
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 86_400))
        .unwrap();

    let (asn_v1, country_v1) = (asn_fixture(3), country_fixture(3));
    serve_month(&server, &cur, &asn_v1, &country_v1);
    let (out, stdout, stderr) = update(&s);
    support::assert_success("ownership update", &out);
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(
        server.take_requests(),
        [dbip_path("asn", &cur), dbip_path("country", &cur)]
    );
    let asn = installed(&s, "asn.mmdb");
    assert!(
        stdout.contains(&format!(
            "asn: installed {} (DBIP-ASN-Lite (compat=GeoLite2-ASN), built ",
            asn.display()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("country: installed"), "{stdout}");
    assert_eq!(stdout.matches(ATTRIBUTION).count(), 1, "{stdout}");
    assert_eq!(std::fs::read(&asn).unwrap(), asn_v1);
    assert_eq!(
        std::fs::read(installed(&s, "country.mmdb")).unwrap(),
        country_v1
    );
    assert_eq!(std::fs::metadata(&asn).unwrap().mode() & 0o777, 0o644);
    assert!(leftovers(&s).is_empty(), "{:?}", leftovers(&s));

    // Without a key in [ownership], the downloaded files are used.
    s.record("smtp", USER, "203.0.113.9", T0 + 60);
    assert_eq!(
        owner(&s, "203.0.113.9/32", T0 + 70),
        (json!(64500), json!("Example Transit"), json!("DE"))
    );
    let doc = doctor_ownership(&s);
    assert!(
        doc.starts_with(&format!(
            "ok    ownership ownership.asn_database {}: DBIP-ASN-Lite (compat=GeoLite2-ASN), built ",
            asn.display()
        )),
        "{doc}"
    );

    // A newer file replaces it by rename: a reader that opened the old file (a
    // `record` in flight maps it) keeps reading it whole; the path is the new file.
    let mut held = std::fs::File::open(&asn).unwrap();
    let old_inode = held.metadata().unwrap().ino();
    let asn_v2 = asn_fixture(1);
    assert_ne!(asn_v2, asn_v1);
    serve_month(&server, &cur, &asn_v2, &country_v1);
    let (out, _, _) = update(&s);
    support::assert_success("second ownership update", &out);
    assert_ne!(std::fs::metadata(&asn).unwrap().ino(), old_inode);
    let mut seen = Vec::new();
    held.read_to_end(&mut seen).unwrap();
    assert_eq!(seen, asn_v1, "the open file was changed in place");
    assert_eq!(std::fs::read(&asn).unwrap(), asn_v2);
    assert!(leftovers(&s).is_empty(), "{:?}", leftovers(&s));

    // An older file than the installed one (a mirror lagging behind) is not installed.
    serve_month(&server, &cur, &asn_fixture(20), &country_v1);
    let (out, stdout, _) = update(&s);
    support::assert_success("update with an older file", &out);
    assert!(
        stdout.contains(&format!("asn: kept {}: it is newer than", asn.display())),
        "{stdout}"
    );
    assert_eq!(std::fs::read(&asn).unwrap(), asn_v2);

    // use_downloaded = false: the files stay, unused.
    s.write_config(&config(&server, "use_downloaded = false"));
    s.record("smtp", USER, "198.51.100.20", T0 + 120);
    assert_eq!(owner(&s, "198.51.100.20/32", T0 + 130).0, Value::Null);
}

#[test]
fn before_the_new_month_is_out_the_previous_months_file_is_used() {
    let (cur, prev) = months();
    let (server, s) = serving(&prev, 30);
    let (out, stdout, _) = update(&s);
    support::assert_success("ownership update", &out);
    assert_eq!(
        server.take_requests(),
        [
            dbip_path("asn", &cur),
            dbip_path("asn", &prev),
            dbip_path("country", &cur),
            dbip_path("country", &prev)
        ]
    );
    let not_out = format!("({} is not out yet)", server.url(&dbip_path("asn", &cur)));
    assert!(stdout.contains(&not_out), "{stdout}");
    assert!(installed(&s, "asn.mmdb").is_file());
    assert!(installed(&s, "country.mmdb").is_file());

    // Neither month: a failure that says so, and nothing half-installed.
    let s = sandbox(&server, small_floor());
    server.set(&dbip_path("asn", &prev), None);
    server.set(&dbip_path("country", &prev), None);
    let (out, _, stderr) = update(&s);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "f2b-mailguard: ownership update failed: asn: not found (HTTP 404): {}, {}; nothing installed",
            server.url(&dbip_path("asn", &cur)),
            server.url(&dbip_path("asn", &prev))
        )),
        "{stderr}"
    );
    assert!(!installed(&s, "asn.mmdb").exists());
    assert!(leftovers(&s).is_empty(), "{:?}", leftovers(&s));
}

#[test]
fn a_failed_download_keeps_the_installed_file_and_record_goes_on_with_it() {
    let server = FileServer::start();
    let (cur, _) = months();
    let s = sandbox(&server, small_floor());
    let (good_asn, good_country) = (asn_fixture(5), country_fixture(5));
    serve_month(&server, &cur, &good_asn, &good_country);
    support::assert_success("first update", &update(&s).0);
    let asn = installed(&s, "asn.mmdb");
    let inode = std::fs::metadata(&asn).unwrap().ino();

    let fresh = asn_fixture(1);
    let fresh_gz = gz(&fresh);
    let garbage: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let cases: Vec<(&str, Reply, &str, String)> = vec![
        (
            "transfer cut short",
            Reply::Cut(fresh_gz.clone(), fresh_gz.len() / 2),
            small_floor(),
            "download cut after".into(),
        ),
        (
            "a cut .gz served whole",
            Reply::File(fresh_gz[..fresh_gz.len() / 2].to_vec()),
            small_floor(),
            "not a whole gzip file".into(),
        ),
        (
            "not a database",
            Reply::File(garbage.clone()),
            small_floor(),
            "not a usable MaxMind DB (.mmdb) file".into(),
        ),
        (
            "gzip of a cut database",
            Reply::File(gz(&fresh[..fresh.len() * 2 / 3])),
            small_floor(),
            "not a usable MaxMind DB (.mmdb) file".into(),
        ),
        (
            "smaller than the default floor",
            Reply::File(fresh_gz.clone()),
            "",
            format!(
                "{} bytes, less than ownership.min_size (1048576)",
                fresh.len()
            ),
        ),
        (
            "a country database",
            Reply::File(gz(&country_fixture(1))),
            small_floor(),
            "database_type \"DBIP-Country-Lite\" is not an ASN database".into(),
        ),
        (
            "a database without the probed addresses",
            Reply::File(gz(&fixture(|p| mmdb::dbip_asn(p, days_ago(1), false)))),
            small_floor(),
            "knows no AS for 8.8.8.8: not a complete database".into(),
        ),
        (
            "HTTP error",
            Reply::Status(500),
            small_floor(),
            format!("{}: HTTP 500", server.url(&dbip_path("asn", &cur))),
        ),
        (
            "stalled server",
            Reply::Stall,
            small_floor(),
            "not complete within ownership.download_timeout (2s)".into(),
        ),
    ];
    for (i, (what, reply, floor, reason)) in cases.into_iter().enumerate() {
        s.write_config(&config(&server, floor));
        server.set(&dbip_path("asn", &cur), Some(reply));
        let (out, _, stderr) = update(&s);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        let line = stderr
            .lines()
            .find(|l| l.starts_with("f2b-mailguard: ownership update failed: asn: "))
            .unwrap_or_else(|| panic!("{what}: {stderr}"));
        assert!(line.contains(&reason), "{what}: {line}");
        assert!(
            line.ends_with(&format!("; kept the installed {}", asn.display())),
            "{what}: {line}"
        );
        assert_eq!(std::fs::read(&asn).unwrap(), good_asn, "{what}");
        assert_eq!(std::fs::metadata(&asn).unwrap().ino(), inode, "{what}");
        assert!(leftovers(&s).is_empty(), "{what}: {:?}", leftovers(&s));
        // Fail2ban's call goes on with the installed database.
        let t = T0 + 60 * i as i64;
        s.record("smtp", USER, "203.0.113.9", t);
        assert_eq!(
            owner(&s, "203.0.113.9/32", t + 1),
            (json!(64500), json!("Example Transit"), json!("DE")),
            "{what}"
        );
    }
}
