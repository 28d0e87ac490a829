//! An account as an evaluation reads it, in one statement: its row, and what the
//! evaluation would otherwise read with three more (its whitelist entries, its deferred
//! mail, when it was first seen). `record` is a new process per login, so each
//! statement it compiles costs more than running it (BENCHMARKS.md, `record`).

use rusqlite::{params, Connection, OptionalExtension};

use super::rows::{account_state, parse_text};
use crate::detect::Usual;
use crate::model::{Cidr, Timestamp};
use crate::store::evaluate::Stored;

/// An account's row and what its evaluation reads beside it, as of this read.
pub(super) struct Prefetched {
    pub stored: Stored,
    /// The database whitelist entries for every account and for this one.
    pub whitelist: Vec<Cidr>,
    /// Its mail in the deferred queue at the last queue scan.
    pub deferred: Option<u32>,
    /// The first log time of its parties of the scheme asked for.
    pub since: Option<Timestamp>,
}

impl Prefetched {
    /// After `party` was stored as used at `at`: the first log time moves to `at` if
    /// that is earlier, as the upsert of `write::see_party` moves the party's.
    pub fn saw_party_at(&mut self, at: Timestamp) {
        self.since = Some(self.since.map_or(at, |s| s.min(at)));
    }
}

/// One `|` between whitelist entries: a CIDR never holds one.
pub(super) const SQL: &str = "SELECT id, level, enforced, last_hit_ms, count_from_ms,
            usual_day, usual_messages, usual_networks, usual_days, last_seen_ms,
            (SELECT group_concat(cidr, '|') FROM whitelist WHERE user = '' OR user = ?1),
            (SELECT sum(messages) FROM queue_senders WHERE queue = 'deferred' AND account = ?1),
            (SELECT min(first_ms) FROM parties WHERE user_id = users.id AND scheme = ?2)
     FROM users WHERE name = ?1";

/// The account `name` with its parties of `scheme`, or None if it has no row.
pub(super) fn prefetch(
    tx: &Connection,
    name: &str,
    scheme: &str,
) -> rusqlite::Result<Option<Prefetched>> {
    tx.prepare_cached(SQL)?
        .query_row(params![name, scheme], |r| {
            let usual = match r.get::<_, Option<i64>>(5)? {
                Some(day) => Some((
                    day,
                    Usual {
                        messages: r.get(6)?,
                        networks: r.get(7)?,
                        days: r.get(8)?,
                    },
                )),
                None => None,
            };
            let whitelist = match r.get_ref(10)?.as_str_or_null()? {
                Some(all) => all
                    .split('|')
                    .map(|c| parse_text(10, c))
                    .collect::<rusqlite::Result<_>>()?,
                None => Vec::new(),
            };
            Ok(Prefetched {
                stored: Stored {
                    id: r.get(0)?,
                    state: account_state(r, 1)?,
                    usual,
                    latest: r.get(9)?,
                },
                whitelist,
                deferred: r.get(11)?,
                since: r.get(12)?,
            })
        })
        .optional()
}
