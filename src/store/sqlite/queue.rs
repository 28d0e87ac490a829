//! The Postfix queue snapshot that `queue-scan` keeps, and the re-evaluation of the
//! accounts whose deferred mail grew.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::write::{evaluate_in, stored_account};
use crate::model::{LogTime, SaslUser};
use crate::store::{Detector, QueueSender};

const SCANNED_KEY: &str = "queue_scanned_ms";

pub(super) fn replace(
    conn: &mut Connection,
    at: LogTime,
    senders: &[QueueSender],
    detector: &dyn Detector,
) -> rusqlite::Result<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let before: BTreeMap<String, u32> = {
        let mut stmt =
            tx.prepare("SELECT sender, messages FROM queue_senders WHERE queue = 'deferred'")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    tx.execute("DELETE FROM queue_senders", [])?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO queue_senders (queue, sender, messages, recipients, oldest_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for s in senders {
            insert.execute(params![
                s.queue,
                s.sender,
                s.messages,
                s.recipients,
                s.oldest.map(LogTime::millis)
            ])?;
        }
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![SCANNED_KEY, at.millis().to_string()],
    )?;
    // Levels only rise, so only a grown deferred count can change one. Senders that
    // are not accounts we know (local scripts, the null sender) are listed, not judged.
    let mut queued = 0;
    for s in senders.iter().filter(|s| s.queue == "deferred") {
        if s.messages <= before.get(&s.sender).copied().unwrap_or(0) {
            continue;
        }
        let Ok(user) = SaslUser::parse(&s.sender) else {
            continue;
        };
        if let Some(account) = stored_account(&tx, user.as_str())? {
            queued += evaluate_in(&tx, &user, &account, at, detector)?;
        }
    }
    tx.commit()?;
    Ok(queued)
}

/// An account's mail in the deferred queue at the last scan.
pub(super) fn deferred_of(conn: &Connection, user: &SaslUser) -> rusqlite::Result<Option<u32>> {
    conn.prepare_cached(
        "SELECT messages FROM queue_senders WHERE queue = 'deferred' AND sender = ?1",
    )?
    .query_row([user.as_str()], |r| r.get(0))
    .optional()
}

pub(super) fn snapshot(conn: &Connection) -> rusqlite::Result<(Option<LogTime>, Vec<QueueSender>)> {
    let scanned: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            [SCANNED_KEY],
            |r| r.get(0),
        )
        .optional()?;
    let scanned = scanned
        .and_then(|v| v.parse::<i64>().ok())
        .map(LogTime::from_millis);
    let mut stmt = conn.prepare(
        "SELECT queue, sender, messages, recipients, oldest_ms FROM queue_senders
         ORDER BY queue, messages DESC, sender",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(QueueSender {
            queue: r.get(0)?,
            sender: r.get(1)?,
            messages: r.get(2)?,
            recipients: r.get(3)?,
            oldest: r.get::<_, Option<i64>>(4)?.map(LogTime::from_millis),
        })
    })?;
    Ok((scanned, rows.collect::<rusqlite::Result<_>>()?))
}
