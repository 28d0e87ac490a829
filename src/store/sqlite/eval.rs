//! An evaluation's reads and writes (`store::evaluate`) in the caller's transaction:
//! what `record` and the queue scan judge an account with.

use rusqlite::{params, Connection};

use super::account::Prefetched;
use super::rows::parse_text;
use super::rows::seen_row;
use crate::detect::{message_of, AccountState, Engine, Fold, Seen, Usual};
use crate::model::{ClientAddr, SaslUser, Timestamp};
use crate::store::evaluate::{
    evaluate, ActionKey, EvalRows, Given, KnownRows, NewAction, NewChange, Page, KNOWN_READ_MAX,
};
use crate::store::Between;

/// Re-evaluates one account at `at` inside the caller's transaction (see
/// `store::evaluate`), queueing actions for `server`; returns how many were queued.
pub(super) fn evaluate_in(
    tx: &Connection,
    server: &str,
    user: &SaslUser,
    account: Prefetched,
    at: Timestamp,
    engine: &Engine,
) -> rusqlite::Result<usize> {
    let Prefetched {
        stored,
        whitelist,
        deferred,
        since,
    } = account;
    let given = Given {
        whitelist,
        deferred,
    };
    let mut rows = SqliteRows {
        tx,
        server,
        since: Some(since),
    };
    evaluate(&mut rows, user, &stored, &given, at, engine)
}

/// An evaluation's rows in the caller's transaction; actions are queued for `server`.
/// The account's first party, which `account::prefetch` read, is answered from there,
/// once: no write in between changes it.
struct SqliteRows<'c> {
    tx: &'c Connection,
    server: &'c str,
    since: Option<Option<Timestamp>>,
}

impl EvalRows for SqliteRows<'_> {
    type Error = rusqlite::Error;

    /// Folded as read: this runs for every row of the account's lookback on each
    /// `record`, so an address is parsed once per evaluation and each row costs
    /// little more than SQLite's step.
    fn fold_seen(&mut self, id: i64, window: Between, fold: &mut Fold) -> rusqlite::Result<()> {
        let mut stmt = self.tx.prepare_cached(SEEN_SQL)?;
        let mut rows = stmt.query(params![id, window.since, window.until])?;
        while let Some(r) = rows.next()? {
            let source = r.get(0)?;
            fold.add(
                (source, message_of(source, r.get_ref(4)?.as_str_or_null()?)),
                r.get_ref(1)?.as_str()?,
                r.get(2)?,
                r.get(3)?,
                |raw| parse_text(1, raw),
            )?;
        }
        Ok(())
    }

    fn seen(&mut self, id: i64, window: Between) -> rusqlite::Result<Vec<Seen>> {
        seen_in(self.tx, id, window)
    }

    fn newest(
        &mut self,
        user_id: i64,
        pages: &[Page],
        limit: u32,
    ) -> rusqlite::Result<Vec<Vec<(Seen, i64)>>> {
        let mut stmt = self.tx.prepare_cached(NEWEST_SQL)?;
        let mut out = Vec::with_capacity(pages.len());
        for p in pages {
            // Each page here ends with every row of its last log time (below), so the
            // next one starts below that time rather than at `before` within it.
            let until = match p.before {
                i64::MAX => p.until,
                _ => Timestamp::from_millis(p.until.millis() - 1),
            };
            let mut rows = stmt.query(params![user_id, p.source, p.since, until])?;
            let mut page: Vec<(Seen, i64)> = Vec::new();
            // The address parsed once for a run of rows with the same text.
            let mut addr: Option<(String, ClientAddr)> = None;
            while let Some(r) = rows.next()? {
                let time: Timestamp = r.get(1)?;
                // `limit` is checked here, not bound: see `known`.
                if page.len() >= limit as usize && page.last().is_some_and(|l| l.0.time != time) {
                    break;
                }
                let text = r.get_ref(0)?.as_str()?;
                let parsed = match &addr {
                    Some((t, a)) if t == text => *a,
                    _ => {
                        let a = parse_text(0, text)?;
                        addr = Some((text.to_owned(), a));
                        a
                    }
                };
                let seen = Seen {
                    source: p.source,
                    addr: parsed,
                    time,
                    count: r.get(2)?,
                    events: 1,
                    message: message_of(p.source, r.get_ref(4)?.as_str_or_null()?),
                };
                page.push((seen, r.get(3)?));
            }
            out.push(page);
        }
        Ok(out)
    }

    fn known(&mut self, id: i64, scheme: &str, from: Timestamp) -> rusqlite::Result<KnownRows> {
        match self.since.take() {
            Some(since) => Ok(KnownRows {
                since,
                recent: known_recent(self.tx, id, scheme, from)?,
            }),
            None => known(self.tx, id, scheme, from),
        }
    }

    fn cache_usual(&mut self, id: i64, day: i64, usual: &Usual) -> rusqlite::Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE users SET usual_day = ?2, usual_messages = ?3, usual_networks = ?4,
                                  usual_days = ?5 WHERE id = ?1",
            )?
            .execute(params![id, day, usual.messages, usual.networks, usual.days])?;
        Ok(())
    }

    fn set_state(&mut self, id: i64, state: &AccountState) -> rusqlite::Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE users SET level = ?2, enforced = ?3, last_hit_ms = ?4 WHERE id = ?1",
            )?
            .execute(params![id, state.level, state.enforced, state.last_hit])?;
        Ok(())
    }

    fn insert_change(&mut self, id: i64, change: &NewChange) -> rusqlite::Result<i64> {
        insert_change(self.tx, id, change)
    }

    fn last_queued(
        &mut self,
        key: &ActionKey,
        after: Timestamp,
    ) -> rusqlite::Result<Option<Timestamp>> {
        let t = key.transition;
        // A skipped or cancelled mail never went out, so it starts no cooldown.
        self.tx
            .prepare_cached(
                "SELECT max(a.logged_ms) FROM actions a JOIN users u ON u.id = a.user_id
                 WHERE a.user_id = ?1 AND a.kind = ?2 AND a.level = ?3 AND a.enforced = ?4
                   AND a.logged_ms > ?5 AND a.logged_ms >= u.count_from_ms
                   AND a.state NOT IN ('cancelled', 'skipped')",
            )?
            .query_row(
                params![key.user_id, key.kind, t.to, t.enforced, after],
                |r| r.get(0),
            )
    }

    fn insert_action(&mut self, a: &NewAction) -> rusqlite::Result<()> {
        let now = Timestamp::now();
        let t = a.key.transition;
        self.tx
            .prepare_cached(
                "INSERT INTO actions (user_id, change_id, kind, level, enforced, logged_ms,
                                      created_ms, next_ms, state, updated_ms, outcome, server)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                a.key.user_id,
                a.change_id,
                a.key.kind,
                t.to,
                t.enforced,
                a.logged,
                now,
                a.state().as_str(),
                a.skipped.as_ref().map(|_| now),
                a.skipped,
                self.server,
            ])?;
        Ok(())
    }
}

/// The login index (user, source, time, ...) holds every column read (fid as it
/// indexes it) in this order, so no table row is visited and nothing is sorted: the
/// read stops where its caller stops stepping it. Rows of one log time come in the
/// index's order, not by id, so a page ends after a whole log time (`newest`).
pub(super) const NEWEST_SQL: &str = "SELECT ip, ts_ms, count, id, ifnull(fid, '') FROM events
     WHERE user_id = ?1 AND source = ?2 AND ts_ms > ?3 AND ts_ms <= ?4
     ORDER BY ts_ms DESC";

pub(super) fn insert_change(tx: &Connection, user_id: i64, c: &NewChange) -> rusqlite::Result<i64> {
    let t = c.transition;
    tx.prepare_cached(
        "INSERT INTO level_changes (user_id, ts_ms, from_level, to_level, enforced, reason, actor)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        user_id, c.at, t.from, t.to, t.enforced, t.reason, c.actor
    ])?;
    Ok(tx.last_insert_rowid())
}

/// The account's parties of `scheme`: its first log time and those first seen after
/// `from`, the earliest first, at most `KNOWN_READ_MAX`.
pub(super) fn known(
    conn: &Connection,
    user_id: i64,
    scheme: &str,
    from: Timestamp,
) -> rusqlite::Result<KnownRows> {
    let since = conn
        .prepare_cached("SELECT min(first_ms) FROM parties WHERE user_id = ?1 AND scheme = ?2")?
        .query_row(params![user_id, scheme], |r| r.get(0))?;
    Ok(KnownRows {
        since,
        recent: known_recent(conn, user_id, scheme, from)?,
    })
}

/// The account's parties of `scheme` first seen after `from`, the earliest first, at
/// most `KNOWN_READ_MAX`.
pub(super) fn known_recent(
    conn: &Connection,
    user_id: i64,
    scheme: &str,
    from: Timestamp,
) -> rusqlite::Result<Vec<(String, Timestamp)>> {
    // No bound LIMIT: SQLite re-prepares a statement on every new value bound to one
    // (its planner reads the value), which cost more than the read itself. Rows are
    // stepped lazily, so taking the first ones stops the read as a LIMIT would.
    let mut stmt = conn.prepare_cached(KNOWN_RECENT_SQL)?;
    let rows = stmt.query_map(params![user_id, scheme, from], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    rows.take(KNOWN_READ_MAX as usize).collect()
}

pub(super) const KNOWN_RECENT_SQL: &str =
    "SELECT party, first_ms FROM parties WHERE user_id = ?1 AND scheme = ?2 AND first_ms > ?3
     ORDER BY first_ms";

/// Every source named: the login index begins (user, source, time), so each source
/// is a range of it; unnamed, the read would walk all of the account's logins.
pub(super) const SEEN_SQL: &str = "SELECT source, ip, ts_ms, count, ifnull(fid, '') FROM events
     WHERE user_id = ?1 AND ts_ms > ?2 AND ts_ms <= ?3
       AND source IN ('smtp', 'imap', 'pop3', 'webmail', 'rate', 'bounces', 'queue', 'spread',
                      'smtp-refused')";

/// One account's evidence in `(since, until]`, a `Seen` per stored row.
pub(super) fn seen_in(
    conn: &Connection,
    user_id: i64,
    window: Between,
) -> rusqlite::Result<Vec<Seen>> {
    let mut stmt = conn.prepare_cached(SEEN_SQL)?;
    let params = params![user_id, window.since, window.until];
    let rows = stmt.query_map(params, |r| seen_row(r, 0))?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Source;
    use crate::store::schema;

    /// Pages as `count_bounded` asks for them, each `limit` rows long, over logins of
    /// which three share each log time: every row comes once, newest first.
    #[test]
    fn pages_of_the_newest_rows_hold_each_row_once_across_shared_log_times() {
        let mut conn = Connection::open_in_memory().expect("memory database");
        schema::migrate(&mut conn).expect("schema");
        conn.execute_batch(
            "INSERT INTO users (id, name) VALUES (1, 'a@example.com');
             WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 89)
             INSERT INTO events (user_id, ts_ms, source, ip, jail)
               SELECT 1, 1000000 + (i / 3) * 1000, CASE WHEN i % 10 = 0 THEN 'imap' ELSE 'smtp' END,
                      '192.0.2.' || (i % 7), 'j' FROM n;",
        )
        .expect("rows");
        let want: Vec<(i64, i64)> = conn
            .prepare(
                "SELECT ts_ms, id FROM events WHERE source = 'smtp' AND ts_ms > 1003000
                 ORDER BY ts_ms DESC, id DESC",
            )
            .expect("want")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("want rows")
            .collect::<rusqlite::Result<_>>()
            .expect("want rows");
        let mut rows = SqliteRows {
            tx: &conn,
            server: "",
            since: None,
        };
        let mut page = Page {
            source: Source::Smtp,
            since: Timestamp::from_millis(1003000),
            until: Timestamp::from_millis(2000000),
            before: i64::MAX,
        };
        let (limit, mut got) = (4, Vec::new());
        loop {
            let read = rows.newest(1, &[page], limit).expect("page").remove(0);
            let full = read.len() >= limit as usize;
            got.extend(read.iter().map(|(s, id)| (s.time.millis(), *id)));
            match read.last() {
                Some((last, id)) if full => {
                    page.until = last.time;
                    page.before = *id;
                }
                _ => break,
            }
        }
        let times: Vec<i64> = got.iter().map(|g| g.0).collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "{got:?}");
        got.sort_by(|a, b| b.cmp(a));
        assert_eq!(got, want);
    }
}
