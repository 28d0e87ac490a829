//! Bulk writes of a replayed backtest into its scratch database: one transaction,
//! prepared statements, no fsync (the file is a scratch copy by construction).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::IpAddr;

use rusqlite::{params, Connection, Statement, TransactionBehavior};

use super::write::insert_change;
use crate::detect::replay::Replayed;
use crate::detect::Seen;
use crate::model::{ClientAddr, Label, LogTime, SaslUser, Source};

/// The page cache during an import, as SQLite takes it: negative means KiB. Room
/// for the whole import and the index builds' sorts (pages are allocated as used):
/// a spill writes the same pages twice.
const IMPORT_CACHE_KIB: i64 = -256 * 1024;

/// Events per multi-row INSERT: one statement run per batch instead of per row.
const BATCH: usize = 64;

/// Values bound per event; the jail, the same for all, is bound once as `?1`.
const EVENT_PARAMS: usize = 5;

/// `INSERT` of `rows` events: row `i` takes parameters `2 + 5i` to `6 + 5i`.
fn insert_events(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|i| {
            let p = 2 + EVENT_PARAMS * i;
            format!(
                "(?{}, ?{}, ?{}, ?{}, ?1, NULL, ?{})",
                p,
                p + 1,
                p + 2,
                p + 3,
                p + 4
            )
        })
        .collect();
    format!(
        "INSERT OR IGNORE INTO events (user_id, ts_ms, source, ip, jail, fid, count) VALUES {}",
        values.join(", ")
    )
}

pub(super) fn import(
    conn: &mut Connection,
    jail: &Label,
    accounts: &[(SaslUser, Replayed)],
) -> rusqlite::Result<()> {
    conn.pragma_update(None, "synchronous", "OFF")?;
    let cache_size: i64 = conn.query_row("PRAGMA cache_size", [], |r| r.get(0))?;
    conn.pragma_update(None, "cache_size", IMPORT_CACHE_KIB)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Into an empty events table, inserting without its indexes and building them at
    // the end is faster than keeping them up to date row by row.
    let empty: bool = tx.query_row("SELECT NOT EXISTS (SELECT 1 FROM events)", [], |r| r.get(0))?;
    let rebuild = if empty {
        drop_indexes(&tx)?
    } else {
        Vec::new()
    };
    let ids = upsert_users(&tx, accounts)?;
    let mut events = EventWriter::new(&tx, jail)?;
    // Without the unique index, what INSERT OR IGNORE would skip is skipped here:
    // the key of `events_key` (migration 4), the account aside.
    let mut stored: HashSet<(LogTime, Source, ClientAddr, u32)> = HashSet::new();
    for ((_, r), id) in accounts.iter().zip(&ids) {
        stored.clear();
        for e in &r.events {
            if !empty || stored.insert((e.time, e.source, e.addr, e.count)) {
                events.push(*id, e)?;
            }
        }
    }
    events.finish()?;
    for ((_, r), id) in accounts.iter().zip(&ids) {
        for (at, t) in &r.changes {
            insert_change(&tx, *id, *at, t, "detector")?;
        }
    }
    for sql in &rebuild {
        tx.execute_batch(sql)?;
    }
    tx.commit()?;
    conn.pragma_update(None, "cache_size", cache_size)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
}

/// Stores each account's final state; returns their ids, in the same order.
fn upsert_users(tx: &Connection, accounts: &[(SaslUser, Replayed)]) -> rusqlite::Result<Vec<i64>> {
    let mut user = tx.prepare(
        "INSERT INTO users (name, level, enforced, last_hit_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(name) DO UPDATE SET level = excluded.level, enforced = excluded.enforced,
           last_hit_ms = excluded.last_hit_ms,
           last_seen_ms = max(coalesce(last_seen_ms, 0), excluded.last_seen_ms)",
    )?;
    let mut id_of = tx.prepare("SELECT id FROM users WHERE name = ?1")?;
    let mut ids = Vec::with_capacity(accounts.len());
    for (name, r) in accounts {
        user.execute(params![
            name.as_str(),
            r.state.level.as_str(),
            r.state.enforced,
            r.state.last_hit.map(LogTime::millis),
            r.last_seen.map(LogTime::millis),
        ])?;
        ids.push(id_of.query_row([name.as_str()], |row| row.get(0))?);
    }
    Ok(ids)
}

/// Inserts events in batches of `BATCH` rows, in the order pushed.
struct EventWriter<'c, 'e> {
    one: Statement<'c>,
    many: Statement<'c>,
    pending: Vec<(i64, &'e Seen)>,
    /// The address as text, reused: SQLite copies what is bound.
    addr: String,
}

impl<'c, 'e> EventWriter<'c, 'e> {
    fn new(tx: &'c Connection, jail: &Label) -> rusqlite::Result<Self> {
        let mut one = tx.prepare(&insert_events(1))?;
        let mut many = tx.prepare(&insert_events(BATCH))?;
        // Bindings stay across runs of a statement.
        one.raw_bind_parameter(1, jail.as_str())?;
        many.raw_bind_parameter(1, jail.as_str())?;
        Ok(Self {
            one,
            many,
            pending: Vec::with_capacity(BATCH),
            addr: String::new(),
        })
    }

    fn push(&mut self, user_id: i64, e: &'e Seen) -> rusqlite::Result<()> {
        self.pending.push((user_id, e));
        if self.pending.len() < BATCH {
            return Ok(());
        }
        for (i, (id, e)) in self.pending.iter().enumerate() {
            bind_event(
                &mut self.many,
                1 + EVENT_PARAMS * i,
                (*id, e),
                &mut self.addr,
            )?;
        }
        self.pending.clear();
        self.many.raw_execute().map(drop)
    }

    /// Writes what is left, one row at a time.
    fn finish(mut self) -> rusqlite::Result<()> {
        for (id, e) in &self.pending {
            bind_event(&mut self.one, 1, (*id, e), &mut self.addr)?;
            self.one.raw_execute()?;
        }
        Ok(())
    }
}

/// Binds one event's values (of its account `user_id`) after the first `offset`
/// parameters.
fn bind_event(
    stmt: &mut Statement,
    offset: usize,
    (user_id, e): (i64, &Seen),
    addr: &mut String,
) -> rusqlite::Result<()> {
    addr_text(e.addr, addr);
    stmt.raw_bind_parameter(offset + 1, user_id)?;
    stmt.raw_bind_parameter(offset + 2, e.time.millis())?;
    stmt.raw_bind_parameter(offset + 3, e.source.as_str())?;
    stmt.raw_bind_parameter(offset + 4, addr.as_str())?;
    stmt.raw_bind_parameter(offset + 5, e.count)
}

/// The address as `Display` writes it (so as `record` stores it), IPv4 without the
/// formatting machinery: it costs more than the insert itself.
fn addr_text(addr: ClientAddr, out: &mut String) {
    out.clear();
    match addr.ip() {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        ip => {
            let _ = write!(out, "{ip}");
        }
    }
}

/// Drops the events table's indexes; returns the SQL that creates them again, as
/// the schema wrote it.
fn drop_indexes(tx: &Connection) -> rusqlite::Result<Vec<String>> {
    let indexes: Vec<(String, String)> = tx
        .prepare(
            "SELECT name, sql FROM sqlite_master
             WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, _) in &indexes {
        tx.execute_batch(&format!("DROP INDEX \"{}\"", name.replace('"', "\"\"")))?;
    }
    Ok(indexes.into_iter().map(|(_, sql)| sql).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_display_writes_them() {
        let mut out = String::new();
        for raw in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "198.51.100.7",
            "2001:db8::1",
            "::ffff:192.0.2.1",
        ] {
            let addr = ClientAddr::parse(raw).unwrap();
            addr_text(addr, &mut out);
            assert_eq!(out, addr.to_string());
        }
        for n in 0..=255u8 {
            let addr = ClientAddr::from(IpAddr::from([n, 255 - n, n / 3, 10]));
            addr_text(addr, &mut out);
            assert_eq!(out, addr.to_string());
        }
    }
}
