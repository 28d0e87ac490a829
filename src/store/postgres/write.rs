//! The shared store's writes: `record`'s transaction, admin level changes, the queue
//! snapshot. Whatever re-evaluates an account first takes that account's advisory
//! lock, so servers recording its logins at once are serialised per account: each
//! evaluation sees every login committed before it, none decides twice.

use std::collections::BTreeMap;
use std::time::Duration;

use postgres::types::Type;
use postgres::{Client, GenericClient, Transaction};
use sha2::{Digest, Sha256};

pub(super) use super::rows::known;
use super::rows::{cidr_of, insert_change, stored_account, stored_row, u32_of, Ahead, PgRows, R};
use super::rows::{DEFERRED_SQL, STORED_COLS, WHITELIST_SQL};
use crate::detect::Engine;
use crate::model::{SaslUser, Span, Timestamp};
use crate::store::evaluate::{auto_prune_before, evaluate, NewChange, AUTO_PRUNE_BATCH};
use crate::store::{grown, BatchCounts, LevelEdit, LoginEvent, QueueSnapshot, Recorded};

const QUEUE_SCANNED_KEY: &str = "queue_scanned_ms";

/// The advisory lock key of an account: the first 8 bytes of a SHA-256 of its name,
/// the same on every server and release (PostgreSQL's own hashtext is not promised
/// to stay). A collision only makes two accounts wait for each other.
fn account_key(user: &SaslUser) -> i64 {
    let digest = Sha256::digest(format!("f2b-mailguard account {}", user.as_str()));
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// Waits, inside `tx`, until no other transaction evaluates `user`.
fn lock_account(tx: &mut Transaction, user: &SaslUser) -> R<()> {
    tx.execute_typed(
        "SELECT pg_advisory_xact_lock($1)",
        &[(&account_key(user), Type::INT8)],
    )?;
    Ok(())
}

/// How `record` takes its account's lock.
#[derive(Clone, Copy)]
pub(super) enum Take {
    /// Waits (bounded) while another session holds it: a live login.
    Wait,
    /// Gives up at once: a spooled login, which must not hold up the rest of the spool
    /// behind an account that anyone able to connect can keep locked.
    Try,
}

/// Bounds, for this transaction, what the server lets it wait: a lock another
/// session holds (another server's evaluation, an admin's), any one statement, and
/// itself idle, so a `record` gone quiet does not keep the account's lock from the
/// others. On a timeout the statement fails and `record` spools the login. Then
/// takes the locks of `users`, in key order, in the same round trip (the simple
/// protocol; every value is a number this process made): false if `Take::Try` found
/// one held. One order for every transaction, so two never wait on each other in a
/// cycle. The statements after it see what committed before the locks were granted.
fn bound_and_lock<'u>(
    tx: &mut Transaction,
    wait: Duration,
    users: impl IntoIterator<Item = &'u SaslUser>,
    take: Take,
) -> R<bool> {
    let ms = wait.as_millis().max(1);
    let lock = match take {
        Take::Wait => "pg_advisory_xact_lock",
        Take::Try => "pg_try_advisory_xact_lock",
    };
    let mut keys: Vec<i64> = users.into_iter().map(account_key).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut sql = format!(
        "SET LOCAL lock_timeout = {ms}; SET LOCAL statement_timeout = {ms};
         SET LOCAL idle_in_transaction_session_timeout = {ms};"
    );
    for key in keys {
        sql.push_str(&format!(" SELECT {lock}({key});"));
    }
    let replies = tx.simple_query(&sql)?;
    // A wait's reply is empty (void), a try's "t" or "f".
    let refused = replies.iter().any(|m| match m {
        postgres::SimpleQueryMessage::Row(r) => r.get(0) == Some("f"),
        _ => false,
    });
    Ok(!refused)
}

/// `record`'s first statement, under the account's lock: the account row upserted
/// (its state as it is now, whatever snapshot the statement started with: the
/// upsert reads the latest row), the login inserted unless a retry already stored
/// it (`event_id` NULL), and the account's whitelist and deferred mail for the
/// evaluation. One round trip instead of five.
fn record_sql() -> String {
    format!(
        "WITH u AS (
           INSERT INTO users (name, last_seen_ms) VALUES ($1, $2)
           ON CONFLICT (name) DO UPDATE
           SET last_seen_ms = greatest(coalesce(users.last_seen_ms, 0), excluded.last_seen_ms)
           RETURNING {STORED_COLS}),
         e AS (
           INSERT INTO events (user_id, ts_ms, source, ip, jail, fid, count, server)
           SELECT id, $2, $3, $4, $5, $6, $7, $8 FROM u
           ON CONFLICT DO NOTHING RETURNING id)
         SELECT u.*, (SELECT id FROM e) AS event_id,
                ARRAY({WHITELIST_SQL}) AS whitelist,
                ({DEFERRED_SQL}) AS deferred
         FROM u"
    )
}

/// Stores a login and re-evaluates its account; None: `Take::Try` found the account
/// held by another session (nothing was written).
pub(super) fn record(
    client: &mut Client,
    (server, retention, wait): (&str, Span, Duration),
    take: Take,
    event: &LoginEvent,
    engine: &Engine,
) -> R<Option<Recorded>> {
    let mut tx = client.transaction()?;
    if !bound_and_lock(&mut tx, wait, [&event.user], take)? {
        return Ok(None);
    }
    let recorded = record_in(&mut tx, server, retention, event, engine)?;
    tx.commit()?;
    Ok(Some(recorded))
}

/// Several logins in one transaction (`Store::record_batch`), every account of the
/// batch locked first, in one round trip.
pub(super) fn record_batch(
    client: &mut Client,
    server: &str,
    retention: Span,
    wait: Duration,
    events: &[LoginEvent],
    engine: &Engine,
) -> R<BatchCounts> {
    let mut tx = client.transaction()?;
    bound_and_lock(&mut tx, wait, events.iter().map(|e| &e.user), Take::Wait)?;
    let mut batch = BatchCounts::default();
    for event in events {
        batch.add(record_in(&mut tx, server, retention, event, engine)?);
    }
    tx.commit()?;
    Ok(batch)
}

/// One login inside the caller's transaction, which holds its account's lock.
fn record_in(
    tx: &mut Transaction,
    server: &str,
    retention: Span,
    event: &LoginEvent,
    engine: &Engine,
) -> R<Recorded> {
    let at = event.time;
    let row = tx.query_typed_one(
        &record_sql(),
        &[
            (&event.user.as_str(), Type::TEXT),
            (&at.millis(), Type::INT8),
            (&event.source.as_str(), Type::TEXT),
            (&event.addr.to_string(), Type::TEXT),
            (&event.jail.as_str(), Type::TEXT),
            (&event.fid.as_ref().map(|f| f.as_str()), Type::TEXT),
            (&i64::from(event.count.get()), Type::INT8),
            (&server, Type::TEXT),
        ],
    )?;
    let Some(event_id) = row.try_get::<_, Option<i64>>("event_id")? else {
        // Nothing changed (the users upsert only raised last_seen to a time it had).
        return Ok(Recorded {
            duplicate: true,
            queued: 0,
        });
    };
    let account = stored_row(&row)?;
    let whitelist = row
        .try_get::<_, Vec<String>>("whitelist")?
        .iter()
        .map(|c| cidr_of(c))
        .collect::<R<Vec<_>>>()?;
    let deferred = row
        .try_get::<_, Option<i64>>("deferred")?
        .map(u32_of)
        .transpose()?;
    if let Some(party) = engine
        .origin(&engine.whitelist(&event.user, &whitelist), event.addr)
        .party
    {
        see_party(
            &mut *tx,
            account.id,
            engine.party_scheme(),
            &party.to_string(),
            at,
        )?;
    }
    let queued = evaluate(
        &mut PgRows {
            tx,
            server,
            ahead: Some(Ahead {
                user: event.user.clone(),
                whitelist,
                deferred,
            }),
        },
        &event.user,
        &account,
        at,
        engine,
    )?;
    if let Some(before) = auto_prune_before(event_id, retention) {
        prune(tx, before, i64::from(AUTO_PRUNE_BATCH))?;
    }
    Ok(Recorded {
        duplicate: false,
        queued,
    })
}

pub(super) fn change_level(client: &mut Client, user: &SaslUser, edit: &LevelEdit) -> R<()> {
    let t = edit.transition;
    let mut tx = client.transaction()?;
    lock_account(&mut tx, user)?;
    let id: i64 = tx
        .query_one(
            "INSERT INTO users (name) VALUES ($1)
             ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id",
            &[&user.as_str()],
        )?
        .try_get(0)?;
    tx.execute(
        "UPDATE users SET level = $2, enforced = $3,
             count_from_ms = coalesce($4, count_from_ms),
             last_hit_ms = CASE WHEN $2 = 'ok' THEN NULL ELSE last_hit_ms END
         WHERE id = $1",
        &[
            &id,
            &t.to.as_str(),
            &t.enforced,
            &edit.count_from.map(Timestamp::millis),
        ],
    )?;
    insert_change(&mut tx, id, &NewChange::edited(edit))?;
    tx.commit()?;
    Ok(())
}

/// Deletes up to `batch` logins and up to `batch` parties last seen before `before`;
/// returns how many logins went (the parties follow their logins batch by batch).
pub(super) fn prune(c: &mut impl GenericClient, before: Timestamp, batch: i64) -> R<u64> {
    let n = c.execute(
        "DELETE FROM events WHERE id IN
           (SELECT id FROM events WHERE ts_ms < $1 ORDER BY ts_ms LIMIT $2)",
        &[&before.millis(), &batch],
    )?;
    c.execute(
        "DELETE FROM parties WHERE id IN
           (SELECT id FROM parties WHERE last_ms < $1 ORDER BY last_ms LIMIT $2)",
        &[&before.millis(), &batch],
    )?;
    Ok(n)
}

/// Stores that the account `user_id` used `party` at `at` (see `detect::Known`).
pub(super) fn see_party(
    c: &mut impl GenericClient,
    user_id: i64,
    scheme: &str,
    party: &str,
    at: Timestamp,
) -> R<()> {
    c.execute_typed(
        "INSERT INTO parties (user_id, scheme, party, first_ms, last_ms) VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (user_id, scheme, party) DO UPDATE
           SET first_ms = least(parties.first_ms, excluded.first_ms),
               last_ms = greatest(parties.last_ms, excluded.last_ms)",
        &[
            (&user_id, Type::INT8),
            (&scheme, Type::TEXT),
            (&party, Type::TEXT),
            (&at.millis(), Type::INT8),
        ],
    )?;
    Ok(())
}

/// Deferred messages per submitting account, over every server's last scan.
pub(super) fn deferred_per_account(c: &mut impl GenericClient) -> R<BTreeMap<String, u32>> {
    let rows = c.query(
        "SELECT account, sum(messages)::BIGINT FROM queue_senders
         WHERE queue = 'deferred' AND account <> '' GROUP BY account",
        &[],
    )?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, super::rows::u32_of(r.try_get(1)?)?)))
        .collect()
}

/// Replaces this server's part of the queue snapshot and re-evaluates each account
/// whose deferred mail (over all servers) grew; see `Store::replace_queue`.
pub(super) fn replace_queue(
    client: &mut Client,
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
        if let Some(stored) = stored_account(&mut tx, user.as_str())? {
            queued += evaluate(
                &mut PgRows {
                    tx: &mut tx,
                    server,
                    ahead: None,
                },
                &user,
                &stored,
                at,
                engine,
            )?;
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
