//! The Postfix queue snapshot that `queue-scan` keeps, and the re-evaluation of the
//! accounts whose deferred mail grew.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::write::{evaluate_in, stored_account};
use crate::detect::Engine;
use crate::model::{LogTime, SaslUser};
use crate::store::QueueSender;

const SCANNED_KEY: &str = "queue_scanned_ms";

pub(super) fn replace(
    conn: &mut Connection,
    server: &str,
    at: LogTime,
    senders: &[QueueSender],
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
        for s in senders {
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
        params![SCANNED_KEY, at.millis().to_string()],
    )?;
    // Levels only rise, so only a grown deferred count can change one. Only mail an
    // account submitted itself counts: a stranger can put any address in MAIL FROM on
    // port 25. Senders without a login (local scripts, the null sender, forgeries)
    // are listed, not judged.
    let mut now: BTreeMap<&str, u32> = BTreeMap::new();
    for s in senders
        .iter()
        .filter(|s| s.queue == "deferred" && !s.account.is_empty())
    {
        let n = now.entry(s.account.as_str()).or_default();
        *n = n.saturating_add(s.messages);
    }
    let mut queued = 0;
    for (account, messages) in now {
        if messages <= before.get(account).copied().unwrap_or(0) {
            continue;
        }
        let Ok(user) = SaslUser::parse(account) else {
            continue;
        };
        if let Some(account) = stored_account(&tx, user.as_str())? {
            queued += evaluate_in(&tx, server, &user, &account, at, engine)?;
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
    // The admin's view is per envelope sender, whoever submitted the mail.
    let mut stmt = conn.prepare(
        "SELECT queue, sender, SUM(messages) AS n, SUM(recipients), MIN(oldest_ms)
         FROM queue_senders GROUP BY queue, sender
         ORDER BY queue, n DESC, sender",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(QueueSender {
            queue: r.get(0)?,
            sender: r.get(1)?,
            account: String::new(),
            messages: r.get(2)?,
            recipients: r.get(3)?,
            oldest: r.get(4)?,
        })
    })?;
    Ok((scanned, rows.collect::<rusqlite::Result<_>>()?))
}
