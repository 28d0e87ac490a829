//! The threads that talk to the store: each records what the listeners hand it, an
//! account's events always by the same one and in order, through the same path as
//! `record` (one `Engine`, `Store::record`), and keeps the in-memory levels the
//! answers read up to date.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
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
use crate::store::{self, LoginEvent, Store};

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
            let wait = refresh.saturating_sub(last_refresh.map_or(refresh, |t| t.elapsed()));
            match jobs.recv_timeout(wait) {
                Ok(Job::Record(event)) => {
                    self.record(&mut store, &engine, &event);
                    self.state.finished(&event.user);
                }
                Ok(Job::Refresh) => last_refresh = None,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
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

    fn record(&self, store: &mut Option<Box<dyn Store>>, engine: &Engine, event: &LoginEvent) {
        let Some(s) = store.as_mut() else {
            return self.keep(event);
        };
        let recorded = s.record(event, engine);
        match recorded {
            Ok(r) => {
                if !r.duplicate {
                    self.stats.recorded.inc();
                }
                if r.queued > 0 {
                    (self.on_queued)();
                }
                if let Err(e) = self.refresh_one(s.as_mut(), &event.user) {
                    self.lost(store, "reading the account's level", &e);
                }
            }
            Err(e) => {
                self.lost(store, "storing an event", &e);
                self.keep(event);
            }
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

    fn refresh_one(&self, store: &mut dyn Store, user: &SaslUser) -> Result<()> {
        let entry = match store.account(user)? {
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
