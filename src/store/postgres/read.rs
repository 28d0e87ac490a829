//! The shared store's listings for the admin (status, the queue, the whitelist):
//! rows read as stored, decoded into validated types.

use postgres::Client;

use super::error::R;
use super::rows::{addr_of, cidr_of, level_of, seen_row, source_of, time_of, u32_of};
use crate::detect::Seen;
use crate::model::{SaslUser, Timestamp, WhitelistEntry};
use crate::store::{AddrSummary, LevelChange, QueueSender};

fn change_row(r: &postgres::Row, first: usize) -> R<LevelChange> {
    Ok(LevelChange {
        time: Timestamp::from_millis(r.try_get(first)?),
        from: level_of(r.try_get(first + 1)?)?,
        to: level_of(r.try_get(first + 2)?)?,
        enforced: r.try_get(first + 3)?,
        reason: r.try_get(first + 4)?,
        actor: r.try_get(first + 5)?,
    })
}

/// When the queue was last scanned, and its senders over every server's queue.
pub(super) fn queue(c: &mut Client) -> R<(Option<Timestamp>, Vec<QueueSender>)> {
    let scanned = super::queue::queue_scanned(c)?;
    // The admin's view is per envelope sender, over every server's queue.
    let rows = c.query(
        "SELECT queue, sender, sum(messages)::BIGINT AS n, sum(recipients)::BIGINT,
                    min(oldest_ms)
             FROM queue_senders GROUP BY queue, sender ORDER BY queue, n DESC, sender",
        &[],
    )?;
    let senders = rows
        .iter()
        .map(|r| {
            Ok(QueueSender {
                queue: r.try_get(0)?,
                sender: r.try_get(1)?,
                account: String::new(),
                messages: u32_of(r.try_get(2)?)?,
                recipients: u32_of(r.try_get(3)?)?,
                oldest: time_of(r.try_get(4)?),
            })
        })
        .collect::<R<Vec<_>>>()?;
    Ok((scanned, senders))
}

/// Every level change with its account's name as stored, by account.
pub(super) fn changed(c: &mut Client) -> R<Vec<(String, LevelChange)>> {
    let rows = c.query(
        "SELECT u.name, c.ts_ms, c.from_level, c.to_level, c.enforced, c.reason, c.actor
             FROM level_changes c JOIN users u ON u.id = c.user_id ORDER BY u.name, c.id",
        &[],
    )?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, change_row(r, 1)?)))
        .collect::<R<Vec<_>>>()
}

/// Logins of every account in `(since, until]`, with their account's name as stored.
pub(super) fn activity(
    c: &mut Client,
    since: Timestamp,
    until: Timestamp,
) -> R<Vec<(String, Seen)>> {
    let rows = c.query(
        "SELECT u.name, e.source, e.ip, e.ts_ms, e.count, e.fid FROM events e
             JOIN users u ON u.id = e.user_id
             WHERE e.ts_ms > $1 AND e.ts_ms <= $2 AND e.ts_ms > u.count_from_ms",
        &[&since.millis(), &until.millis()],
    )?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, seen_row(r, 1)?)))
        .collect::<R<Vec<_>>>()
}

pub(super) fn addresses(c: &mut Client, user: &SaslUser) -> R<Vec<AddrSummary>> {
    let rows = c.query(
        "SELECT e.ip, e.source, min(e.ts_ms), max(e.ts_ms), count(*), e.server
             FROM events e JOIN users u ON u.id = e.user_id WHERE u.name = $1
             GROUP BY e.ip, e.source, e.server
             ORDER BY e.ip, e.source COLLATE \"C\", e.server",
        &[&user.as_str()],
    )?;
    rows.iter()
        .map(|r| {
            Ok(AddrSummary {
                addr: addr_of(r.try_get(0)?)?,
                source: source_of(r.try_get(1)?)?,
                first_seen: Timestamp::from_millis(r.try_get(2)?),
                last_seen: Timestamp::from_millis(r.try_get(3)?),
                count: r.try_get::<_, i64>(4)? as u64,
                server: Some(r.try_get(5)?),
            })
        })
        .collect()
}

pub(super) fn history(c: &mut Client, user: &SaslUser) -> R<Vec<LevelChange>> {
    let rows = c.query(
        "SELECT c.ts_ms, c.from_level, c.to_level, c.enforced, c.reason, c.actor
             FROM level_changes c JOIN users u ON u.id = c.user_id
             WHERE u.name = $1 ORDER BY c.id",
        &[&user.as_str()],
    )?;
    rows.iter().map(|r| change_row(r, 0)).collect()
}

/// The whitelist entries, each with its account's name as stored ("" for every one).
pub(super) fn whitelist(c: &mut Client) -> R<Vec<(String, WhitelistEntry)>> {
    let rows = c.query(
        "SELECT cidr, account, note, added_ms FROM whitelist ORDER BY account, cidr",
        &[],
    )?;
    rows.iter()
        .map(|r| {
            let entry = WhitelistEntry {
                cidr: cidr_of(r.try_get(0)?)?,
                user: None,
                note: r.try_get(2)?,
                added: Timestamp::from_millis(r.try_get(3)?),
            };
            Ok((r.try_get(1)?, entry))
        })
        .collect::<R<Vec<_>>>()
}
