//! The shared store's queue snapshot: each server replaces its own part at its
//! `queue-scan`, and the accounts whose deferred mail grew over all servers are judged.

use std::collections::BTreeMap;

use postgres::{Client, GenericClient};

use super::cached::{Cached, Statements};
use super::error::R;
use super::eval::PgRows;
use super::insert::Whitelists;
use super::rows::{deferred_of, stored_account, u32_of};
use super::write::lock_account;
use crate::detect::Engine;
use crate::model::Timestamp;
use crate::store::evaluate::{evaluate, Given};
use crate::store::{grown, QueueSnapshot};

const QUEUE_SCANNED_KEY: &str = "queue_scanned_ms";

/// Deferred messages per submitting account, over every server's last scan.
pub(super) fn deferred_per_account(c: &mut impl GenericClient) -> R<BTreeMap<String, u32>> {
    let rows = c.query(
        "SELECT account, sum(messages)::BIGINT FROM queue_senders
         WHERE queue = 'deferred' AND account <> '' GROUP BY account",
        &[],
    )?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, u32_of(r.try_get(1)?)?)))
        .collect()
}

/// Replaces this server's part of the queue snapshot and re-evaluates each account
/// whose deferred mail (over all servers) grew; see `Store::replace_queue`.
pub(super) fn replace_queue(
    client: &mut Client,
    stmts: &mut Statements,
    server: &str,
    scan: &QueueSnapshot,
    engine: &Engine,
) -> R<usize> {
    let at = scan.at;
    let mut tx = client.transaction()?;
    let before = deferred_per_account(&mut tx)?;
    tx.execute("DELETE FROM queue_senders WHERE server = $1", &[&server])?;
    let insert = tx.prepare(
        "INSERT INTO queue_senders (server, queue, sender, account, messages, recipients, oldest_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )?;
    for s in scan.senders {
        tx.execute(
            &insert,
            &[
                &server,
                &s.queue,
                &s.sender,
                &s.account,
                &i64::from(s.messages),
                &i64::from(s.recipients),
                &s.oldest.map(Timestamp::millis),
            ],
        )?;
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&QUEUE_SCANNED_KEY, &at.millis().to_string()],
    )?;
    // As on SQLite: only a grown count of mail an account submitted itself can raise
    // it. Accounts in name order, so two scans lock them in the same order.
    let now = deferred_per_account(&mut tx)?;
    let mut queued = 0;
    for user in grown(&before, now.iter().map(|(a, n)| (a.as_str(), *n))) {
        lock_account(&mut tx, &user)?;
        let mut c = Cached {
            c: &mut tx,
            stmts: &mut *stmts,
        };
        if let Some(stored) = stored_account(&mut c, user.as_str())? {
            let given = Given {
                whitelist: Whitelists::read(&mut c, [&user])?.of(&user),
                deferred: deferred_of(&mut c, &user)?,
            };
            let mut rows = PgRows {
                tx: &mut c,
                server,
                known: None,
                set: None,
            };
            queued += evaluate(&mut rows, &user, &stored, &given, at, engine)?;
        }
    }
    tx.commit()?;
    Ok(queued)
}

pub(super) fn queue_scanned(c: &mut impl GenericClient) -> R<Option<Timestamp>> {
    let row = c.query_opt(
        "SELECT value FROM meta WHERE key = $1",
        &[&QUEUE_SCANNED_KEY],
    )?;
    let raw: Option<String> = row.map(|r| r.try_get(0)).transpose()?;
    Ok(raw.and_then(|v| v.parse().ok()).map(Timestamp::from_millis))
}
