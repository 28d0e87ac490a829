//! A downloaded file becomes the database only whole and checked: decompressed into a
//! temporary file beside the target, opened, walked and probed, then renamed over the
//! old one. Readers map the file they opened by path; a rename leaves their inode
//! intact, and the next process opens the new one. Any failure drops the temporary
//! file and leaves the old database as it was.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tempfile::NamedTempFile;

use super::super::Database;
use crate::config::DatabaseKind;
use crate::model::{ClientAddr, Timestamp};

/// A decompressed file larger than this is refused (IPinfo Lite, the largest, is
/// about 100 MB).
const MAX_SIZE: u64 = 1 << 30;

/// Addresses every real database knows: Google's and Cloudflare's resolvers.
const PROBES: [&str; 3] = ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888"];

/// What a checked file is.
pub struct Checked {
    pub kind: String,
    pub built: Timestamp,
    pub size: u64,
}

const TEMP_PREFIX: &str = ".download-";

/// A temporary file in `dir`, for the download.
pub fn temp_in(dir: &Path) -> Result<NamedTempFile, String> {
    tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(|e| format!("{}: cannot create a temporary file: {e}", dir.display()))
}

/// Removes temporary files a killed run left (a day old: not another run's).
pub fn remove_abandoned(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let day = std::time::Duration::from_secs(86_400);
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > day);
        if old && entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The database in `download`: itself, or what it decompresses to (gzip, by its
/// magic bytes), as a temporary file in `dir`.
pub fn unpack(mut download: NamedTempFile, dir: &Path) -> Result<NamedTempFile, String> {
    let file = download.as_file_mut();
    let mut magic = [0u8; 2];
    let gzip = file.seek(SeekFrom::Start(0)).is_ok()
        && file.read_exact(&mut magic).is_ok()
        && magic == [0x1f, 0x8b];
    file.seek(SeekFrom::Start(0))
        .map_err(|e| format!("reading the download: {e}"))?;
    if !gzip {
        return Ok(download);
    }
    let mut out = temp_in(dir)?;
    let mut gz =
        flate2::read::MultiGzDecoder::new(BufReader::new(download.as_file())).take(MAX_SIZE + 1);
    let n = std::io::copy(&mut gz, out.as_file_mut())
        .map_err(|e| format!("not a whole gzip file: {e}"))?;
    if n > MAX_SIZE {
        return Err(format!("decompresses to more than {} MiB", MAX_SIZE >> 20));
    }
    Ok(out)
}

/// Opens `file` as the reader would and checks that it is a whole database of `kind`:
/// at least `min_size` bytes, a matching `database_type`, every record readable, and
/// an owner (or country) for well-known addresses.
pub fn check(file: &NamedTempFile, kind: DatabaseKind, min_size: u64) -> Result<Checked, String> {
    file.as_file()
        .sync_all()
        .map_err(|e| format!("writing {}: {e}", file.path().display()))?;
    let size = file.as_file().metadata().map_err(|e| e.to_string())?.len();
    if size < min_size {
        return Err(format!(
            "{size} bytes, less than ownership.min_size ({min_size}): an error page or a cut download, not a database"
        ));
    }
    let db = Database::open(kind.key(), file.path()).map_err(|e| e.reason())?;
    let kind_name = db.kind().to_owned();
    let lower = kind_name.to_ascii_lowercase();
    let fits = match kind {
        DatabaseKind::Asn => lower.contains("asn") || lower.contains("ipinfo"),
        DatabaseKind::Country => ["country", "city", "ipinfo"]
            .iter()
            .any(|w| lower.contains(w)),
    };
    if !fits {
        let (a_kind, _) = names(kind);
        return Err(format!(
            "database_type {kind_name:?} is not {a_kind} database"
        ));
    }
    db.verify()?;
    for probe in PROBES {
        let ip: IpAddr = probe.parse().map_err(|_| "probe address".to_owned())?;
        if ip.is_ipv6() && db.ip_version() == 4 {
            continue;
        }
        let found = db.find(ClientAddr::from(ip));
        let known = match kind {
            DatabaseKind::Asn => found.and_then(|r| r.asn).is_some(),
            DatabaseKind::Country => found.and_then(|r| r.country()).is_some(),
        };
        if !known {
            let (_, what) = names(kind);
            return Err(format!(
                "knows no {what} for {probe}: not a complete database"
            ));
        }
    }
    Ok(Checked {
        kind: kind_name,
        built: db.built(),
        size,
    })
}

/// A database of `kind` with its article, and what it knows of an address.
fn names(kind: DatabaseKind) -> (&'static str, &'static str) {
    match kind {
        DatabaseKind::Asn => ("an ASN", "AS"),
        DatabaseKind::Country => ("a country", "country"),
    }
}

/// Renames `file` over `target` (readable by all: public data), then makes the
/// rename durable.
pub fn replace(file: NamedTempFile, target: &Path) -> Result<(), String> {
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(|e| format!("{}: {e}", file.path().display()))?;
    file.persist(target)
        .map_err(|e| format!("{}: cannot replace it: {}", target.display(), e.error))?;
    if let Some(dir) = target.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(())
}

/// The installed database's build time, if one opens at `target`.
pub fn installed_built(target: &Path) -> Option<Timestamp> {
    Database::open("", target).ok().map(|db| db.built())
}
