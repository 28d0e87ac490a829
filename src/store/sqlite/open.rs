//! Opening the database: its directory and file created private (and refused when
//! someone else could swap them), the busy handler, and the WAL size policy.

use std::cell::Cell;
use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::{sql_err, AtPath};
use crate::error::{Error, Result};
use crate::model::Span;
use crate::store::schema;

/// Opens (creating and migrating as needed) the database at `path`.
pub(super) fn connect(path: &Path, busy_timeout: Span) -> Result<Connection> {
    create_private(path)?;
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .at(path)?;
    wait_when_busy(&conn, busy_timeout).at(path)?;
    // NORMAL is durable across crashes of this process in WAL mode; only a power
    // loss can drop the last transactions, never corrupt the file.
    conn.pragma_update(None, "synchronous", "NORMAL").at(path)?;
    // Each `record` is its own short process; see `keep_wal_small`.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .at(path)?;
    retry_busy(busy_timeout, || match schema::migrate(&mut conn) {
        Err(schema::MigrateError::Sql(e)) => Err(e),
        other => Ok(other),
    })
    .at(path)?
    .map_err(|e| match e {
        schema::MigrateError::Sql(e) => sql_err(path, e),
        other => Error::StoreState {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    })?;
    keep_wal_small(&conn, path, busy_timeout);
    Ok(conn)
}

/// Creates the database directory `0700` and the file `0600` before SQLite touches them;
/// SQLite gives its `-wal` and `-shm` files the database file's permissions.
/// A directory another user can write to is refused: they could swap the database
/// (and the evidence in it) or plant a link where root is about to create it. Its
/// group counts as other users, and so does an owner other than us or root.
fn create_private(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        crate::files::private_dir(dir)?;
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Runs `f` again while SQLite answers "busy" and `timeout` has not passed.
/// The busy handler covers most contention, but a few WAL paths (an opener rebuilding
/// the WAL index while another process checkpoints) report busy at once. Every
/// caller is a single transaction, so running it again is safe.
pub(super) fn retry_busy<T>(
    timeout: Span,
    mut f: impl FnMut() -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let deadline = Instant::now() + Duration::from_millis(timeout.millis() as u64);
    let mut pause = Duration::from_millis(1);
    loop {
        match f() {
            Err(e)
                if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// How long a connection of this process waits for another writer: `busy_timeout`.
static BUSY_TIMEOUT_MS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// When the current wait began (SQLite restarts its retry count at each wait).
    static BUSY_SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Installs the busy handler: poll every 200 µs until `timeout`. The writer we wait
/// for holds the lock for well under a millisecond, while SQLite's own handler backs
/// off up to 100 ms, which showed in `record`'s p99 with parallel writers
/// (BENCHMARKS.md).
fn wait_when_busy(conn: &Connection, timeout: Span) -> rusqlite::Result<()> {
    BUSY_TIMEOUT_MS.store(timeout.millis().max(0) as u64, Ordering::Relaxed);
    conn.busy_handler(Some(busy_wait))
}

fn busy_wait(retries: i32) -> bool {
    let now = Instant::now();
    let since = BUSY_SINCE.with(|s| {
        let since = match s.get() {
            Some(t) if retries > 0 => t,
            _ => now,
        };
        s.set(Some(since));
        since
    });
    let timeout = Duration::from_millis(BUSY_TIMEOUT_MS.load(Ordering::Relaxed));
    if now.duration_since(since) >= timeout {
        return false;
    }
    std::thread::sleep(Duration::from_micros(200));
    true
}

/// Above this, the next opener folds the WAL back into the database.
const WAL_TRUNCATE_BYTES: u64 = 256 * 1024;

/// By default, closing the last connection checkpoints the WAL and deletes it, and the
/// next process creates it again: fsyncs of new and removed files on every login, the
/// bulk of `record`'s time. We skip that on close instead. But a new process cannot
/// know what an earlier one checkpointed (it rebuilds the WAL index from the file), so
/// the WAL would only grow, and every open reads all of it. So whoever opens the
/// database and finds the WAL large truncates it: one checkpoint per few hundred
/// kilobytes, and small reads at every open.
fn keep_wal_small(conn: &Connection, path: &Path, busy_timeout: Span) {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let big = std::fs::metadata(&wal).is_ok_and(|m| m.len() > WAL_TRUNCATE_BYTES);
    if !big {
        return;
    }
    // Never wait for this: if another process is busy, it or a later one will do it.
    // Failure only postpones the truncation, so it is not an error for the caller.
    let _ = conn.busy_handler(None);
    checkpoint(conn, Checkpoint::Truncate);
    let _ = wait_when_busy(conn, busy_timeout);
}

pub(super) enum Checkpoint {
    /// Copies what it can without waiting; the next writer then starts the WAL over.
    Passive,
    /// Copies everything and empties the WAL file, giving its space back to the disk.
    Truncate,
}

/// Folds the WAL back into the database; best effort: failing only postpones it.
pub(super) fn checkpoint(conn: &Connection, how: Checkpoint) {
    let sql = match how {
        Checkpoint::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
        Checkpoint::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
    };
    let _ = conn.query_row(sql, [], |_| Ok(()));
}
