//! Migration 4: account names case-folded as Postfix folds map keys (`ß` is `ss`),
//! not only lower-cased. Before it, `straße@` and `strasse@` could be two accounts
//! of the shared store; Postfix's map saw one key twice and refused the file.

use postgres::Transaction;

use crate::store::fold::{plan, whitelist_plan, Fold};

/// Renames every account to its folded name. Where several fold to one, the one
/// `plan` keeps takes over the others' logins, level history, actions, parties and
/// per-account whitelist entries, as SQLite's migration 9 does.
pub fn merge_case_variants(tx: &mut Transaction) -> Result<(), postgres::Error> {
    let accounts: Vec<(i64, String, String)> = tx
        .query("SELECT id, name, level FROM users ORDER BY id", &[])?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    for fold in plan(accounts) {
        let (name, keep, others) = match fold {
            Fold::Rename { id, name } => (name, id, Vec::new()),
            Fold::Merge { name, keep, others } => (name, keep, others),
        };
        for other in others {
            merge_into(tx, keep, other)?;
        }
        tx.execute("UPDATE users SET name = $1 WHERE id = $2", &[&name, &keep])?;
    }
    let entries: Vec<(i64, String)> = tx
        .query(
            "SELECT id, account FROM whitelist WHERE account <> '' ORDER BY id",
            &[],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (id, folded) in whitelist_plan(entries) {
        // Two spellings of one entry become one: the older note stays.
        tx.execute(
            "DELETE FROM whitelist w WHERE w.id = $1 AND EXISTS
                 (SELECT 1 FROM whitelist k WHERE k.cidr = w.cidr AND k.account = $2)",
            &[&id, &folded],
        )?;
        tx.execute(
            "UPDATE whitelist SET account = $2 WHERE id = $1",
            &[&id, &folded],
        )?;
    }
    Ok(())
}

/// Moves account `other`'s rows to `keep` and deletes `other`.
fn merge_into(tx: &mut Transaction, keep: i64, other: i64) -> Result<(), postgres::Error> {
    // A login stored under both spellings as one call (the same key) is one login.
    tx.execute(
        "DELETE FROM events o WHERE o.user_id = $2 AND EXISTS
             (SELECT 1 FROM events k WHERE k.user_id = $1 AND k.ts_ms = o.ts_ms
                 AND k.source = o.source AND k.ip = o.ip AND k.count = o.count
                 AND coalesce(k.fid, '') = coalesce(o.fid, ''))",
        &[&keep, &other],
    )?;
    for table in ["events", "level_changes", "actions"] {
        tx.execute(
            &format!("UPDATE {table} SET user_id = $1 WHERE user_id = $2"),
            &[&keep, &other],
        )?;
    }
    // One row per party: the earlier first and the later last log time.
    tx.execute(
        "INSERT INTO parties (user_id, scheme, party, first_ms, last_ms)
         SELECT $1, scheme, party, first_ms, last_ms FROM parties WHERE user_id = $2
         ON CONFLICT (user_id, scheme, party) DO UPDATE
           SET first_ms = LEAST(parties.first_ms, excluded.first_ms),
               last_ms = GREATEST(parties.last_ms, excluded.last_ms)",
        &[&keep, &other],
    )?;
    tx.execute("DELETE FROM parties WHERE user_id = $1", &[&other])?;
    tx.execute(
        "UPDATE users k SET
            enforced = k.enforced OR o.enforced,
            last_hit_ms = GREATEST(k.last_hit_ms, o.last_hit_ms),
            last_seen_ms = GREATEST(k.last_seen_ms, o.last_seen_ms),
            -- The baseline is recomputed from the merged logins.
            usual_day = NULL
         FROM users o WHERE k.id = $1 AND o.id = $2",
        &[&keep, &other],
    )?;
    tx.execute("DELETE FROM users WHERE id = $1", &[&other])?;
    Ok(())
}
