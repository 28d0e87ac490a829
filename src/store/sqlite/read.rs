//! Reads for the commands (status, report, release, whitelist): the hot path's own
//! reads are in `write`, beside the writes they feed.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::rows::{account_row, change_row, parse_text, seen_row, ACCOUNT_COLS, CHANGE_COLS};
use super::write::seen_in;
use crate::detect::Seen;
use crate::model::{LogTime, SaslUser, Source, WhitelistEntry};
use crate::store::{Account, AddrSummary, LevelChange};

fn user_id(conn: &Connection, user: &SaslUser) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT id FROM users WHERE name = ?1", [user], |r| r.get(0))
        .optional()
}

/// Every account whose level ever changed, with its history, by account name.
pub(super) fn changed(conn: &Connection) -> rusqlite::Result<Vec<(SaslUser, Vec<LevelChange>)>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT u.name, {CHANGE_COLS} FROM level_changes c JOIN users u ON u.id = c.user_id
         ORDER BY u.name, c.id"
    ))?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, change_row(r, 1)?)))?;
    Ok(crate::store::per_account(
        rows.collect::<rusqlite::Result<Vec<_>>>()?,
    ))
}

pub(super) fn history(conn: &Connection, user: &SaslUser) -> rusqlite::Result<Vec<LevelChange>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {CHANGE_COLS} FROM level_changes c JOIN users u ON u.id = c.user_id
         WHERE u.name = ?1 ORDER BY c.id"
    ))?;
    let rows = stmt.query_map([user], |r| change_row(r, 0))?;
    rows.collect()
}

pub(super) fn activity(
    conn: &Connection,
    since: LogTime,
    until: LogTime,
) -> rusqlite::Result<Vec<(SaslUser, Seen)>> {
    let mut stmt = conn.prepare(
        "SELECT u.name, e.source, e.ip, e.ts_ms, e.count FROM events e JOIN users u ON u.id = e.user_id
         WHERE e.ts_ms > ?1 AND e.ts_ms <= ?2 AND e.ts_ms >= u.count_from_ms",
    )?;
    let rows = stmt.query_map(params![since, until], |r| Ok((r.get(0)?, seen_row(r, 1)?)))?;
    rows.collect()
}

pub(super) fn flagged(conn: &Connection) -> rusqlite::Result<Vec<Account>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {ACCOUNT_COLS} FROM users WHERE level <> 'ok'"
    ))?;
    let rows = stmt.query_map([], account_row)?;
    rows.collect()
}

pub(super) fn account(conn: &Connection, user: &SaslUser) -> rusqlite::Result<Option<Account>> {
    conn.query_row(
        &format!("SELECT {ACCOUNT_COLS} FROM users WHERE name = ?1"),
        [user],
        account_row,
    )
    .optional()
}

pub(super) fn evidence(
    conn: &Connection,
    user: &SaslUser,
    since: LogTime,
    until: LogTime,
) -> rusqlite::Result<Vec<Seen>> {
    match user_id(conn, user)? {
        Some(id) => seen_in(conn, id, since, until),
        None => Ok(Vec::new()),
    }
}

pub(super) fn whitelist(conn: &Connection) -> rusqlite::Result<Vec<WhitelistEntry>> {
    let mut stmt =
        conn.prepare("SELECT cidr, user, note, added_ms FROM whitelist ORDER BY user, cidr")?;
    let rows = stmt.query_map([], |r| {
        // "" is every account: the column is part of the unique key, which NULL is not.
        let user: String = r.get(1)?;
        Ok(WhitelistEntry {
            cidr: r.get(0)?,
            user: if user.is_empty() {
                None
            } else {
                Some(parse_text(1, &user)?)
            },
            note: r.get(2)?,
            added: r.get(3)?,
        })
    })?;
    rows.collect()
}

pub(super) fn meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

/// Logins of one account per (address, source): first and last seen, count.
/// Aggregated here, not with `GROUP BY ip, source`: that sorts every login of the
/// account in a temporary B-tree, while this walks the covering index `events_key`
/// once (BENCHMARKS.md). Same rows, same order (by address text, then source).
pub(super) fn addresses(conn: &Connection, user: &SaslUser) -> rusqlite::Result<Vec<AddrSummary>> {
    type Slots = [Option<(i64, i64, u64)>; Source::ALL.len()];
    fn add(slots: &mut Slots, source: Source, ts: i64) {
        let slot = &mut slots[source as usize];
        *slot = Some(match *slot {
            Some((first, last, n)) => (first.min(ts), last.max(ts), n + 1),
            None => (ts, ts, 1),
        });
    }
    let Some(user_id) = user_id(conn, user)? else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare("SELECT ip, source, ts_ms FROM events WHERE user_id = ?1")?;
    let mut by_ip: HashMap<String, Slots> = HashMap::new();
    let mut rows = stmt.query([user_id])?;
    while let Some(r) = rows.next()? {
        let ip = r.get_ref(0)?.as_str()?;
        let source: Source = r.get(1)?;
        let ts: i64 = r.get(2)?;
        if let Some(slots) = by_ip.get_mut(ip) {
            add(slots, source, ts);
        } else {
            let mut slots = Slots::default();
            add(&mut slots, source, ts);
            by_ip.insert(ip.to_owned(), slots);
        }
    }
    let mut groups: Vec<(String, Source, (i64, i64, u64))> = by_ip
        .into_iter()
        .flat_map(|(ip, slots)| {
            Source::ALL
                .into_iter()
                .zip(slots)
                .filter_map(move |(source, agg)| Some((ip.clone(), source, agg?)))
        })
        .collect();
    groups.sort_by(|a, b| (a.0.as_str(), a.1.as_str()).cmp(&(b.0.as_str(), b.1.as_str())));
    groups
        .into_iter()
        .map(|(ip, source, (first, last, count))| {
            Ok(AddrSummary {
                addr: parse_text(0, &ip)?,
                source,
                first_seen: LogTime::from_millis(first),
                last_seen: LogTime::from_millis(last),
                count,
            })
        })
        .collect()
}
