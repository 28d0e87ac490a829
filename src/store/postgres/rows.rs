//! Rows of the shared store: its error, decoding stored values back into validated
//! types, and the row operations of an evaluation.

use postgres::types::Type;
use postgres::{GenericClient, Row, Transaction};

use crate::detect::{message_of, AccountState, Fold, Seen, Usual};
use crate::model::{ActionKind, Cidr, ClientAddr, Level, SaslUser, Source, Timestamp};
use crate::store::evaluate::{ActionKey, EvalRows, KnownRows, NewAction, NewChange, Page};
use crate::store::evaluate::{SeenSpan, Stored, KNOWN_READ_MAX};
use crate::store::{Account, ActionState};

#[derive(Debug)]
pub(super) enum PgError {
    Sql(postgres::Error),
    /// A stored value that no longer passes validation (a damaged or hand-edited row).
    Bad(String),
}

impl From<postgres::Error> for PgError {
    fn from(e: postgres::Error) -> Self {
        PgError::Sql(e)
    }
}

pub(super) type R<T> = Result<T, PgError>;

fn bad(what: &str, raw: &str, why: impl std::fmt::Display) -> PgError {
    PgError::Bad(format!("stored {what} {raw:?} is unreadable: {why}"))
}

pub(super) fn level_of(raw: &str) -> R<Level> {
    Level::from_db(raw).ok_or_else(|| bad("level", raw, "unknown"))
}

pub(super) fn source_of(raw: &str) -> R<Source> {
    Source::parse(raw).map_err(|e| bad("source", raw, e))
}

pub(super) fn addr_of(raw: &str) -> R<ClientAddr> {
    ClientAddr::parse_stored(raw).map_err(|e| bad("address", raw, e))
}

pub(super) fn kind_of(raw: &str) -> R<ActionKind> {
    raw.parse().map_err(|e: String| bad("action kind", raw, e))
}

pub(super) fn state_of(raw: &str) -> R<ActionState> {
    ActionState::from_db(raw).ok_or_else(|| bad("action state", raw, "unknown"))
}

pub(super) fn user_of(raw: &str) -> R<SaslUser> {
    SaslUser::parse(raw).map_err(|e| bad("account", raw, e))
}

pub(super) fn cidr_of(raw: &str) -> R<Cidr> {
    Cidr::parse_any("cidr", raw).map_err(|e| bad("whitelist network", raw, e))
}

pub(super) fn time_of(ms: Option<i64>) -> Option<Timestamp> {
    ms.map(Timestamp::from_millis)
}

/// Counts are BIGINT; a negative or huge one is a damaged row.
pub(super) fn u32_of(v: i64) -> R<u32> {
    u32::try_from(v).map_err(|e| bad("count", &v.to_string(), e))
}

/// The columns `account_row` reads.
pub(super) const ACCOUNT_COLS: &str =
    "name, level, enforced, last_hit_ms, count_from_ms, last_seen_ms";

/// The account state in `level, enforced, last_hit_ms, count_from_ms` from `first` on.
fn account_state(r: &Row, first: usize) -> R<AccountState> {
    Ok(AccountState {
        level: level_of(r.try_get(first)?)?,
        enforced: r.try_get(first + 1)?,
        last_hit: time_of(r.try_get(first + 2)?),
        count_from: Timestamp::from_millis(r.try_get(first + 3)?),
    })
}

/// An account row's name as stored, and the rest, for listings (`valid_names`).
pub(super) fn account_parts(r: &Row) -> R<(String, (AccountState, Option<Timestamp>))> {
    Ok((
        r.try_get(0)?,
        (account_state(r, 1)?, time_of(r.try_get(5)?)),
    ))
}

pub(super) fn account_row(r: &Row) -> R<Account> {
    Ok(Account {
        user: user_of(r.try_get(0)?)?,
        state: account_state(r, 1)?,
        last_seen: time_of(r.try_get(5)?),
    })
}

/// The columns `stored_row` reads, from `users`.
pub(super) const STORED_COLS: &str = "id, level, enforced, last_hit_ms, count_from_ms, \
     usual_day, usual_messages, usual_networks, usual_days, last_seen_ms";

/// The account as the write path needs it, from `STORED_COLS` at column 0.
pub(super) fn stored_row(r: &Row) -> R<Stored> {
    let usual = match r.try_get::<_, Option<i64>>(5)? {
        Some(day) => Some((
            day,
            Usual {
                messages: u32_of(r.try_get(6)?)?,
                networks: u32_of(r.try_get(7)?)?,
                days: u32_of(r.try_get(8)?)?,
            },
        )),
        None => None,
    };
    Ok(Stored {
        id: r.try_get(0)?,
        state: account_state(r, 1)?,
        usual,
        latest: time_of(r.try_get(9)?),
    })
}

/// The account as the write path needs it.
pub(super) fn stored_account(c: &mut impl GenericClient, name: &str) -> R<Option<Stored>> {
    let row = c.query_typed_opt(
        &format!("SELECT {STORED_COLS} FROM users WHERE name = $1"),
        &[(&name, Type::TEXT)],
    )?;
    row.as_ref().map(stored_row).transpose()
}

const SEEN_SQL: &str =
    "SELECT source, ip, ts_ms, count, fid FROM events WHERE user_id = $1 AND ts_ms > $2 AND ts_ms <= $3";

/// The stored rows of the logins in `span`, in `SEEN_SQL`'s columns.
fn seen_rows(c: &mut impl GenericClient, span: SeenSpan) -> R<Vec<Row>> {
    let (since, until) = (span.since.millis(), span.until.millis());
    Ok(c.query_typed(
        SEEN_SQL,
        &[
            (&span.user_id, Type::INT8),
            (&since, Type::INT8),
            (&until, Type::INT8),
        ],
    )?)
}

/// The account's parties of `scheme`: its first log time and those first seen after
/// `from`, the earliest first, at most `KNOWN_READ_MAX`.
pub(super) fn known(
    c: &mut impl GenericClient,
    user_id: i64,
    scheme: &str,
    from: Timestamp,
) -> R<KnownRows> {
    let rows = c.query_typed(
        "SELECT party, first_ms, (SELECT min(first_ms) FROM parties
                                  WHERE user_id = $1 AND scheme = $2) AS since
         FROM (SELECT '' AS party, NULL::BIGINT AS first_ms
               UNION ALL
               (SELECT party, first_ms FROM parties
                WHERE user_id = $1 AND scheme = $2 AND first_ms > $3
                ORDER BY first_ms LIMIT $4)) p",
        &[
            (&user_id, Type::INT8),
            (&scheme, Type::TEXT),
            (&from.millis(), Type::INT8),
            (&i64::from(KNOWN_READ_MAX), Type::INT8),
        ],
    )?;
    let mut out = KnownRows::default();
    for r in &rows {
        out.since = r.try_get::<_, Option<i64>>(2)?.map(Timestamp::from_millis);
        if let Some(first) = r.try_get::<_, Option<i64>>(1)? {
            out.recent
                .push((r.try_get(0)?, Timestamp::from_millis(first)));
        }
    }
    Ok(out)
}

pub(super) fn seen_in(c: &mut impl GenericClient, span: SeenSpan) -> R<Vec<Seen>> {
    let rows = seen_rows(c, span)?;
    rows.iter().map(|r| seen_row(r, 0)).collect()
}

/// A login in `source, ip, ts_ms, count, fid` from column `first` on.
pub(super) fn seen_row(r: &Row, first: usize) -> R<Seen> {
    let source = source_of(r.try_get(first)?)?;
    Ok(Seen {
        source,
        addr: addr_of(r.try_get(first + 1)?)?,
        time: Timestamp::from_millis(r.try_get(first + 2)?),
        count: u32_of(r.try_get(first + 3)?)?,
        events: 1,
        message: message_of(source, r.try_get(first + 4)?),
    })
}

/// An account's deferred mail over every server's last scan; `$1` the account.
pub(super) const DEFERRED_SQL: &str = "SELECT sum(messages)::BIGINT FROM queue_senders \
     WHERE queue = 'deferred' AND account = $1";

/// The whitelist entries for every account and for `$1`.
pub(super) const WHITELIST_SQL: &str =
    "SELECT cidr FROM whitelist WHERE account = '' OR account = $1";

pub(super) fn deferred_of(c: &mut impl GenericClient, user: &SaslUser) -> R<Option<u32>> {
    let n: Option<i64> = c
        .query_typed_one(DEFERRED_SQL, &[(&user.as_str(), Type::TEXT)])?
        .try_get(0)?;
    n.map(u32_of).transpose()
}

pub(super) fn insert_change(c: &mut impl GenericClient, id: i64, change: &NewChange) -> R<i64> {
    let t = change.transition;
    // The notification is sent at commit, to every server's `run-actions --follow`;
    // one per transaction (PostgreSQL folds equal notifications). Same statement as
    // the insert: one round trip.
    let row = c.query_typed_one(
        "WITH c AS (
           INSERT INTO level_changes (user_id, ts_ms, from_level, to_level, enforced, reason, actor)
           VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id)
         SELECT id, pg_notify($8, '') FROM c",
        &[
            (&id, Type::INT8),
            (&change.at.millis(), Type::INT8),
            (&t.from.as_str(), Type::TEXT),
            (&t.to.as_str(), Type::TEXT),
            (&t.enforced, Type::BOOL),
            (&t.reason, Type::TEXT),
            (&change.actor, Type::TEXT),
            (&super::CHANGES_CHANNEL, Type::TEXT),
        ],
    )?;
    Ok(row.try_get(0)?)
}

/// An evaluation's rows in the caller's transaction; actions are queued for `server`.
pub(super) struct PgRows<'t, 'c> {
    pub tx: &'t mut Transaction<'c>,
    pub server: &'t str,
    /// What `record` already read for its account with the insert, so the evaluation
    /// need not ask again.
    pub ahead: Option<Ahead>,
}

/// An account's whitelist and deferred mail, read inside the evaluation's transaction.
pub(super) struct Ahead {
    pub user: SaslUser,
    pub whitelist: Vec<Cidr>,
    pub deferred: Option<u32>,
}

impl PgRows<'_, '_> {
    fn ahead_for(&self, user: &SaslUser) -> Option<&Ahead> {
        self.ahead.as_ref().filter(|a| a.user == *user)
    }
}

impl EvalRows for PgRows<'_, '_> {
    type Error = PgError;

    fn fold_seen(&mut self, span: SeenSpan, fold: &mut Fold) -> R<()> {
        let rows = seen_rows(self.tx, span)?;
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

    fn seen(&mut self, span: SeenSpan) -> R<Vec<Seen>> {
        seen_in(self.tx, span)
    }

    fn known(&mut self, id: i64, scheme: &str, from: Timestamp) -> R<KnownRows> {
        known(self.tx, id, scheme, from)
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
        let rows = self.tx.query_typed(
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

    fn whitelist_of(&mut self, user: &SaslUser) -> R<Vec<Cidr>> {
        if let Some(a) = self.ahead_for(user) {
            return Ok(a.whitelist.clone());
        }
        let rows = self
            .tx
            .query_typed(WHITELIST_SQL, &[(&user.as_str(), Type::TEXT)])?;
        rows.iter().map(|r| cidr_of(r.try_get(0)?)).collect()
    }

    fn deferred_of(&mut self, user: &SaslUser) -> R<Option<u32>> {
        if let Some(a) = self.ahead_for(user) {
            return Ok(a.deferred);
        }
        deferred_of(self.tx, user)
    }

    fn cache_usual(&mut self, id: i64, day: i64, usual: &Usual) -> R<()> {
        self.tx.execute_typed(
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
        self.tx.execute_typed(
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
            .query_typed_one(
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
        self.tx.execute_typed(
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
