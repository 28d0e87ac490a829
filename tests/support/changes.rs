//! Level changes as a SQLite database stores them, for the tests that hold `ingest`
//! (the backtest) to what the live `record` calls decided.

use std::path::Path;

use super::Sandbox;

/// A level change: (user, time in ms, level reached, reason).
pub type Change = (String, i64, String, String);

/// The level changes stored in `db`, by user, each user's in the order they were made.
pub fn level_changes(db: &Path) -> Vec<Change> {
    let conn = rusqlite::Connection::open(db).expect("open");
    let mut stmt = conn
        .prepare(
            "SELECT u.name, c.ts_ms, c.to_level, c.reason FROM level_changes c
             JOIN users u ON u.id = c.user_id ORDER BY u.name, c.id",
        )
        .expect("query");
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("rows");
    rows.collect::<Result<_, _>>().expect("changes")
}

impl Sandbox {
    /// `ingest` of `lines` (JSON, one a recorded call) into a scratch database makes
    /// the same level changes, word for word, as the `record` calls stored.
    pub fn assert_backtest_agrees(&self, lines: &[String]) {
        let scratch = self.path().join("scratch.db");
        self.ingest(&scratch, lines.join("\n") + "\n");
        assert_eq!(level_changes(&self.db()), level_changes(&scratch));
    }
}
