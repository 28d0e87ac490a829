//! `ownership update`'s edges: doctor's word on an old download, IPinfo Lite's token
//! read from a file and never shown, and the URLs it accepts (https, or plain http
//! to this machine only).

use crate::ownership_update::{
    country_fixture, dir, doctor_ownership, fixture, installed, months, owner, serving,
    small_floor, update, USER,
};
use crate::support;

use serde_json::json;
use support::http::{FileServer, Reply};
use support::mmdb::{self, days_ago};
use support::{Sandbox, T0};

#[test]
fn doctor_warns_when_the_downloaded_database_is_old_and_says_how_to_fix_it() {
    let (_server, s) = serving(&months().0, 90);
    support::assert_success("update", &update(&s).0);
    let doc = doctor_ownership(&s);
    assert!(
        doc.starts_with(&format!(
            "warn  ownership ownership.asn_database {}",
            installed(&s, "asn.mmdb").display()
        )),
        "{doc}"
    );
    assert!(
        doc.contains("(90 days ago): older than 60 days, and networks change hands"),
        "{doc}"
    );
    for fix in [
        "f2b-mailguard ownership update",
        "systemctl enable --now f2b-mailguard-ownership-update.timer",
        "journalctl -u f2b-mailguard-ownership-update.service",
    ] {
        assert!(doc.contains(fix), "{fix}: {doc}");
    }
}

#[test]
fn ipinfo_lite_token_from_a_file_never_shown() {
    let server = FileServer::start();
    let token_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token_file.path(), "s3cr3tT0ken\n").unwrap();
    let s = Sandbox::new(&format!(
        "[ownership]\nsource = \"ipinfo-lite\"\nbase_url = {:?}\ntoken_file = {:?}\n{}\n",
        server.url("/data"),
        token_file.path().display().to_string(),
        small_floor()
    ));
    // A country file from DB-IP would be read before IPinfo's countries: removed.
    std::fs::create_dir_all(dir(&s)).unwrap();
    std::fs::write(installed(&s, "country.mmdb"), country_fixture(5)).unwrap();

    let path = "/data/ipinfo_lite.mmdb?token=s3cr3tT0ken";
    server.set(path, Some(Reply::Status(403)));
    let (out, stdout, stderr) = update(&s);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ipinfo_lite.mmdb?token=(ownership.token_file): HTTP 403"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cr3t") && !stdout.contains("s3cr3t"));
    assert!(installed(&s, "country.mmdb").exists());

    let lite = fixture(|p| {
        mmdb::write(
            p,
            "ipinfo lite.mmdb",
            days_ago(1),
            json!({"asn": "utf8_string", "as_name": "utf8_string", "country_code": "utf8_string"}),
            json!([
                ["203.0.113.0/24", {"asn": "AS64500", "as_name": "Example Transit", "country_code": "FR"}],
                ["8.8.8.0/24", {"asn": "AS15169", "as_name": "Google LLC", "country_code": "US"}],
                ["1.1.1.0/24", {"asn": "AS13335", "as_name": "Cloudflare", "country_code": "AU"}],
                ["2001:4860::/32", {"asn": "AS15169", "as_name": "Google LLC", "country_code": "US"}]
            ]),
        )
    });
    server.set(path, Some(Reply::File(lite.clone())));
    let (out, stdout, stderr) = update(&s);
    support::assert_success("ipinfo update", &out);
    assert_eq!(server.take_requests(), [path, path]);
    assert!(
        !stderr.contains("s3cr3t") && !stdout.contains("s3cr3t"),
        "{stdout}"
    );
    assert!(stdout.contains("IPinfo"), "{stdout}");
    assert_eq!(std::fs::read(installed(&s, "asn.mmdb")).unwrap(), lite);
    assert!(!installed(&s, "country.mmdb").exists(), "{stdout}");
    s.record("smtp", USER, "203.0.113.9", T0);
    assert_eq!(
        owner(&s, "203.0.113.9/32", T0 + 1),
        (json!(64500), json!("Example Transit"), json!("FR"))
    );
}

#[test]
fn only_https_or_this_machine() {
    for (url, why) in [
        ("http://192.0.2.1/free", "plain http only to this machine"),
        (
            "http://127.0.0.1.example.org/x",
            "plain http only to this machine",
        ),
        ("ftp://127.0.0.1/x", "is not an https:// URL"),
    ] {
        let s = Sandbox::new(&format!("[ownership]\nbase_url = {url:?}\n"));
        let out = s.run(&["ownership", "update"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        assert!(
            err.contains(&format!("ownership.base_url: {url:?}")) && err.contains(why),
            "{err}"
        );
        assert!(!dir(&s).exists());
    }
    let s = Sandbox::new("[ownership]\nsource = \"url\"\n");
    let out = s.run(&["ownership", "update"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("ownership.asn_url: source = \"url\" needs the ASN database's URL"),
        "{err}"
    );
}
