//! Migrations 5 and 9: account names case-folded. Before them, `Mallory@` and
//! `mallory@` (then `straße@` and `strasse@`) were two accounts; Postfix's map saw
//! one key twice and refused the file.

use rusqlite::{params, Transaction};

use crate::store::fold::{plan, whitelist_plan, Fold};

/// Renames every account to its folded name. Where several fold to one, the one
/// `plan` keeps takes over the others' logins, level history, actions, parties and
/// per-account whitelist entries, so nothing decided about any spelling is lost.
pub fn merge_case_variants(tx: &Transaction) -> rusqlite::Result<()> {
    let accounts: Vec<(i64, String, String)> = {
        let mut stmt = tx.prepare("SELECT id, name, level FROM users ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let folds = plan(accounts);
    if folds.is_empty() {
        return fold_whitelist(tx);
    }
    // A database that runs this again (see the schema) has the parties table, which
    // comes later.
    let parties: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'parties')",
        [],
        |r| r.get(0),
    )?;
    for fold in folds {
        let (name, keep, others) = match fold {
            Fold::Rename { id, name } => (name, id, Vec::new()),
            Fold::Merge { name, keep, others } => (name, keep, others),
        };
        for other in others {
            // A login stored under both spellings at the same instant is one login.
            tx.execute(
                "UPDATE OR IGNORE events SET user_id = ?1 WHERE user_id = ?2",
                params![keep, other],
            )?;
            tx.execute("DELETE FROM events WHERE user_id = ?1", [other])?;
            for table in ["level_changes", "actions"] {
                tx.execute(
                    &format!("UPDATE {table} SET user_id = ?1 WHERE user_id = ?2"),
                    params![keep, other],
                )?;
            }
            if parties {
                // One row per party: the earlier first and the later last log time.
                tx.execute(
                    "INSERT INTO parties (user_id, scheme, party, first_ms, last_ms)
                     SELECT ?1, scheme, party, first_ms, last_ms FROM parties WHERE user_id = ?2
                     ON CONFLICT(user_id, scheme, party) DO UPDATE
                       SET first_ms = min(first_ms, excluded.first_ms),
                           last_ms = max(last_ms, excluded.last_ms)",
                    params![keep, other],
                )?;
                tx.execute("DELETE FROM parties WHERE user_id = ?1", [other])?;
            }
            tx.execute(
                "UPDATE users SET
                    enforced = MAX(enforced, (SELECT enforced FROM users WHERE id = ?2)),
                    last_hit_ms = MAX(COALESCE(last_hit_ms, 0),
                        COALESCE((SELECT last_hit_ms FROM users WHERE id = ?2), 0)),
                    last_seen_ms = MAX(COALESCE(last_seen_ms, 0),
                        COALESCE((SELECT last_seen_ms FROM users WHERE id = ?2), 0)),
                    -- The baseline is recomputed from the merged logins.
                    usual_day = NULL
                 WHERE id = ?1",
                params![keep, other],
            )?;
            tx.execute("DELETE FROM users WHERE id = ?1", [other])?;
        }
        tx.execute(
            "UPDATE users SET name = ?1 WHERE id = ?2",
            params![name, keep],
        )?;
    }
    fold_whitelist(tx)
}

/// Per-account whitelist entries follow the same rule; two spellings of one entry
/// become one (the older note stays).
fn fold_whitelist(tx: &Transaction) -> rusqlite::Result<()> {
    let entries: Vec<(i64, String)> = {
        let mut stmt = tx.prepare("SELECT id, user FROM whitelist WHERE user <> '' ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (id, folded) in whitelist_plan(entries) {
        tx.execute(
            "UPDATE OR IGNORE whitelist SET user = ?1 WHERE id = ?2",
            params![folded, id],
        )?;
        tx.execute(
            "DELETE FROM whitelist WHERE id = ?1 AND user <> ?2",
            params![id, folded],
        )?;
    }
    Ok(())
}
