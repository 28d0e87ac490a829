//! Bulk writes of a backtest into its scratch database as its replay goes: one
//! transaction, prepared statements, no fsync (the file is a scratch copy by
//! construction).

use std::fmt::Write as _;
use std::net::IpAddr;

use rusqlite::{params, Connection, ErrorCode, Statement, TransactionBehavior};

use super::eval::insert_change;
use crate::detect::Seen;
use crate::model::{ClientAddr, Label, Timestamp};
use crate::store::evaluate::NewChange;
use crate::store::schema;
use crate::store::Imported;

/// The page cache during an import, as SQLite takes it: negative means KiB. Room
/// for the whole import and the index builds' sorts (pages are allocated as used):
/// a spill writes the same pages twice.
const IMPORT_CACHE_KIB: i64 = -256 * 1024;

/// The page cache while the indexes are built; see `import_in`.
const SORT_CACHE_KIB: i64 = -64 * 1024;

/// Events per multi-row INSERT: one statement run per batch instead of per row.
const BATCH: usize = 64;

/// Values bound per event; the jail, the same for all, is bound once as `?1`.
const EVENT_PARAMS: usize = 6;

/// `INSERT` of `rows` events: row `i` takes parameters `2 + 6i` to `7 + 6i`.
fn insert_events(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|i| {
            let p = 2 + EVENT_PARAMS * i;
            format!(
                "(?{}, ?{}, ?{}, ?{}, ?1, ?{}, ?{})",
                p,
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5
            )
        })
        .collect();
    format!(
        "INSERT OR IGNORE INTO events (user_id, ts_ms, source, ip, jail, fid, count) VALUES {}",
        values.join(", ")
    )
}

/// Returns false, having written nothing, if `items` ended before the outcome.
pub(super) fn import(
    conn: &mut Connection,
    jail: &Label,
    items: &mut dyn Iterator<Item = Imported>,
) -> rusqlite::Result<bool> {
    conn.pragma_update(None, "synchronous", "OFF")?;
    // Every event's account is inserted here first, so the foreign key holds by
    // construction; checking it costs a look-up per event. (Only outside a
    // transaction does this pragma take effect.)
    let foreign_keys: bool = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    conn.pragma_update(None, "foreign_keys", false)?;
    let cache_size: i64 = conn.query_row("PRAGMA cache_size", [], |r| r.get(0))?;
    conn.pragma_update(None, "cache_size", IMPORT_CACHE_KIB)?;
    let fresh = events_empty(conn)? && journal_in_memory(conn)?;
    let imported = import_in(conn, jail, items);
    if fresh {
        // Also after a failure: the transaction rolled back, the file is whole. The
        // mark goes first: the file stays whole even if the switch back fails.
        unmark(conn)?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    }
    let imported = imported?;
    // The commit copied the import into the database file; an import-sized WAL left
    // behind would be read through by the next command that opens it.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    conn.pragma_update(None, "foreign_keys", foreign_keys)?;
    conn.pragma_update(None, "cache_size", cache_size)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(imported)
}

/// The `meta` key that marks an import in progress with its journal in memory.
pub(super) const UNFINISHED: &str = "import_unfinished";

fn events_empty(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row("SELECT NOT EXISTS (SELECT 1 FROM events)", [], |r| r.get(0))
}

/// Into a scratch database without events, the import keeps its rollback journal in
/// memory instead of the WAL: each page is written once, not to the WAL and then
/// again by the checkpoint (BENCHMARKS.md). The journal still rolls
/// the import back if it fails, but a process killed half-way would leave a damaged
/// file; the mark, stored before, makes the next command say so instead of reading it.
/// False (WAL kept) if the switch is refused, e.g. another connection has it open.
fn journal_in_memory(conn: &Connection) -> rusqlite::Result<bool> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, 'an ingest was interrupted')
         ON CONFLICT(key) DO NOTHING",
        [UNFINISHED],
    )?;
    let mode = conn
        .query_row("PRAGMA journal_mode = MEMORY", [], |r| {
            r.get::<_, String>(0)
        })
        .unwrap_or_default();
    if mode.eq_ignore_ascii_case("memory") {
        return Ok(true);
    }
    unmark(conn)?;
    Ok(false)
}

fn unmark(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM meta WHERE key = ?1", [UNFINISHED])
        .map(drop)
}

/// The import's transaction; see `import`.
fn import_in(
    conn: &mut Connection,
    jail: &Label,
    items: &mut dyn Iterator<Item = Imported>,
) -> rusqlite::Result<bool> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Into an empty events table, building its indexes after inserting is faster than
    // keeping them up to date row by row; except the one on time alone, which the
    // replay, in log-time order, fills at its right edge as cheaply as the table.
    let rebuild = if events_empty(&tx)? {
        drop_indexes(&tx)?
    } else {
        Vec::new()
    };
    let mut ids: Vec<i64> = Vec::new();
    let mut outcome = None;
    {
        let mut user =
            tx.prepare("INSERT INTO users (name) VALUES (?1) ON CONFLICT(name) DO NOTHING")?;
        let mut id_of = tx.prepare("SELECT id FROM users WHERE name = ?1")?;
        let mut events = EventWriter::new(&tx, jail)?;
        for item in items {
            match item {
                Imported::Account(name) => {
                    user.execute([name.as_str()])?;
                    ids.push(id_of.query_row([name.as_str()], |row| row.get(0))?);
                }
                Imported::Events(batch) => {
                    for (account, seen, fid) in batch {
                        let Some(&id) = ids.get(account) else {
                            return Err(rusqlite::Error::ToSqlConversionFailure(
                                format!("event of account {account}, never announced").into(),
                            ));
                        };
                        events.push(id, seen, fid)?;
                    }
                }
                Imported::Outcome(accounts) => {
                    outcome = Some(accounts);
                    break;
                }
            }
        }
        events.finish()?;
    }
    // Ended early: the replay failed, and the transaction rolls back on drop.
    let Some(accounts) = outcome else {
        return Ok(false);
    };
    let mut state = tx.prepare(
        "UPDATE users SET level = ?2, enforced = ?3, last_hit_ms = ?4,
           last_seen_ms = max(coalesce(last_seen_ms, 0), ?5)
         WHERE id = ?1",
    )?;
    for (r, id) in accounts.iter().zip(&ids) {
        state.execute(params![
            id,
            r.state.level,
            r.state.enforced,
            r.state.last_hit.map(Timestamp::millis),
            r.last_seen.map(Timestamp::millis),
        ])?;
        for (at, t) in &r.changes {
            let change = NewChange {
                at: *at,
                transition: t,
                actor: "detector",
            };
            insert_change(&tx, *id, &change)?;
        }
    }
    drop(state);
    // The replay is over by now: its core can sort the index builds' keys. It does
    // while the scan goes on only if the keys fill more than one sorted run, whose
    // size follows the page cache: a smaller cache makes runs to sort in parallel.
    tx.pragma_update(None, "threads", 2)?;
    tx.pragma_update(None, "cache_size", SORT_CACHE_KIB)?;
    for sql in &rebuild {
        if let Err(e) = tx.execute_batch(sql) {
            if e.sqlite_error_code() != Some(ErrorCode::ConstraintViolation) {
                return Err(e);
            }
            // The replay skips repeated events it still holds; one repeated long
            // after is stored twice. Keep the first, as INSERT OR IGNORE would have.
            tx.execute_batch(
                "DELETE FROM events WHERE id NOT IN
                   (SELECT min(id) FROM events
                    GROUP BY user_id, ts_ms, source, ip, count, ifnull(fid, ''))",
            )?;
            tx.execute_batch(sql)?;
        }
    }
    tx.commit()?;
    Ok(true)
}

/// Inserts events in batches of `BATCH` rows, in the order pushed.
struct EventWriter<'c> {
    one: Statement<'c>,
    many: Statement<'c>,
    pending: Vec<(i64, Seen, Option<Label>)>,
    /// The address as text, reused: SQLite copies what is bound.
    addr: String,
}

impl<'c> EventWriter<'c> {
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

    fn push(&mut self, user_id: i64, e: Seen, fid: Option<Label>) -> rusqlite::Result<()> {
        self.pending.push((user_id, e, fid));
        if self.pending.len() < BATCH {
            return Ok(());
        }
        for (i, (id, e, fid)) in self.pending.iter().enumerate() {
            bind_event(
                &mut self.many,
                1 + EVENT_PARAMS * i,
                (*id, e, fid.as_ref()),
                &mut self.addr,
            )?;
        }
        self.pending.clear();
        self.many.raw_execute().map(drop)
    }

    /// Writes what is left, one row at a time.
    fn finish(mut self) -> rusqlite::Result<()> {
        for (id, e, fid) in &self.pending {
            bind_event(&mut self.one, 1, (*id, e, fid.as_ref()), &mut self.addr)?;
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
    (user_id, e, fid): (i64, &Seen, Option<&Label>),
    addr: &mut String,
) -> rusqlite::Result<()> {
    addr_text(e.addr, addr);
    stmt.raw_bind_parameter(offset + 1, user_id)?;
    stmt.raw_bind_parameter(offset + 2, e.time.millis())?;
    stmt.raw_bind_parameter(offset + 3, e.source.as_str())?;
    stmt.raw_bind_parameter(offset + 4, addr.as_str())?;
    stmt.raw_bind_parameter(offset + 5, fid.map(Label::as_str))?;
    stmt.raw_bind_parameter(offset + 6, e.count)
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

/// Drops the events table's indexes but the one by time; returns the SQL that creates
/// them again, as the schema wrote it.
fn drop_indexes(tx: &Connection) -> rusqlite::Result<Vec<String>> {
    let indexes: Vec<(String, String)> = tx
        .prepare(
            "SELECT name, sql FROM sqlite_master
             WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL AND name <> ?1",
        )?
        .query_map([schema::EVENTS_BY_TIME], |r| Ok((r.get(0)?, r.get(1)?)))?
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
            // Never a client today, but rows from older versions may hold them.
            let addr = ClientAddr::parse_stored(raw).unwrap();
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
