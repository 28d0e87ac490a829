//! The row operations of an evaluation ([`EvalRows`]) on the shared store, inside the
//! caller's transaction, each statement prepared once the connection has run it once.

use postgres::types::Type;
use postgres::Transaction;

use super::cached::Cached;
use super::error::{PgError, R};
use super::rows::{addr_of, bad, insert_change, known, seen_in, seen_rows};
use super::rows::{source_of, time_of, u32_of};
use crate::detect::{message_of, AccountState, Fold, Seen, Usual};
use crate::model::{Level, Timestamp};
use crate::store::evaluate::{ActionKey, EvalRows, KnownRows, NewAction, NewChange, Page};
use crate::store::Between;

/// An evaluation's rows in the caller's transaction; actions are queued for `server`.
pub(super) struct PgRows<'t, 'a, 'c> {
    pub tx: &'t mut Cached<'a, Transaction<'c>>,
    pub server: &'t str,
    /// The account's parties as `known` reads them from the time given, this login's
    /// included, when `record` read them with the insert; taken by the evaluation's
    /// one read.
    pub known: Option<(Timestamp, KnownRows)>,
    /// The level the evaluation last stored (None: it left the account's state alone).
    pub set: Option<Level>,
}

impl EvalRows for PgRows<'_, '_, '_> {
    type Error = PgError;

    fn fold_seen(&mut self, id: i64, window: Between, fold: &mut Fold) -> R<()> {
        let rows = seen_rows(self.tx, id, window)?;
        for r in &rows {
            let source = source_of(r.try_get(0)?)?;
            fold.add(
                (source, message_of(source, r.try_get(4)?)),
                r.try_get(1)?,
                Timestamp::from_millis(r.try_get(2)?),
                u32_of(r.try_get(3)?)?,
                addr_of,
            )?;
        }
        Ok(())
    }

    fn seen(&mut self, id: i64, window: Between) -> R<Vec<Seen>> {
        seen_in(self.tx, id, window)
    }

    fn known(&mut self, id: i64, scheme: &str, from: Timestamp) -> R<KnownRows> {
        match self.known.take() {
            Some((read_from, rows)) if read_from == from => Ok(rows),
            _ => known(self.tx, id, scheme, from),
        }
    }

    fn newest(&mut self, user_id: i64, pages: &[Page], limit: u32) -> R<Vec<Vec<(Seen, i64)>>> {
        let sources: Vec<&str> = pages.iter().map(|p| p.source.as_str()).collect();
        let since: Vec<i64> = pages.iter().map(|p| p.since.millis()).collect();
        let until: Vec<i64> = pages.iter().map(|p| p.until.millis()).collect();
        let before: Vec<i64> = pages.iter().map(|p| p.before).collect();
        // Every page in one round trip, each a backward range scan of (user, source,
        // time, id). The bounds are row comparisons over that index's columns: as plain
        // time bounds, which the planner cannot estimate through the arrays, it may
        // prefer the time index and filter every row of the window.
        let rows = self.tx.query(
            "SELECT p.n, e.ip, e.ts_ms, e.count, e.id, e.fid
             FROM unnest($2::text[], $3::int8[], $4::int8[], $5::int8[])
                  WITH ORDINALITY AS p(source, since, until, before, n)
             CROSS JOIN LATERAL (
               SELECT ip, ts_ms, count, id, fid FROM events
               WHERE user_id = $1 AND source = p.source
                 AND (user_id, source, ts_ms) > ($1, p.source, p.since)
                 AND (user_id, source, ts_ms, id) < ($1, p.source, p.until, p.before)
               ORDER BY ts_ms DESC, id DESC LIMIT $6) e
             ORDER BY p.n, e.ts_ms DESC, e.id DESC",
            &[
                (&user_id, Type::INT8),
                (&sources, Type::TEXT_ARRAY),
                (&since, Type::INT8_ARRAY),
                (&until, Type::INT8_ARRAY),
                (&before, Type::INT8_ARRAY),
                (&i64::from(limit), Type::INT8),
            ],
        )?;
        let mut out: Vec<Vec<(Seen, i64)>> = pages.iter().map(|_| Vec::new()).collect();
        for r in &rows {
            let n: i64 = r.try_get(0)?;
            let i = usize::try_from(n - 1).map_err(|e| bad("page", &n.to_string(), e))?;
            let (Some(page), Some(got)) = (pages.get(i), out.get_mut(i)) else {
                return Err(bad("page", &n.to_string(), "out of range"));
            };
            let seen = Seen {
                source: page.source,
                addr: addr_of(r.try_get(1)?)?,
                time: Timestamp::from_millis(r.try_get(2)?),
                count: u32_of(r.try_get(3)?)?,
                events: 1,
                message: message_of(page.source, r.try_get(5)?),
            };
            got.push((seen, r.try_get(4)?));
        }
        Ok(out)
    }

    fn cache_usual(&mut self, id: i64, day: i64, usual: &Usual) -> R<()> {
        self.tx.execute(
            "UPDATE users SET usual_day = $2, usual_messages = $3, usual_networks = $4,
                              usual_days = $5 WHERE id = $1",
            &[
                (&id, Type::INT8),
                (&day, Type::INT8),
                (&i64::from(usual.messages), Type::INT8),
                (&i64::from(usual.networks), Type::INT8),
                (&i64::from(usual.days), Type::INT8),
            ],
        )?;
        Ok(())
    }

    fn set_state(&mut self, id: i64, state: &AccountState) -> R<()> {
        self.set = Some(state.level);
        self.tx.execute(
            "UPDATE users SET level = $2, enforced = $3, last_hit_ms = $4 WHERE id = $1",
            &[
                (&id, Type::INT8),
                (&state.level.as_str(), Type::TEXT),
                (&state.enforced, Type::BOOL),
                (&state.last_hit.map(Timestamp::millis), Type::INT8),
            ],
        )?;
        Ok(())
    }

    fn insert_change(&mut self, id: i64, change: &NewChange) -> R<i64> {
        insert_change(self.tx, id, change)
    }

    fn last_queued(&mut self, key: &ActionKey, after: Timestamp) -> R<Option<Timestamp>> {
        // A skipped or cancelled mail never went out, so it starts no cooldown.
        let ms: Option<i64> = self
            .tx
            .query_one(
                "SELECT max(a.logged_ms) FROM actions a JOIN users u ON u.id = a.user_id
                 WHERE a.user_id = $1 AND a.kind = $2 AND a.level = $3 AND a.enforced = $4
                   AND a.logged_ms > $5 AND a.logged_ms >= u.count_from_ms
                   AND a.state NOT IN ('cancelled', 'skipped')",
                &[
                    (&key.user_id, Type::INT8),
                    (&key.kind.as_str(), Type::TEXT),
                    (&key.transition.to.as_str(), Type::TEXT),
                    (&key.transition.enforced, Type::BOOL),
                    (&after.millis(), Type::INT8),
                ],
            )?
            .try_get(0)?;
        Ok(time_of(ms))
    }

    fn insert_action(&mut self, a: &NewAction) -> R<()> {
        let now = Timestamp::now().millis();
        let state = a.state().as_str();
        self.tx.execute(
            "INSERT INTO actions (user_id, change_id, kind, level, enforced, logged_ms, created_ms,
                                  next_ms, state, updated_ms, outcome, server)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10, $11)",
            &[
                (&a.key.user_id, Type::INT8),
                (&a.change_id, Type::INT8),
                (&a.key.kind.as_str(), Type::TEXT),
                (&a.key.transition.to.as_str(), Type::TEXT),
                (&a.key.transition.enforced, Type::BOOL),
                (&a.logged.millis(), Type::INT8),
                (&now, Type::INT8),
                (&state, Type::TEXT),
                (&a.skipped.as_ref().map(|_| now), Type::INT8),
                (&a.skipped, Type::TEXT),
                (&self.server, Type::TEXT),
            ],
        )?;
        Ok(())
    }
}
