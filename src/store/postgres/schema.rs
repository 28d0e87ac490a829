//! Versioned schema of the shared store. `mailguard_schema` holds the version; the
//! migrations run once, in order, in one transaction under an advisory lock, so two
//! servers opening a fresh database at once do not both create it.
//!
//! The tables mirror SQLite's (see src/store/schema.rs) with times in milliseconds,
//! plus the server that saw each login and queued each action. Text that is sorted
//! for output is `COLLATE "C"`, so both backends list in byte order.

use postgres::Transaction;

mod fold_names;

/// One step of the schema: SQL, or Rust where the step needs a rule SQL does not have.
enum Migration {
    Sql(&'static str),
    Rust(fn(&mut Transaction) -> Result<(), postgres::Error>),
}
use Migration::{Rust, Sql};

/// Migration N (1-based) brings the schema from version N-1 to N. Append only.
const MIGRATIONS: &[Migration] = &[
    // 1: everything SQLite has at its version 8 (the servers included).
    Sql(r#"
    CREATE TABLE users (
        id             BIGSERIAL PRIMARY KEY,
        name           TEXT COLLATE "C" NOT NULL UNIQUE,
        level          TEXT NOT NULL DEFAULT 'ok',
        enforced       BOOLEAN NOT NULL DEFAULT false,
        last_hit_ms    BIGINT,
        count_from_ms  BIGINT NOT NULL DEFAULT 0,
        last_seen_ms   BIGINT,
        usual_day      BIGINT,
        usual_messages BIGINT NOT NULL DEFAULT 0,
        usual_networks BIGINT NOT NULL DEFAULT 0,
        usual_days     BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX users_flagged ON users(level) WHERE level <> 'ok';

    CREATE TABLE events (
        id      BIGSERIAL PRIMARY KEY,
        user_id BIGINT NOT NULL REFERENCES users(id),
        ts_ms   BIGINT NOT NULL,
        source  TEXT NOT NULL,
        ip      TEXT COLLATE "C" NOT NULL,
        jail    TEXT NOT NULL,
        fid     TEXT,
        count   BIGINT NOT NULL DEFAULT 1,
        server  TEXT COLLATE "C" NOT NULL
    );
    -- The idempotency key (a retry of one Fail2ban call: same ticket, time and
    -- count) and the per-account window index, as in SQLite. The server is not part
    -- of it: one call is stored once, whichever server forwards it.
    CREATE UNIQUE INDEX events_key
        ON events(user_id, ts_ms, source, ip, count, coalesce(fid, ''));
    CREATE INDEX events_ts ON events(ts_ms);

    CREATE TABLE level_changes (
        id         BIGSERIAL PRIMARY KEY,
        user_id    BIGINT NOT NULL REFERENCES users(id),
        ts_ms      BIGINT NOT NULL,
        from_level TEXT NOT NULL,
        to_level   TEXT NOT NULL,
        enforced   BOOLEAN NOT NULL,
        reason     TEXT NOT NULL,
        actor      TEXT NOT NULL
    );
    CREATE INDEX level_changes_user ON level_changes(user_id, id);

    CREATE TABLE whitelist (
        id       BIGSERIAL PRIMARY KEY,
        cidr     TEXT COLLATE "C" NOT NULL,
        account  TEXT COLLATE "C" NOT NULL DEFAULT '',   -- '' = every account
        note     TEXT,
        added_ms BIGINT NOT NULL,
        UNIQUE (cidr, account)
    );

    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );

    CREATE TABLE actions (
        id         BIGSERIAL PRIMARY KEY,
        user_id    BIGINT NOT NULL REFERENCES users(id),
        change_id  BIGINT NOT NULL REFERENCES level_changes(id),
        kind       TEXT NOT NULL,
        level      TEXT NOT NULL,
        enforced   BOOLEAN NOT NULL,
        state      TEXT NOT NULL DEFAULT 'pending',
        attempts   BIGINT NOT NULL DEFAULT 0,
        logged_ms  BIGINT NOT NULL,
        created_ms BIGINT NOT NULL,
        next_ms    BIGINT NOT NULL,
        updated_ms BIGINT,
        outcome    TEXT,
        server     TEXT COLLATE "C" NOT NULL
    );
    CREATE INDEX actions_due ON actions(server, next_ms) WHERE state = 'pending';
    CREATE INDEX actions_user ON actions(user_id, kind, level);

    -- Each server's own queue; a scan replaces that server's rows only.
    CREATE TABLE queue_senders (
        server     TEXT COLLATE "C" NOT NULL,
        queue      TEXT COLLATE "C" NOT NULL,
        sender     TEXT COLLATE "C" NOT NULL,
        account    TEXT COLLATE "C" NOT NULL,
        messages   BIGINT NOT NULL,
        recipients BIGINT NOT NULL,
        oldest_ms  BIGINT,
        PRIMARY KEY (server, queue, account, sender)
    );
    CREATE INDEX queue_senders_account ON queue_senders(account) WHERE queue = 'deferred';
    "#),
    // 2: an account's rows of one source newest first: `record` reads each login
    // source only until its counts are past every threshold.
    Sql(r#"
    CREATE INDEX IF NOT EXISTS events_source ON events(user_id, source, ts_ms, id);
    "#),
    // 3: the parties (owners, or wider networks) each account has used, first and
    // last seen (see the SQLite schema's migration 11).
    Sql(r#"
    CREATE TABLE IF NOT EXISTS parties (
        id       BIGSERIAL PRIMARY KEY,
        user_id  BIGINT NOT NULL REFERENCES users(id),
        scheme   TEXT COLLATE "C" NOT NULL,
        party    TEXT COLLATE "C" NOT NULL,
        first_ms BIGINT NOT NULL,
        last_ms  BIGINT NOT NULL,
        UNIQUE (user_id, scheme, party)
    );
    CREATE INDEX IF NOT EXISTS parties_first ON parties(user_id, scheme, first_ms);
    CREATE INDEX IF NOT EXISTS parties_last ON parties(last_ms);
    "#),
    // 4: account names case-folded as Postfix folds map keys (`ß` is `ss`), not only
    // lower-cased; accounts that now fold alike become one (SQLite's migration 9).
    Rust(fold_names::merge_case_variants),
];

pub const CURRENT: i64 = MIGRATIONS.len() as i64;

/// Any fixed number: the advisory lock key migrations take.
const MIGRATION_LOCK: i64 = 0x6632_626d_6967_7261;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("schema version {0} is newer than this f2b-mailguard understands ({CURRENT}); upgrade the binary on every server")]
    TooNew(i64),
    #[error(transparent)]
    Sql(#[from] postgres::Error),
}

/// Brings the schema up to date; a no-op (one query) when it is.
pub fn migrate(client: &mut postgres::Client) -> Result<(), MigrateError> {
    if version(client)? == Some(CURRENT) {
        return Ok(());
    }
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS mailguard_schema (version BIGINT NOT NULL)")?;
    let v = current(&mut tx)?;
    if v > CURRENT {
        return Err(MigrateError::TooNew(v));
    }
    for step in MIGRATIONS.iter().skip(v as usize) {
        match step {
            Sql(sql) => tx.batch_execute(sql)?,
            Rust(run) => run(&mut tx)?,
        }
    }
    tx.execute("DELETE FROM mailguard_schema", &[])?;
    tx.execute("INSERT INTO mailguard_schema VALUES ($1)", &[&CURRENT])?;
    tx.commit()?;
    Ok(())
}

/// The version, or None before the first migration. One round trip (the simple
/// protocol, no statement to prepare): every `record` opens the store.
fn version(client: &mut postgres::Client) -> Result<Option<i64>, postgres::Error> {
    match client.simple_query("SELECT max(version) FROM mailguard_schema") {
        Ok(messages) => Ok(messages.iter().find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse().ok()),
            _ => None,
        })),
        Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) => Ok(None),
        Err(e) => Err(e),
    }
}

fn current(tx: &mut Transaction) -> Result<i64, postgres::Error> {
    let v: Option<i64> = tx
        .query_one("SELECT max(version) FROM mailguard_schema", &[])?
        .get(0);
    Ok(v.unwrap_or(0))
}
