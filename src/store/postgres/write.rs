//! The shared store's writes: `record`'s transaction, admin level changes, the queue
//! snapshot. Whatever re-evaluates an account first takes that account's advisory
//! lock, so servers recording its logins at once are serialised per account: each
//! evaluation sees every login committed before it, none decides twice.

use std::collections::HashMap;
use std::time::Duration;

use postgres::types::Type;
use postgres::{Client, GenericClient, Transaction};
use sha2::{Digest, Sha256};

use super::cached::{Cached, Statements};
use super::error::R;
use super::eval::PgRows;
use super::insert::{insert, Whitelists};
use super::rows::insert_change;
use crate::detect::Engine;
use crate::model::{Level, SaslUser, Span, Timestamp};
use crate::store::evaluate::{auto_prune_before, evaluate, Given, NewChange, AUTO_PRUNE_BATCH};
use crate::store::{BatchCounts, LevelEdit, LoginEvent, Recorded};

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
pub(super) fn lock_account(tx: &mut Transaction, user: &SaslUser) -> R<()> {
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

/// Stores a login and re-evaluates its account; None: `Take::Try` found the account
/// held by another session (nothing was written).
pub(super) fn record(
    client: &mut Client,
    stmts: &mut Statements,
    (server, retention, wait): (&str, Span, Duration),
    take: Take,
    event: &LoginEvent,
    engine: &Engine,
) -> R<Option<Recorded>> {
    let mut tx = client.transaction()?;
    if !bound_and_lock(&mut tx, wait, [&event.user], take)? {
        return Ok(None);
    }
    let on = (server, retention);
    let recorded = record_all(
        &mut Cached { c: &mut tx, stmts },
        on,
        std::slice::from_ref(event),
        engine,
        &mut |_| {},
    )?;
    tx.commit()?;
    Ok(recorded.into_iter().next())
}

/// Several logins in one transaction (`Store::record_batch_judged`), every account of
/// the batch locked first, in one round trip.
pub(super) fn record_batch(
    client: &mut Client,
    stmts: &mut Statements,
    (server, retention, wait): (&str, Span, Duration),
    events: &[LoginEvent],
    engine: &Engine,
    stays_ok: &mut dyn FnMut(usize),
) -> R<BatchCounts> {
    let mut tx = client.transaction()?;
    bound_and_lock(&mut tx, wait, events.iter().map(|e| &e.user), Take::Wait)?;
    let on = (server, retention);
    let c = &mut Cached { c: &mut tx, stmts };
    let recorded = record_all(c, on, events, engine, stays_ok)?;
    tx.commit()?;
    let mut batch = BatchCounts::default();
    recorded.into_iter().for_each(|r| batch.add(r));
    Ok(batch)
}

/// Stores `events` and evaluates each, as `record` would one after the other, inside
/// the caller's transaction, which holds their accounts' locks. The whitelists are
/// read once; the logins are stored in rounds, each account's next login in one
/// statement, each evaluated after its round. An evaluation reads and writes only its
/// own account's rows, so it sees what it would one login at a time. Returns what
/// each login came to, in order; `stays_ok(i)` as soon as login `i` was judged to
/// leave its account at ok, where it was (`Store::record_batch_judged`).
fn record_all(
    c: &mut Cached<'_, Transaction<'_>>,
    (server, retention): (&str, Span),
    events: &[LoginEvent],
    engine: &Engine,
    stays_ok: &mut dyn FnMut(usize),
) -> R<Vec<Recorded>> {
    let whitelists = Whitelists::read(c, events.iter().map(|e| &e.user))?;
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    let mut next: HashMap<&SaslUser, usize> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        let round = next.entry(&e.user).or_insert(0);
        if rounds.len() <= *round {
            rounds.push(Vec::new());
        }
        rounds[*round].push(i);
        *round += 1;
    }
    let mut out = vec![
        Recorded {
            duplicate: true,
            queued: 0,
        };
        events.len()
    ];
    let mut prune_before = None;
    for round in rounds {
        let logins: Vec<&LoginEvent> = round.iter().map(|&i| &events[i]).collect();
        let stored = insert(c, server, engine, &logins, &whitelists)?;
        for ((i, event), stored) in round.into_iter().zip(logins).zip(stored) {
            let Some(event_id) = stored.event_id else {
                // Nothing changed (the upsert only raised last_seen to a time it had).
                continue;
            };
            prune_before = prune_before.or(auto_prune_before(event_id, retention));
            let mut rows = PgRows {
                tx: &mut *c,
                server,
                known: Some(stored.known),
                set: None,
            };
            let given = Given {
                whitelist: stored.whitelist,
                deferred: stored.deferred,
            };
            let account = &stored.account;
            let queued = evaluate(&mut rows, &event.user, account, &given, event.time, engine)?;
            let after = rows.set.unwrap_or(account.state.level);
            if account.state.level == Level::Ok && after == Level::Ok {
                stays_ok(i);
            }
            out[i] = Recorded {
                duplicate: false,
                queued,
            };
        }
    }
    // After every evaluation: what it deletes is older than any of them reads.
    if let Some(before) = prune_before {
        prune(&mut *c.c, before, i64::from(AUTO_PRUNE_BATCH))?;
    }
    Ok(out)
}

pub(super) fn change_level(
    client: &mut Client,
    stmts: &mut Statements,
    user: &SaslUser,
    edit: &LevelEdit,
) -> R<()> {
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
    insert_change(
        &mut Cached { c: &mut tx, stmts },
        id,
        &NewChange::edited(edit),
    )?;
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
