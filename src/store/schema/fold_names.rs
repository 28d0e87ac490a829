//! Migrations 5 and 9: account names case-folded. Before them, `Mallory@` and
//! `mallory@` (then `straße@` and `strasse@`) were two accounts; Postfix's map saw
//! one key twice and refused the file.

use std::collections::BTreeMap;

use rusqlite::{params, Transaction};

use crate::model::{fold_case, Level};

struct Account {
    id: i64,
    level: Level,
}

/// Renames every account to its folded name. Where several fold to one, the most
/// worried of them (then the oldest) keeps its row and takes over the others' logins,
/// level history, actions, parties and per-account whitelist entries, so nothing decided about
/// any spelling is lost and the merged account is at least as contained as the worst.
pub fn merge_case_variants(tx: &Transaction) -> rusqlite::Result<()> {
    let mut groups: BTreeMap<String, Vec<Account>> = BTreeMap::new();
    let mut renamed = Vec::new();
    {
        let mut stmt = tx.prepare("SELECT id, name, level FROM users ORDER BY id")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let (id, name, level): (i64, String, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
            let folded = fold_case(&name);
            if folded != name {
                renamed.push(id);
            }
            let level = Level::from_db(&level).unwrap_or(Level::Ok);
            groups
                .entry(folded)
                .or_default()
                .push(Account { id, level });
        }
    }
    if renamed.is_empty() {
        return fold_whitelist(tx);
    }
    // A database that runs this again (see the schema) has the parties table, which
    // comes later.
    let parties: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'parties')",
        [],
        |r| r.get(0),
    )?;
    for (name, mut accounts) in groups {
        if accounts.len() == 1 {
            if renamed.contains(&accounts[0].id) {
                tx.execute(
                    "UPDATE users SET name = ?1 WHERE id = ?2",
                    params![name, accounts[0].id],
                )?;
            }
            continue;
        }
        // Highest level first, then the oldest row.
        accounts.sort_by(|a, b| b.level.cmp(&a.level).then(a.id.cmp(&b.id)));
        let keep = accounts[0].id;
        for other in &accounts[1..] {
            // A login stored under both spellings at the same instant is one login.
            tx.execute(
                "UPDATE OR IGNORE events SET user_id = ?1 WHERE user_id = ?2",
                params![keep, other.id],
            )?;
            tx.execute("DELETE FROM events WHERE user_id = ?1", [other.id])?;
            for table in ["level_changes", "actions"] {
                tx.execute(
                    &format!("UPDATE {table} SET user_id = ?1 WHERE user_id = ?2"),
                    params![keep, other.id],
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
                    params![keep, other.id],
                )?;
                tx.execute("DELETE FROM parties WHERE user_id = ?1", [other.id])?;
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
                params![keep, other.id],
            )?;
            tx.execute("DELETE FROM users WHERE id = ?1", [other.id])?;
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
    for (id, user) in entries {
        let folded = fold_case(&user);
        if folded != user {
            tx.execute(
                "UPDATE OR IGNORE whitelist SET user = ?1 WHERE id = ?2",
                params![folded, id],
            )?;
            tx.execute(
                "DELETE FROM whitelist WHERE id = ?1 AND user = ?2",
                params![id, user],
            )?;
        }
    }
    Ok(())
}
