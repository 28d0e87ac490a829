//! `[ownership]`: the MaxMind-format databases that say who owns a network, and where
//! `ownership update` downloads free ones. Without any, networks are counted as
//! before, without owners.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::value::{named, named_enum, opt_abs_path, parsed, Named, Range};
use crate::model::Span;

/// The downloaded files' names in `download_dir`.
pub const DOWNLOADED_ASN: &str = "asn.mmdb";
pub const DOWNLOADED_COUNTRY: &str = "country.mmdb";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OwnershipConfig {
    /// AS number and organisation (GeoLite2-ASN, DB-IP IP-to-ASN Lite, IPinfo Lite).
    #[serde(with = "opt_abs_path")]
    pub asn_database: Option<PathBuf>,
    /// Country (GeoLite2-Country, DB-IP IP-to-Country Lite); IPinfo Lite as the ASN
    /// database carries countries too.
    #[serde(with = "opt_abs_path")]
    pub country_database: Option<PathBuf>,
    /// Where `ownership update` writes; `None`: `<local_dir>/ownership`.
    #[serde(with = "opt_abs_path")]
    pub download_dir: Option<PathBuf>,
    /// A database key left unset uses the downloaded file when there is one.
    pub use_downloaded: bool,
    #[serde(with = "named")]
    pub source: DownloadSource,
    /// The vendor's download directory, or a mirror of it; "": the vendor's own.
    #[serde(deserialize_with = "download_url")]
    pub base_url: String,
    /// IPinfo Lite's token, alone in a file.
    #[serde(with = "opt_abs_path")]
    pub token_file: Option<PathBuf>,
    /// `source = "url"`: the files to download (`.gz` or not).
    #[serde(deserialize_with = "download_url")]
    pub asn_url: String,
    #[serde(deserialize_with = "download_url")]
    pub country_url: String,
    /// The whole download of one file, connecting included.
    pub download_timeout: Span,
    /// A smaller file is refused: an error page or a cut download, not a database.
    #[serde(with = "Range::<0, 1_000_000_000>")]
    pub min_size: u32,
}

impl Default for OwnershipConfig {
    fn default() -> Self {
        Self {
            asn_database: None,
            country_database: None,
            download_dir: None,
            use_downloaded: true,
            source: DownloadSource::DbIpLite,
            base_url: String::new(),
            token_file: None,
            asn_url: String::new(),
            country_url: String::new(),
            download_timeout: Span::secs(600),
            // The vendors' files are 5-100 MB; an empty or cut tree is far smaller.
            min_size: 1_048_576,
        }
    }
}

named_enum! {
    /// What `ownership update` downloads: DB-IP's IP-to-ASN Lite and IP-to-Country
    /// Lite (monthly, no account); IPinfo Lite (ASN and country in one file, a free
    /// account's token); or `asn_url` and `country_url` as given (a mirror).
    pub enum DownloadSource {
        DbIpLite = "dbip-lite",
        IpinfoLite = "ipinfo-lite",
        Url = "url",
    }
}

impl DownloadSource {
    /// The vendor's download directory when `base_url` is "".
    pub fn default_base_url(self) -> &'static str {
        match self {
            Self::DbIpLite => "https://download.db-ip.com/free",
            Self::IpinfoLite => "https://ipinfo.io/data",
            Self::Url => "",
        }
    }
}

/// A download URL: https, or plain http to this machine only (a local mirror, tests).
/// "" is none.
pub(super) fn download_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    parsed(d, |v| check_url(v).map(|()| v.to_owned()))
}

pub fn check_url(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Ok(());
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("{url:?} contains a space or a control character"));
    }
    if url.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!("{url:?} is not an https:// URL"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    // No user part: in `127.0.0.1:80@example.org` the host is example.org.
    if authority.contains('@') {
        return Err(format!(
            "{url:?}: no user name or password in a plain http URL"
        ));
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(format!(
            "{url:?}: plain http only to this machine (127.0.0.1, ::1, localhost); use https"
        ))
    }
}

/// Which database a file serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Asn,
    Country,
}

impl DatabaseKind {
    pub fn key(self) -> &'static str {
        match self {
            Self::Asn => "ownership.asn_database",
            Self::Country => "ownership.country_database",
        }
    }

    fn downloaded_name(self) -> &'static str {
        match self {
            Self::Asn => DOWNLOADED_ASN,
            Self::Country => DOWNLOADED_COUNTRY,
        }
    }
}

/// Where a database in use comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseFile {
    /// Set in the config: missing is an error.
    Configured(PathBuf),
    /// Written by `ownership update`: missing is no database.
    Downloaded(PathBuf),
}

impl DatabaseFile {
    pub fn path(&self) -> &Path {
        match self {
            Self::Configured(p) | Self::Downloaded(p) => p,
        }
    }
}

impl OwnershipConfig {
    /// `download_dir`, or `<local_dir>/ownership`.
    pub fn download_dir(&self, local_dir: &Path) -> PathBuf {
        self.download_dir
            .clone()
            .unwrap_or_else(|| local_dir.join("ownership"))
    }

    /// Where `ownership update` writes `kind`'s file.
    pub fn downloaded(&self, local_dir: &Path, kind: DatabaseKind) -> PathBuf {
        self.download_dir(local_dir).join(kind.downloaded_name())
    }

    /// The file `kind` is read from: the configured one, else (with `use_downloaded`)
    /// the downloaded one.
    pub fn file(&self, local_dir: &Path, kind: DatabaseKind) -> Option<DatabaseFile> {
        let configured = match kind {
            DatabaseKind::Asn => &self.asn_database,
            DatabaseKind::Country => &self.country_database,
        };
        match configured {
            Some(p) => Some(DatabaseFile::Configured(p.clone())),
            None if self.use_downloaded => {
                Some(DatabaseFile::Downloaded(self.downloaded(local_dir, kind)))
            }
            None => None,
        }
    }

    /// Each configured database with its key, for messages that name both.
    pub fn databases(&self) -> impl Iterator<Item = (&'static str, &PathBuf)> {
        [
            ("ownership.asn_database", self.asn_database.as_ref()),
            ("ownership.country_database", self.country_database.as_ref()),
        ]
        .into_iter()
        .filter_map(|(key, path)| path.map(|p| (key, p)))
    }
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn https_anywhere_plain_http_only_to_loopback() {
        for ok in [
            "",
            "https://download.db-ip.com/free",
            "http://127.0.0.1:8080/free",
            "http://127.1.2.3/x",
            "http://[::1]:80/x",
            "http://localhost/x",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://192.0.2.1/free",
            "http://127.0.0.1.example.org/",
            "http://localhost.example.org/",
            "http://[2001:db8::1]/",
            "http://user@192.0.2.1/",
            "http://127.0.0.1:80@192.0.2.1/",
            "http://[::1]@192.0.2.1/",
            "ftp://127.0.0.1/",
            "download.db-ip.com/free",
            "https://a b/",
            "https://x/\n",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
