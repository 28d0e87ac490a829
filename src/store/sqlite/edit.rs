//! Writes that the admin's commands make: a level change decided outside `record`,
//! the whitelist, and the meta values.

use rusqlite::{params, Connection, TransactionBehavior};

use super::eval::insert_change;
use crate::model::{Cidr, SaslUser, WhitelistEntry};
use crate::store::evaluate::NewChange;
use crate::store::LevelEdit;

pub(super) fn change_level(
    conn: &mut Connection,
    user: &SaslUser,
    edit: &LevelEdit,
) -> rusqlite::Result<()> {
    let t = edit.transition;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let user_id: i64 = tx.query_row(
        "INSERT INTO users (name) VALUES (?1)
         ON CONFLICT(name) DO UPDATE SET name = name RETURNING id",
        [user],
        |r| r.get(0),
    )?;
    tx.execute(
        "UPDATE users SET level = ?2, enforced = ?3,
             count_from_ms = coalesce(?4, count_from_ms),
             last_hit_ms = CASE WHEN ?2 = 'ok' THEN NULL ELSE last_hit_ms END
         WHERE id = ?1",
        params![user_id, t.to, t.enforced, edit.count_from],
    )?;
    insert_change(&tx, user_id, &NewChange::edited(edit))?;
    tx.commit()
}

/// The whitelist's `user` column: "" for every account (NULL would not be unique).
fn user_column(user: Option<&SaslUser>) -> &str {
    user.map_or("", |u| u.as_str())
}

/// Returns false if the entry already existed (its note is then updated).
pub(super) fn whitelist_add(conn: &Connection, entry: &WhitelistEntry) -> rusqlite::Result<bool> {
    let user = user_column(entry.user.as_ref());
    let existed: bool = conn.query_row(
        "SELECT count(*) > 0 FROM whitelist WHERE cidr = ?1 AND user = ?2",
        params![entry.cidr, user],
        |r| r.get(0),
    )?;
    conn.execute(
        "INSERT INTO whitelist (cidr, user, note, added_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(cidr, user) DO UPDATE SET note = coalesce(excluded.note, note)",
        params![entry.cidr, user, entry.note, entry.added],
    )?;
    Ok(!existed)
}

/// Returns false if there was no such entry.
pub(super) fn whitelist_remove(
    conn: &Connection,
    cidr: &Cidr,
    user: Option<&SaslUser>,
) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "DELETE FROM whitelist WHERE cidr = ?1 AND user = ?2",
        params![cidr, user_column(user)],
    )?;
    Ok(n > 0)
}

pub(super) fn set_meta(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )
    .map(|_| ())
}
