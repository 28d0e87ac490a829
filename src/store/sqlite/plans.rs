//! The plans SQLite makes for `record`'s reads on the current schema: each walks an
//! index for the rows it needs, never a whole table of logins or parties, so its cost
//! follows the account's window, not the database's size or the account's history.

use rusqlite::Connection;

use super::{account, eval, write};
use crate::model::Source;
use crate::store::schema;

/// `EXPLAIN QUERY PLAN`'s lines for `sql` on a new database of the current schema.
fn plan(sql: &str) -> String {
    let mut conn = Connection::open_in_memory().expect("memory database");
    schema::migrate(&mut conn).expect("schema");
    let mut stmt = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .expect("explain");
    let mut rows = stmt.raw_query();
    let mut lines = Vec::new();
    while let Some(r) = rows.next().expect("plan row") {
        lines.push(r.get::<_, String>(3).expect("detail"));
    }
    lines.join("\n")
}

/// No line walks a whole table but the whitelist (a few admin entries).
fn searches_only(plan: &str) {
    for line in plan.lines() {
        assert!(
            !line.starts_with("SCAN ") || line.starts_with("SCAN whitelist "),
            "a whole table is walked:\n{plan}"
        );
    }
}

/// The plan of `sql`, which must read a time range of one account's logins of a
/// source from the login index alone.
fn login_range(sql: &str) -> String {
    let p = plan(sql);
    searches_only(&p);
    let range = "USING COVERING INDEX events_key (user_id=? AND source=? AND ts_ms>? AND ts_ms<?)";
    assert!(p.contains(range), "{p}");
    p
}

#[test]
fn the_account_read_searches_each_table_it_reads() {
    let p = plan(account::SQL);
    searches_only(&p);
    for index in ["users", "queue_senders", "parties_first"] {
        assert!(p.contains(index), "no {index} in:\n{p}");
    }
}

#[test]
fn the_newest_first_read_walks_the_login_index_alone_without_sorting_it() {
    let p = login_range(eval::NEWEST_SQL);
    // A sort, even of the rows of one log time, would read them all before the first.
    assert!(!p.contains("TEMP B-TREE"), "{p}");
}

#[test]
fn a_window_read_is_a_range_of_the_login_index_per_source() {
    login_range(eval::SEEN_SQL);
    let listed = eval::SEEN_SQL.split_once("IN (").expect("source list").1;
    for source in Source::ALL {
        assert!(
            listed.contains(&format!("'{}'", source.as_str())),
            "{source} not read"
        );
    }
}

#[test]
fn new_parties_and_pruning_walk_their_indexes_in_order() {
    let p = plan(eval::KNOWN_RECENT_SQL);
    searches_only(&p);
    assert!(
        p.contains("parties_first") && !p.contains("TEMP B-TREE"),
        "{p}"
    );
    let p = plan(write::PRUNE_EVENTS_SQL);
    searches_only(&p);
    assert!(p.contains("events_ts") && !p.contains("TEMP B-TREE"), "{p}");
}
