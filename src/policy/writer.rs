//! The threads that talk to the store: each records what the listeners hand it, an
//! account's events always by the same one and in order, through the same path as
//! `record` (one `Engine`, `Store::record`), and keeps the in-memory levels the
//! answers read up to date.

use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::state::{Known, State};
use super::Stats;
use crate::config::Config;
use crate::detect::{AccountState, Engine, Whitelist};
use crate::error::{one_line, Result};
use crate::model::{Level, SaslUser};
use crate::ownership::Ownership;
use crate::spool::Spool;
use crate::store::{self, Account, LoginEvent, Store};

/// Events recorded in one transaction at most: what queued while the last one
/// committed. One commit (and, with PostgreSQL, one round of locks) for all of them
/// lets a writer keep up with a burst; bounded, so one batch holds the answers waiting
/// on it, and SQLite's write lock, only briefly.
const BATCH: usize = 64;

pub enum Job {
    /// Store this event and judge its account.
    Record(LoginEvent),
    /// Read every flagged account again (another server or an admin changed one).
    Refresh,
}

/// What the writer needs besides its jobs.
pub struct Writer {
    pub cfg: Arc<Config>,
    pub owners: Arc<Ownership>,
    pub state: Arc<State>,
    pub stats: Arc<Stats>,
    /// Called after a recording queued actions (the worker runs them).
    pub on_queued: Arc<dyn Fn() + Send + Sync>,
    /// Whether this writer reads every flagged account now and then (one does).
    pub refreshes: bool,
}

impl Writer {
    /// Serves `jobs` until every sender is gone.
    pub fn run(self, jobs: Receiver<Job>) {
        let engine = Engine::new(&self.cfg, &self.owners);
        let refresh = Duration::from_millis(self.cfg.policy.refresh.millis().unsigned_abs());
        let mut store: Option<Box<dyn Store>> = None;
        let mut last_refresh: Option<Instant> = None;
        loop {
            if store.is_none() {
                store = self.open();
            }
            if self.refreshes && last_refresh.is_none_or(|t| t.elapsed() >= refresh) {
                if let Some(s) = store.as_mut() {
                    if let Err(e) = self.refresh_all(s.as_mut()) {
                        self.lost(&mut store, "reading the flagged accounts", &e);
                    }
                }
                last_refresh = Some(Instant::now());
            }
            // Only the refreshing writer has a refresh to wake up for; the others sleep
            // until a job comes (a zero timeout would spin, taking the CPU the answers
            // and the database need).
            let job = if self.refreshes {
                let since = last_refresh.map_or(refresh, |t| t.elapsed());
                jobs.recv_timeout(refresh.saturating_sub(since))
            } else {
                jobs.recv().map_err(|_| RecvTimeoutError::Disconnected)
            };
            let mut events = match job {
                Ok(Job::Record(event)) => vec![event],
                Ok(Job::Refresh) => {
                    last_refresh = None;
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut gone = false;
            while events.len() < BATCH {
                match jobs.try_recv() {
                    Ok(Job::Record(event)) => events.push(event),
                    Ok(Job::Refresh) => last_refresh = None,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        gone = true;
                        break;
                    }
                }
            }
            let mut released = vec![false; events.len()];
            self.record(&mut store, &engine, &events, &mut released);
            let rest = events.iter().zip(&released).filter(|(_, r)| !**r);
            self.state.finished_all(rest.map(|(e, _)| &e.user));
            if gone {
                return;
            }
        }
    }

    fn open(&self) -> Option<Box<dyn Store>> {
        match store::open(&self.cfg) {
            Ok(s) => Some(s),
            Err(e) => {
                self.stats.store_errors.inc();
                eprintln!(
                    "f2b-mailguard serve: cannot open the database: {}; answering from what is known, logins go to the spool",
                    one_line(&e)
                );
                None
            }
        }
    }

    fn lost(&self, store: &mut Option<Box<dyn Store>>, doing: &str, e: &crate::error::Error) {
        self.stats.store_errors.inc();
        eprintln!("f2b-mailguard serve: {doing}: {}", one_line(e));
        // A fresh connection next time: a shared database may have gone away.
        *store = None;
    }

    /// Stores `events` in order, in one transaction, then reads the levels of their
    /// accounts for the answers; what cannot be stored goes to the spool. The waits on
    /// an event judged to leave its account at ok end before the commit (`released`).
    fn record(
        &self,
        store: &mut Option<Box<dyn Store>>,
        engine: &Engine,
        events: &[LoginEvent],
        released: &mut [bool],
    ) {
        let Some(s) = store.as_mut() else {
            return events.iter().for_each(|e| self.keep(e));
        };
        let stays_ok = &mut |i| self.stays_ok(events, i, released);
        match s.record_batch_judged(events, engine, stays_ok) {
            Ok(counts) => {
                self.stats.recorded.add(counts.stored);
                if counts.queued > 0 {
                    (self.on_queued)();
                }
                // An account whose every event was answered before the commit holds ok,
                // as its answers said: only the others are read back.
                let users: BTreeSet<&SaslUser> = (events.iter().zip(released.iter()))
                    .filter(|(_, released)| !**released)
                    .map(|(e, _)| &e.user)
                    .collect();
                if let Err(e) = self.refresh_some(s.as_mut(), &users) {
                    self.lost(store, "reading the accounts' levels", &e);
                }
            }
            Err(e) => {
                self.lost(store, "storing events", &e);
                events.iter().for_each(|e| self.keep(e));
            }
        }
    }

    /// Event `i` leaves its account at ok, and its account's lock is held until the
    /// batch ends, so ok is what the store holds whether the batch commits or not: the
    /// answers waiting on it go now (in the account's order: only if its earlier
    /// events in the batch went too). Saves them the commit's WAL flush.
    fn stays_ok(&self, events: &[LoginEvent], i: usize, released: &mut [bool]) {
        let Some(user) = events.get(i).map(|e| &e.user) else {
            return;
        };
        let earlier = events.iter().zip(released.iter()).take(i);
        if earlier.filter(|(e, _)| e.user == *user).all(|(_, r)| *r) {
            self.state.set(user, None);
            self.state.finished(user);
            released[i] = true;
        }
    }

    /// As `record` does with what it cannot store: the next `record` or `run-actions`
    /// stores it.
    fn keep(&self, event: &LoginEvent) {
        let spool = Spool::beside(&self.cfg.local_base());
        match spool.keep(event) {
            Ok(()) => self.stats.spooled.inc(),
            Err(e) => {
                self.stats.lost.inc();
                eprintln!(
                    "f2b-mailguard serve: a {} event of {} was neither stored nor kept: {}",
                    event.source,
                    event.user,
                    one_line(&e)
                );
            }
        }
    }

    /// Reads the levels of `users` again, all in one read (the answers waiting on this
    /// batch wait for it).
    fn refresh_some(&self, store: &mut dyn Store, users: &BTreeSet<&SaslUser>) -> Result<()> {
        if users.is_empty() {
            return Ok(());
        }
        let names: Vec<&SaslUser> = users.iter().copied().collect();
        let mut read: HashMap<SaslUser, Account> = (store.accounts(&names)?.into_iter())
            .map(|a| (a.user.clone(), a))
            .collect();
        for user in users {
            let account = read.remove(*user);
            self.refresh_one(store, user, account)?;
        }
        Ok(())
    }

    fn refresh_one(
        &self,
        store: &mut dyn Store,
        user: &SaslUser,
        account: Option<Account>,
    ) -> Result<()> {
        let entry = match account {
            Some(a) if a.state.level > Level::Ok => {
                let before = self.state.known(user);
                Some(self.known(store, user, &a.state, before)?)
            }
            _ => None,
        };
        self.state.set(user, entry);
        Ok(())
    }

    fn refresh_all(&self, store: &mut dyn Store) -> Result<()> {
        let read_from = self.state.begin();
        let mut all = HashMap::new();
        for a in store.flagged()? {
            let before = self.state.known(&a.user);
            let k = self.known(store, &a.user, &a.state, before)?;
            all.insert(a.user, k);
        }
        self.state.replace_all(all, read_from);
        Ok(())
    }

    /// The account's entry; the places it used are read only for an enforced block
    /// (what they decide), and only when it was not one already.
    fn known(
        &self,
        store: &mut dyn Store,
        user: &SaslUser,
        state: &AccountState,
        before: Option<Known>,
    ) -> Result<Known> {
        let mut k = Known {
            account: state.clone(),
            ..Known::default()
        };
        if !(state.level == Level::Block && state.enforced) {
            return Ok(k);
        }
        if let Some(b) = before.filter(|b| b.account.level == state.level && b.account.enforced) {
            return Ok(Known {
                account: k.account,
                ..b
            });
        }
        // The trouble began at the account's last rise from ok; networks first seen a
        // whole window before that were its owner's, not the attacker's early ones.
        let history = store.history(user)?;
        let began = history
            .iter()
            .rev()
            .find(|c| c.from == Level::Ok && c.to > Level::Ok)
            .map_or(state.count_from, |c| c.time);
        let cutoff = began.minus(self.cfg.detection.window);
        k.whitelist = Some(Whitelist::for_account(&self.cfg, user, &store.whitelist()?));
        let prefixes = self.cfg.detection.prefixes;
        for a in store.addresses(user)? {
            if a.first_seen <= cutoff && a.source.is_login() {
                k.nets.insert(a.addr.net(prefixes));
                if let Some(asn) = self.owners.asn(a.addr) {
                    k.owners.insert(asn);
                }
            }
        }
        Ok(k)
    }
}
