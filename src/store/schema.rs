//! Versioned schema. `PRAGMA user_version` holds the version; each migration runs once,
//! in order, inside one transaction with the version bump.

use rusqlite::{Connection, Transaction, TransactionBehavior};

mod fold_names;

/// One step of the schema: SQL, or Rust where the step needs a rule SQL does not have.
enum Migration {
    Sql(&'static str),
    Rust(fn(&Transaction) -> rusqlite::Result<()>),
}
use Migration::{Rust, Sql};

/// Migration N (1-based) brings the schema from version N-1 to N. Append only.
const MIGRATIONS: &[Migration] = &[
    // 1: logins, accounts, audit trail, whitelist.
    Sql("
    CREATE TABLE users (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL UNIQUE,
        level         TEXT NOT NULL DEFAULT 'ok',
        enforced      INTEGER NOT NULL DEFAULT 0,
        last_hit_ms   INTEGER,
        count_from_ms INTEGER NOT NULL DEFAULT 0,
        last_seen_ms  INTEGER
    );
    CREATE INDEX users_flagged ON users(level) WHERE level <> 'ok';

    CREATE TABLE events (
        id      INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        ts_ms   INTEGER NOT NULL,
        source  TEXT NOT NULL,
        ip      TEXT NOT NULL,
        jail    TEXT NOT NULL,
        fid     TEXT
    );
    -- Doubles as the idempotency key and the per-user window index.
    CREATE UNIQUE INDEX events_key ON events(user_id, ts_ms, source, ip);
    CREATE INDEX events_ts ON events(ts_ms);

    CREATE TABLE level_changes (
        id         INTEGER PRIMARY KEY,
        user_id    INTEGER NOT NULL REFERENCES users(id),
        ts_ms      INTEGER NOT NULL,
        from_level TEXT NOT NULL,
        to_level   TEXT NOT NULL,
        enforced   INTEGER NOT NULL,
        reason     TEXT NOT NULL,
        actor      TEXT NOT NULL
    );
    CREATE INDEX level_changes_user ON level_changes(user_id, id);

    CREATE TABLE whitelist (
        id       INTEGER PRIMARY KEY,
        cidr     TEXT NOT NULL,
        user     TEXT NOT NULL DEFAULT '',   -- '' = every account
        note     TEXT,
        added_ms INTEGER NOT NULL,
        UNIQUE(cidr, user)
    );

    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    "),
    // 2: the outbox. Rows are written in the same transaction as the level change that
    // decided them, so a crash can delay an action but never lose it.
    Sql("
    CREATE TABLE actions (
        id         INTEGER PRIMARY KEY,
        user_id    INTEGER NOT NULL REFERENCES users(id),
        change_id  INTEGER NOT NULL REFERENCES level_changes(id),
        kind       TEXT NOT NULL,
        level      TEXT NOT NULL,
        enforced   INTEGER NOT NULL,
        state      TEXT NOT NULL DEFAULT 'pending',  -- pending done skipped failed cancelled
        attempts   INTEGER NOT NULL DEFAULT 0,
        logged_ms  INTEGER NOT NULL,   -- log time of the login that decided it
        created_ms INTEGER NOT NULL,   -- wall clock, like the two below
        next_ms    INTEGER NOT NULL,
        updated_ms INTEGER,
        outcome    TEXT
    );
    CREATE INDEX actions_due ON actions(next_ms) WHERE state = 'pending';
    CREATE INDEX actions_user ON actions(user_id, kind, level);
    "),
    // 3: message counts (rate, bounces), the per-day baseline cache, the queue snapshot.
    Sql("
    ALTER TABLE events ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE users ADD COLUMN usual_day INTEGER;
    ALTER TABLE users ADD COLUMN usual_messages INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE users ADD COLUMN usual_networks INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE users ADD COLUMN usual_days INTEGER NOT NULL DEFAULT 0;

    -- Replaced as a whole by each queue-scan.
    CREATE TABLE queue_senders (
        queue      TEXT NOT NULL,
        sender     TEXT NOT NULL,
        messages   INTEGER NOT NULL,
        recipients INTEGER NOT NULL,
        oldest_ms  INTEGER,
        PRIMARY KEY (queue, sender)
    ) WITHOUT ROWID;
    "),
    // 4: the login key covers `count` too, so reading an account's evidence (each
    // `record`) walks the index alone instead of visiting the table for every row. A
    // Fail2ban ticket delivered twice carries the same count: still a duplicate.
    Sql("
    DROP INDEX events_key;
    CREATE UNIQUE INDEX events_key ON events(user_id, ts_ms, source, ip, count);
    "),
    // 5: account names folded to lower case (see `SaslUser`); accounts that differed
    // only in case become one.
    Rust(fold_names::merge_case_variants),
    // 6: the queue snapshot also says which SASL account submitted the mail: the
    // envelope sender alone is anyone's to write. A snapshot; the next scan refills it.
    Sql("
    DROP TABLE queue_senders;
    CREATE TABLE queue_senders (
        queue      TEXT NOT NULL,
        sender     TEXT NOT NULL,
        account    TEXT NOT NULL,   -- '' = no login (from outside, local)
        messages   INTEGER NOT NULL,
        recipients INTEGER NOT NULL,
        oldest_ms  INTEGER,
        PRIMARY KEY (queue, account, sender)
    ) WITHOUT ROWID;
    DELETE FROM meta WHERE key = 'queue_scanned_ms';
    "),
    // 7: a duplicate is a retry of the same Fail2ban call (same ticket id, time and
    // count), not any event of the same second: one message's ten bounced recipients
    // are ten calls with ten ids. Rows without an id keep the old rule (ifnull: NULLs
    // would never collide). `count` stays before the id, so the window read still
    // walks this index alone.
    Sql("
    DROP INDEX events_key;
    CREATE UNIQUE INDEX events_key ON events(user_id, ts_ms, source, ip, count, ifnull(fid, ''));
    "),
    // 8: the server that saw each login and queued each action (`server_name`), as in
    // the shared store. NULL for rows from before: not known. Not in `events_key`: a
    // retry is one call whichever server stores it.
    Sql("
    ALTER TABLE events ADD COLUMN server TEXT;
    ALTER TABLE actions ADD COLUMN server TEXT;
    "),
    // 9: account names case-folded as Postfix folds map keys (`ß` is `ss`), not only
    // lower-cased; accounts that now fold alike become one, as in 5.
    Rust(fold_names::merge_case_variants),
    // 10: an account's rows of one source newest first (rowid last, implicitly): `record`
    // reads each login source only until its counts are past every threshold. IF NOT
    // EXISTS: a database that re-runs 9 (an older spelling merge) keeps the index.
    Sql("
    CREATE INDEX IF NOT EXISTS events_source ON events(user_id, source, ts_ms);
    "),
    // 11: the parties (owners, or wider networks) each account has used, with the log
    // time each was first and last seen: what is new to an account is read from here
    // in bounded time. Written with each login, pruned with retention by last_ms.
    // Empty at first: until an account has been seen for `known_after` since, nothing
    // is new to it.
    Sql("
    CREATE TABLE IF NOT EXISTS parties (
        id       INTEGER PRIMARY KEY,
        user_id  INTEGER NOT NULL REFERENCES users(id),
        scheme   TEXT NOT NULL,   -- 'asn': with an ASN database; 'net': without
        party    TEXT NOT NULL,   -- AS64500, or a network 198.51.0.0/16
        first_ms INTEGER NOT NULL,
        last_ms  INTEGER NOT NULL,
        UNIQUE (user_id, scheme, party)
    );
    CREATE INDEX IF NOT EXISTS parties_first ON parties(user_id, scheme, first_ms);
    CREATE INDEX IF NOT EXISTS parties_last ON parties(last_ms);
    "),
    // 12: the login key and the per-source index of 10 become one index, source
    // before time: one index fewer to write per login, and `record`'s newest-first read
    // of a source finds every column it reads in it (no table row per login). Reads of
    // all sources name them (`sqlite::write::SEEN_SQL`). Same columns: same duplicates.
    Sql("
    DROP INDEX IF EXISTS events_source;
    DROP INDEX events_key;
    CREATE UNIQUE INDEX events_key ON events(user_id, source, ts_ms, ip, count, ifnull(fid, ''));
    "),
];

pub const CURRENT: i64 = MIGRATIONS.len() as i64;

/// The events index on time alone (pruning, `status` windows): rows written in time
/// order fill it at its right edge, so a bulk import keeps it instead of rebuilding it.
pub const EVENTS_BY_TIME: &str = "events_ts";

fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Brings the schema up to date. Returns an error string if the database is newer
/// than this binary (a downgrade would silently misread it).
pub fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    let v = version(conn)?;
    if v == CURRENT {
        return Ok(());
    }
    if v > CURRENT {
        return Err(MigrateError::TooNew(v));
    }
    if v == 0 {
        // Must run outside a transaction; persistent once set.
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
    }
    // IMMEDIATE: two processes opening a fresh database must not both migrate.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let v = version(&tx)?;
    for (i, step) in MIGRATIONS.iter().enumerate().skip(v as usize) {
        match step {
            Sql(sql) => tx.execute_batch(sql)?,
            Rust(run) => run(&tx)?,
        }
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
    }
    tx.commit()?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("schema version {0} is newer than this f2b-mailguard understands ({CURRENT}); upgrade the binary")]
    TooNew(i64),
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
}
