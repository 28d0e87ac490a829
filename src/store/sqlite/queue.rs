//! The Postfix queue snapshot that `queue-scan` keeps, and the re-evaluation of the
//! accounts whose deferred mail grew.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::account::prefetch;
use super::eval::evaluate_in;
use super::rows::from_columns;
use crate::detect::Engine;
use crate::model::Timestamp;
use crate::store::{grown, QueueSender, QueueSnapshot};

const SCANNED_KEY: &str = "queue_scanned_ms";

pub(super) fn replace(
    conn: &mut Connection,
    server: &str,
    scan: &QueueSnapshot,
    engine: &Engine,
) -> rusqlite::Result<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let before = deferred_per_account(&tx)?;
    tx.execute("DELETE FROM queue_senders", [])?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO queue_senders (queue, sender, account, messages, recipients, oldest_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for s in scan.senders {
            insert.execute(params![
                s.queue,
                s.sender,
                s.account,
                s.messages,
                s.recipients,
                s.oldest
            ])?;
        }
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![SCANNED_KEY, scan.at.millis().to_string()],
    )?;
    let mut queued = 0;
    for user in grown(&before, scan.deferred_per_account()) {
        if let Some(account) = prefetch(&tx, user.as_str(), engine.party_scheme())? {
            queued += evaluate_in(&tx, server, &user, account, scan.at, engine)?;
        }
    }
    tx.commit()?;
    Ok(queued)
}

/// Deferred messages per submitting account at the last scan.
pub(super) fn deferred_per_account(conn: &Connection) -> rusqlite::Result<BTreeMap<String, u32>> {
    let mut stmt = conn.prepare(
        "SELECT account, SUM(messages) FROM queue_senders
         WHERE queue = 'deferred' AND account <> '' GROUP BY account",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

pub(super) fn snapshot(
    conn: &Connection,
) -> rusqlite::Result<(Option<Timestamp>, Vec<QueueSender>)> {
    let scanned: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            [SCANNED_KEY],
            |r| r.get(0),
        )
        .optional()?;
    let scanned = scanned
        .and_then(|v| v.parse::<i64>().ok())
        .map(Timestamp::from_millis);
    // The admin's view is per envelope sender, whoever submitted the mail.
    let mut stmt = conn.prepare(
        "SELECT queue, sender, SUM(messages) AS n, SUM(recipients), MIN(oldest_ms)
         FROM queue_senders GROUP BY queue, sender
         ORDER BY queue, n DESC, sender",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(from_columns!(r, 0 => QueueSender {
            queue, sender, messages, recipients, oldest; account: String::new()
        }))
    })?;
    Ok((scanned, rows.collect::<rusqlite::Result<_>>()?))
}
