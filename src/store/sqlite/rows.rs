//! Decoding stored values back into validated types.

use crate::detect::AccountState;
use crate::model::ActionKind;
use crate::model::{Cidr, ClientAddr, Level, LogTime, SaslUser, Source};
use crate::store::{Account, ActionState};

/// A stored value that no longer passes validation (a damaged or hand-edited database).
fn unreadable(what: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, what.into())
}

pub(super) fn level_of(raw: &str) -> rusqlite::Result<Level> {
    Level::from_db(raw).ok_or_else(|| unreadable("level"))
}

pub(super) fn source_of(raw: &str) -> rusqlite::Result<Source> {
    Source::parse(raw).map_err(unreadable)
}

pub(super) fn addr_of(raw: &str) -> rusqlite::Result<ClientAddr> {
    ClientAddr::parse_stored(raw).map_err(unreadable)
}

pub(super) fn kind_of(raw: &str) -> rusqlite::Result<ActionKind> {
    raw.parse().map_err(|e: String| unreadable(e))
}

pub(super) fn state_of(raw: &str) -> rusqlite::Result<ActionState> {
    ActionState::from_db(raw).ok_or_else(|| unreadable("action state"))
}

pub(super) fn user_of(raw: &str) -> rusqlite::Result<SaslUser> {
    SaslUser::parse(raw).map_err(unreadable)
}

pub(super) fn cidr_of(raw: &str) -> rusqlite::Result<Cidr> {
    Cidr::parse_any("cidr", raw).map_err(unreadable)
}

/// The account state stored in `level, enforced, last_hit_ms, count_from_ms`, read
/// from column `first` on.
pub(super) fn account_state(r: &rusqlite::Row, first: usize) -> rusqlite::Result<AccountState> {
    Ok(AccountState {
        level: level_of(&r.get::<_, String>(first)?)?,
        enforced: r.get(first + 1)?,
        last_hit: r
            .get::<_, Option<i64>>(first + 2)?
            .map(LogTime::from_millis),
        count_from: LogTime::from_millis(r.get(first + 3)?),
    })
}

pub(super) const ACCOUNT_COLS: &str =
    "name, level, enforced, last_hit_ms, count_from_ms, last_seen_ms";

pub(super) fn account_row(r: &rusqlite::Row) -> rusqlite::Result<Account> {
    Ok(Account {
        user: user_of(&r.get::<_, String>(0)?)?,
        state: account_state(r, 1)?,
        last_seen: r.get::<_, Option<i64>>(5)?.map(LogTime::from_millis),
    })
}
