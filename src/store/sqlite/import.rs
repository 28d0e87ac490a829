//! Bulk writes of a replayed backtest into its scratch database: one transaction,
//! prepared statements, no fsync (the file is a scratch copy by construction).

use rusqlite::{params, Connection, TransactionBehavior};

use super::write::insert_change;
use crate::detect::replay::Replayed;
use crate::model::{LogTime, SaslUser};

pub(super) fn import(
    conn: &mut Connection,
    accounts: &[(SaslUser, Replayed)],
) -> rusqlite::Result<()> {
    conn.pragma_update(None, "synchronous", "OFF")?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut user = tx.prepare(
            "INSERT INTO users (name, level, enforced, last_hit_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(name) DO UPDATE SET level = excluded.level, enforced = excluded.enforced,
               last_hit_ms = excluded.last_hit_ms,
               last_seen_ms = max(coalesce(last_seen_ms, 0), excluded.last_seen_ms)",
        )?;
        let mut id_of = tx.prepare("SELECT id FROM users WHERE name = ?1")?;
        let mut event = tx.prepare(
            "INSERT OR IGNORE INTO events (user_id, ts_ms, source, ip, jail, fid, count)
             VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6)",
        )?;
        for (name, r) in accounts {
            user.execute(params![
                name.as_str(),
                r.state.level.as_str(),
                r.state.enforced,
                r.state.last_hit.map(LogTime::millis),
                r.last_seen.map(LogTime::millis),
            ])?;
            let id: i64 = id_of.query_row([name.as_str()], |row| row.get(0))?;
            for e in &r.events {
                event.execute(params![
                    id,
                    e.time.millis(),
                    e.source.as_str(),
                    e.addr.to_string(),
                    e.jail.as_str(),
                    e.count
                ])?;
            }
            for (at, t) in &r.changes {
                insert_change(&tx, id, *at, t, "detector")?;
            }
        }
    }
    tx.commit()?;
    conn.pragma_update(None, "synchronous", "NORMAL")
}
