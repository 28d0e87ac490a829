//! The hot path's transaction (store a login, evaluate, queue actions) and the
//! writes it shares with the rest of the store.

use rusqlite::{params, Connection, TransactionBehavior};

use super::account::prefetch;
use crate::detect::Engine;
use crate::model::{SaslUser, Span, Timestamp};
use crate::store::evaluate::{auto_prune_before, AUTO_PRUNE_BATCH, PARTY_LAST_STEP};
use crate::store::{BatchCounts, LoginEvent, Recorded};

pub(super) const PRUNE_EVENTS_SQL: &str = "DELETE FROM events WHERE id IN
     (SELECT id FROM events WHERE ts_ms < ?1 ORDER BY ts_ms LIMIT ?2)";

/// Deletes up to `batch` logins and up to `batch` parties last seen before `before`;
/// returns how many logins went (the parties follow their logins batch by batch).
pub(super) fn prune(tx: &Connection, before: Timestamp, batch: u32) -> rusqlite::Result<u64> {
    let n = tx
        .prepare_cached(PRUNE_EVENTS_SQL)?
        .execute(params![before, batch])?;
    tx.prepare_cached(
        "DELETE FROM parties WHERE id IN
               (SELECT id FROM parties WHERE last_ms < ?1 ORDER BY last_ms LIMIT ?2)",
    )?
    .execute(params![before, batch])?;
    Ok(n as u64)
}

/// Stores that the account `user_id` used `party` at `at` (see `detect::Known`).
/// A known party's row is rewritten only when its first use moves or its last use by
/// more than `PARTY_LAST_STEP`: `last_ms` only decides when pruning drops it, and
/// most logins come from a party the account already uses.
pub(super) fn see_party(
    tx: &Connection,
    user_id: i64,
    scheme: &str,
    party: &str,
    at: Timestamp,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO parties (user_id, scheme, party, first_ms, last_ms) VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT(user_id, scheme, party) DO UPDATE
           SET first_ms = min(first_ms, excluded.first_ms), last_ms = max(last_ms, excluded.last_ms)
           WHERE excluded.first_ms < parties.first_ms OR excluded.last_ms > parties.last_ms + ?5",
    )?
    .execute(params![user_id, scheme, party, at, PARTY_LAST_STEP.millis()])?;
    Ok(())
}

/// One attempt at storing a login and re-evaluating its account; see `Store::record`.
pub(super) fn record_once(
    conn: &mut Connection,
    server: &str,
    retention: Span,
    event: &LoginEvent,
    engine: &Engine,
) -> rusqlite::Result<Recorded> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let recorded = record_in(&tx, server, Some(retention), event, engine)?;
    tx.commit()?;
    Ok(recorded)
}

/// Stores `events` in order in one transaction; see `Store::record_spooled`.
pub(super) fn record_batch(
    conn: &mut Connection,
    server: &str,
    retention: Span,
    events: &[LoginEvent],
    engine: &Engine,
) -> rusqlite::Result<Vec<Recorded>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let recorded = events
        .iter()
        .map(|e| record_in(&tx, server, Some(retention), e, engine))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    tx.commit()?;
    Ok(recorded)
}

/// One attempt at storing several logins in one transaction, in counts; see
/// `Store::record_batch`.
pub(super) fn record_batch_once(
    conn: &mut Connection,
    server: &str,
    retention: Span,
    events: &[LoginEvent],
    engine: &Engine,
) -> rusqlite::Result<BatchCounts> {
    let mut batch = BatchCounts::default();
    for recorded in record_batch(conn, server, retention, events, engine)? {
        batch.add(recorded);
    }
    Ok(batch)
}

/// Stores a login seen by `server` and re-evaluates its account inside the caller's
/// transaction; `retention` applies the automatic pruning now and then.
fn record_in(
    tx: &Connection,
    server: &str,
    retention: Option<Span>,
    event: &LoginEvent,
    engine: &Engine,
) -> rusqlite::Result<Recorded> {
    let at = event.time;
    // Upsert, then read: RETURNING would make SQLite build a temporary table per call.
    tx.prepare_cached(
        "INSERT INTO users (name, last_seen_ms) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET last_seen_ms = max(coalesce(last_seen_ms, 0), excluded.last_seen_ms)",
    )?
    .execute(params![event.user, at])?;
    let mut account = prefetch(tx, event.user.as_str(), engine.party_scheme())?
        .ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO events (user_id, ts_ms, source, ip, jail, fid, count, server)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            account.stored.id,
            at,
            event.source,
            event.addr,
            event.jail.as_str(),
            event.fid.as_ref().map(|f| f.as_str()),
            event.count.get(),
            server,
        ])?;
    if inserted == 0 {
        return Ok(Recorded {
            duplicate: true,
            queued: 0,
        });
    }
    let event_id = tx.last_insert_rowid();
    let whitelist = engine.whitelist(&event.user, &account.whitelist);
    if let Some(party) = engine.origin(&whitelist, event.addr).party {
        let party = party.to_string();
        see_party(tx, account.stored.id, engine.party_scheme(), &party, at)?;
        account.saw_party_at(at);
    }
    let queued = super::eval::evaluate_in(tx, server, &event.user, account, at, engine)?;
    if let Some(before) = retention.and_then(|r| auto_prune_before(event_id, r)) {
        prune(tx, before, AUTO_PRUNE_BATCH)?;
    }
    Ok(Recorded {
        duplicate: false,
        queued,
    })
}

/// An account's mail in the deferred queue (as its submitter) at the last queue scan:
/// evidence like its logins, read where they are.
pub(super) fn deferred_of(conn: &Connection, user: &SaslUser) -> rusqlite::Result<Option<u32>> {
    conn.prepare_cached(
        "SELECT SUM(messages) FROM queue_senders WHERE queue = 'deferred' AND account = ?1",
    )?
    .query_row([user], |r| r.get(0))
}
