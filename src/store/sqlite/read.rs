//! Reads for the commands (status, report, release, whitelist): the hot path's own
//! reads are in `write`, beside the writes they feed.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::eval::seen_in;
use super::rows::{
    account_parts, account_row, change_row, parse_text, seen_row, ACCOUNT_COLS, CHANGE_COLS,
};
use crate::detect::Seen;
use crate::model::{SaslUser, Source, Timestamp, WhitelistEntry};
use crate::store::{Account, AddrSummary, Between, KnownRows, LevelChange};

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
    let rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(crate::store::per_account(crate::store::valid_names(
        "level change(s)",
        rows,
    )))
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
    since: Timestamp,
    until: Timestamp,
) -> rusqlite::Result<Vec<(SaslUser, Seen)>> {
    let mut stmt = conn.prepare(
        "SELECT u.name, e.source, e.ip, e.ts_ms, e.count, e.fid FROM events e JOIN users u ON u.id = e.user_id
         WHERE e.ts_ms > ?1 AND e.ts_ms <= ?2 AND e.ts_ms > u.count_from_ms",
    )?;
    let rows = stmt.query_map(params![since, until], |r| Ok((r.get(0)?, seen_row(r, 1)?)))?;
    let rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(crate::store::valid_names("login(s)", rows))
}

pub(super) fn flagged(conn: &Connection) -> rusqlite::Result<Vec<Account>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {ACCOUNT_COLS} FROM users WHERE level <> 'ok'"
    ))?;
    let rows = stmt.query_map([], account_parts)?;
    let rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(crate::store::accounts_of(rows))
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
    window: Between,
) -> rusqlite::Result<Vec<Seen>> {
    match user_id(conn, user)? {
        Some(user_id) => seen_in(conn, user_id, window),
        None => Ok(Vec::new()),
    }
}

pub(super) fn known(
    conn: &Connection,
    user: &SaslUser,
    scheme: &str,
    from: Timestamp,
) -> rusqlite::Result<KnownRows> {
    match user_id(conn, user)? {
        Some(id) => super::eval::known(conn, id, scheme, from),
        None => Ok(KnownRows::default()),
    }
}

pub(super) fn whitelist(conn: &Connection) -> rusqlite::Result<Vec<WhitelistEntry>> {
    let mut stmt =
        conn.prepare("SELECT cidr, user, note, added_ms FROM whitelist ORDER BY user, cidr")?;
    let rows = stmt.query_map([], |r| {
        // "" is every account: the column is part of the unique key, which NULL is not.
        let entry = WhitelistEntry {
            cidr: r.get(0)?,
            user: None,
            note: r.get(2)?,
            added: r.get(3)?,
        };
        Ok((r.get(1)?, entry))
    })?;
    let rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(crate::store::whitelist_of(rows))
}

pub(super) fn meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

/// Logins of one account per (address, source, server): first and last seen, count.
/// Aggregated here, not with `GROUP BY`: that sorts every login of the account in a
/// temporary B-tree, while this walks the account's rows once (BENCHMARKS.md). Same
/// rows, same order (by address text, then source, then server).
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
    let mut stmt =
        conn.prepare("SELECT ip, source, ts_ms, server FROM events WHERE user_id = ?1")?;
    // Per address, its servers (a few at most) with their slots.
    type Servers = Vec<(Option<String>, Slots)>;
    let mut by_ip: HashMap<String, Servers> = HashMap::new();
    let mut rows = stmt.query([user_id])?;
    while let Some(r) = rows.next()? {
        let ip = r.get_ref(0)?.as_str()?;
        let source: Source = r.get(1)?;
        let ts: i64 = r.get(2)?;
        let server = r.get_ref(3)?.as_str_or_null()?;
        if !by_ip.contains_key(ip) {
            by_ip.insert(ip.to_owned(), Vec::new());
        }
        let servers = by_ip
            .get_mut(ip)
            .ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        match servers.iter_mut().find(|(s, _)| s.as_deref() == server) {
            Some((_, slots)) => add(slots, source, ts),
            None => {
                let mut slots = Slots::default();
                add(&mut slots, source, ts);
                servers.push((server.map(str::to_owned), slots));
            }
        }
    }
    type Key = (String, Option<String>);
    let mut groups: Vec<(Key, Source, (i64, i64, u64))> = by_ip
        .into_iter()
        .flat_map(|(ip, servers)| {
            servers
                .into_iter()
                .map(move |(s, slots)| ((ip.clone(), s), slots))
        })
        .flat_map(|(key, slots)| {
            Source::ALL
                .into_iter()
                .zip(slots)
                .filter_map(move |(source, agg)| Some((key.clone(), source, agg?)))
        })
        .collect();
    groups.sort_by(|a, b| {
        (a.0 .0.as_str(), a.1.as_str(), &a.0 .1).cmp(&(b.0 .0.as_str(), b.1.as_str(), &b.0 .1))
    });
    groups
        .into_iter()
        .map(|((ip, server), source, (first, last, count))| {
            Ok(AddrSummary {
                addr: parse_text(0, &ip)?,
                source,
                server,
                first_seen: Timestamp::from_millis(first),
                last_seen: Timestamp::from_millis(last),
                count,
            })
        })
        .collect()
}
