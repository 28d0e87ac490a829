//! The spool: logins `record` could not store (config broken, database locked, full
//! or unwritable) wait here, one line each, until a `record` or `run-actions` with a
//! working database stores them (drain.rs), as live logins.
//!
//! It lives beside the database (`<db>.spool`), in its private directory. The file
//! stays once created, with space reserved past its end (fallocate KEEP_SIZE) while
//! the disk has room, so a disk that fills up later still takes logins. Writers and
//! drainers lock it exclusively (flock). A drainer empties it once every line is
//! committed, or replaces it (rename) by the lines it could not store; a writer that
//! locked the file just replaced opens the new one. A drain cut short leaves every
//! line: those already stored come back as duplicates, which the store ignores.

mod drain;
mod rejected;

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use drain::{drain_waiting, Drained};
pub use rejected::Rejections;

use crate::config::{DEFAULT_CONFIG, DEFAULT_DATABASE, DEFAULT_LOCAL_DIR};
use crate::error::{Error, Result};
use crate::files::private_dir;
use crate::model::{
    ClientAddr, DatabaseLocation, Label, MessageCount, SaslUser, Source, Timestamp,
};
use crate::store::LoginEvent;

/// Room reserved for a full disk: some 3,000 logins.
const RESERVE_BYTES: i64 = 512 * 1024;
/// Beyond this the spool refuses logins (exit 1), so a long outage cannot fill the disk.
pub const MAX_BYTES: u64 = 8 * 1024 * 1024;

pub struct Spool {
    path: PathBuf,
    /// Beside this process's database: created (with its reserve) when missing.
    own: bool,
}

impl Spool {
    pub fn beside(db: &Path) -> Self {
        let mut path = db.as_os_str().to_owned();
        path.push(".spool");
        Self {
            path: path.into(),
            own: true,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The hot path's check: one stat. A missing spool is created with its reserve
    /// (the first `record` on a database, not a drain).
    pub fn waiting(&self) -> bool {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) => m.len() > 0,
            Err(e) if e.kind() == ErrorKind::NotFound && self.own => {
                // Best effort: a spool that cannot be made now is made when needed.
                let _ = self.open(true).map(|f| reserve(&f));
                false
            }
            Err(_) => false,
        }
    }

    fn open(&self, create: bool) -> std::io::Result<File> {
        let f = OpenOptions::new()
            .read(true)
            .append(true)
            .create(create)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&self.path)?;
        let m = f.metadata()?;
        if !m.is_file() {
            return Err(std::io::Error::other("is not a regular file"));
        }
        if m.mode() & 0o077 != 0 {
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(f)
    }

    /// Opens and locks the spool, again when a drainer replaced the file meanwhile.
    /// None: `try_only` and another process holds it, or it is missing and not `create`.
    fn open_locked(&self, create: bool, try_only: bool) -> std::io::Result<Option<File>> {
        loop {
            let f = match self.open(create) {
                Ok(f) => f,
                Err(e) if !create && e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            if !lock(&f, try_only)? {
                return Ok(None);
            }
            let ours = f.metadata()?;
            match std::fs::symlink_metadata(&self.path) {
                Ok(m) if m.ino() == ours.ino() && m.dev() == ours.dev() => return Ok(Some(f)),
                Err(e) if !create && e.kind() == ErrorKind::NotFound => return Ok(None),
                _ => {}
            }
        }
    }

    /// Appends one login, fsync'd. Fails when the spool is full or cannot be written.
    pub fn keep(&self, event: &LoginEvent) -> Result<()> {
        let fail = |reason: String| Error::Spool {
            path: self.path.clone(),
            reason,
        };
        if let Some(dir) = self.path.parent() {
            private_dir(dir)?;
        }
        let line = encode(event);
        let f = self
            .open_locked(true, false)
            .map_err(|e| fail(e.to_string()))?
            .ok_or_else(|| fail("cannot be locked".into()))?;
        let len = f.metadata().map_err(|e| fail(e.to_string()))?.len();
        if len + line.len() as u64 > MAX_BYTES {
            return Err(fail(format!(
                "is full ({len} bytes, at most {MAX_BYTES}): fix what stops the database, then `f2b-mailguard run-actions` stores what waits"
            )));
        }
        let written = (&f).write_all(line.as_bytes()).and_then(|()| f.sync_data());
        if let Err(e) = written {
            // No half line for the next writer to append to.
            let _ = f.set_len(len);
            return Err(fail(e.to_string()));
        }
        Ok(())
    }

    /// Logins waiting, for status and monitoring.
    pub fn count(&self) -> u64 {
        std::fs::read(&self.path)
            .map_or(0, |raw| raw.iter().filter(|b| **b == b'\n').count() as u64)
    }
}

/// The spools a process with a working database drains: its own, and, when the
/// database comes from the config, the one at the built-in path, where `record`
/// keeps logins while the config cannot even be parsed.
pub fn spools(db: &Path, from_config: bool) -> Vec<Spool> {
    let mut out = vec![Spool::beside(db)];
    if from_config && db != Path::new(DEFAULT_DATABASE) {
        out.push(Spool {
            own: false,
            ..Spool::beside(Path::new(DEFAULT_DATABASE))
        });
    }
    out
}

/// The local files' base (see `Config::local_base`) a config names, read as leniently
/// as possible: `record` needs a place for the spool when the config does not load.
/// `--db` wins; a file that is not TOML, or names no valid value, means the built-in one.
pub fn local_base_named(db: Option<&DatabaseLocation>, config: Option<&Path>) -> PathBuf {
    let file = config.unwrap_or(Path::new(DEFAULT_CONFIG));
    let table = std::fs::read_to_string(file)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .unwrap_or_default();
    let string = |key: &str| match table.get(key) {
        Some(toml::Value::String(s)) if !s.is_empty() => Some(s.as_str()),
        _ => None,
    };
    // `string` takes "" as unset, as the config does.
    let local_dir = Path::new(string("local_dir").unwrap_or(DEFAULT_LOCAL_DIR));
    match db {
        Some(db) => db.local_base(local_dir),
        None => string("database")
            .and_then(|s| DatabaseLocation::local_base_of(s, local_dir))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATABASE)),
    }
}

/// Waiting and refused logins, as `status`, `check`, `metrics` and `doctor` show them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Backlog {
    pub spooled: u64,
    pub rejected_24h: u64,
    pub last_rejected: Option<f64>,
    pub last_reason: Option<String>,
}

impl Backlog {
    pub fn of(db: &Path, now: Timestamp) -> Self {
        let spool = Spool::beside(db);
        let (rejected_24h, last) = Rejections::beside_spool(spool.path()).summary(now);
        Self {
            spooled: spool.count(),
            rejected_24h,
            last_rejected: last.as_ref().map(|(t, _)| t.secs_f64()),
            last_reason: last.map(|(_, r)| r),
        }
    }

    /// One line per problem: "14 logins rejected in 24h, last: …".
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.spooled > 0 {
            out.push(format!(
                "{} login(s) spooled, not yet stored: the database or config failed (the next record or run-actions stores them)",
                self.spooled
            ));
        }
        if self.rejected_24h > 0 {
            let when = self
                .last_rejected
                .map(|t| Timestamp::from_millis((t * 1000.0) as i64).rfc3339())
                .unwrap_or_default();
            out.push(format!(
                "{} login(s) rejected in 24h, last: {when} {}",
                self.rejected_24h,
                self.last_reason.as_deref().unwrap_or("")
            ));
        }
        out
    }
}

/// flock; `try_only`: false instead of waiting when another process holds it.
fn lock(f: &File, try_only: bool) -> std::io::Result<bool> {
    let op = libc::LOCK_EX | if try_only { libc::LOCK_NB } else { 0 };
    loop {
        // SAFETY: a valid open descriptor; flock has no memory effects.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if try_only => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// Reserves room past the end; best effort (not every filesystem can).
fn reserve(f: &File) {
    // SAFETY: a valid open descriptor; fallocate has no memory effects.
    unsafe {
        libc::fallocate(f.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, RESERVE_BYTES);
    }
}

/// `1 TAB millis TAB source TAB user TAB address TAB count TAB jail [TAB fid]`:
/// no validated field holds a tab or a line break.
fn encode(e: &LoginEvent) -> String {
    let mut line = format!(
        "1\t{}\t{}\t{}\t{}\t{}\t{}",
        e.time.millis(),
        e.source,
        e.user.as_str(),
        e.addr,
        e.count.get(),
        e.jail.as_str()
    );
    if let Some(fid) = &e.fid {
        line.push('\t');
        line.push_str(fid.as_str());
    }
    line.push('\n');
    line
}

/// The spooled logins, each validated again, and why each unreadable line was.
fn decode(raw: &[u8]) -> (Vec<LoginEvent>, Vec<String>) {
    let mut events = Vec::new();
    let mut bad = Vec::new();
    let mut lines = raw.split(|b| *b == b'\n').collect::<Vec<_>>();
    // The piece after the last line break: empty unless a writer died mid-line.
    let tail = lines.pop().filter(|t| !t.is_empty());
    for (i, line) in lines.iter().enumerate() {
        match std::str::from_utf8(line)
            .map_err(|e| e.to_string())
            .and_then(parse)
        {
            Ok(e) => events.push(e),
            Err(why) => bad.push(format!("spooled line {} unreadable: {why}", i + 1)),
        }
    }
    if tail.is_some() {
        bad.push("spooled line cut short".into());
    }
    (events, bad)
}

fn parse(line: &str) -> std::result::Result<LoginEvent, String> {
    let f: Vec<&str> = line.split('\t').collect();
    if !(7..=8).contains(&f.len()) || f[0] != "1" {
        return Err(format!("{} fields", f.len()));
    }
    let ms: i64 = f[1].parse().map_err(|_| "time".to_string())?;
    let event = || -> std::result::Result<LoginEvent, crate::error::Invalid> {
        Ok(LoginEvent {
            time: Timestamp::from_millis(ms),
            source: Source::parse(f[2])?,
            user: SaslUser::parse(f[3])?,
            addr: ClientAddr::parse(f[4])?,
            count: MessageCount::parse(f[5])?,
            jail: Label::parse("jail", f[6])?,
            fid: f.get(7).map(|v| Label::fid(v)).transpose()?,
        })
    };
    event().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_torn_ones_are_reported() {
        let event = LoginEvent {
            time: Timestamp::from_millis(1_795_418_066_123),
            source: Source::Bounces,
            user: SaslUser::parse("a'b\"c$(x)@example.com").unwrap(),
            addr: ClientAddr::parse("2001:db8::1").unwrap(),
            jail: Label::parse("jail", "mailguard bounce").unwrap(),
            fid: Some(Label::parse("fid", "('a', '2001:db8::1')").unwrap()),
            count: MessageCount::parse("7").expect("a count"),
        };
        let plain = LoginEvent {
            fid: None,
            ..event.clone()
        };
        let mut raw = encode(&event).into_bytes();
        raw.extend_from_slice(encode(&plain).as_bytes());
        raw.extend_from_slice(b"1\tjunk\n1\t5\tsmtp\tb");
        let (events, bad) = decode(&raw);
        assert_eq!(events.len(), 2);
        assert_eq!(format!("{:?}", events[0]), format!("{event:?}"));
        assert_eq!(format!("{:?}", events[1]), format!("{plain:?}"));
        assert_eq!(bad.len(), 2, "{bad:?}");
    }

    #[test]
    fn a_lenient_read_finds_the_database_of_a_broken_config() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, "database = \"/x/mg.db\"\nmode = \"enforc\"\n").unwrap();
        assert_eq!(local_base_named(None, Some(&cfg)), Path::new("/x/mg.db"));
        std::fs::write(&cfg, "database = \"/x/mg.db\nmode = [").unwrap();
        assert_eq!(
            local_base_named(None, Some(&cfg)),
            Path::new(DEFAULT_DATABASE)
        );
        let y = DatabaseLocation::Sqlite(PathBuf::from("/y.db"));
        assert_eq!(local_base_named(Some(&y), Some(&cfg)), Path::new("/y.db"));
        // A shared store's spool is in local_dir, even when another key is broken.
        std::fs::write(
            &cfg,
            "database = \"postgresql://u@h/d\"\nlocal_dir = \"/l\"\nmode = 3\n",
        )
        .unwrap();
        assert_eq!(
            local_base_named(None, Some(&cfg)),
            Path::new("/l/postgresql")
        );
    }
}
