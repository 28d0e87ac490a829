//! The ownership databases: present, intact, current; or, without one, what it would
//! add and how to get one under a licence that allows it.

use super::{Finding, Status};
use crate::config::{Config, DatabaseFile, DatabaseKind};
use crate::error::{one_line, Error};
use crate::model::Timestamp;
use crate::ownership::update::downloaded_path;
use crate::ownership::{Ownership, STALE_AFTER};

const AREA: &str = "ownership";

/// What fetches and refreshes the free databases.
const UPDATE: &str = "f2b-mailguard ownership update (DB-IP Lite by default: no account, \
     CC BY 4.0; docs/ownership-data.md has the sources and their licences), then keep it \
     current: systemctl enable --now f2b-mailguard-ownership-update.timer";

pub fn check(cfg: &Config, out: &mut Vec<Finding>) {
    let (owners, errors) = Ownership::open_lenient(cfg);
    for e in errors {
        // The key and file, without the config file's name that every line would repeat.
        let what = match &e {
            Error::Config { key, reason, .. } => format!("{key} {reason}"),
            other => one_line(other),
        };
        out.push(Finding::new(
            Status::Fail,
            AREA,
            format!("{what} (record counts without owners meanwhile)"),
            Some(format!(
                "install the file (geoipupdate writes /var/lib/GeoIP/) or remove the key to use \
                 the downloaded one: {UPDATE}; `f2b-mailguard config check` tests it"
            )),
        ));
    }
    let configured = matches!(
        cfg.ownership.file(&cfg.local_dir(), DatabaseKind::Asn),
        Some(DatabaseFile::Configured(_))
    );
    if !owners.has_asn() && !configured {
        out.push(Finding::new(
            Status::Ok,
            AREA,
            "no ASN database: networks are counted without their owners (with one, `status` names \
             each network's AS and country, and one provider's pool can be told from a botnet's many owners)",
            Some(format!(
                "run {UPDATE}. Or another free one, licences allowing it: GeoLite2-ASN via \
                 geoipupdate (Debian contrib, free MaxMind account), DB-IP IP-to-ASN Lite (CC BY 4.0), \
                 IPinfo Lite (CC BY-SA 4.0); then [ownership] asn_database = \"/var/lib/GeoIP/GeoLite2-ASN.mmdb\""
            )),
        ));
    }
    let now = Timestamp::now();
    for db in owners.databases() {
        let kind = if db.key() == DatabaseKind::Asn.key() {
            DatabaseKind::Asn
        } else {
            DatabaseKind::Country
        };
        let downloaded = db.path() == downloaded_path(cfg, kind);
        let what = format!("{} {}", db.key(), db.path().display());
        if let Err(why) = db.verify() {
            out.push(Finding::new(
                Status::Fail,
                AREA,
                format!("{what}: {why} (record counts without owners for damaged records)"),
                Some(if downloaded {
                    format!("download it again: {UPDATE}")
                } else {
                    "download the file again".into()
                }),
            ));
            continue;
        }
        let built = db.built();
        let days = (now.millis() - built.millis()).max(0) / 86_400_000;
        let stamp = built.rfc3339();
        let date = stamp.get(..10).unwrap_or(&stamp);
        let about = format!("{what}: {}, built {date} ({days} days ago)", db.kind());
        if now.minus(STALE_AFTER) > built {
            out.push(Finding::new(
                Status::Warn,
                AREA,
                format!(
                    "{about}: older than {} days, and networks change hands",
                    STALE_AFTER.as_secs() / 86_400
                ),
                Some(if downloaded {
                    format!(
                        "update it regularly: {UPDATE}; if the timer runs, its journal says why \
                         it failed: journalctl -u f2b-mailguard-ownership-update.service"
                    )
                } else {
                    "update it regularly: geoipupdate from cron or its timer, or the vendor's \
                     current monthly file, replaced by rename; or leave the key unset and use \
                     f2b-mailguard ownership update"
                        .into()
                }),
            ));
        } else if db.ip_version() == 4 {
            out.push(Finding::new(
                Status::Warn,
                AREA,
                format!("{about}: IPv4 only, so IPv6 clients have no owner"),
                Some("use the vendor's file that covers IPv4 and IPv6".into()),
            ));
        } else {
            out.push(Finding::ok(AREA, about));
        }
    }
}
