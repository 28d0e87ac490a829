//! What the answers are made of, in memory: the level of every flagged account (with,
//! for a blocked one, the networks and owners it used before its trouble began), and
//! which of each account's recordings are still on their way to the store.

use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::detect::{AccountState, Whitelist};
use crate::model::{Asn, ClientAddr, ClientNet, NetPrefixes, SaslUser};
use crate::ownership::Ownership;

/// A flagged account as the answers need it.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// As stored: what `PostfixAnswer::of` answers from, as the map is written.
    pub account: AccountState,
    /// Networks it used before its trouble began (for a blocked account only).
    pub nets: HashSet<ClientNet>,
    /// Their owners, with an ASN database.
    pub owners: HashSet<Asn>,
    /// The networks that never count for it (an office NAT stays a known place).
    pub whitelist: Option<Whitelist>,
}

impl Known {
    /// Whether `addr` is a place the account used before its trouble began: its
    /// network, or with an ASN database its owner, or a whitelisted network.
    pub fn knows(&self, addr: ClientAddr, prefixes: NetPrefixes, owners: &Ownership) -> bool {
        self.nets.contains(&addr.net(prefixes))
            || owners.asn(addr).is_some_and(|a| self.owners.contains(&a))
            || self.whitelist.as_ref().is_some_and(|w| w.covers(addr))
    }
}

/// Per account: recordings handed to the writer, and how many it has finished.
#[derive(Debug, Default, Clone, Copy)]
struct Seq {
    sent: u64,
    done: u64,
}

pub struct State {
    known: RwLock<Entries>,
    seq: Mutex<HashMap<SaslUser, Seq>>,
    settled: Condvar,
}

/// The flagged accounts, and when each entry was last set by its own writer: a
/// refresh of every account read before that must not put an older level back.
#[derive(Default)]
struct Entries {
    known: HashMap<SaslUser, Known>,
    set_at: HashMap<SaslUser, u64>,
    generation: u64,
}

/// Where the entries stood when a full refresh began to read (see `State::begin`).
#[derive(Debug, Clone, Copy)]
pub struct Generation(u64);

/// A recording's place in its account's order (see `State::sent`).
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

impl State {
    pub fn new() -> Self {
        Self {
            known: RwLock::new(Entries::default()),
            seq: Mutex::new(HashMap::new()),
            settled: Condvar::new(),
        }
    }

    /// The account's level and places, or the default (ok) when not flagged.
    pub fn known(&self, user: &SaslUser) -> Option<Known> {
        self.known
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .known
            .get(user)
            .cloned()
    }

    /// The account's stored state (the default, ok, when not flagged), without its places.
    pub fn account(&self, user: &SaslUser) -> AccountState {
        let entries = self.known.read().unwrap_or_else(|p| p.into_inner());
        entries
            .known
            .get(user)
            .map_or_else(AccountState::default, |k| k.account.clone())
    }

    /// Replaces one account's entry (None: it is ok now), as its writer read it.
    pub fn set(&self, user: &SaslUser, entry: Option<Known>) {
        let mut e = self.known.write().unwrap_or_else(|p| p.into_inner());
        e.generation += 1;
        let generation = e.generation;
        e.set_at.insert(user.clone(), generation);
        match entry {
            Some(k) => e.known.insert(user.clone(), k),
            None => e.known.remove(user),
        };
    }

    /// Call before reading every flagged account for `replace_all`.
    pub fn begin(&self) -> Generation {
        Generation(
            self.known
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .generation,
        )
    }

    /// Replaces every entry with `all` (read from the store since `read_from`), but
    /// for accounts a writer set since: its reading is the newer one.
    pub fn replace_all(&self, mut all: HashMap<SaslUser, Known>, read_from: Generation) {
        let mut e = self.known.write().unwrap_or_else(|p| p.into_inner());
        let newer: Vec<SaslUser> = e
            .set_at
            .iter()
            .filter(|(_, g)| **g > read_from.0)
            .map(|(u, _)| u.clone())
            .collect();
        for user in newer {
            match e.known.get(&user) {
                Some(k) => all.insert(user, k.clone()),
                None => all.remove(&user),
            };
        }
        e.known = all;
        // Every entry is as new as this refresh now.
        e.set_at.clear();
    }

    pub fn flagged(&self) -> usize {
        self.known
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .known
            .len()
    }

    /// Runs `send` (handing a recording to the writer) under the order's lock, so
    /// the writer sees each account's recordings in the order their tickets say.
    /// Nothing is counted if `send` fails.
    pub fn sent<E>(
        &self,
        user: &SaslUser,
        send: impl FnOnce() -> Result<(), E>,
    ) -> Result<Ticket, E> {
        let mut seq = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        send()?;
        let s = seq.entry(user.clone()).or_default();
        s.sent += 1;
        Ok(Ticket(s.sent))
    }

    /// The writer finished one of the account's recordings (stored, kept in the spool,
    /// or given up): the answers waiting on it may go.
    pub fn finished(&self, user: &SaslUser) {
        self.finished_all(std::iter::once(user));
    }

    /// As `finished`, for each recording of a batch, with one wake-up.
    pub fn finished_all<'a>(&self, users: impl Iterator<Item = &'a SaslUser>) {
        let mut seq = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        // Entries stay: tickets never restart, so a waiter cannot mistake a new
        // recording for its own. They are per authenticated account, so few.
        for user in users {
            if let Some(s) = seq.get_mut(user) {
                s.done += 1;
            }
        }
        self.settled.notify_all();
    }

    /// Waits until the account's recordings up to `upto` (inclusive) are finished,
    /// at most `limit`; false if the time ran out.
    pub fn wait(&self, user: &SaslUser, upto: u64, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut seq = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            // No entry: everything sent for it is finished.
            let done = seq.get(user).is_none_or(|s| s.done >= upto);
            if done {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            seq = self
                .settled
                .wait_timeout(seq, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits for the recordings sent before `ticket`: the answer then reflects every
    /// earlier message or login of the account, though not this one.
    pub fn wait_before(&self, user: &SaslUser, ticket: Ticket, limit: Duration) -> bool {
        ticket.0 <= 1 || self.wait(user, ticket.0 - 1, limit)
    }

    /// Waits for this recording itself.
    pub fn wait_for(&self, user: &SaslUser, ticket: Ticket, limit: Duration) -> bool {
        self.wait(user, ticket.0, limit)
    }
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Level;
    use std::sync::Arc;

    #[test]
    fn a_wait_ends_when_the_earlier_recordings_are_finished() {
        let state = Arc::new(State::new());
        let alice = SaslUser::parse("alice@example.org").unwrap();
        let first = state.sent::<()>(&alice, || Ok(())).unwrap();
        let second = state.sent::<()>(&alice, || Ok(())).unwrap();
        assert!(state.wait_before(&alice, first, Duration::ZERO));
        assert!(!state.wait_before(&alice, second, Duration::from_millis(10)));
        let s = state.clone();
        let a = alice.clone();
        let t = std::thread::spawn(move || s.wait_before(&a, second, Duration::from_secs(10)));
        state.finished(&alice);
        assert!(t.join().unwrap());
        assert!(!state.wait_for(&alice, second, Duration::from_millis(10)));
        state.finished(&alice);
        assert!(state.wait_for(&alice, second, Duration::ZERO));
        let third = state.sent::<()>(&alice, || Ok(())).unwrap();
        assert!(state.wait_before(&alice, third, Duration::ZERO));
    }

    fn level(state: &State, user: &SaslUser) -> (Level, bool) {
        let a = state.account(user);
        (a.level, a.enforced)
    }

    #[test]
    fn a_full_refresh_read_earlier_does_not_undo_a_writer() {
        let state = State::new();
        let (alice, bob) = (
            SaslUser::parse("alice@example.org").unwrap(),
            SaslUser::parse("bob@example.org").unwrap(),
        );
        let blocked = Known {
            account: AccountState {
                level: Level::Block,
                enforced: true,
                ..AccountState::default()
            },
            ..Known::default()
        };
        state.set(&bob, Some(blocked.clone()));
        let read_from = state.begin();
        // The store read (bob released, alice ok) races with alice's block.
        state.set(&alice, Some(blocked));
        state.replace_all(HashMap::new(), read_from);
        assert_eq!(level(&state, &alice), (Level::Block, true));
        assert_eq!(level(&state, &bob), (Level::Ok, false));
        // The next full refresh is the newest word on alice.
        state.replace_all(HashMap::new(), state.begin());
        assert_eq!(level(&state, &alice), (Level::Ok, false));
    }
}
