//! Decoding stored values back into validated types.

use crate::actions::ActionKind;
use crate::detect::AccountState;
use crate::model::{Cidr, ClientAddr, Level, LogTime, SaslUser, Source};
use crate::store::{Account, ActionState};

pub(super) fn level_of(raw: &str) -> rusqlite::Result<Level> {
    Level::from_db(raw).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, "level".into())
    })
}

pub(super) fn source_of(raw: &str) -> rusqlite::Result<Source> {
    Source::parse(raw).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub(super) fn addr_of(raw: &str) -> rusqlite::Result<ClientAddr> {
    ClientAddr::parse(raw).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub(super) fn kind_of(raw: &str) -> rusqlite::Result<ActionKind> {
    raw.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })
}

pub(super) fn state_of(raw: &str) -> rusqlite::Result<ActionState> {
    ActionState::from_db(raw).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            "action state".into(),
        )
    })
}

pub(super) fn user_of(raw: &str) -> rusqlite::Result<SaslUser> {
    SaslUser::parse(raw).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub(super) fn cidr_of(raw: &str) -> rusqlite::Result<Cidr> {
    Cidr::parse("cidr", raw).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub(super) const ACCOUNT_COLS: &str =
    "name, level, enforced, last_hit_ms, count_from_ms, last_seen_ms";

pub(super) fn account_row(r: &rusqlite::Row) -> rusqlite::Result<Account> {
    Ok(Account {
        user: user_of(&r.get::<_, String>(0)?)?,
        state: AccountState {
            level: level_of(&r.get::<_, String>(1)?)?,
            enforced: r.get(2)?,
            last_hit: r.get::<_, Option<i64>>(3)?.map(LogTime::from_millis),
            count_from: LogTime::from_millis(r.get(4)?),
        },
        last_seen: r.get::<_, Option<i64>>(5)?.map(LogTime::from_millis),
    })
}
