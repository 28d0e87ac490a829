//! The shared outbox. Each action is run by the worker of the server that queued it
//! (the one whose `record` decided); status and monitoring see every server's.

use postgres::GenericClient;

use super::error::R;
use super::rows::{kind_of, level_of, state_of, time_of, u32_of};
use crate::model::{ActionKind, SaslUser, Timestamp};
use crate::store::{ActionRecord, ActionState, ActionTotals, Attempt, QueuedAction};

pub(super) fn due_actions(
    c: &mut impl GenericClient,
    server: &str,
    now: Timestamp,
) -> R<Vec<QueuedAction>> {
    let rows = c.query(
        "SELECT a.id, u.name, a.kind, a.level, a.enforced, a.attempts, a.change_id
         FROM actions a JOIN users u ON u.id = a.user_id
         WHERE a.state = 'pending' AND a.server = $1 AND a.next_ms <= $2 ORDER BY a.id",
        &[&server, &now.millis()],
    )?;
    let rows = rows
        .iter()
        .map(|r| {
            let due = (
                r.try_get(0)?,
                kind_of(r.try_get(2)?)?,
                level_of(r.try_get(3)?)?,
                r.try_get(4)?,
                u32_of(r.try_get(5)?)?,
                r.try_get(6)?,
            );
            Ok((r.try_get(1)?, due))
        })
        .collect::<R<Vec<_>>>()?;
    Ok(crate::store::due_of(rows))
}

pub(super) fn next_pending(c: &mut impl GenericClient, server: &str) -> R<Option<Timestamp>> {
    let ms: Option<i64> = c
        .query_one(
            "SELECT min(next_ms) FROM actions WHERE state = 'pending' AND server = $1",
            &[&server],
        )?
        .try_get(0)?;
    Ok(time_of(ms))
}

pub(super) fn finish_action(c: &mut impl GenericClient, id: i64, attempt: &Attempt) -> R<()> {
    let (state, next) = attempt.next();
    c.execute(
        "UPDATE actions SET state = $2, attempts = attempts + 1, next_ms = $3,
             updated_ms = $4, outcome = $5 WHERE id = $1",
        &[
            &id,
            &state.as_str(),
            &next.millis(),
            &attempt.at.millis(),
            &attempt.outcome,
        ],
    )?;
    Ok(())
}

pub(super) fn actions_of(c: &mut impl GenericClient, user: &SaslUser) -> R<Vec<ActionRecord>> {
    let rows = c.query(
        "SELECT a.id, a.kind, a.level, a.enforced, a.state, a.attempts, a.created_ms,
                a.updated_ms, a.next_ms, a.outcome, a.change_id, a.server
         FROM actions a JOIN users u ON u.id = a.user_id WHERE u.name = $1 ORDER BY a.id",
        &[&user.as_str()],
    )?;
    rows.iter()
        .map(|r| {
            Ok(ActionRecord {
                id: r.try_get(0)?,
                kind: kind_of(r.try_get(1)?)?,
                level: level_of(r.try_get(2)?)?,
                enforced: r.try_get(3)?,
                state: state_of(r.try_get(4)?)?,
                attempts: u32_of(r.try_get(5)?)?,
                created: Timestamp::from_millis(r.try_get(6)?),
                updated: time_of(r.try_get(7)?),
                next: Timestamp::from_millis(r.try_get(8)?),
                outcome: r.try_get(9)?,
                change_id: r.try_get(10)?,
                server: Some(r.try_get(11)?),
            })
        })
        .collect()
}

pub(super) fn action_totals(c: &mut impl GenericClient) -> R<ActionTotals> {
    let r = c.query_one(
        "SELECT count(*) FILTER (WHERE state = 'pending'), count(*) FILTER (WHERE state = 'failed'),
                min(created_ms) FILTER (WHERE state = 'pending')
         FROM actions WHERE state IN ('pending', 'failed')",
        &[],
    )?;
    Ok(ActionTotals {
        pending: r.try_get::<_, i64>(0)? as u64,
        failed: r.try_get::<_, i64>(1)? as u64,
        oldest_pending: time_of(r.try_get(2)?),
    })
}

pub(super) fn cancel_pending(
    c: &mut impl GenericClient,
    user: &SaslUser,
    now: Timestamp,
) -> R<u64> {
    Ok(c.execute(
        "UPDATE actions SET state = 'cancelled', updated_ms = $2, outcome = 'cancelled by release'
         WHERE state = 'pending' AND user_id = (SELECT id FROM users WHERE name = $1)",
        &[&user.as_str(), &now.millis()],
    )?)
}

pub(super) fn action_counts(c: &mut impl GenericClient) -> R<Vec<(ActionKind, ActionState, u64)>> {
    let rows = c.query(
        "SELECT kind, state, count(*) FROM actions GROUP BY kind, state",
        &[],
    )?;
    rows.iter()
        .map(|r| {
            Ok((
                kind_of(r.try_get(0)?)?,
                state_of(r.try_get(1)?)?,
                r.try_get::<_, i64>(2)? as u64,
            ))
        })
        .collect()
}
