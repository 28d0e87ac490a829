//! `ownership update`: downloads the configured free databases into `download_dir`,
//! checks each, and replaces the installed file only with a whole, checked, not older
//! one. A failed download keeps the installed file, so detection goes on with it.

mod fetch;
mod install;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, DatabaseKind, DownloadSource, DOWNLOADED_COUNTRY};
use crate::error::{Error, Result};
use crate::model::Timestamp;
use fetch::{Client, FetchError};

/// What one run did, for the command to print.
#[derive(Debug, Default)]
pub struct Report {
    /// One line per database: installed, kept, skipped.
    pub done: Vec<String>,
    /// One line per database that could not be updated (its installed file kept).
    pub failed: Vec<String>,
}

/// The licence and the attribution the source's licence asks for, printed once.
pub fn attribution(source: DownloadSource) -> &'static str {
    match source {
        DownloadSource::DbIpLite => {
            "IP Geolocation by DB-IP (https://db-ip.com), licensed under CC BY 4.0 \
             (https://creativecommons.org/licenses/by/4.0/)"
        }
        DownloadSource::IpinfoLite => {
            "IP address data by IPinfo (https://ipinfo.io), IPinfo Lite, licensed under \
             CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/)"
        }
        DownloadSource::Url => {
            "the files come from your own URLs: follow their licence (see \
             docs/ownership-data.md for the free sources' terms)"
        }
    }
}

/// One database to fetch: the URLs to try in order (the next only when the one
/// before is not there), each with how it is named in messages.
struct Job {
    kind: DatabaseKind,
    tries: Vec<Try>,
}

struct Try {
    url: String,
    shown: String,
}

pub fn run(cfg: &Config) -> Result<Report> {
    let own = &cfg.ownership;
    let dir = own.download_dir(&cfg.local_dir());
    let jobs = plan(cfg, Timestamp::now())?;
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    install::remove_abandoned(&dir);
    let tls = jobs
        .iter()
        .flat_map(|j| &j.tries)
        .any(|t| t.url.starts_with("https://"));
    let timeout = Duration::from_millis(u64::try_from(own.download_timeout.millis()).unwrap_or(0));
    let client = Client::new(timeout, tls).map_err(Error::External)?;
    let mut report = Report::default();
    for job in &jobs {
        let target = own.downloaded(&cfg.local_dir(), job.kind);
        match one(&client, job, &dir, &target, u64::from(own.min_size)) {
            Ok(line) => report.done.push(format!("{}: {line}", name(job.kind))),
            Err(why) => report.failed.push(format!(
                "{}: {why}; {}",
                name(job.kind),
                if target.exists() {
                    format!("kept the installed {}", target.display())
                } else {
                    "nothing installed".into()
                }
            )),
        }
    }
    // IPinfo Lite's file has the countries: a country file from another source
    // would be read before them.
    if own.source == DownloadSource::IpinfoLite && report.failed.is_empty() {
        let country = dir.join(DOWNLOADED_COUNTRY);
        if country.exists() {
            std::fs::remove_file(&country).map_err(|e| Error::io(&country, e))?;
            report.done.push(format!(
                "country: removed {} (IPinfo Lite's file has the countries)",
                country.display()
            ));
        }
    }
    Ok(report)
}

fn name(kind: DatabaseKind) -> &'static str {
    match kind {
        DatabaseKind::Asn => "asn",
        DatabaseKind::Country => "country",
    }
}

/// Fetches, checks and installs one database; the line says what was done.
fn one(
    client: &Client,
    job: &Job,
    dir: &Path,
    target: &Path,
    min_size: u64,
) -> std::result::Result<String, String> {
    let mut missing = Vec::new();
    for t in &job.tries {
        let mut download = install::temp_in(dir)?;
        match client.get(&t.url, &t.shown, download.as_file_mut()) {
            Ok(_) => {}
            Err(FetchError::NotFound) => {
                missing.push(t.shown.as_str());
                continue;
            }
            Err(FetchError::Failed(why)) => return Err(why),
        }
        let file = install::unpack(download, dir).map_err(|e| format!("{}: {e}", t.shown))?;
        let checked =
            install::check(&file, job.kind, min_size).map_err(|e| format!("{}: {e}", t.shown))?;
        let stamp = checked.built.rfc3339();
        let date = stamp.get(..10).unwrap_or(&stamp);
        let about = format!(
            "{}, built {date}, {} bytes, from {}",
            checked.kind, checked.size, t.shown
        );
        let earlier = if missing.is_empty() {
            String::new()
        } else {
            format!(" ({} is not out yet)", missing.join(", "))
        };
        if install::installed_built(target).is_some_and(|b| b > checked.built) {
            return Ok(format!(
                "kept {}: it is newer than {about}{earlier}",
                target.display()
            ));
        }
        install::replace(file, target)?;
        return Ok(format!("installed {} ({about}){earlier}", target.display()));
    }
    Err(format!("not found (HTTP 404): {}", missing.join(", ")))
}

/// The URLs to fetch for the configured source; `now` picks DB-IP's month.
fn plan(cfg: &Config, now: Timestamp) -> Result<Vec<Job>> {
    let own = &cfg.ownership;
    let base = if own.base_url.is_empty() {
        own.source.default_base_url()
    } else {
        own.base_url.trim_end_matches('/')
    };
    let job = |kind, tries| Job { kind, tries };
    let plain = |url: &str| Try {
        url: url.to_owned(),
        shown: url.to_owned(),
    };
    Ok(match own.source {
        DownloadSource::DbIpLite => {
            let months = [month_of(now, 0), month_of(now, 1)];
            [
                (DatabaseKind::Asn, "asn"),
                (DatabaseKind::Country, "country"),
            ]
            .into_iter()
            .map(|(kind, word)| {
                let tries = months
                    .iter()
                    .map(|m| plain(&format!("{base}/dbip-{word}-lite-{m}.mmdb.gz")))
                    .collect();
                job(kind, tries)
            })
            .collect()
        }
        DownloadSource::IpinfoLite => {
            let token = token(cfg)?;
            let url = format!("{base}/ipinfo_lite.mmdb");
            vec![job(
                DatabaseKind::Asn,
                vec![Try {
                    url: format!("{url}?token={token}"),
                    shown: format!("{url}?token=(ownership.token_file)"),
                }],
            )]
        }
        DownloadSource::Url => {
            if own.asn_url.is_empty() {
                return Err(super::key_error(
                    cfg,
                    "ownership.asn_url",
                    "source = \"url\" needs the ASN database's URL",
                ));
            }
            let mut jobs = vec![job(DatabaseKind::Asn, vec![plain(&own.asn_url)])];
            if !own.country_url.is_empty() {
                jobs.push(job(DatabaseKind::Country, vec![plain(&own.country_url)]));
            }
            jobs
        }
    })
}

/// IPinfo's token, alone in `token_file` (kept out of the config, which others may read).
fn token(cfg: &Config) -> Result<String> {
    let key = "ownership.token_file";
    let Some(path) = &cfg.ownership.token_file else {
        return Err(super::key_error(
            cfg,
            key,
            "source = \"ipinfo-lite\" needs the file with a free IPinfo account's token",
        ));
    };
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let token = text.trim();
    if token.is_empty()
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(super::key_error(
            cfg,
            key,
            &format!("{}: not a token (letters and digits only)", path.display()),
        ));
    }
    Ok(token.to_owned())
}

/// `YYYY-MM` of `now` (UTC), `back` months earlier.
fn month_of(now: Timestamp, back: u32) -> String {
    let stamp = now.rfc3339();
    let year: i64 = stamp.get(..4).and_then(|y| y.parse().ok()).unwrap_or(1970);
    let month: i64 = stamp.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1);
    let index = year * 12 + (month - 1) - i64::from(back);
    format!(
        "{:04}-{:02}",
        index.div_euclid(12),
        index.rem_euclid(12) + 1
    )
}

/// Where `kind`'s downloaded file goes; for `doctor`.
pub fn downloaded_path(cfg: &Config, kind: DatabaseKind) -> PathBuf {
    cfg.ownership.downloaded(&cfg.local_dir(), kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_roll_back_over_the_year() {
        // 2027-01-15T00:00:00Z
        let jan = Timestamp::from_millis(1_800_057_600_000);
        assert_eq!(month_of(jan, 0), "2027-01");
        assert_eq!(month_of(jan, 1), "2026-12");
        assert_eq!(month_of(jan, 13), "2025-12");
    }

    #[test]
    fn dbip_urls_current_month_then_the_one_before() {
        let cfg = Config::default();
        let jobs = plan(&cfg, Timestamp::from_millis(1_800_057_600_000)).unwrap();
        let urls: Vec<Vec<&str>> = jobs
            .iter()
            .map(|j| j.tries.iter().map(|t| t.url.as_str()).collect())
            .collect();
        assert_eq!(
            urls,
            [
                [
                    "https://download.db-ip.com/free/dbip-asn-lite-2027-01.mmdb.gz",
                    "https://download.db-ip.com/free/dbip-asn-lite-2026-12.mmdb.gz"
                ],
                [
                    "https://download.db-ip.com/free/dbip-country-lite-2027-01.mmdb.gz",
                    "https://download.db-ip.com/free/dbip-country-lite-2026-12.mmdb.gz"
                ]
            ]
        );
    }
}
