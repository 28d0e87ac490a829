//! SQLite backend: one file, WAL so readers never block the hot path, a busy timeout
//! so concurrent writers queue instead of failing, `BEGIN IMMEDIATE` so a write
//! transaction never has to upgrade its lock half-way.
//!
//! `open` hardens and opens the file, `read` and `edit` serve the commands, `write`
//! is the hot path (`record`), `account` and `eval` its reads of an account; `queue`, `outbox`
//! and `import` do what their names say, and `rows` maps stored values to validated
//! types.

mod account;
mod edit;
mod eval;
mod import;
mod open;
mod outbox;
#[cfg(test)]
mod plans;
mod queue;
mod read;
mod rows;
mod write;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use self::open::{connect, retry_busy};
use super::{
    Account, ActionRecord, ActionState, ActionTotals, AddrSummary, Attempt, Batch, BatchCounts,
    Between, Imported, KnownRows, LevelChange, LevelEdit, LoginEvent, QueueSender, QueueSnapshot,
    QueuedAction, Recorded, Store, WhitelistEntry,
};
use crate::config::Config;
use crate::detect::{Engine, Seen};
use crate::error::{Error, Result};
use crate::model::{ActionKind, Cidr, Deadline, Label, SaslUser, Span, Timestamp};

pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    /// This server's name, stored with its logins and actions.
    server: String,
    retention: Span,
    busy_timeout: Span,
}

impl SqliteStore {
    /// Opens the database, waiting at most `busy_timeout` for another writer.
    pub fn open(path: &Path, cfg: &Config, busy_timeout: Span) -> Result<Self> {
        let path = path.to_path_buf();
        let conn = connect(&path, busy_timeout)?;
        Ok(Self {
            conn,
            path,
            server: cfg.server_name(),
            retention: cfg.retention,
            busy_timeout,
        })
    }

    /// The store cannot be trusted as it is (not an SQLite error).
    fn broken(&self, reason: &str) -> Error {
        Error::StoreState {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }
}

fn sql_err(path: &Path, source: rusqlite::Error) -> Error {
    Error::Store {
        path: path.to_path_buf(),
        source,
    }
}

/// SQLite's errors with the database they came from: the one adapter from the
/// modules' `rusqlite::Result` to ours.
trait AtPath<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> AtPath<T> for rusqlite::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| sql_err(path, e))
    }
}

impl Store for SqliteStore {
    fn record(&mut self, event: &LoginEvent, engine: &Engine) -> Result<Recorded> {
        let (conn, server, retention) = (&mut self.conn, &self.server, self.retention);
        retry_busy(self.busy_timeout, || {
            write::record_once(conn, server, retention, event, engine)
        })
        .at(&self.path)
    }

    /// One transaction for the whole batch: a drain after a full disk must not write
    /// (and fsync) a WAL frame set per login. Then the WAL is checkpointed, so the next
    /// batch reuses its space instead of growing it.
    fn record_spooled(&mut self, events: &[LoginEvent], engine: &Engine, until: Deadline) -> Batch {
        if until.passed() {
            return Batch::default();
        }
        let (conn, server, retention) = (&mut self.conn, &self.server, self.retention);
        let stored = retry_busy(self.busy_timeout, || {
            write::record_batch(conn, server, retention, events, engine)
        })
        .at(&self.path);
        match stored {
            Ok(recorded) => {
                open::checkpoint(&self.conn, open::Checkpoint::Passive);
                Batch {
                    outcomes: recorded.into_iter().map(Some).collect(),
                    stopped: None,
                }
            }
            Err(e) => Batch {
                outcomes: Vec::new(),
                stopped: Some(e),
            },
        }
    }

    fn after_drain(&mut self) {
        open::checkpoint(&self.conn, open::Checkpoint::Truncate);
    }

    fn record_batch(&mut self, events: &[LoginEvent], engine: &Engine) -> Result<BatchCounts> {
        let (conn, server, retention) = (&mut self.conn, &self.server, self.retention);
        retry_busy(self.busy_timeout, || {
            write::record_batch_once(conn, server, retention, events, engine)
        })
        .at(&self.path)
    }

    fn import(&mut self, jail: &Label, items: &mut dyn Iterator<Item = Imported>) -> Result<()> {
        // Once: the items are consumed. The busy timeout still applies to starting.
        if import::import(&mut self.conn, jail, items).at(&self.path)? {
            Ok(())
        } else {
            Err(self.broken("the backtest ended before its outcome; nothing was imported"))
        }
    }

    fn replace_queue(&mut self, scan: &QueueSnapshot, engine: &Engine) -> Result<usize> {
        let (conn, server) = (&mut self.conn, &self.server);
        retry_busy(self.busy_timeout, || {
            queue::replace(conn, server, scan, engine)
        })
        .at(&self.path)
    }

    fn deferred(&mut self, user: &SaslUser) -> Result<Option<u32>> {
        write::deferred_of(&self.conn, user).at(&self.path)
    }

    fn queue(&mut self) -> Result<(Option<Timestamp>, Vec<QueueSender>)> {
        queue::snapshot(&self.conn).at(&self.path)
    }

    fn deferred_per_account(&mut self) -> Result<BTreeMap<String, u32>> {
        queue::deferred_per_account(&self.conn).at(&self.path)
    }

    fn changed(&mut self) -> Result<Vec<(SaslUser, Vec<LevelChange>)>> {
        read::changed(&self.conn).at(&self.path)
    }

    fn activity(&mut self, since: Timestamp, until: Timestamp) -> Result<Vec<(SaslUser, Seen)>> {
        read::activity(&self.conn, since, until).at(&self.path)
    }

    fn flagged(&mut self) -> Result<Vec<Account>> {
        read::flagged(&self.conn).at(&self.path)
    }

    fn account(&mut self, user: &SaslUser) -> Result<Option<Account>> {
        read::account(&self.conn, user).at(&self.path)
    }

    fn evidence(&mut self, user: &SaslUser, window: Between) -> Result<Vec<Seen>> {
        read::evidence(&self.conn, user, window).at(&self.path)
    }

    fn known(&mut self, user: &SaslUser, scheme: &str, from: Timestamp) -> Result<KnownRows> {
        read::known(&self.conn, user, scheme, from).at(&self.path)
    }

    fn addresses(&mut self, user: &SaslUser) -> Result<Vec<AddrSummary>> {
        read::addresses(&self.conn, user).at(&self.path)
    }

    fn history(&mut self, user: &SaslUser) -> Result<Vec<LevelChange>> {
        read::history(&self.conn, user).at(&self.path)
    }

    fn change_level(&mut self, user: &SaslUser, edit: &LevelEdit) -> Result<()> {
        edit::change_level(&mut self.conn, user, edit).at(&self.path)
    }

    fn whitelist(&mut self) -> Result<Vec<WhitelistEntry>> {
        read::whitelist(&self.conn).at(&self.path)
    }

    fn whitelist_add(&mut self, entry: &WhitelistEntry) -> Result<bool> {
        edit::whitelist_add(&self.conn, entry).at(&self.path)
    }

    fn whitelist_remove(&mut self, cidr: &Cidr, user: Option<&SaslUser>) -> Result<bool> {
        edit::whitelist_remove(&self.conn, cidr, user).at(&self.path)
    }

    fn due_actions(&mut self, now: Timestamp) -> Result<Vec<QueuedAction>> {
        outbox::due_actions(&self.conn, now).at(&self.path)
    }

    fn next_pending(&mut self) -> Result<Option<Timestamp>> {
        outbox::next_pending(&self.conn).at(&self.path)
    }

    fn finish_action(&mut self, id: i64, attempt: &Attempt) -> Result<()> {
        outbox::finish_action(&self.conn, id, attempt).at(&self.path)
    }

    fn actions_of(&mut self, user: &SaslUser) -> Result<Vec<ActionRecord>> {
        outbox::actions_of(&self.conn, user).at(&self.path)
    }

    fn action_totals(&mut self) -> Result<ActionTotals> {
        outbox::action_totals(&self.conn).at(&self.path)
    }

    fn cancel_pending(&mut self, user: &SaslUser, now: Timestamp) -> Result<u64> {
        outbox::cancel_pending(&self.conn, user, now).at(&self.path)
    }

    fn prune_batch(&mut self, before: Timestamp, batch: u32) -> Result<u64> {
        write::prune(&self.conn, before, batch).at(&self.path)
    }

    fn action_counts(&mut self) -> Result<Vec<(ActionKind, ActionState, u64)>> {
        outbox::action_counts(&self.conn).at(&self.path)
    }

    fn meta(&mut self, key: &str) -> Result<Option<String>> {
        read::meta(&self.conn, key).at(&self.path)
    }

    fn check_whole(&mut self) -> Result<()> {
        match self.meta(import::UNFINISHED)? {
            None => Ok(()),
            Some(_) => Err(self.broken(
                "was left half-written by an interrupted ingest; delete it (with its -wal and -shm files) and run ingest again",
            )),
        }
    }

    /// The file and its write-ahead log.
    fn size_bytes(&mut self) -> Result<u64> {
        let size = |suffix: &str| {
            let mut p = self.path.as_os_str().to_owned();
            p.push(suffix);
            std::fs::metadata(&p).map_or(0, |m| m.len())
        };
        Ok(size("") + size("-wal"))
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        edit::set_meta(&self.conn, key, value).at(&self.path)
    }
}
