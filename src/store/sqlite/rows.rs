//! Stored values ↔ validated types: each type's SQL form is written once here, as
//! `ToSql`/`FromSql`, so a damaged or hand-edited value fails where it is read, with
//! its column. The impls live in the store because the model knows nothing of SQLite
//! (the types are this crate's, so the orphan rule allows them here).

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, Type, ValueRef};

use crate::detect::{message_of, AccountState, Seen};
use crate::model::{ActionKind, Cidr, ClientAddr, Level, SaslUser, Source, Timestamp};
use crate::store::{Account, ActionState, LevelChange};

/// A stored value that no longer passes validation.
fn unreadable(what: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> FromSqlError {
    FromSqlError::Other(what.into())
}

/// Text columns whose type parses from and writes as `&str`.
macro_rules! text_column {
    ($ty:ty, $to:expr, $from:expr) => {
        impl ToSql for $ty {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                let to: fn(&$ty) -> ToSqlOutput<'_> = $to;
                Ok(to(self))
            }
        }
        impl FromSql for $ty {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let from: fn(&str) -> Result<$ty, FromSqlError> = $from;
                from(value.as_str()?)
            }
        }
    };
}

text_column!(Level, |l| l.as_str().into(), |raw| {
    Level::from_db(raw).ok_or_else(|| unreadable(format!("level {raw:?}")))
});
text_column!(Source, |s| s.as_str().into(), |raw| {
    Source::parse(raw).map_err(unreadable)
});
text_column!(ActionKind, |k| k.as_str().into(), |raw| {
    raw.parse().map_err(unreadable)
});
text_column!(ActionState, |s| s.as_str().into(), |raw| {
    ActionState::from_db(raw).ok_or_else(|| unreadable(format!("action state {raw:?}")))
});
text_column!(SaslUser, |u| u.as_str().into(), |raw| {
    SaslUser::parse(raw).map_err(unreadable)
});
text_column!(ClientAddr, |a| a.to_string().into(), |raw| {
    ClientAddr::parse_stored(raw).map_err(unreadable)
});
text_column!(Cidr, |c| c.to_string().into(), |raw| {
    Cidr::parse_any("cidr", raw).map_err(unreadable)
});

/// Times are stored as milliseconds since the epoch.
impl ToSql for Timestamp {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.millis().into())
    }
}

impl FromSql for Timestamp {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value.as_i64().map(Timestamp::from_millis)
    }
}

/// `Type { a, b, c }` read from consecutive columns, `first` on, in the order the
/// fields are named (which is the SELECT's); fields after `;` are given, not read.
macro_rules! from_columns {
    ($r:ident, $first:expr => $ty:ident { $($field:ident),* $(; $($given:ident: $value:expr),*)? }) => {{
        let mut col: usize = $first;
        $ty {
            $($field: {
                col += 1;
                $r.get(col - 1)?
            },)*
            $($($given: $value,)*)?
        }
    }};
}
pub(super) use from_columns;

/// Parses text already read from column `col`: the hot path reads an address's text
/// and parses it only once per address.
pub(super) fn parse_text<T: FromSql>(col: usize, raw: &str) -> rusqlite::Result<T> {
    T::column_result(ValueRef::Text(raw.as_bytes())).map_err(|e| {
        let e = match e {
            FromSqlError::Other(e) => e,
            e => Box::new(e),
        };
        rusqlite::Error::FromSqlConversionFailure(col, Type::Text, e)
    })
}

/// The account state stored in `level, enforced, last_hit_ms, count_from_ms`, read
/// from column `first` on.
pub(super) fn account_state(r: &rusqlite::Row, first: usize) -> rusqlite::Result<AccountState> {
    Ok(from_columns!(r, first => AccountState { level, enforced, last_hit, count_from }))
}

pub(super) const ACCOUNT_COLS: &str =
    "name, level, enforced, last_hit_ms, count_from_ms, last_seen_ms";

/// An account row's name as stored, and the rest, for listings (`valid_names`).
pub(super) fn account_parts(
    r: &rusqlite::Row,
) -> rusqlite::Result<(String, (AccountState, Option<Timestamp>))> {
    Ok((r.get(0)?, (account_state(r, 1)?, r.get(5)?)))
}

pub(super) fn account_row(r: &rusqlite::Row) -> rusqlite::Result<Account> {
    Ok(Account {
        user: r.get(0)?,
        state: account_state(r, 1)?,
        last_seen: r.get(5)?,
    })
}

/// The audit trail's columns, of `level_changes c`.
pub(super) const CHANGE_COLS: &str =
    "c.ts_ms, c.from_level, c.to_level, c.enforced, c.reason, c.actor";

/// A `LevelChange` read from `CHANGE_COLS` at column `first` on.
pub(super) fn change_row(r: &rusqlite::Row, first: usize) -> rusqlite::Result<LevelChange> {
    Ok(from_columns!(r, first => LevelChange { time, from, to, enforced, reason, actor }))
}

/// One stored login or message count, read from `source, ip, ts_ms, count, fid` at
/// column `first` on.
pub(super) fn seen_row(r: &rusqlite::Row, first: usize) -> rusqlite::Result<Seen> {
    let source = r.get(first)?;
    let fid: Option<String> = r.get(first + 4)?;
    Ok(from_columns!(r, first + 1 => Seen { addr, time, count;
        source: source, events: 1, message: message_of(source, fid.as_deref()) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: ToSql + FromSql>(value: &T) -> T {
        let conn = rusqlite::Connection::open_in_memory().expect("memory db");
        conn.query_row("SELECT ?1", [value], |r| r.get(0))
            .expect("round trip")
    }

    #[test]
    fn every_mapped_value_reads_back_as_written() {
        for l in [Level::Ok, Level::Notify, Level::Block, Level::Lock] {
            assert_eq!(round_trip(&l), l);
        }
        for s in Source::ALL {
            assert_eq!(round_trip(&s), s);
        }
        for k in ActionKind::ALL {
            assert_eq!(round_trip(&k), k);
        }
        use ActionState::*;
        for s in [Pending, Done, Skipped, Failed, Cancelled] {
            assert_eq!(round_trip(&s), s);
        }
        let user = SaslUser::parse("a@example.com").expect("user");
        assert_eq!(round_trip(&user), user);
        let addr = ClientAddr::parse("2001:db8::1").expect("addr");
        assert_eq!(round_trip(&addr), addr);
        let cidr = Cidr::parse("cidr", "192.0.2.0/24").expect("cidr");
        assert_eq!(round_trip(&cidr), cidr);
        let t = Timestamp::from_millis(1_795_418_066_123);
        assert_eq!(round_trip(&t), t);
    }

    #[test]
    fn a_damaged_value_fails_with_its_column() {
        let conn = rusqlite::Connection::open_in_memory().expect("memory db");
        let err = conn
            .query_row("SELECT 'ok', 'sideways'", [], |r| {
                Ok((r.get::<_, Level>(0)?, r.get::<_, Level>(1)?))
            })
            .expect_err("not a level");
        assert!(
            matches!(
                err,
                rusqlite::Error::FromSqlConversionFailure(1, Type::Text, _)
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("sideways"), "{err}");
        let err = parse_text::<ClientAddr>(3, "not an address").expect_err("not an address");
        assert!(
            matches!(
                err,
                rusqlite::Error::FromSqlConversionFailure(3, Type::Text, _)
            ),
            "{err:?}"
        );
    }
}
