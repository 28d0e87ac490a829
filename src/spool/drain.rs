//! Draining: the waiting logins stored in log-time order, in batches (one transaction
//! each where the store allows), within the caller's time. What cannot be stored now
//! stays, in order: an account another session holds (its later logins wait behind
//! it, the other accounts' go on), and whatever is left when time runs out or the
//! store fails. Used by `record` (bounded: Fail2ban waits under its global lock) and
//! `run-actions`, and by anything else that stores logins and must put these first.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{decode, encode, reserve, Rejections, Spool};
use crate::detect::Engine;
use crate::error::{Error, Result};
use crate::model::{Deadline, SaslUser, Timestamp};
use crate::store::{LoginEvent, Store};

/// Logins per transaction: bounds what a drain writes to SQLite's WAL between
/// checkpoints, so a drain needs little free disk, and what one batch can hold up.
const BATCH: usize = 100;

/// What a drain stored, and what it left.
#[derive(Debug, Default, Clone)]
pub struct Drained {
    pub logins: usize,
    /// Actions the stored logins queued.
    pub queued: usize,
    /// Accounts with logins still waiting: a newer login of theirs must wait behind
    /// them, or it would be judged before them.
    pub waiting: BTreeSet<SaslUser>,
}

impl Drained {
    fn add(&mut self, other: Drained) {
        self.logins += other.logins;
        self.queued += other.queued;
        self.waiting.extend(other.waiting);
    }
}

/// Drains each waiting spool (one stat each when none waits), trying nothing after
/// `until`. Fails when the store failed: what was not stored waits.
pub fn drain_waiting(
    spools: &[Spool],
    store: &mut dyn Store,
    engine: &Engine,
    until: Deadline,
) -> Result<Drained> {
    let mut total = Drained::default();
    for s in spools.iter().filter(|s| s.waiting()) {
        total.add(s.drain(store, engine, until)?);
    }
    Ok(total)
}

impl Spool {
    /// Stores the waiting logins it can (see the module), then keeps only the others.
    /// Returns at once if another process holds the spool (a drain or a write).
    pub fn drain(
        &self,
        store: &mut dyn Store,
        engine: &Engine,
        until: Deadline,
    ) -> Result<Drained> {
        let io = |e: std::io::Error| Error::io(&self.path, e);
        let Some(f) = self.open_locked(false, true).map_err(io)? else {
            return Ok(Drained::default());
        };
        let mut raw = Vec::new();
        (&f).read_to_end(&mut raw).map_err(io)?;
        let (mut events, unreadable) = decode(&raw);
        // Kept before the config said the policy service counts messages: dropped now.
        let spooled = events.len();
        events.retain(|e| !e.counted_in_band(engine.config()));
        let in_band = spooled - events.len();
        events.sort_by_key(|e| e.time);
        let (mut drained, keep, failed) = store_in_batches(&events, store, engine, until);
        if drained.logins > 0 {
            store.after_drain();
        }
        let dropped = !unreadable.is_empty() || in_band > 0;
        let rejections = Rejections::beside_spool(&self.path);
        for reason in unreadable {
            // Counting must not keep the stored lines in the spool.
            if let Err(e) = rejections.note(Timestamp::now(), &reason) {
                eprintln!("f2b-mailguard: {reason} (not counted: {e})");
            }
        }
        let kept: Vec<&LoginEvent> = events
            .iter()
            .zip(&keep)
            .filter_map(|(e, k)| k.then_some(e))
            .collect();
        drained.waiting = kept.iter().map(|e| e.user.clone()).collect();
        // Not replaced: every line stays, and the stored ones come back as duplicates.
        if kept.is_empty() {
            f.set_len(0).and_then(|()| f.sync_all()).map_err(io)?;
            reserve(&f);
        } else if drained.logins > 0 || dropped {
            let _ = self.replace(&kept);
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(drained),
        }
    }

    /// Replaces the spool (held locked by the caller) by `kept`: a new file renamed
    /// over it, so a crash leaves either whole.
    fn replace(&self, kept: &[&LoginEvent]) -> std::io::Result<()> {
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(".new");
        let tmp = Path::new(&tmp);
        // Left by a drainer that died: only the spool's lock holder writes it.
        let _ = std::fs::remove_file(tmp);
        let written = write_new(tmp, kept).and_then(|new| {
            std::fs::rename(tmp, &self.path)?;
            reserve(&new);
            match self.path.parent() {
                Some(dir) => File::open(dir)?.sync_all(),
                None => Ok(()),
            }
        });
        if written.is_err() {
            let _ = std::fs::remove_file(tmp);
        }
        written
    }
}

fn write_new(path: &Path, kept: &[&LoginEvent]) -> std::io::Result<File> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let text: String = kept.iter().map(|e| encode(e)).collect();
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(f)
}

/// Stores `events` (log-time order) batch by batch; returns what was stored, which
/// events to keep, and the store's failure if it stopped on one.
fn store_in_batches(
    events: &[LoginEvent],
    store: &mut dyn Store,
    engine: &Engine,
    until: Deadline,
) -> (Drained, Vec<bool>, Option<Error>) {
    let mut drained = Drained::default();
    let mut keep = vec![false; events.len()];
    let mut held: BTreeSet<&SaslUser> = BTreeSet::new();
    let mut next = 0;
    while next < events.len() {
        let mut batch = Vec::with_capacity(BATCH);
        while next < events.len() && batch.len() < BATCH {
            if held.contains(&events[next].user) {
                keep[next] = true;
            } else {
                batch.push(next);
            }
            next += 1;
        }
        if batch.is_empty() {
            continue;
        }
        let logins: Vec<LoginEvent> = batch.iter().map(|i| events[*i].clone()).collect();
        let done = store.record_spooled(&logins, engine, until);
        for (i, outcome) in batch.iter().zip(&done.outcomes) {
            match outcome {
                Some(r) => {
                    drained.logins += 1;
                    drained.queued += r.queued;
                }
                None => {
                    keep[*i] = true;
                    held.insert(&events[*i].user);
                }
            }
        }
        if done.outcomes.len() < batch.len() {
            // Out of time, or the store failed: the rest waits.
            for i in &batch[done.outcomes.len()..] {
                keep[*i] = true;
            }
            keep[next..].iter_mut().for_each(|k| *k = true);
            return (drained, keep, done.stopped);
        }
    }
    (drained, keep, None)
}
