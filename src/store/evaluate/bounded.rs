//! `record`'s read of an account's evidence, page by page, newest first, as far as
//! `detect::Bounded` needs it.

use super::EvalRows;
use crate::detect::Bounded;
use crate::model::{Source, Timestamp};

/// One page of a source's rows, newest first: after `since`, up to `until` and before
/// the row `before` (log time, row id) there, which the previous page ended with.
#[derive(Clone, Copy)]
pub(in crate::store) struct Page {
    pub source: Source,
    pub since: Timestamp,
    pub until: Timestamp,
    pub before: i64,
}

/// How many rows of each source the first page holds; each next one four times more.
/// Enough for a quiet account's whole window in one query.
const FIRST_PAGE: u32 = 64;

/// Feeds `bounded` each source's rows newest first, page by page, until it says more
/// cannot change the verdict or the rows run out.
pub(super) fn count_bounded<R: EvalRows>(
    rows: &mut R,
    bounded: &mut Bounded,
    user_id: i64,
    at: Timestamp,
) -> Result<(), R::Error> {
    let mut pages: Vec<Page> = bounded
        .reads()
        .into_iter()
        .map(|r| Page {
            source: r.source,
            since: r.since,
            until: at,
            before: i64::MAX,
        })
        .collect();
    let mut limit = FIRST_PAGE;
    while !pages.is_empty() {
        let got = rows.newest(user_id, &pages, limit)?;
        let mut next = Vec::new();
        for (page, got) in pages.iter().zip(got) {
            let full = got.len() >= limit as usize;
            let mut last = None;
            for (seen, id) in got {
                bounded.add(seen);
                last = Some((seen.time, id));
                if bounded.settled(page.source) {
                    last = None;
                    break;
                }
            }
            if let (true, Some((until, before))) = (full, last) {
                next.push(Page {
                    until,
                    before,
                    ..*page
                });
            }
        }
        pages = next;
        limit = limit.saturating_mul(4);
    }
    Ok(())
}
