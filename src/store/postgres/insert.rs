//! `record`'s statement: logins of distinct accounts stored in one round trip, each
//! with its account and party, and what their evaluations read first.

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use postgres::types::Type;
use postgres::{GenericClient, Row};

use super::cached::Cached;
use super::error::R;
use super::rows::{bad, cidr_of, stored_row, u32_of, DEFERRED_SQL, STORED_COLS};
use crate::detect::Engine;
use crate::model::{Cidr, SaslUser, Timestamp};
use crate::store::evaluate::{KnownRows, Stored, KNOWN_READ_MAX, PARTY_LAST_STEP};
use crate::store::LoginEvent;

/// Logins of distinct accounts (one statement cannot upsert a row twice), under
/// their accounts' locks: each account row upserted (its state as it is now, whatever
/// snapshot the statement started with: the upsert reads the latest row), each login
/// inserted unless a retry already stored it (`event_id` NULL), its party (NULL for
/// none) seen if it was; and for the evaluations each account's deferred mail and its
/// parties as they were before this statement (the party's row as it is after comes
/// back in `party_first` when it changed: a known party's row is rewritten at most
/// once per `PARTY_LAST_STEP`, see the SQLite store's `see_party`). One round trip,
/// the logins in the order given.
static INSERT_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH b AS (
           SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[],
                                $6::text[], $7::int8[], $8::text[], $9::int8[])
             WITH ORDINALITY AS b(name, ts, source, ip, jail, fid, count, party, known_from, n)),
         u AS (
           INSERT INTO users (name, last_seen_ms) SELECT name, ts FROM b
           ON CONFLICT (name) DO UPDATE
           SET last_seen_ms = greatest(coalesce(users.last_seen_ms, 0), excluded.last_seen_ms)
           RETURNING {STORED_COLS}, name),
         e AS (
           INSERT INTO events (user_id, ts_ms, source, ip, jail, fid, count, server)
           SELECT u.id, b.ts, b.source, b.ip, b.jail, b.fid, b.count, $10
           FROM b JOIN u USING (name)
           ON CONFLICT DO NOTHING RETURNING id, user_id),
         p AS (
           INSERT INTO parties (user_id, scheme, party, first_ms, last_ms)
           SELECT u.id, $11, b.party, b.ts, b.ts
           FROM b JOIN u USING (name) JOIN e ON e.user_id = u.id
           WHERE b.party IS NOT NULL
           ON CONFLICT (user_id, scheme, party) DO UPDATE
             SET first_ms = least(parties.first_ms, excluded.first_ms),
                 last_ms = greatest(parties.last_ms, excluded.last_ms)
             WHERE excluded.first_ms < parties.first_ms
                OR excluded.last_ms > parties.last_ms + {party_last_step}
           RETURNING user_id, first_ms)
         SELECT u.*, e.id AS event_id, p.first_ms AS party_first,
                ({deferred}) AS deferred,
                (SELECT min(first_ms) FROM parties
                 WHERE user_id = u.id AND scheme = $11) AS known_since,
                k.parties, k.firsts, b.n
         FROM b JOIN u USING (name)
         LEFT JOIN e ON e.user_id = u.id
         LEFT JOIN p ON p.user_id = u.id
         CROSS JOIN LATERAL (
           SELECT array_agg(party ORDER BY first_ms, party) AS parties,
                  array_agg(first_ms ORDER BY first_ms, party) AS firsts
           FROM (SELECT party, first_ms FROM parties
                 WHERE user_id = u.id AND scheme = $11 AND first_ms > b.known_from
                 ORDER BY first_ms LIMIT $12) r) k
         ORDER BY b.n",
        deferred = DEFERRED_SQL.replace("$1", "b.name"),
        party_last_step = PARTY_LAST_STEP.millis(),
    )
});

/// The whitelist entries of several accounts, read once for a transaction's logins.
const WHITELISTS_SQL: &str =
    "SELECT account, cidr FROM whitelist WHERE account = '' OR account = ANY($1)";

/// The database whitelist entries of the accounts of a transaction's logins.
pub(super) struct Whitelists {
    every: Vec<Cidr>,
    own: HashMap<String, Vec<Cidr>>,
}

impl Whitelists {
    pub fn read<'u>(
        c: &mut Cached<'_, impl GenericClient>,
        users: impl IntoIterator<Item = &'u SaslUser>,
    ) -> R<Self> {
        let names: BTreeSet<&str> = users.into_iter().map(SaslUser::as_str).collect();
        let names: Vec<&str> = names.into_iter().collect();
        let mut out = Whitelists {
            every: Vec::new(),
            own: HashMap::new(),
        };
        for r in c.query(WHITELISTS_SQL, &[(&names, Type::TEXT_ARRAY)])? {
            let account: String = r.try_get(0)?;
            let cidr = cidr_of(r.try_get(1)?)?;
            match account.as_str() {
                "" => out.every.push(cidr),
                _ => out.own.entry(account).or_default().push(cidr),
            }
        }
        Ok(out)
    }

    /// The entries for every account and for `user`.
    pub fn of(&self, user: &SaslUser) -> Vec<Cidr> {
        let own = self.own.get(user.as_str()).into_iter().flatten();
        self.every.iter().chain(own).copied().collect()
    }
}

/// One login as stored, with what its evaluation reads first.
pub(super) struct Inserted {
    /// None: a retry of a login stored already; nothing changed.
    pub event_id: Option<i64>,
    pub account: Stored,
    pub whitelist: Vec<Cidr>,
    pub deferred: Option<u32>,
    /// The account's parties as `known` reads them from `known.0`, this login's
    /// included.
    pub known: (Timestamp, KnownRows),
}

/// Stores `events`, of distinct accounts whose locks the caller's transaction holds;
/// what each evaluation needs, in the same order.
pub(super) fn insert(
    c: &mut Cached<'_, impl GenericClient>,
    server: &str,
    engine: &Engine,
    events: &[&LoginEvent],
    whitelists: &Whitelists,
) -> R<Vec<Inserted>> {
    let whitelist: Vec<Vec<Cidr>> = events.iter().map(|e| whitelists.of(&e.user)).collect();
    let party: Vec<Option<String>> = events
        .iter()
        .zip(&whitelist)
        .map(|(e, w)| {
            let w = engine.whitelist(&e.user, w);
            engine.origin(&w, e.addr).party.map(|p| p.to_string())
        })
        .collect();
    let from: Vec<i64> = events
        .iter()
        .map(|e| engine.known_from(e.time).millis())
        .collect();
    let names: Vec<&str> = events.iter().map(|e| e.user.as_str()).collect();
    let times: Vec<i64> = events.iter().map(|e| e.time.millis()).collect();
    let sources: Vec<&str> = events.iter().map(|e| e.source.as_str()).collect();
    let addrs: Vec<String> = events.iter().map(|e| e.addr.to_string()).collect();
    let jails: Vec<&str> = events.iter().map(|e| e.jail.as_str()).collect();
    let fids: Vec<Option<&str>> = events
        .iter()
        .map(|e| e.fid.as_ref().map(|f| f.as_str()))
        .collect();
    let counts: Vec<i64> = events.iter().map(|e| i64::from(e.count.get())).collect();
    let rows = c.query(
        INSERT_SQL.as_str(),
        &[
            (&names, Type::TEXT_ARRAY),
            (&times, Type::INT8_ARRAY),
            (&sources, Type::TEXT_ARRAY),
            (&addrs, Type::TEXT_ARRAY),
            (&jails, Type::TEXT_ARRAY),
            (&fids, Type::TEXT_ARRAY),
            (&counts, Type::INT8_ARRAY),
            (&party, Type::TEXT_ARRAY),
            (&from, Type::INT8_ARRAY),
            (&server, Type::TEXT),
            (&engine.party_scheme(), Type::TEXT),
            (&i64::from(KNOWN_READ_MAX), Type::INT8),
        ],
    )?;
    if rows.len() != events.len() {
        return Err(bad(
            "batch",
            &rows.len().to_string(),
            format!("{} rows for {} logins", rows.len(), events.len()),
        ));
    }
    let parts = whitelist.into_iter().zip(party).zip(from);
    rows.iter()
        .zip(parts)
        .map(|(r, ((whitelist, party), from))| {
            inserted(r, whitelist, party, Timestamp::from_millis(from))
        })
        .collect()
}

/// One row of `INSERT_SQL`.
fn inserted(r: &Row, whitelist: Vec<Cidr>, party: Option<String>, from: Timestamp) -> R<Inserted> {
    let firsts = r.try_get::<_, Option<Vec<i64>>>("firsts")?;
    let mut known = KnownRows {
        since: r
            .try_get::<_, Option<i64>>("known_since")?
            .map(Timestamp::from_millis),
        recent: r
            .try_get::<_, Option<Vec<String>>>("parties")?
            .unwrap_or_default()
            .into_iter()
            .zip(firsts.unwrap_or_default())
            .map(|(p, t)| (p, Timestamp::from_millis(t)))
            .collect(),
    };
    if let (Some(party), Some(first)) = (party, r.try_get::<_, Option<i64>>("party_first")?) {
        seen_now(&mut known, party, Timestamp::from_millis(first), from);
    }
    Ok(Inserted {
        event_id: r.try_get("event_id")?,
        account: stored_row(r)?,
        whitelist,
        deferred: r
            .try_get::<_, Option<i64>>("deferred")?
            .map(u32_of)
            .transpose()?,
        known: (from, known),
    })
}

/// `known`'s rows read before the statement that saw `party` (its row now first seen
/// at `first`), made what `known` reads after it: the account's first log time, and
/// the party among those first seen after `from`, the earliest `KNOWN_READ_MAX`.
fn seen_now(known: &mut KnownRows, party: String, first: Timestamp, from: Timestamp) {
    known.since = Some(known.since.map_or(first, |s| s.min(first)));
    known.recent.retain(|(p, _)| *p != party);
    if first > from {
        known.recent.push((party, first));
        known
            .recent
            .sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        known.recent.truncate(KNOWN_READ_MAX as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn rows(since: Option<i64>, recent: &[(&str, i64)]) -> KnownRows {
        KnownRows {
            since: since.map(t),
            recent: recent.iter().map(|(p, f)| (p.to_string(), t(*f))).collect(),
        }
    }

    #[test]
    fn a_party_seen_is_read_back_as_known_would_read_it_after() {
        // A new party, first seen after `from`: added, and the account's first time kept.
        let mut k = rows(Some(100), &[("b", 500)]);
        seen_now(&mut k, "c".into(), t(600), t(400));
        assert_eq!(k.since, Some(t(100)));
        assert_eq!(k.recent, rows(None, &[("b", 500), ("c", 600)]).recent);
        // A party first seen before `from` (the upsert kept its earlier time): not recent.
        let mut k = rows(Some(100), &[("b", 500)]);
        seen_now(&mut k, "a".into(), t(100), t(400));
        assert_eq!(k.recent, rows(None, &[("b", 500)]).recent);
        // A late login moves a recent party's first time back.
        let mut k = rows(Some(100), &[("b", 500), ("c", 600)]);
        seen_now(&mut k, "c".into(), t(450), t(400));
        assert_eq!(k.recent, rows(None, &[("c", 450), ("b", 500)]).recent);
        // The account's first party: its time is the account's first time.
        let mut k = rows(None, &[]);
        seen_now(&mut k, "a".into(), t(700), t(400));
        assert_eq!((k.since, k.recent.len()), (Some(t(700)), 1));
    }
}
