//! The hot path's transaction (store a login, evaluate, queue actions) and the
//! writes it shares with the rest of the store.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::rows::{account_state, parse_text, seen_row};
use crate::config::{Config, WindowStarts};
use crate::detect::{baseline, AccountState, Engine, Evidence, Fold, Seen, Transition, Usual};
use crate::detect::{Verdict, Whitelist};
use crate::model::{ActionKind, LogTime, SaslUser, Span};
use crate::store::{LoginEvent, Recorded};

/// Automatic retention runs on one insert in this many, deleting at most `AUTO_PRUNE_BATCH`
/// rows: a few milliseconds now and then instead of an unbounded table.
const AUTO_PRUNE_EVERY: i64 = 256;
const AUTO_PRUNE_BATCH: u32 = 2000;

pub(super) fn insert_change(
    tx: &Connection,
    user_id: i64,
    at: LogTime,
    t: &Transition,
    actor: &str,
) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO level_changes (user_id, ts_ms, from_level, to_level, enforced, reason, actor)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        user_id, at, t.from, t.to, t.enforced, t.reason, actor
    ])?;
    Ok(tx.last_insert_rowid())
}

/// Queues one action of a transition. A mail (to the admin or to the owner) is not
/// sent if one of its kind for the same account and level was queued within its
/// cooldown of log time since the account's last release; it is stored as skipped,
/// saying why. Returns how many were queued to run.
fn queue_action(
    tx: &Connection,
    user_id: i64,
    change_id: i64,
    kind: ActionKind,
    t: &Transition,
    at: LogTime,
    cfg: &Config,
) -> rusqlite::Result<usize> {
    let cooldown = match kind {
        ActionKind::Mail => Some((cfg.contain.mail.cooldown, "mail.cooldown")),
        ActionKind::NotifyUser => Some((cfg.contain.user_mail.cooldown, "user_mail.cooldown")),
        _ => None,
    };
    let mut skipped = None;
    if let Some((cooldown, key)) = cooldown {
        // A skipped or cancelled mail never went out, so it starts no cooldown.
        let recent: Option<i64> = tx
            .prepare_cached(
                "SELECT max(a.logged_ms) FROM actions a JOIN users u ON u.id = a.user_id
                 WHERE a.user_id = ?1 AND a.kind = ?2 AND a.level = ?3 AND a.enforced = ?4
                   AND a.logged_ms > ?5 AND a.logged_ms >= u.count_from_ms
                   AND a.state NOT IN ('cancelled', 'skipped')",
            )?
            .query_row(
                params![user_id, kind, t.to, t.enforced, at.minus(cooldown)],
                |r| r.get(0),
            )?;
        skipped = recent.map(|ms| {
            format!(
                "not sent: one about {} for this account was queued at {} (log time), \
                 within {key} ({cooldown})",
                t.to,
                LogTime::from_millis(ms).rfc3339()
            )
        });
    }
    let now = LogTime::now().millis();
    tx.prepare_cached(
        "INSERT INTO actions (user_id, change_id, kind, level, enforced, logged_ms, created_ms, next_ms,
                              state, updated_ms, outcome)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        user_id,
        change_id,
        kind,
        t.to,
        t.enforced,
        at,
        now,
        if skipped.is_some() { "skipped" } else { "pending" },
        skipped.as_ref().map(|_| now),
        skipped
    ])?;
    Ok(usize::from(skipped.is_none()))
}

pub(super) fn prune(tx: &Connection, before: LogTime, batch: u32) -> rusqlite::Result<u64> {
    let n = tx
        .prepare_cached(
            "DELETE FROM events WHERE id IN
               (SELECT id FROM events WHERE ts_ms < ?1 ORDER BY ts_ms LIMIT ?2)",
        )?
        .execute(params![before, batch])?;
    Ok(n as u64)
}

/// One attempt at storing a login and re-evaluating its account; see `Store::record`.
pub(super) fn record_once(
    conn: &mut Connection,
    retention: Span,
    event: &LoginEvent,
    engine: &Engine,
) -> rusqlite::Result<Recorded> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let recorded = record_in(&tx, Some(retention), event, engine)?;
    tx.commit()?;
    Ok(recorded)
}

/// An account as the write path needs it.
pub(super) struct Stored {
    pub id: i64,
    pub state: AccountState,
    pub usual: Option<(i64, Usual)>,
}

pub(super) fn stored_account(tx: &Connection, name: &str) -> rusqlite::Result<Option<Stored>> {
    tx.prepare_cached(
        "SELECT id, level, enforced, last_hit_ms, count_from_ms,
                usual_day, usual_messages, usual_networks, usual_days
         FROM users WHERE name = ?1",
    )?
    .query_row([name], |r| {
        let usual = match r.get::<_, Option<i64>>(5)? {
            Some(day) => Some((
                day,
                Usual {
                    messages: r.get(6)?,
                    networks: r.get(7)?,
                    days: r.get(8)?,
                },
            )),
            None => None,
        };
        Ok(Stored {
            id: r.get(0)?,
            state: account_state(r, 1)?,
            usual,
        })
    })
    .optional()
}

/// Stores a login and re-evaluates its account inside the caller's transaction;
/// `retention` applies the automatic pruning now and then.
fn record_in(
    tx: &Connection,
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
    let account =
        stored_account(tx, event.user.as_str())?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO events (user_id, ts_ms, source, ip, jail, fid, count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            account.id,
            at,
            event.source,
            event.addr,
            event.jail.as_str(),
            event.fid.as_ref().map(|f| f.as_str()),
            event.count.get(),
        ])?;
    if inserted == 0 {
        return Ok(Recorded {
            duplicate: true,
            queued: 0,
        });
    }
    let event_id = tx.last_insert_rowid();
    let queued = evaluate_in(tx, &event.user, &account, at, engine)?;
    if let Some(retention) = retention.filter(|_| event_id % AUTO_PRUNE_EVERY == 0) {
        prune(tx, LogTime::now().minus(retention), AUTO_PRUNE_BATCH)?;
    }
    Ok(Recorded {
        duplicate: false,
        queued,
    })
}

/// Re-evaluates one account at `at` and stores the outcome: its state, the level
/// change with its reason, the actions. Returns how many actions were queued.
pub(super) fn evaluate_in(
    tx: &Connection,
    user: &SaslUser,
    account: &Stored,
    at: LogTime,
    engine: &Engine,
) -> rusqlite::Result<usize> {
    let state = &account.state;
    let starts = engine.window_starts(at);
    let since = starts.earliest().max(state.count_from);
    let seen = folded_in(tx, account.id, since, at, starts)?;
    let whitelist = engine.whitelist(user, &whitelist_of(tx, user.as_str())?);
    let usual = usual_of(tx, account, at, engine, &whitelist)?;
    let tally = engine.count(&whitelist, at, &seen);
    let mut verdict = engine.judge(&Evidence {
        user,
        at,
        state,
        tally: &tally,
        deferred: deferred_of(tx, user)?,
        usual,
    });
    if verdict.rose() {
        // Up to where `seen` begins; nothing from before a release.
        let from = engine.explain_from(at).max(state.count_from);
        let earlier = seen_in(tx, account.id, from, since)?;
        engine.explain(&mut verdict, at, &earlier, &seen);
    }
    apply(tx, account, at, &verdict, engine.config())
}

/// Stores a verdict: the account's new state, its level change, and the actions the
/// configuration lists for it. Returns how many actions were queued.
fn apply(
    tx: &Connection,
    account: &Stored,
    at: LogTime,
    verdict: &Verdict,
    cfg: &Config,
) -> rusqlite::Result<usize> {
    if verdict.state != account.state {
        tx.prepare_cached(
            "UPDATE users SET level = ?2, enforced = ?3, last_hit_ms = ?4 WHERE id = ?1",
        )?
        .execute(params![
            account.id,
            verdict.state.level,
            verdict.state.enforced,
            verdict.state.last_hit,
        ])?;
    }
    let Some(t) = &verdict.transition else {
        return Ok(0);
    };
    let change_id = insert_change(tx, account.id, at, t, "detector")?;
    let mut queued = 0;
    for kind in cfg.contain.actions.plan(t.from, t.to, t.enforced) {
        queued += queue_action(tx, account.id, change_id, kind, t, at, cfg)?;
    }
    Ok(queued)
}

/// The account's usual figures for the day of `at`, computed at its first evaluation
/// that day and cached on its row.
fn usual_of(
    tx: &Connection,
    account: &Stored,
    at: LogTime,
    engine: &Engine,
    whitelist: &Whitelist,
) -> rusqlite::Result<Option<Usual>> {
    let Some((from, until)) = engine.history_range(at) else {
        return Ok(None);
    };
    let day = baseline::day_of(at);
    if let Some((cached_day, usual)) = account.usual {
        if cached_day == day {
            return Ok(Some(usual));
        }
    }
    let history = seen_in(tx, account.id, from, until)?;
    let usual = engine.usual(&history, whitelist);
    tx.prepare_cached(
        "UPDATE users SET usual_day = ?2, usual_messages = ?3, usual_networks = ?4, usual_days = ?5
         WHERE id = ?1",
    )?
    .execute(params![
        account.id,
        day,
        usual.messages,
        usual.networks,
        usual.days
    ])?;
    Ok(Some(usual))
}

const SEEN_SQL: &str =
    "SELECT source, ip, ts_ms, count FROM events WHERE user_id = ?1 AND ts_ms > ?2 AND ts_ms <= ?3";

/// One account's evidence in `(since, until]`, a `Seen` per stored row.
pub(super) fn seen_in(
    conn: &Connection,
    user_id: i64,
    since: LogTime,
    until: LogTime,
) -> rusqlite::Result<Vec<Seen>> {
    let mut stmt = conn.prepare_cached(SEEN_SQL)?;
    let rows = stmt.query_map(params![user_id, since, until], |r| seen_row(r, 0))?;
    rows.collect()
}

/// As `seen_in`, folded for an evaluation whose windows begin at `starts`: this runs
/// for every row of the account's lookback on each `record`, so an address is read
/// once per evaluation and each row costs little more than SQLite's step.
fn folded_in(
    conn: &Connection,
    user_id: i64,
    since: LogTime,
    until: LogTime,
    starts: WindowStarts,
) -> rusqlite::Result<Vec<Seen>> {
    let mut stmt = conn.prepare_cached(SEEN_SQL)?;
    let mut rows = stmt.query(params![user_id, since, until])?;
    let mut fold = Fold::new(starts);
    while let Some(r) = rows.next()? {
        fold.add(
            r.get(0)?,
            r.get_ref(1)?.as_str()?,
            r.get(2)?,
            r.get(3)?,
            |raw| parse_text(1, raw),
        )?;
    }
    Ok(fold.into_seen())
}

pub(super) fn whitelist_of(
    conn: &Connection,
    user: &str,
) -> rusqlite::Result<Vec<crate::model::Cidr>> {
    let mut stmt =
        conn.prepare_cached("SELECT cidr FROM whitelist WHERE user = '' OR user = ?1")?;
    let rows = stmt.query_map([user], |r| r.get(0))?;
    rows.collect()
}

/// An account's mail in the deferred queue (as its submitter) at the last queue scan:
/// evidence like its logins, read where they are.
pub(super) fn deferred_of(conn: &Connection, user: &SaslUser) -> rusqlite::Result<Option<u32>> {
    conn.prepare_cached(
        "SELECT SUM(messages) FROM queue_senders WHERE queue = 'deferred' AND account = ?1",
    )?
    .query_row([user], |r| r.get(0))
}
