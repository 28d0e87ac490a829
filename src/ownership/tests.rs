//! Lookups in small databases written by Debian's libmaxmind-db-writer-perl (the same
//! writer script as the tests/ fixtures).

use serde_json::json;

use super::*;

const WRITER: &str = include_str!("../../tests/support/write-mmdb.pl");

/// Writes `networks` as a database of `database_type` with `types`, in `dir`.
fn write(
    dir: &Path,
    name: &str,
    database_type: &str,
    types: serde_json::Value,
    networks: serde_json::Value,
) -> PathBuf {
    let script = dir.join("write-mmdb.pl");
    std::fs::write(&script, WRITER).unwrap();
    let spec = dir.join(format!("{name}.json"));
    let spec_json = json!({"database_type": database_type, "build_epoch": 1_795_417_200u64,
                           "types": types, "networks": networks});
    std::fs::write(&spec, spec_json.to_string()).unwrap();
    let out = dir.join(format!("{name}.mmdb"));
    let status = std::process::Command::new("perl")
        .arg(&script)
        .arg(&spec)
        .arg(&out)
        .status()
        .expect("perl (Debian: libmaxmind-db-writer-perl, installed by tests/run)");
    assert!(status.success(), "writing {name}.mmdb failed");
    out
}

fn addr(s: &str) -> ClientAddr {
    ClientAddr::parse(s).unwrap()
}

fn config(asn: Option<&Path>, country: Option<&Path>) -> Config {
    let mut cfg = Config::default();
    cfg.ownership.asn_database = asn.map(Path::to_path_buf);
    cfg.ownership.country_database = country.map(Path::to_path_buf);
    cfg
}

#[test]
fn lookup_geolite_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let asn = write(
        dir.path(),
        "asn",
        "GeoLite2-ASN",
        json!({"autonomous_system_number": "uint32", "autonomous_system_organization": "utf8_string"}),
        json!([
            ["203.0.113.0/24", {"autonomous_system_number": 64500, "autonomous_system_organization": "Example Transit"}],
            ["2a00:1450::/32", {"autonomous_system_number": 15169, "autonomous_system_organization": "Google LLC"}],
            ["198.51.100.0/24", {"autonomous_system_number": 0}]
        ]),
    );
    let country = write(
        dir.path(),
        "country",
        "GeoLite2-Country",
        json!({"country": "map", "registered_country": "map", "iso_code": "utf8_string"}),
        json!([
            ["203.0.113.0/25", {"country": {"iso_code": "DE"}}],
            ["203.0.113.128/25", {"registered_country": {"iso_code": "US"}}],
            ["2a00:1450::/32", {"country": {"iso_code": "IE"}}]
        ]),
    );
    let owners = Ownership::open(&config(Some(&asn), Some(&country))).unwrap();
    assert!(owners.has_asn());

    let o = owners.lookup(addr("203.0.113.9")).unwrap();
    assert_eq!(o.asn.to_string(), "AS64500");
    assert_eq!(o.org.as_deref(), Some("Example Transit"));
    assert_eq!(o.country.map(|c| c.to_string()), Some("DE".into()));
    // No country, only where it is registered.
    let o = owners.lookup(addr("203.0.113.200")).unwrap();
    assert_eq!(o.country.map(|c| c.to_string()), Some("US".into()));
    // IPv6, and IPv4-mapped IPv6 (stored as IPv4).
    let o = owners.lookup(addr("2a00:1450:4001:80b::200e")).unwrap();
    assert_eq!(
        (o.asn.number(), o.country.map(|c| c.to_string())),
        (15169, Some("IE".into()))
    );
    assert_eq!(
        owners.asn(addr("::ffff:203.0.113.9")).map(Asn::number),
        Some(64500)
    );
    // Nobody's: not in the file, AS0, and space that has a country but no AS.
    for none in ["192.0.2.7", "198.51.100.1", "2a01::1", "10.0.0.1"] {
        assert_eq!(owners.lookup(addr(none)), None, "{none}");
        assert_eq!(owners.asn(addr(none)), None, "{none}");
    }
    assert_eq!(
        owners.country(addr("2a00:1450::1")).map(|c| c.to_string()),
        Some("IE".into())
    );
    for db in owners.databases() {
        assert!(db.verify().is_ok(), "{}", db.path().display());
        assert_eq!(db.built().millis(), 1_795_417_200_000);
    }
    assert_eq!(
        owners.databases().map(Database::kind).collect::<Vec<_>>(),
        ["GeoLite2-ASN", "GeoLite2-Country"]
    );
}

#[test]
fn lookup_ipinfo_lite_schema() {
    let dir = tempfile::tempdir().unwrap();
    let lite = write(
        dir.path(),
        "lite",
        "ipinfo lite.mmdb",
        json!({"asn": "utf8_string", "as_name": "utf8_string", "as_domain": "utf8_string",
               "country": "utf8_string", "country_code": "utf8_string"}),
        json!([
            ["203.0.113.0/24", {"asn": "AS3320", "as_name": "Deutsche Telekom AG", "as_domain": "telekom.com",
                                "country": "Germany", "country_code": "DE"}],
            ["2a00:1450::/32", {"country": "Ireland", "country_code": "IE"}]
        ]),
    );
    let owners = Ownership::open(&config(Some(&lite), None)).unwrap();
    let o = owners.lookup(addr("203.0.113.1")).unwrap();
    assert_eq!(
        (o.asn.number(), o.org.as_deref()),
        (3320, Some("Deutsche Telekom AG"))
    );
    assert_eq!(o.country.map(|c| c.to_string()), Some("DE".into()));
    // A country but no AS: no owner, yet a country.
    assert_eq!(owners.lookup(addr("2a00:1450::1")), None);
    assert_eq!(
        owners.country(addr("2a00:1450::1")).map(|c| c.to_string()),
        Some("IE".into())
    );
}

#[test]
fn no_databases_and_bad_ones() {
    let none = Ownership::open(&Config::default()).unwrap();
    assert!(none.is_empty() && !none.has_asn());
    assert_eq!(none.lookup(addr("203.0.113.9")), None);

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.mmdb");
    let junk = dir.path().join("junk.mmdb");
    std::fs::write(&junk, b"not a database at all").unwrap();
    let mut cfg = config(Some(&missing), Some(&junk));
    cfg.file = Some("/etc/f2b-mailguard/config.toml".into());
    let err = Ownership::open(&cfg).err().unwrap().to_string();
    assert!(
        err.starts_with(&format!(
            "/etc/f2b-mailguard/config.toml: ownership.asn_database: {}: No such file",
            missing.display()
        )),
        "{err}"
    );
    let (owners, errors) = Ownership::open_lenient(&cfg);
    assert!(owners.is_empty());
    assert_eq!(errors.len(), 2);
    let junk_err = errors[1].to_string();
    assert!(
        junk_err.contains(&format!(
            "ownership.country_database: {}: not a usable MaxMind DB",
            junk.display()
        )),
        "{junk_err}"
    );
    let dir_err = Ownership::open(&config(Some(dir.path()), None))
        .err()
        .unwrap()
        .to_string();
    assert!(dir_err.ends_with("is not a regular file"), "{dir_err}");
}

#[test]
fn watched_databases_are_opened_again_only_when_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let asn = |name: &str, number: u32| {
        write(
            dir.path(),
            name,
            "GeoLite2-ASN",
            json!({"autonomous_system_number": "uint32"}),
            json!([["203.0.113.0/24", {"autonomous_system_number": number}]]),
        )
    };
    let installed = asn("installed", 64500);
    let cfg = config(Some(&installed), None);
    let mut watched = Watched::open_or_warn(&cfg);
    let number = |w: &Watched| w.owners().asn(addr("203.0.113.1")).map(|a| a.number());
    assert_eq!(number(&watched), Some(64500));
    assert!(!watched.refresh(&cfg), "opened again, unchanged");
    // Replaced by rename, as `ownership update` does.
    std::fs::rename(asn("update", 64501), &installed).unwrap();
    assert!(watched.refresh(&cfg));
    assert_eq!(number(&watched), Some(64501));
    assert!(!watched.refresh(&cfg));
    std::fs::remove_file(&installed).unwrap();
    assert!(watched.refresh(&cfg));
    assert_eq!(number(&watched), None);
}
