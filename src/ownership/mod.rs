//! Who owns a client's network: AS number, organisation and country from MaxMind-format
//! (`.mmdb`) databases the admin installs (`[ownership]` in the config). Between
//! detect and config in the layers: it imports only config, model and error.
//!
//! Open once per process with [`Ownership::open`] (strict: `config check`, `doctor`) or
//! [`Ownership::open_lenient`] (`record`, `status`: a broken database means "no
//! owners", never a lost login), then look addresses up as often as needed.

mod record;
pub mod update;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use maxminddb::{Mmap, Reader};

use crate::config::{Config, DatabaseFile, DatabaseKind};
use crate::error::{Error, Result};
use crate::model::{Asn, ClientAddr, CountryCode, Span, Timestamp};
use record::Record;

/// Past this age `doctor` warns: networks change hands, and the vendors publish
/// daily to monthly.
pub const STALE_AFTER: Span = Span::secs(60 * 86_400);

/// Who owns an address's network.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    pub asn: Asn,
    /// The AS's organisation as its registry has it (any text the AS holder chose: show
    /// it with `model::display::shown`).
    pub org: Option<Arc<str>>,
    /// From the country database if one is configured, else from the ASN database's
    /// record when it carries one (IPinfo Lite).
    pub country: Option<CountryCode>,
}

/// The configured databases, opened; empty without any.
#[derive(Debug, Default)]
pub struct Ownership {
    asn: Option<Database>,
    country: Option<Database>,
}

/// One opened database file.
#[derive(Debug)]
pub struct Database {
    key: &'static str,
    path: PathBuf,
    reader: Reader<Mmap>,
}

impl Ownership {
    /// No databases: every lookup is `None`, as without `[ownership]`.
    pub fn none() -> Self {
        Self::default()
    }

    /// Every configured database, or the first that cannot be opened, as a config error
    /// naming the key, the file and the reason. Without databases, does nothing.
    pub fn open(cfg: &Config) -> Result<Self> {
        let (owners, errors) = Self::open_lenient(cfg);
        match errors.into_iter().next() {
            None => Ok(owners),
            Some(e) => Err(e),
        }
    }

    /// [`Ownership::open`], then every database walked whole ([`Database::verify`]):
    /// what `config check` runs.
    pub fn check(cfg: &Config) -> Result<Self> {
        let owners = Self::open(cfg)?;
        for db in owners.databases() {
            db.verify()
                .map_err(|reason| config_error(cfg, db.key, &db.path, reason))?;
        }
        Ok(owners)
    }

    /// Every configured database that opens, and the errors of those that do not: for
    /// commands that must go on without owners rather than fail.
    pub fn open_lenient(cfg: &Config) -> (Self, Vec<Error>) {
        let mut errors = Vec::new();
        let local_dir = cfg.local_dir();
        let mut open = |kind: DatabaseKind| {
            let file = cfg.ownership.file(&local_dir, kind)?;
            let key = kind.key();
            match (Database::open(key, file.path()), &file) {
                (Ok(db), _) => Some(db),
                // Not downloaded (yet): no database, as without the key.
                (Err(Missing(_)), DatabaseFile::Downloaded(_)) => None,
                (Err(Missing(reason) | Failed(reason)), _) => {
                    errors.push(config_error(cfg, key, file.path(), reason));
                    None
                }
            }
        };
        let owners = Self {
            asn: open(DatabaseKind::Asn),
            country: open(DatabaseKind::Country),
        };
        (owners, errors)
    }

    /// For `record` and other commands Fail2ban or scripts run: a database that fails
    /// is one warning line on stderr (Fail2ban logs it at debug level) and no owners.
    pub fn open_or_warn(cfg: &Config) -> Self {
        let (owners, errors) = Self::open_lenient(cfg);
        for e in errors {
            eprintln!(
                "f2b-mailguard: warning: {} (going on without it; see f2b-mailguard doctor)",
                crate::error::one_line(&e)
            );
        }
        owners
    }

    pub fn is_empty(&self) -> bool {
        self.asn.is_none() && self.country.is_none()
    }

    /// Whether owners can be counted: an ASN database is open.
    pub fn has_asn(&self) -> bool {
        self.asn.is_some()
    }

    /// The opened databases: ASN first, then country.
    pub fn databases(&self) -> impl Iterator<Item = &Database> {
        self.asn.iter().chain(self.country.iter())
    }

    /// The AS that owns `addr`'s network, with its organisation and country. `None`
    /// without an ASN database, or when it knows no AS for the address.
    pub fn lookup(&self, addr: ClientAddr) -> Option<Owner> {
        let found = self.asn.as_ref()?.find(addr)?;
        let asn = found.asn?;
        let country = match &self.country {
            Some(db) => db.find(addr).and_then(|r| r.country()),
            None => found.country(),
        };
        Some(Owner {
            asn,
            org: found.org.map(Arc::from),
            country,
        })
    }

    /// Just the AS number: no allocation, no country lookup, for counting owners.
    pub fn asn(&self, addr: ClientAddr) -> Option<Asn> {
        self.asn.as_ref()?.find(addr)?.asn
    }

    /// The country of `addr`: the country database's, else the ASN database's.
    pub fn country(&self, addr: ClientAddr) -> Option<CountryCode> {
        match &self.country {
            Some(db) => db.find(addr).and_then(|r| r.country()),
            None => self.asn.as_ref()?.find(addr)?.country(),
        }
    }
}

/// The databases for a process that runs for days (`run-actions --follow`): opened
/// again only when a file was replaced or changed since (another inode, size or
/// modification time), as `ownership update` and geoipupdate replace them by rename.
pub struct Watched {
    owners: Ownership,
    seen: Vec<Option<Stamp>>,
}

/// A file's device, inode, modification time (seconds, nanoseconds) and size.
type Stamp = (u64, u64, i64, i64, u64);

impl Watched {
    /// The databases, opened as [`Ownership::open_or_warn`] opens them.
    pub fn open_or_warn(cfg: &Config) -> Self {
        // Before opening: a file replaced in between is opened again next time.
        let seen = stamps(cfg);
        Self {
            owners: Ownership::open_or_warn(cfg),
            seen,
        }
    }

    /// Opens the databases again if a file changed since they were opened; returns
    /// whether it did.
    pub fn refresh(&mut self, cfg: &Config) -> bool {
        if stamps(cfg) == self.seen {
            return false;
        }
        *self = Self::open_or_warn(cfg);
        true
    }

    pub fn owners(&self) -> &Ownership {
        &self.owners
    }
}

/// Each configured database file's stamp, `None` where there is none or it is missing.
fn stamps(cfg: &Config) -> Vec<Option<Stamp>> {
    use std::os::unix::fs::MetadataExt;
    let local_dir = cfg.local_dir();
    [DatabaseKind::Asn, DatabaseKind::Country]
        .into_iter()
        .map(|kind| {
            let file = cfg.ownership.file(&local_dir, kind)?;
            let m = std::fs::metadata(file.path()).ok()?;
            Some((m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.len()))
        })
        .collect()
}

impl Database {
    /// Maps the file rather than reading it: `record` runs once per login and looks up
    /// a handful of addresses, so it touches a few pages instead of reading 8-11 MB.
    fn open(key: &'static str, path: &Path) -> std::result::Result<Self, OpenError> {
        let file = File::open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Missing(e.to_string())
            } else {
                Failed(e.to_string())
            }
        })?;
        let meta = file.metadata().map_err(|e| Failed(e.to_string()))?;
        if !meta.is_file() {
            return Err(Failed("is not a regular file".into()));
        }
        // SAFETY: the mapping is undefined behaviour only if the file is truncated or
        // rewritten in place while mapped. `ownership update`, geoipupdate and the
        // documented install (config.example.toml) replace it by rename, which leaves
        // this inode intact; every process opens the path anew.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Failed(e.to_string()))?;
        let reader = Reader::from_source(map)
            .map_err(|e| Failed(format!("not a usable MaxMind DB (.mmdb) file: {e}")))?;
        Ok(Self {
            key,
            path: path.to_path_buf(),
            reader,
        })
    }

    /// The record for `addr`. A lookup that fails (an IPv6 address in an IPv4-only
    /// database, a damaged record) is no record: `doctor` finds damage with `verify`.
    fn find(&self, addr: ClientAddr) -> Option<Record<'_>> {
        self.reader.lookup(addr.ip()).ok()?.decode().ok()?
    }

    /// `ownership.asn_database` or `ownership.country_database`.
    pub fn key(&self) -> &'static str {
        self.key
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `database_type` from the metadata, e.g. `GeoLite2-ASN`, `DBIP-ASN-Lite (compat=GeoLite2-ASN)`.
    pub fn kind(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// When the vendor built it (`build_epoch`).
    pub fn built(&self) -> Timestamp {
        let secs = i64::try_from(self.reader.metadata().build_epoch).unwrap_or(i64::MAX / 1000);
        Timestamp::from_millis(secs.saturating_mul(1000))
    }

    /// 4 or 6: an IPv4-only database knows no IPv6 owner.
    pub fn ip_version(&self) -> u16 {
        self.reader.metadata().ip_version
    }

    /// Walks the whole file: damage that opening does not see (BENCHMARKS.md has the
    /// time it takes), for `config check` and `doctor`.
    pub fn verify(&self) -> std::result::Result<(), String> {
        self.reader
            .verify()
            .map_err(|e| format!("damaged MaxMind DB (.mmdb) file: {e}"))
    }
}

/// Why a database file did not open.
enum OpenError {
    Missing(String),
    Failed(String),
}
use OpenError::{Failed, Missing};

impl OpenError {
    fn reason(self) -> String {
        match self {
            Missing(r) | Failed(r) => r,
        }
    }
}

fn config_error(cfg: &Config, key: &str, path: &Path, reason: String) -> Error {
    key_error(cfg, key, &format!("{}: {reason}", path.display()))
}

/// A config key's value that cannot work, named with the config file it is in.
fn key_error(cfg: &Config, key: &str, reason: &str) -> Error {
    Error::Config {
        file: cfg
            .file
            .as_ref()
            .map_or("config".into(), |f| f.display().to_string()),
        key: key.into(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests;
