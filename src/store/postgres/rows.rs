//! Rows of the shared store: decoding stored values back into validated types, and
//! the reads and writes an evaluation shares with the rest of the store.

use std::sync::LazyLock;

use postgres::types::Type;
use postgres::{GenericClient, Row};

use super::cached::Cached;
use super::error::{PgError, R};
use crate::detect::{message_of, AccountState, Seen, Usual};
use crate::model::{ActionKind, Cidr, ClientAddr, Level, SaslUser, Source, Timestamp};
use crate::store::evaluate::{KnownRows, NewChange, Stored, KNOWN_READ_MAX};
use crate::store::{Account, ActionState, Between};

pub(super) fn bad(what: &str, raw: &str, why: impl std::fmt::Display) -> PgError {
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

/// `ACCOUNT_COLS` of the accounts named in `$1` (a text array), prepared once: the
/// policy service reads a batch's accounts after each commit.
pub(super) const ACCOUNTS_NAMED: &str =
    "SELECT name, level, enforced, last_hit_ms, count_from_ms, last_seen_ms
     FROM users WHERE name = ANY($1)";

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
pub(super) fn stored_account(
    c: &mut Cached<'_, impl GenericClient>,
    name: &str,
) -> R<Option<Stored>> {
    static SQL: LazyLock<String> =
        LazyLock::new(|| format!("SELECT {STORED_COLS} FROM users WHERE name = $1"));
    let row = c.query_opt(SQL.as_str(), &[(&name, Type::TEXT)])?;
    row.as_ref().map(stored_row).transpose()
}

const SEEN_SQL: &str =
    "SELECT source, ip, ts_ms, count, fid FROM events WHERE user_id = $1 AND ts_ms > $2 AND ts_ms <= $3";

/// The stored rows of the account's logins in `window`, in `SEEN_SQL`'s columns.
pub(super) fn seen_rows(
    c: &mut Cached<'_, impl GenericClient>,
    user_id: i64,
    window: Between,
) -> R<Vec<Row>> {
    let (since, until) = (window.since.millis(), window.until.millis());
    c.query(
        SEEN_SQL,
        &[
            (&user_id, Type::INT8),
            (&since, Type::INT8),
            (&until, Type::INT8),
        ],
    )
}

/// The account's parties of `scheme`: its first log time and those first seen after
/// `from`, the earliest first, at most `KNOWN_READ_MAX`.
pub(super) fn known(
    c: &mut Cached<'_, impl GenericClient>,
    user_id: i64,
    scheme: &str,
    from: Timestamp,
) -> R<KnownRows> {
    let rows = c.query(
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

pub(super) fn seen_in(
    c: &mut Cached<'_, impl GenericClient>,
    user_id: i64,
    window: Between,
) -> R<Vec<Seen>> {
    let rows = seen_rows(c, user_id, window)?;
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

pub(super) fn deferred_of(
    c: &mut Cached<'_, impl GenericClient>,
    user: &SaslUser,
) -> R<Option<u32>> {
    let n: Option<i64> = c
        .query_one(DEFERRED_SQL, &[(&user.as_str(), Type::TEXT)])?
        .try_get(0)?;
    n.map(u32_of).transpose()
}

pub(super) fn insert_change(
    c: &mut Cached<'_, impl GenericClient>,
    id: i64,
    change: &NewChange,
) -> R<i64> {
    let t = change.transition;
    // The notification is sent at commit, to every server's `run-actions --follow`;
    // one per transaction (PostgreSQL folds equal notifications). Same statement as
    // the insert: one round trip.
    let row = c.query_one(
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
