//! Small `.mmdb` fixtures written at run time by Debian's libmaxmind-db-writer-perl
//! (tests/run installs it), in the schemas of the free databases admins use.
//!
//! The owners, the same in every schema:
//! * 203.0.113.0/24: AS64500 "Example Transit", DE
//! * 198.51.100.0/22: AS64501 "Pool Provider", registered in US (no `country`)
//! * 198.18.0.0/24: AS64502 with a bidi override in its name, NL
//! * 2a00:1450::/32: AS15169 "Google LLC", IE
//! * anything else (192.0.2.0/24, ...): nobody's.

use std::path::Path;

use serde_json::{json, Value};

const WRITER: &str = include_str!("write-mmdb.pl");

/// A build time `days` before now.
pub fn days_ago(days: i64) -> i64 {
    super::now() - days * 86_400
}

/// Writes `networks` (`[[CIDR, {record}], ...]`) as `path`, a database of
/// `database_type` built at `build_epoch`; `types` gives each key's MaxMind DB type.
pub fn write(path: &Path, database_type: &str, build_epoch: i64, types: Value, networks: Value) {
    let dir = path.parent().expect("fixture in a directory");
    let script = dir.join("write-mmdb.pl");
    std::fs::write(&script, WRITER).expect("write the writer script");
    let spec = path.with_extension("json");
    let body = json!({"database_type": database_type, "build_epoch": build_epoch,
                      "types": types, "networks": networks});
    std::fs::write(&spec, body.to_string()).expect("write the fixture spec");
    let out = std::process::Command::new("perl")
        .arg(&script)
        .arg(&spec)
        .arg(path)
        .output()
        .expect("run perl");
    super::assert_success(
        format_args!(
            "writing {} (needs Debian's libmaxmind-db-writer-perl)",
            path.display()
        ),
        &out,
    );
}

/// A GeoLite2-ASN database built a day ago holding `networks`
/// (`[[CIDR, {"autonomous_system_number": .., "autonomous_system_organization": ..}], ...]`).
pub fn asn_networks(path: &Path, networks: Value) {
    write(
        path,
        "GeoLite2-ASN",
        days_ago(1),
        json!({"autonomous_system_number": "uint32", "autonomous_system_organization": "utf8_string"}),
        networks,
    );
}

const BIDI_ORG: &str = "Evil\u{202e}Corp";

/// GeoLite2-ASN's schema (also DB-IP's IP-to-ASN Lite).
pub fn geolite_asn(path: &Path, build_epoch: i64) {
    asn_schema(path, "GeoLite2-ASN", build_epoch, &[]);
}

/// GeoLite2-Country's schema (also DB-IP's IP-to-Country Lite).
pub fn geolite_country(path: &Path, build_epoch: i64) {
    country_schema(path, "GeoLite2-Country", build_epoch, &[]);
}

/// The addresses `ownership update` probes, owned as in the real data: a file the
/// vendor publishes knows them.
const PROBED: [(&str, u32, &str, &str); 3] = [
    ("8.8.8.0/24", 15169, "Google LLC", "US"),
    ("1.1.1.0/24", 13335, "Cloudflare, Inc.", "AU"),
    ("2001:4860::/32", 15169, "Google LLC", "US"),
];

/// DB-IP's IP-to-ASN Lite as `ownership update` downloads it: the fixture's owners
/// and the probed addresses' (`probed: false` leaves those out).
pub fn dbip_asn(path: &Path, build_epoch: i64, probed: bool) {
    let extra = if probed { &PROBED[..] } else { &[] };
    asn_schema(
        path,
        "DBIP-ASN-Lite (compat=GeoLite2-ASN)",
        build_epoch,
        extra,
    );
}

/// DB-IP's IP-to-Country Lite, with the probed addresses' countries.
pub fn dbip_country(path: &Path, build_epoch: i64) {
    country_schema(path, "DBIP-Country-Lite", build_epoch, &PROBED);
}

fn asn_schema(path: &Path, kind: &str, build_epoch: i64, extra: &[(&str, u32, &str, &str)]) {
    let rec = |n: u32, org: &str| json!({"autonomous_system_number": n, "autonomous_system_organization": org});
    let mut networks = vec![
        json!(["203.0.113.0/24", rec(64500, "Example Transit")]),
        json!(["198.51.100.0/22", rec(64501, "Pool Provider")]),
        json!(["198.18.0.0/24", rec(64502, BIDI_ORG)]),
        json!(["2a00:1450::/32", rec(15169, "Google LLC")]),
    ];
    for (net, asn, org, _) in extra {
        networks.push(json!([net, rec(*asn, org)]));
    }
    write(
        path,
        kind,
        build_epoch,
        json!({"autonomous_system_number": "uint32", "autonomous_system_organization": "utf8_string"}),
        Value::Array(networks),
    );
}

fn country_schema(path: &Path, kind: &str, build_epoch: i64, extra: &[(&str, u32, &str, &str)]) {
    let c = |code: &str| json!({"country": {"iso_code": code, "names": {"en": code}}});
    let mut networks = vec![
        json!(["203.0.113.0/24", c("DE")]),
        json!(["198.51.100.0/22", {"registered_country": {"iso_code": "US"}}]),
        json!(["198.18.0.0/24", c("NL")]),
        json!(["2a00:1450::/32", c("IE")]),
    ];
    for (net, _, _, cc) in extra {
        networks.push(json!([net, c(cc)]));
    }
    write(
        path,
        kind,
        build_epoch,
        json!({"country": "map", "registered_country": "map", "names": "map",
               "iso_code": "utf8_string", "en": "utf8_string"}),
        Value::Array(networks),
    );
}

/// IPinfo Lite's schema: AS and country in one file, the AS number as "AS64500".
pub fn ipinfo_lite(path: &Path, build_epoch: i64) {
    let rec = |asn: &str, org: &str, cc: &str| {
        json!({"asn": asn, "as_name": org, "as_domain": "example.net",
               "country": "Somewhere", "country_code": cc,
               "continent": "Europe", "continent_code": "EU"})
    };
    let s = "utf8_string";
    write(
        path,
        "ipinfo lite.mmdb",
        build_epoch,
        json!({"asn": s, "as_name": s, "as_domain": s, "country": s, "country_code": s,
               "continent": s, "continent_code": s}),
        json!([
            ["203.0.113.0/24", rec("AS64500", "Example Transit", "DE")],
            ["198.51.100.0/22", rec("AS64501", "Pool Provider", "US")],
            ["198.18.0.0/24", rec("AS64502", BIDI_ORG, "NL")],
            ["2a00:1450::/32", rec("AS15169", "Google LLC", "IE")]
        ]),
    );
}
