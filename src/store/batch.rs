//! What the store's writes of several logins (a drain of the spool, a `stream` or
//! policy-service batch) report.

use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The same (source, user, address, time) was already stored: nothing changed.
    pub duplicate: bool,
    /// Actions queued for the worker.
    pub queued: usize,
}

/// Spooled logins as far as one `Store::record_spooled` got with them.
#[derive(Debug, Default)]
pub struct Batch {
    /// One per login tried, in order. None: another session holds its account, so it
    /// (and the account's later logins) waits for a later drain.
    pub outcomes: Vec<Option<Recorded>>,
    /// Why the logins after `outcomes` were not tried; None with some left: time ran out.
    pub stopped: Option<Error>,
}

/// What one `Store::record_batch` did, in counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCounts {
    pub stored: usize,
    pub duplicates: usize,
    /// Actions queued for the worker.
    pub queued: usize,
}

impl BatchCounts {
    pub(super) fn add(&mut self, r: Recorded) {
        if r.duplicate {
            self.duplicates += 1;
        } else {
            self.stored += 1;
        }
        self.queued += r.queued;
    }
}
