//! Persistence. Every query lives behind [`Store`], so a shared backend (PostgreSQL,
//! several mail servers seeing one account's logins together) can be added beside SQLite.

mod action_rows;
mod batch;
mod evaluate;
mod fold;
mod postgres;
mod queue;
mod schema;
mod sqlite;

use std::collections::BTreeMap;

use crate::config::Config;
use crate::detect::replay::Replayed;
use crate::detect::{AccountState, Engine, Seen, Transition};
use crate::error::Result;
use crate::model::{
    ActionKind, Cidr, ClientAddr, Deadline, Label, Level, MessageCount, SaslUser, Source, Span,
    Timestamp,
};
use crate::model::{DatabaseLocation, WhitelistEntry};

pub use action_rows::{ActionRecord, ActionState, ActionTotals, QueuedAction};
pub use batch::{Batch, BatchCounts, Recorded};
pub use evaluate::KnownRows;
pub use postgres::PgStore;
use queue::grown;
pub use queue::{QueueSender, QueueSnapshot};
pub use sqlite::SqliteStore;

/// A successful login as Fail2ban reported it.
#[derive(Debug, Clone)]
pub struct LoginEvent {
    pub time: Timestamp,
    pub source: Source,
    pub user: SaslUser,
    pub addr: ClientAddr,
    pub jail: Label,
    pub fid: Option<Label>,
    pub count: MessageCount,
}

/// The jails the policy service records under: what Dovecot and Postfix told it
/// in-band, not what a Fail2ban jail read from their logs.
pub const POLICY_DOVECOT_JAIL: &str = "policy-dovecot";
pub const POLICY_POSTFIX_JAIL: &str = "policy-postfix";

impl LoginEvent {
    /// A message a Fail2ban jail read from Postfix's log while Postfix asks the policy
    /// service about every message: the service counts it at its end of data, so the
    /// jail's ticket is not stored. The store could not tell the two apart: the jail's
    /// ticket has the log line's time, the service's the end of data's.
    pub fn counted_in_band(&self, cfg: &Config) -> bool {
        self.source == Source::Rate
            && cfg.policy.counts_messages()
            && self.jail.as_str() != POLICY_POSTFIX_JAIL
    }
}

/// What a backtest hands the store, in order (see `Store::import`).
pub enum Imported {
    /// An account met for the first time. `Events` and `Outcome` number accounts in
    /// the order they were met.
    Account(SaslUser),
    /// Replayed events, each of its account's number and with its Fail2ban ticket id.
    Events(Vec<(usize, Seen, Option<Label>)>),
    /// The last item: each account's state after the replay, by number.
    Outcome(Vec<Replayed>),
}

/// Log times after `since`, up to and including `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Between {
    pub since: Timestamp,
    pub until: Timestamp,
}

/// An account with its stored state.
#[derive(Debug, Clone)]
pub struct Account {
    pub user: SaslUser,
    pub state: AccountState,
    pub last_seen: Option<Timestamp>,
}

/// One row of the audit trail.
#[derive(Debug, Clone)]
pub struct LevelChange {
    pub time: Timestamp,
    pub from: Level,
    pub to: Level,
    pub enforced: bool,
    pub reason: String,
    pub actor: String,
}

/// All logins of one account from one address and source through one server.
#[derive(Debug, Clone)]
pub struct AddrSummary {
    pub addr: ClientAddr,
    pub source: Source,
    /// The server that saw them; None for rows from before servers were stored.
    pub server: Option<String>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub count: u64,
}

pub trait Store {
    /// Stores a login and re-evaluates its account in one transaction: `decide` sees the
    /// account's logins in `window` (ending at the event) and returns its next state.
    fn record(&mut self, event: &LoginEvent, engine: &Engine) -> Result<Recorded>;

    /// Stores logins that waited (a drain of the spool), in the order given, as
    /// `record` would each, in as few transactions as the store allows. Never waits
    /// for an account another session holds: that account's logins are skipped. Tries
    /// nothing once `until` has passed.
    fn record_spooled(&mut self, events: &[LoginEvent], engine: &Engine, until: Deadline) -> Batch;

    /// After a drain: gives back the room its writes took; best effort.
    fn after_drain(&mut self) {}

    /// As `record` for each event, in order, all in one transaction: a long-lived
    /// writer (`stream`) pays one commit per batch. All or nothing.
    fn record_batch(&mut self, events: &[LoginEvent], engine: &Engine) -> Result<BatchCounts>;

    /// As `record_batch`; may call `stays_ok(i)` before the commit once event `i` was
    /// judged to leave its account at ok, where it was: its account's lock is held to
    /// the end, so the stored level is ok whether the batch commits or not.
    fn record_batch_judged(
        &mut self,
        events: &[LoginEvent],
        engine: &Engine,
        _stays_ok: &mut dyn FnMut(usize),
    ) -> Result<BatchCounts> {
        self.record_batch(events, engine)
    }

    /// Writes a backtest (`ingest`) as its replay goes, in one transaction, without
    /// fsync: only ever into a scratch database. Every event is filed under `jail`.
    /// Nothing is kept unless `items` ends with the outcome.
    fn import(&mut self, jail: &Label, items: &mut dyn Iterator<Item = Imported>) -> Result<()>;

    /// Replaces the stored queue snapshot (`queue-scan`) and re-evaluates, at `at`, every
    /// account whose deferred mail changed; returns how many actions were queued.
    fn replace_queue(&mut self, scan: &QueueSnapshot, engine: &Engine) -> Result<usize>;
    /// One account's mail in the deferred queue at the last queue scan.
    fn deferred(&mut self, user: &SaslUser) -> Result<Option<u32>>;
    /// The last queue snapshot and when it was taken, per (queue, envelope sender).
    fn queue(&mut self) -> Result<(Option<Timestamp>, Vec<QueueSender>)>;
    /// Deferred messages per account that submitted them, at the last queue scan.
    fn deferred_per_account(&mut self) -> Result<BTreeMap<String, u32>>;

    /// Every account whose level ever changed, with its history, by account name.
    fn changed(&mut self) -> Result<Vec<(SaslUser, Vec<LevelChange>)>>;

    /// Logins of every account in `(since, until]`, for the overview.
    fn activity(&mut self, since: Timestamp, until: Timestamp) -> Result<Vec<(SaslUser, Seen)>>;

    /// Accounts whose stored level is above ok.
    fn flagged(&mut self) -> Result<Vec<Account>>;

    fn account(&mut self, user: &SaslUser) -> Result<Option<Account>>;

    /// `account` of each of `users` that is stored, in one read where the store allows.
    fn accounts(&mut self, users: &[&SaslUser]) -> Result<Vec<Account>> {
        users
            .iter()
            .filter_map(|u| self.account(u).transpose())
            .collect()
    }

    /// One account's evidence in `window`.
    fn evidence(&mut self, user: &SaslUser, window: Between) -> Result<Vec<Seen>>;
    /// The account's parties of `scheme` (see `detect::Known`): its first log time,
    /// and those first seen after `from`.
    fn known(&mut self, user: &SaslUser, scheme: &str, from: Timestamp) -> Result<KnownRows>;

    /// Every stored login of one account, grouped by address, source and server.
    fn addresses(&mut self, user: &SaslUser) -> Result<Vec<AddrSummary>>;

    fn history(&mut self, user: &SaslUser) -> Result<Vec<LevelChange>>;

    /// Applies a transition decided outside `record` (quiet expiry, admin release).
    fn change_level(&mut self, user: &SaslUser, edit: &LevelEdit) -> Result<()>;

    fn whitelist(&mut self) -> Result<Vec<WhitelistEntry>>;
    /// Returns false if the entry already existed (the note is then updated).
    fn whitelist_add(&mut self, entry: &WhitelistEntry) -> Result<bool>;
    /// Returns false if there was no such entry.
    fn whitelist_remove(&mut self, cidr: &Cidr, user: Option<&SaslUser>) -> Result<bool>;

    /// Pending actions due at `now` (wall clock), oldest first.
    fn due_actions(&mut self, now: Timestamp) -> Result<Vec<QueuedAction>>;
    /// When the next pending action is due.
    fn next_pending(&mut self) -> Result<Option<Timestamp>>;
    /// Stores an attempt's outcome: `retry_at` keeps it pending until then.
    fn finish_action(&mut self, id: i64, attempt: &Attempt) -> Result<()>;
    fn actions_of(&mut self, user: &SaslUser) -> Result<Vec<ActionRecord>>;
    fn action_totals(&mut self) -> Result<ActionTotals>;
    /// How many actions there are of each kind in each state.
    fn action_counts(&mut self) -> Result<Vec<(ActionKind, ActionState, u64)>>;
    /// Cancels an account's pending actions (on release); returns how many.
    fn cancel_pending(&mut self, user: &SaslUser, now: Timestamp) -> Result<u64>;

    /// Deletes at most `batch` logins older than `before`; returns how many went.
    fn prune_batch(&mut self, before: Timestamp, batch: u32) -> Result<u64>;
    fn set_meta(&mut self, key: &str, value: &str) -> Result<()>;
    /// The database's size on disk, in bytes.
    fn size_bytes(&mut self) -> Result<u64>;
    fn meta(&mut self, key: &str) -> Result<Option<String>>;
    /// Fails if an `import` into this (scratch) database was killed half-way: what it
    /// holds cannot be trusted.
    fn check_whole(&mut self) -> Result<()>;

    /// Starts hearing every server's level changes; false: this store cannot tell
    /// (only a shared one can: a SQLite server's own `record` starts its worker).
    fn listen(&mut self) -> Result<bool> {
        Ok(false)
    }
    /// Waits at most `timeout` for level changes heard since the last call: true if
    /// any came (those waiting are taken and dropped, for a bounded time: what is
    /// left wakes the next call). Fails when the connection is lost.
    fn wait_change(&mut self, timeout: std::time::Duration) -> Result<bool> {
        std::thread::sleep(timeout);
        Ok(false)
    }
}

/// At most this many skipped names are listed (their count is always given).
const SKIPPED_NAMED: usize = 5;

/// Rows this process skipped for their account name, for commands that report on
/// the store's health (`check`) as well as on stderr.
static SKIPPED_ROWS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many stored rows this process has skipped so far because their account name
/// is not valid (see `valid_names`).
pub fn skipped_rows() -> usize {
    SKIPPED_ROWS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Rows read with their account name as stored, less those whose name is not valid
/// (a damaged row, or one a role with write access put there): each is skipped, and
/// reported on stderr with the name escaped, so that one row cannot stop the listing,
/// the check or the convergence of every other account.
fn valid_names<T>(what: &str, rows: Vec<(String, T)>) -> Vec<(SaslUser, T)> {
    let mut skipped: Vec<String> = Vec::new();
    let mut count = 0usize;
    let out = rows
        .into_iter()
        .filter_map(|(name, row)| match SaslUser::parse(&name) {
            Ok(user) => Some((user, row)),
            Err(_) => {
                count += 1;
                if !skipped.contains(&name) {
                    skipped.push(name);
                }
                None
            }
        })
        .collect();
    if count > 0 {
        SKIPPED_ROWS.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
        let named: Vec<String> = skipped
            .iter()
            .take(SKIPPED_NAMED)
            .map(|n| format!("\"{}\"", crate::model::display::shown(n)))
            .collect();
        let more = if skipped.len() > SKIPPED_NAMED {
            ", ..."
        } else {
            ""
        };
        eprintln!(
            "f2b-mailguard: skipped {count} stored {what} of {} account name(s) that are not valid: {}{more}",
            skipped.len(),
            named.join(", ")
        );
    }
    out
}

/// A due action's row but its account: id, kind, level, enforced, attempts, change.
type DueRow = (i64, ActionKind, Level, bool, u32, i64);

/// `Store::due_actions` from rows read with their account name as stored.
fn due_of(rows: Vec<(String, DueRow)>) -> Vec<QueuedAction> {
    valid_names("action(s)", rows)
        .into_iter()
        .map(
            |(user, (id, kind, level, enforced, attempts, change_id))| QueuedAction {
                id,
                user,
                kind,
                level,
                enforced,
                attempts,
                change_id,
            },
        )
        .collect()
}

/// `Store::flagged` from rows read with their account name as stored.
fn accounts_of(rows: Vec<(String, (AccountState, Option<Timestamp>))>) -> Vec<Account> {
    valid_names("account(s)", rows)
        .into_iter()
        .map(|(user, (state, last_seen))| Account {
            user,
            state,
            last_seen,
        })
        .collect()
}

/// `Store::whitelist` from entries read without their account, each with its
/// account name as stored ("" for every account, kept first as the query sorts it).
fn whitelist_of(rows: Vec<(String, WhitelistEntry)>) -> Vec<WhitelistEntry> {
    let (every, named): (Vec<_>, Vec<_>) = rows.into_iter().partition(|(n, _)| n.is_empty());
    let named = valid_names("whitelist entry(ies)", named)
        .into_iter()
        .map(|(user, entry)| WhitelistEntry {
            user: Some(user),
            ..entry
        });
    every.into_iter().map(|(_, e)| e).chain(named).collect()
}

/// Level changes in account order, gathered per account (`Store::changed`).
fn per_account(
    rows: impl IntoIterator<Item = (SaslUser, LevelChange)>,
) -> Vec<(SaslUser, Vec<LevelChange>)> {
    let mut out: Vec<(SaslUser, Vec<LevelChange>)> = Vec::new();
    for (user, change) in rows {
        match out.last_mut() {
            Some((u, changes)) if *u == user => changes.push(change),
            _ => out.push((user, vec![change])),
        }
    }
    out
}

/// A transition decided outside `record` (quiet expiry, admin release), as
/// `Store::change_level` applies it.
pub struct LevelEdit<'a> {
    pub at: Timestamp,
    pub transition: &'a Transition,
    pub actor: &'a str,
    /// Where counting restarts (a release); None keeps the account's.
    pub count_from: Option<Timestamp>,
}

/// An attempt's outcome, as `Store::finish_action` keeps it.
pub struct Attempt<'a> {
    /// When it finished (wall clock).
    pub at: Timestamp,
    pub state: ActionState,
    pub outcome: &'a str,
    /// Keeps the action pending until then.
    pub retry_at: Option<Timestamp>,
}

impl Attempt<'_> {
    /// The row's next state and due time: an action to retry stays pending.
    fn next(&self) -> (ActionState, Timestamp) {
        match self.retry_at {
            Some(t) => (ActionState::Pending, t),
            None => (self.state, self.at),
        }
    }
}

/// Opens the configured store, creating and migrating it as needed.
pub fn open(cfg: &Config) -> Result<Box<dyn Store>> {
    open_waiting(cfg, cfg.busy_timeout)
}

/// As `open`, for `record`: a SQLite database another program holds is waited for
/// `record_wait` only (a shared store's waits are `connect_timeout` either way).
pub fn open_for_record(cfg: &Config) -> Result<Box<dyn Store>> {
    open_waiting(cfg, cfg.record_wait)
}

fn open_waiting(cfg: &Config, busy: Span) -> Result<Box<dyn Store>> {
    match &cfg.database {
        DatabaseLocation::Sqlite(path) => Ok(Box::new(SqliteStore::open(path, cfg, busy)?)),
        DatabaseLocation::Postgres(url) => Ok(Box::new(PgStore::open(url, cfg)?)),
    }
}
