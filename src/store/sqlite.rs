//! SQLite backend: one file, WAL so readers never block the hot path, a busy timeout
//! so concurrent writers queue instead of failing, `BEGIN IMMEDIATE` so a write
//! transaction never has to upgrade its lock half-way.

use std::fs::{DirBuilder, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::config::DbConfig;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};

use super::schema;
use super::{
    Account, ActionRecord, ActionState, ActionTotals, AddrSummary, Evidence, LevelChange,
    LoginEvent, QueuedAction, Recorded, Store, Verdict, WhitelistEntry,
};
use crate::actions::ActionKind;
use crate::config::Config;
use crate::detect::{AccountState, Seen, Transition};
use crate::error::{Error, Result};
use crate::model::{Cidr, ClientAddr, Level, LogTime, SaslUser, Source, Span};

/// Automatic retention runs on one insert in this many, deleting at most `AUTO_PRUNE_BATCH`
/// rows: a few milliseconds now and then instead of an unbounded table.
const AUTO_PRUNE_EVERY: i64 = 256;
const AUTO_PRUNE_BATCH: u32 = 2000;

pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    retention: Span,
    busy_timeout: Span,
}

impl SqliteStore {
    pub fn open(cfg: &Config) -> Result<Self> {
        let path = cfg.database.clone();
        create_private(&path)?;
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sql_err(&path, e))?;
        conn.busy_timeout(Duration::from_millis(cfg.busy_timeout.millis() as u64))
            .map_err(|e| sql_err(&path, e))?;
        // NORMAL is durable across crashes of this process in WAL mode; only a power
        // loss can drop the last transactions, never corrupt the file.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| sql_err(&path, e))?;
        // Index lookups through a memory map instead of a read() per page.
        conn.pragma_update(None, "mmap_size", 1i64 << 30)
            .map_err(|e| sql_err(&path, e))?;
        // Each `record` is its own short process; see `keep_wal_small`.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .map_err(|e| sql_err(&path, e))?;
        retry_busy(cfg.busy_timeout, || match schema::migrate(&mut conn) {
            Err(schema::MigrateError::Sql(e)) => Err(e),
            other => Ok(other),
        })
        .map_err(|e| sql_err(&path, e))?
        .map_err(|e| match e {
            schema::MigrateError::Sql(e) => sql_err(&path, e),
            other => Error::StoreState {
                path: path.clone(),
                reason: other.to_string(),
            },
        })?;
        keep_wal_small(&conn, &path, cfg.busy_timeout);
        Ok(Self {
            conn,
            path,
            retention: cfg.retention,
            busy_timeout: cfg.busy_timeout,
        })
    }

    fn err(&self, e: rusqlite::Error) -> Error {
        sql_err(&self.path, e)
    }

    fn user_id(&self, user: &SaslUser) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT id FROM users WHERE name = ?1",
                [user.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }
}

fn sql_err(path: &Path, source: rusqlite::Error) -> Error {
    Error::Store {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the database directory `0700` and the file `0600` before SQLite touches them;
/// SQLite gives its `-wal` and `-shm` files the database file's permissions.
fn create_private(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::io(dir, e))?;
        }
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
fn retry_busy<T>(timeout: Span, mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
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
    let _ = conn.busy_timeout(Duration::ZERO);
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    let _ = conn.busy_timeout(Duration::from_millis(busy_timeout.millis() as u64));
}

fn level_of(raw: &str) -> rusqlite::Result<Level> {
    Level::from_db(raw).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, "level".into())
    })
}

fn source_of(raw: &str) -> rusqlite::Result<Source> {
    Source::parse(raw).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn addr_of(raw: &str) -> rusqlite::Result<ClientAddr> {
    ClientAddr::parse(raw).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn kind_of(raw: &str) -> rusqlite::Result<ActionKind> {
    raw.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })
}

fn state_of(raw: &str) -> rusqlite::Result<ActionState> {
    ActionState::from_db(raw).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            "action state".into(),
        )
    })
}

fn user_of(raw: &str) -> rusqlite::Result<SaslUser> {
    SaslUser::parse(raw).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn cidr_of(raw: &str) -> rusqlite::Result<Cidr> {
    Cidr::parse("cidr", raw).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

const ACCOUNT_COLS: &str = "name, level, enforced, last_hit_ms, count_from_ms, last_seen_ms";

fn account_row(r: &rusqlite::Row) -> rusqlite::Result<Account> {
    Ok(Account {
        user: user_of(&r.get::<_, String>(0)?)?,
        state: AccountState {
            level: level_of(&r.get::<_, String>(1)?)?,
            enforced: r.get(2)?,
            last_hit: r.get::<_, Option<i64>>(3)?.map(LogTime::from_millis),
            count_from: LogTime::from_millis(r.get(4)?),
        },
        last_seen: r.get::<_, Option<i64>>(5)?.map(LogTime::from_millis),
    })
}

fn insert_change(
    tx: &Connection,
    user_id: i64,
    at: LogTime,
    t: &Transition,
    actor: &str,
) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO level_changes (user_id, ts_ms, from_level, to_level, enforced, reason, actor)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        user_id,
        at.millis(),
        t.from.as_str(),
        t.to.as_str(),
        t.enforced,
        t.reason,
        actor
    ])?;
    Ok(tx.last_insert_rowid())
}

/// Queues one action of a transition; a mail is skipped if one for the same account
/// and level was queued within `cooldown` of log time. Returns how many were queued.
fn queue_action(
    tx: &Connection,
    user_id: i64,
    change_id: i64,
    kind: ActionKind,
    t: &Transition,
    at: LogTime,
    cooldown: Span,
) -> rusqlite::Result<usize> {
    if kind == ActionKind::Mail {
        let recent: bool = tx
            .prepare_cached(
                "SELECT count(*) > 0 FROM actions WHERE user_id = ?1 AND kind = 'mail' AND level = ?2
                 AND enforced = ?3 AND logged_ms > ?4 AND state <> 'cancelled'",
            )?
            .query_row(
                params![user_id, t.to.as_str(), t.enforced, at.minus(cooldown).millis()],
                |r| r.get(0),
            )?;
        if recent {
            return Ok(0);
        }
    }
    let now = LogTime::now().millis();
    tx.prepare_cached(
        "INSERT INTO actions (user_id, change_id, kind, level, enforced, logged_ms, created_ms, next_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
    )?
    .execute(params![
        user_id,
        change_id,
        kind.as_str(),
        t.to.as_str(),
        t.enforced,
        at.millis(),
        now
    ])
}

fn prune(tx: &Connection, before: LogTime, batch: u32) -> rusqlite::Result<u64> {
    let n = tx
        .prepare_cached(
            "DELETE FROM events WHERE id IN
               (SELECT id FROM events WHERE ts_ms < ?1 ORDER BY ts_ms LIMIT ?2)",
        )?
        .execute(params![before.millis(), batch])?;
    Ok(n as u64)
}

impl Store for SqliteStore {
    fn record(
        &mut self,
        event: &LoginEvent,
        window: Span,
        decide: &mut dyn FnMut(&Evidence) -> Verdict,
    ) -> Result<Recorded> {
        let retention = self.retention;
        let conn = &mut self.conn;
        retry_busy(self.busy_timeout, || {
            record_once(conn, retention, event, window, decide)
        })
        .map_err(|e| sql_err(&self.path, e))
    }

    fn activity(&mut self, since: LogTime, until: LogTime) -> Result<Vec<(SaslUser, Seen)>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT u.name, e.source, e.ip, e.ts_ms FROM events e JOIN users u ON u.id = e.user_id
                 WHERE e.ts_ms > ?1 AND e.ts_ms <= ?2 AND e.ts_ms >= u.count_from_ms",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![since.millis(), until.millis()], |r| {
                Ok((
                    user_of(&r.get::<_, String>(0)?)?,
                    Seen {
                        source: source_of(&r.get::<_, String>(1)?)?,
                        addr: addr_of(&r.get::<_, String>(2)?)?,
                        time: LogTime::from_millis(r.get(3)?),
                    },
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>());
        rows.map_err(|e| sql_err(&self.path, e))
    }

    fn flagged(&mut self) -> Result<Vec<Account>> {
        let sql = format!("SELECT {ACCOUNT_COLS} FROM users WHERE level <> 'ok'");
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], account_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>());
        rows.map_err(|e| sql_err(&self.path, e))
    }

    fn account(&mut self, user: &SaslUser) -> Result<Option<Account>> {
        let sql = format!("SELECT {ACCOUNT_COLS} FROM users WHERE name = ?1");
        self.conn
            .query_row(&sql, [user.as_str()], account_row)
            .optional()
            .map_err(|e| self.err(e))
    }

    fn addresses(&mut self, user: &SaslUser) -> Result<Vec<AddrSummary>> {
        let Some(id) = self.user_id(user)? else {
            return Ok(Vec::new());
        };
        let mut stmt = self
            .conn
            .prepare(
                "SELECT ip, source, min(ts_ms), max(ts_ms), count(*) FROM events
                 WHERE user_id = ?1 GROUP BY ip, source",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([id], |r| {
                Ok(AddrSummary {
                    addr: addr_of(&r.get::<_, String>(0)?)?,
                    source: source_of(&r.get::<_, String>(1)?)?,
                    first_seen: LogTime::from_millis(r.get(2)?),
                    last_seen: LogTime::from_millis(r.get(3)?),
                    count: r.get::<_, i64>(4)? as u64,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>());
        rows.map_err(|e| sql_err(&self.path, e))
    }

    fn history(&mut self, user: &SaslUser) -> Result<Vec<LevelChange>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT c.ts_ms, c.from_level, c.to_level, c.enforced, c.reason, c.actor
                 FROM level_changes c JOIN users u ON u.id = c.user_id
                 WHERE u.name = ?1 ORDER BY c.id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([user.as_str()], |r| {
                Ok(LevelChange {
                    time: LogTime::from_millis(r.get(0)?),
                    from: level_of(&r.get::<_, String>(1)?)?,
                    to: level_of(&r.get::<_, String>(2)?)?,
                    enforced: r.get(3)?,
                    reason: r.get(4)?,
                    actor: r.get(5)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>());
        rows.map_err(|e| sql_err(&self.path, e))
    }

    fn change_level(
        &mut self,
        user: &SaslUser,
        at: LogTime,
        transition: &Transition,
        actor: &str,
        count_from: Option<LogTime>,
    ) -> Result<()> {
        let path = self.path.clone();
        let e = |err| sql_err(&path, err);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e)?;
        let user_id: i64 = tx
            .query_row(
                "INSERT INTO users (name) VALUES (?1)
                 ON CONFLICT(name) DO UPDATE SET name = name RETURNING id",
                [user.as_str()],
                |r| r.get(0),
            )
            .map_err(e)?;
        tx.execute(
            "UPDATE users SET level = ?2, enforced = ?3,
                 count_from_ms = coalesce(?4, count_from_ms),
                 last_hit_ms = CASE WHEN ?2 = 'ok' THEN NULL ELSE last_hit_ms END
             WHERE id = ?1",
            params![
                user_id,
                transition.to.as_str(),
                transition.enforced,
                count_from.map(LogTime::millis)
            ],
        )
        .map_err(e)?;
        insert_change(&tx, user_id, at, transition, actor).map_err(e)?;
        tx.commit().map_err(e)
    }

    fn whitelist(&mut self) -> Result<Vec<WhitelistEntry>> {
        let mut stmt = self
            .conn
            .prepare("SELECT cidr, user, note, added_ms FROM whitelist ORDER BY user, cidr")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                let user: String = r.get(1)?;
                Ok(WhitelistEntry {
                    cidr: cidr_of(&r.get::<_, String>(0)?)?,
                    user: if user.is_empty() {
                        None
                    } else {
                        Some(user_of(&user)?)
                    },
                    note: r.get(2)?,
                    added: LogTime::from_millis(r.get(3)?),
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>());
        rows.map_err(|e| sql_err(&self.path, e))
    }

    fn whitelist_add(&mut self, entry: &WhitelistEntry) -> Result<bool> {
        let user = entry.user.as_ref().map_or("", |u| u.as_str());
        let cidr = entry.cidr.to_string();
        let existed: bool = self
            .conn
            .query_row(
                "SELECT count(*) > 0 FROM whitelist WHERE cidr = ?1 AND user = ?2",
                params![cidr, user],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        self.conn
            .execute(
                "INSERT INTO whitelist (cidr, user, note, added_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(cidr, user) DO UPDATE SET note = excluded.note",
                params![cidr, user, entry.note, entry.added.millis()],
            )
            .map_err(|e| self.err(e))?;
        Ok(!existed)
    }

    fn whitelist_remove(&mut self, cidr: &Cidr, user: Option<&SaslUser>) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "DELETE FROM whitelist WHERE cidr = ?1 AND user = ?2",
                params![cidr.to_string(), user.map_or("", |u| u.as_str())],
            )
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    fn due_actions(&mut self, now: LogTime) -> Result<Vec<QueuedAction>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT a.id, u.name, a.kind, a.level, a.enforced, a.attempts, a.change_id
                 FROM actions a JOIN users u ON u.id = a.user_id
                 WHERE a.state = 'pending' AND a.next_ms <= ?1 ORDER BY a.id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([now.millis()], |r| {
                Ok(QueuedAction {
                    id: r.get(0)?,
                    user: user_of(&r.get::<_, String>(1)?)?,
                    kind: kind_of(&r.get::<_, String>(2)?)?,
                    level: level_of(&r.get::<_, String>(3)?)?,
                    enforced: r.get(4)?,
                    attempts: r.get(5)?,
                    change_id: r.get(6)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>());
        rows.map_err(|e| sql_err(&self.path, e))
    }

    fn next_pending(&mut self) -> Result<Option<LogTime>> {
        self.conn
            .query_row(
                "SELECT min(next_ms) FROM actions WHERE state = 'pending'",
                [],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map(|v| v.map(LogTime::from_millis))
            .map_err(|e| self.err(e))
    }

    fn finish_action(
        &mut self,
        id: i64,
        now: LogTime,
        state: ActionState,
        outcome: &str,
        retry_at: Option<LogTime>,
    ) -> Result<()> {
        let (state, next) = match retry_at {
            Some(t) => (ActionState::Pending, t.millis()),
            None => (state, now.millis()),
        };
        self.conn
            .execute(
                "UPDATE actions SET state = ?2, attempts = attempts + 1, next_ms = ?3,
                     updated_ms = ?4, outcome = ?5 WHERE id = ?1",
                params![id, state.as_str(), next, now.millis(), outcome],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    fn actions_of(&mut self, user: &SaslUser) -> Result<Vec<ActionRecord>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT a.id, a.kind, a.level, a.enforced, a.state, a.attempts, a.created_ms,
                        a.updated_ms, a.next_ms, a.outcome, a.change_id
                 FROM actions a JOIN users u ON u.id = a.user_id WHERE u.name = ?1 ORDER BY a.id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([user.as_str()], |r| {
                Ok(ActionRecord {
                    id: r.get(0)?,
                    kind: kind_of(&r.get::<_, String>(1)?)?,
                    level: level_of(&r.get::<_, String>(2)?)?,
                    enforced: r.get(3)?,
                    state: state_of(&r.get::<_, String>(4)?)?,
                    attempts: r.get(5)?,
                    created: LogTime::from_millis(r.get(6)?),
                    updated: r.get::<_, Option<i64>>(7)?.map(LogTime::from_millis),
                    next: LogTime::from_millis(r.get(8)?),
                    outcome: r.get(9)?,
                    change_id: r.get(10)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>());
        rows.map_err(|e| sql_err(&self.path, e))
    }

    fn action_totals(&mut self) -> Result<ActionTotals> {
        self.conn
            .query_row(
                "SELECT coalesce(sum(state = 'pending'), 0), coalesce(sum(state = 'failed'), 0),
                        min(CASE WHEN state = 'pending' THEN created_ms END)
                 FROM actions WHERE state IN ('pending', 'failed')",
                [],
                |r| {
                    Ok(ActionTotals {
                        pending: r.get::<_, i64>(0)? as u64,
                        failed: r.get::<_, i64>(1)? as u64,
                        oldest_pending: r.get::<_, Option<i64>>(2)?.map(LogTime::from_millis),
                    })
                },
            )
            .map_err(|e| self.err(e))
    }

    fn cancel_pending(&mut self, user: &SaslUser, now: LogTime) -> Result<u64> {
        self.conn
            .execute(
                "UPDATE actions SET state = 'cancelled', updated_ms = ?2, outcome = 'cancelled by release'
                 WHERE state = 'pending' AND user_id = (SELECT id FROM users WHERE name = ?1)",
                params![user.as_str(), now.millis()],
            )
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    fn blocked(&mut self) -> Result<Vec<SaslUser>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM users WHERE level IN ('block', 'lock') AND enforced = 1 ORDER BY name")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| user_of(&r.get::<_, String>(0)?))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>());
        rows.map_err(|e| sql_err(&self.path, e))
    }

    fn prune_batch(&mut self, before: LogTime, batch: u32) -> Result<u64> {
        prune(&self.conn, before, batch).map_err(|e| self.err(e))
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}

/// One attempt at storing a login and re-evaluating its account; see `Store::record`.
fn record_once(
    conn: &mut Connection,
    retention: Span,
    event: &LoginEvent,
    window: Span,
    decide: &mut dyn FnMut(&Evidence) -> Verdict,
) -> rusqlite::Result<Recorded> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let at = event.time;
    let (user_id, state): (i64, AccountState) = tx
        .prepare_cached(
            "INSERT INTO users (name, last_seen_ms) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET last_seen_ms = max(coalesce(last_seen_ms, 0), excluded.last_seen_ms)
             RETURNING id, level, enforced, last_hit_ms, count_from_ms",
        )
        ?
        .query_row(params![event.user.as_str(), at.millis()], |r| {
            Ok((
                r.get(0)?,
                AccountState {
                    level: level_of(&r.get::<_, String>(1)?)?,
                    enforced: r.get(2)?,
                    last_hit: r.get::<_, Option<i64>>(3)?.map(LogTime::from_millis),
                    count_from: LogTime::from_millis(r.get(4)?),
                },
            ))
        })
        ?;
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO events (user_id, ts_ms, source, ip, jail, fid)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            user_id,
            at.millis(),
            event.source.as_str(),
            event.addr.to_string(),
            event.jail.as_str(),
            event.fid.as_ref().map(|f| f.as_str()),
        ])?;
    if inserted == 0 {
        tx.commit()?;
        return Ok(Recorded {
            duplicate: true,
            queued: 0,
        });
    }
    let event_id = tx.last_insert_rowid();

    let since = at.minus(window).max(state.count_from);
    let seen = seen_in(&tx, user_id, since, at)?;
    let whitelist = whitelist_of(&tx, event.user.as_str())?;
    let verdict = decide(&Evidence {
        user: &event.user,
        at,
        state: &state,
        seen: &seen,
        whitelist: &whitelist,
    });
    if verdict.state != state {
        tx.prepare_cached(
            "UPDATE users SET level = ?2, enforced = ?3, last_hit_ms = ?4 WHERE id = ?1",
        )?
        .execute(params![
            user_id,
            verdict.state.level.as_str(),
            verdict.state.enforced,
            verdict.state.last_hit.map(LogTime::millis),
        ])?;
    }
    let mut queued = 0;
    if let Some(t) = &verdict.transition {
        let change_id = insert_change(&tx, user_id, at, t, "detector")?;
        for kind in &verdict.actions {
            queued += queue_action(&tx, user_id, change_id, *kind, t, at, verdict.mail_cooldown)?;
        }
    }
    if event_id % AUTO_PRUNE_EVERY == 0 {
        prune(&tx, LogTime::now().minus(retention), AUTO_PRUNE_BATCH)?;
    }
    tx.commit()?;
    Ok(Recorded {
        duplicate: false,
        queued,
    })
}

fn seen_in(
    conn: &Connection,
    user_id: i64,
    since: LogTime,
    until: LogTime,
) -> rusqlite::Result<Vec<Seen>> {
    let mut stmt = conn.prepare_cached(
        "SELECT source, ip, ts_ms FROM events WHERE user_id = ?1 AND ts_ms > ?2 AND ts_ms <= ?3",
    )?;
    let rows = stmt.query_map(params![user_id, since.millis(), until.millis()], |r| {
        Ok(Seen {
            source: source_of(&r.get::<_, String>(0)?)?,
            addr: addr_of(&r.get::<_, String>(1)?)?,
            time: LogTime::from_millis(r.get(2)?),
        })
    })?;
    rows.collect()
}

fn whitelist_of(conn: &Connection, user: &str) -> rusqlite::Result<Vec<Cidr>> {
    let mut stmt =
        conn.prepare_cached("SELECT cidr FROM whitelist WHERE user = '' OR user = ?1")?;
    let rows = stmt.query_map([user], |r| cidr_of(&r.get::<_, String>(0)?))?;
    rows.collect()
}
