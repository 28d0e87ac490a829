//! The outbox: actions queued by level changes, as the worker and status see them.

use rusqlite::{params, Connection};

use super::rows::from_columns;
use crate::model::ActionKind;
use crate::model::{SaslUser, Timestamp};
use crate::store::{ActionRecord, ActionState, ActionTotals, Attempt, QueuedAction};

pub(super) fn due_actions(
    conn: &Connection,
    now: Timestamp,
) -> rusqlite::Result<Vec<QueuedAction>> {
    let mut stmt = conn.prepare(
        "SELECT a.id, u.name, a.kind, a.level, a.enforced, a.attempts, a.change_id
             FROM actions a JOIN users u ON u.id = a.user_id
             WHERE a.state = 'pending' AND a.next_ms <= ?1 ORDER BY a.id",
    )?;
    let rows = stmt.query_map([now], |r| {
        let name: String = r.get(1)?;
        let due = (
            r.get(0)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
        );
        Ok((name, due))
    })?;
    let rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(crate::store::due_of(rows))
}

pub(super) fn next_pending(conn: &Connection) -> rusqlite::Result<Option<Timestamp>> {
    conn.query_row(
        "SELECT min(next_ms) FROM actions WHERE state = 'pending'",
        [],
        |r| r.get(0),
    )
}

pub(super) fn finish_action(conn: &Connection, id: i64, attempt: &Attempt) -> rusqlite::Result<()> {
    let (state, next) = attempt.next();
    conn.execute(
        "UPDATE actions SET state = ?2, attempts = attempts + 1, next_ms = ?3,
                 updated_ms = ?4, outcome = ?5 WHERE id = ?1",
        params![id, state, next, attempt.at, attempt.outcome],
    )
    .map(|_| ())
}

pub(super) fn actions_of(
    conn: &Connection,
    user: &SaslUser,
) -> rusqlite::Result<Vec<ActionRecord>> {
    let mut stmt = conn.prepare(
        "SELECT a.id, a.kind, a.level, a.enforced, a.state, a.attempts, a.created_ms,
                    a.updated_ms, a.next_ms, a.outcome, a.change_id, a.server
             FROM actions a JOIN users u ON u.id = a.user_id WHERE u.name = ?1 ORDER BY a.id",
    )?;
    let rows = stmt.query_map([user], |r| {
        Ok(from_columns!(r, 0 => ActionRecord {
            id, kind, level, enforced, state, attempts, created, updated, next, outcome,
            change_id, server
        }))
    })?;
    rows.collect()
}

pub(super) fn action_totals(conn: &Connection) -> rusqlite::Result<ActionTotals> {
    conn.query_row(
        "SELECT coalesce(sum(state = 'pending'), 0), coalesce(sum(state = 'failed'), 0),
                    min(CASE WHEN state = 'pending' THEN created_ms END)
             FROM actions WHERE state IN ('pending', 'failed')",
        [],
        |r| {
            Ok(ActionTotals {
                pending: r.get::<_, i64>(0)? as u64,
                failed: r.get::<_, i64>(1)? as u64,
                oldest_pending: r.get(2)?,
            })
        },
    )
}

pub(super) fn cancel_pending(
    conn: &Connection,
    user: &SaslUser,
    now: Timestamp,
) -> rusqlite::Result<u64> {
    conn.execute(
        "UPDATE actions SET state = 'cancelled', updated_ms = ?2, outcome = 'cancelled by release'
             WHERE state = 'pending' AND user_id = (SELECT id FROM users WHERE name = ?1)",
        params![user, now],
    )
    .map(|n| n as u64)
}

pub(super) fn action_counts(
    conn: &Connection,
) -> rusqlite::Result<Vec<(ActionKind, ActionState, u64)>> {
    let mut stmt =
        conn.prepare("SELECT kind, state, count(*) FROM actions GROUP BY kind, state")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
    })?;
    rows.collect()
}
