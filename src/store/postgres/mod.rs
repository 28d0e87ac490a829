//! PostgreSQL backend: one database several mail servers share, so an
//! account's logins are judged together wherever they arrive. Synchronous client,
//! one connection per process, TLS over TCP as libpq's `sslmode` has it (tls.rs).

mod cached;
mod connect;
mod error;
mod eval;
mod insert;
mod outbox;
mod pgpass;
mod queue;
mod read;
mod rows;
mod schema;
mod tls;
mod write;

use std::collections::{BTreeMap, BTreeSet};

use postgres::types::Type;
use postgres::Client;

use self::cached::{Cached, Statements};
use self::error::{PgError, R};
use self::rows::{account_parts, account_row, seen_in, ACCOUNTS_NAMED, ACCOUNT_COLS};
use super::{
    Account, ActionRecord, ActionState, ActionTotals, AddrSummary, Attempt, Batch, BatchCounts,
    Between, Imported, KnownRows, LevelChange, LevelEdit, LoginEvent, QueueSender, QueueSnapshot,
    QueuedAction, Recorded, Store,
};
use crate::config::Config;
use crate::detect::{Engine, Seen};
use crate::error::{Error, Result};
use crate::model::{
    ActionKind, Cidr, Deadline, Label, PgUrl, SaslUser, Span, Timestamp, WhitelistEntry,
};

/// The channel every level change is notified on (rows.rs, `insert_change`).
const CHANGES_CHANNEL: &str = "f2b_mailguard_changes";
/// How long `wait_change` reads and drops notifications that came together.
const DRAIN_BUDGET: std::time::Duration = std::time::Duration::from_millis(100);

pub struct PgStore {
    client: Client,
    /// `listen`'s own connection: read only while waiting, so what any role notifies
    /// during a run waits in the server, not in this process.
    listener: Option<Client>,
    url: PgUrl,
    /// This server's name, stored with its logins and actions.
    server: String,
    retention: Span,
    /// How long `record` waits on the database (connect_timeout), per statement.
    wait: std::time::Duration,
    /// The statements `client` has prepared.
    stmts: Statements,
}

impl PgStore {
    pub fn open(url: &PgUrl, cfg: &Config) -> Result<Self> {
        // This server's spool and worker lock live there, as beside a SQLite file.
        crate::files::private_dir(&cfg.local_dir())?;
        let shown = url.to_string();
        let wait = std::time::Duration::from_millis(cfg.connect_timeout.millis().max(1) as u64);
        let mut client = connect::connect(url, wait)?;
        schema::migrate(&mut client).map_err(|e| Error::SharedStore {
            url: shown.clone(),
            reason: match e {
                schema::MigrateError::Sql(e) => one_line(&e),
                other => other.to_string(),
            },
        })?;
        Ok(Self {
            client,
            listener: None,
            url: url.clone(),
            server: cfg.server_name(),
            retention: cfg.retention,
            wait,
            stmts: Statements::default(),
        })
    }

    fn err(&self, e: PgError) -> Error {
        let url = self.url.to_string();
        match e {
            PgError::Sql(e) if e.is_closed() => Error::SharedStoreUnreachable {
                url,
                reason: one_line(&e),
            },
            PgError::Sql(e) => Error::SharedStore {
                url,
                reason: one_line(&e),
            },
            PgError::Bad(reason) => Error::SharedStore { url, reason },
        }
    }

    /// Runs `f` on the client, mapping its error.
    fn with<T>(&mut self, f: impl FnOnce(&mut Client) -> R<T>) -> Result<T> {
        f(&mut self.client).map_err(|e| self.err(e))
    }

    /// As `with`, with the statements the client has prepared.
    fn cached<T>(&mut self, f: impl FnOnce(&mut Client, &mut Statements) -> R<T>) -> Result<T> {
        f(&mut self.client, &mut self.stmts).map_err(|e| self.err(e))
    }
}

/// A PostgreSQL error with the server's message and detail, on one line.
pub(super) fn one_line(e: &postgres::Error) -> String {
    let mut out = e.to_string();
    if let Some(db) = e.as_db_error() {
        out = format!("{}: {}", db.severity(), db.message());
        if let Some(detail) = db.detail() {
            out.push_str(&format!(" ({detail})"));
        }
    } else if let Some(source) = std::error::Error::source(e) {
        out.push_str(&format!(": {source}"));
    }
    out.replace(['\n', '\r'], " ")
}

impl Store for PgStore {
    fn record(&mut self, event: &LoginEvent, engine: &Engine) -> Result<Recorded> {
        let (server, retention, wait) = (self.server.clone(), self.retention, self.wait);
        let on = (server.as_str(), retention, wait);
        self.cached(|c, s| write::record(c, s, on, write::Take::Wait, event, engine))?
            .ok_or_else(|| Error::SharedStore {
                url: self.url.to_string(),
                reason: "the account's lock was not granted".into(),
            })
    }

    /// One transaction per login, as `record`: an account's lock is taken for one
    /// transaction at a time, so two servers draining never wait for each other.
    fn record_spooled(&mut self, events: &[LoginEvent], engine: &Engine, until: Deadline) -> Batch {
        let server = self.server.clone();
        let mut held = BTreeSet::new();
        let mut batch = Batch::default();
        for event in events {
            let Some(wait) = until.cap(self.wait) else {
                return batch;
            };
            if held.contains(&event.user) {
                batch.outcomes.push(None);
                continue;
            }
            let on = (server.as_str(), self.retention, wait);
            match self.cached(|c, s| write::record(c, s, on, write::Take::Try, event, engine)) {
                Ok(outcome) => {
                    if outcome.is_none() {
                        held.insert(event.user.clone());
                    }
                    batch.outcomes.push(outcome);
                }
                Err(e) => {
                    batch.stopped = Some(e);
                    return batch;
                }
            }
        }
        batch
    }

    fn record_batch(&mut self, events: &[LoginEvent], engine: &Engine) -> Result<BatchCounts> {
        self.record_batch_judged(events, engine, &mut |_| {})
    }

    fn record_batch_judged(
        &mut self,
        events: &[LoginEvent],
        engine: &Engine,
        stays_ok: &mut dyn FnMut(usize),
    ) -> Result<BatchCounts> {
        let (server, retention, wait) = (self.server.clone(), self.retention, self.wait);
        let on = (server.as_str(), retention, wait);
        self.cached(|c, s| write::record_batch(c, s, on, events, engine, stays_ok))
    }

    fn import(&mut self, _jail: &Label, _items: &mut dyn Iterator<Item = Imported>) -> Result<()> {
        Err(Error::SharedStore {
            url: self.url.to_string(),
            reason: "ingest writes a scratch SQLite database: give --db PATH".into(),
        })
    }

    fn replace_queue(&mut self, scan: &QueueSnapshot, engine: &Engine) -> Result<usize> {
        let server = self.server.clone();
        self.cached(|c, s| queue::replace_queue(c, s, &server, scan, engine))
    }

    fn deferred(&mut self, user: &SaslUser) -> Result<Option<u32>> {
        self.cached(|c, stmts| rows::deferred_of(&mut Cached { c, stmts }, user))
    }

    fn queue(&mut self) -> Result<(Option<Timestamp>, Vec<QueueSender>)> {
        self.with(read::queue)
    }

    fn deferred_per_account(&mut self) -> Result<BTreeMap<String, u32>> {
        self.with(queue::deferred_per_account)
    }

    fn changed(&mut self) -> Result<Vec<(SaslUser, Vec<LevelChange>)>> {
        let rows = self.with(read::changed)?;
        Ok(super::per_account(super::valid_names(
            "level change(s)",
            rows,
        )))
    }

    fn activity(&mut self, since: Timestamp, until: Timestamp) -> Result<Vec<(SaslUser, Seen)>> {
        let rows = self.with(|c| read::activity(c, since, until))?;
        Ok(super::valid_names("login(s)", rows))
    }

    fn flagged(&mut self) -> Result<Vec<Account>> {
        let rows = self.with(|c| {
            let sql = format!("SELECT {ACCOUNT_COLS} FROM users WHERE level <> 'ok'");
            c.query(&sql, &[])?
                .iter()
                .map(account_parts)
                .collect::<R<Vec<_>>>()
        })?;
        Ok(super::accounts_of(rows))
    }

    fn account(&mut self, user: &SaslUser) -> Result<Option<Account>> {
        self.with(|c| {
            let sql = format!("SELECT {ACCOUNT_COLS} FROM users WHERE name = $1");
            c.query_opt(&sql, &[&user.as_str()])?
                .as_ref()
                .map(account_row)
                .transpose()
        })
    }

    fn accounts(&mut self, users: &[&SaslUser]) -> Result<Vec<Account>> {
        let names: Vec<&str> = users.iter().map(|u| u.as_str()).collect();
        self.cached(|c, stmts| {
            (Cached { c, stmts }
                .query(ACCOUNTS_NAMED, &[(&names, Type::TEXT_ARRAY)])?
                .iter())
            .map(account_row)
            .collect()
        })
    }

    fn known(&mut self, user: &SaslUser, scheme: &str, from: Timestamp) -> Result<KnownRows> {
        self.cached(|c, stmts| {
            let row = c.query_opt("SELECT id FROM users WHERE name = $1", &[&user.as_str()])?;
            match row {
                Some(r) => rows::known(&mut Cached { c, stmts }, r.try_get(0)?, scheme, from),
                None => Ok(KnownRows::default()),
            }
        })
    }

    fn evidence(&mut self, user: &SaslUser, window: Between) -> Result<Vec<Seen>> {
        self.cached(|c, stmts| {
            let row = c.query_opt("SELECT id FROM users WHERE name = $1", &[&user.as_str()])?;
            match row {
                Some(r) => seen_in(&mut Cached { c, stmts }, r.try_get(0)?, window),
                None => Ok(Vec::new()),
            }
        })
    }

    fn addresses(&mut self, user: &SaslUser) -> Result<Vec<AddrSummary>> {
        self.with(|c| read::addresses(c, user))
    }

    fn history(&mut self, user: &SaslUser) -> Result<Vec<LevelChange>> {
        self.with(|c| read::history(c, user))
    }

    fn change_level(&mut self, user: &SaslUser, edit: &LevelEdit) -> Result<()> {
        self.cached(|c, s| write::change_level(c, s, user, edit))
    }

    fn whitelist(&mut self) -> Result<Vec<WhitelistEntry>> {
        let rows = self.with(read::whitelist)?;
        Ok(super::whitelist_of(rows))
    }

    fn whitelist_add(&mut self, entry: &WhitelistEntry) -> Result<bool> {
        let user = entry.user.as_ref().map_or("", |u| u.as_str());
        let cidr = entry.cidr.to_string();
        self.with(|c| {
            // xmax = 0: the row was inserted, not updated.
            let row = c.query_one(
                "INSERT INTO whitelist (cidr, account, note, added_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (cidr, account)
                 DO UPDATE SET note = coalesce(excluded.note, whitelist.note)
                 RETURNING xmax = 0",
                &[&cidr, &user, &entry.note, &entry.added.millis()],
            )?;
            Ok(row.try_get(0)?)
        })
    }

    fn whitelist_remove(&mut self, cidr: &Cidr, user: Option<&SaslUser>) -> Result<bool> {
        self.with(|c| {
            let n = c.execute(
                "DELETE FROM whitelist WHERE cidr = $1 AND account = $2",
                &[&cidr.to_string(), &user.map_or("", |u| u.as_str())],
            )?;
            Ok(n > 0)
        })
    }

    fn due_actions(&mut self, now: Timestamp) -> Result<Vec<QueuedAction>> {
        let server = self.server.clone();
        self.with(|c| outbox::due_actions(c, &server, now))
    }

    fn next_pending(&mut self) -> Result<Option<Timestamp>> {
        let server = self.server.clone();
        self.with(|c| outbox::next_pending(c, &server))
    }

    fn finish_action(&mut self, id: i64, attempt: &Attempt) -> Result<()> {
        self.with(|c| outbox::finish_action(c, id, attempt))
    }

    fn actions_of(&mut self, user: &SaslUser) -> Result<Vec<ActionRecord>> {
        self.with(|c| outbox::actions_of(c, user))
    }

    fn action_totals(&mut self) -> Result<ActionTotals> {
        self.with(outbox::action_totals)
    }

    fn action_counts(&mut self) -> Result<Vec<(ActionKind, ActionState, u64)>> {
        self.with(outbox::action_counts)
    }

    fn cancel_pending(&mut self, user: &SaslUser, now: Timestamp) -> Result<u64> {
        self.with(|c| outbox::cancel_pending(c, user, now))
    }

    fn prune_batch(&mut self, before: Timestamp, batch: u32) -> Result<u64> {
        self.with(|c| write::prune(c, before, i64::from(batch)))
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )?;
            Ok(())
        })
    }

    /// The whole shared database as PostgreSQL counts it (tables, indexes, TOAST).
    fn size_bytes(&mut self) -> Result<u64> {
        self.with(|c| {
            let bytes: i64 = c
                .query_one("SELECT pg_database_size(current_database())", &[])?
                .try_get(0)?;
            Ok(bytes.max(0) as u64)
        })
    }

    fn meta(&mut self, key: &str) -> Result<Option<String>> {
        self.with(|c| {
            let row = c.query_opt("SELECT value FROM meta WHERE key = $1", &[&key])?;
            Ok(row.map(|r| r.try_get(0)).transpose()?)
        })
    }

    /// Nothing imports into a shared store, so nothing can be left half-imported.
    fn check_whole(&mut self) -> Result<()> {
        Ok(())
    }

    fn listen(&mut self) -> Result<bool> {
        let mut listener = connect::connect(&self.url, self.wait)?;
        listener
            .batch_execute(&format!("LISTEN {CHANGES_CHANNEL}"))
            .map_err(|e| self.err(e.into()))?;
        self.listener = Some(listener);
        Ok(true)
    }

    fn wait_change(&mut self, timeout: std::time::Duration) -> Result<bool> {
        use postgres::fallible_iterator::FallibleIterator;
        let Some(listener) = self.listener.as_mut() else {
            std::thread::sleep(timeout);
            return Ok(false);
        };
        let heard = (|| {
            let mut heard = listener.notifications();
            if heard.timeout_iter(timeout).next()?.is_none() {
                return Ok(false);
            }
            // Those that came meanwhile are the same news: one run covers them. Each
            // is dropped as read; a flood that outlasts the budget is left for later.
            let until = std::time::Instant::now() + DRAIN_BUDGET;
            while std::time::Instant::now() < until && heard.iter().next()?.is_some() {}
            Ok(true)
        })();
        heard.map_err(|e: postgres::Error| self.err(e.into()))
    }
}
