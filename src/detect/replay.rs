//! Backtests in memory: the same detection as `record` (evaluate, decide, baselines,
//! explanations), over each account's evidence kept in time order, without a
//! database round trip per event. `ingest` hands each replayed event to the store
//! as it goes and each account's outcome at the end.

use std::collections::VecDeque;

use foldhash::HashMap;

use super::leak::Leak;
use super::tally::{Change, Counted, Tally};
use super::whitelist::Whitelist;
use super::Usual;
use super::{baseline, message_of, AccountState, Engine, Evidence, Known, Seen, Transition};
use crate::config::{Config, Detection};
use crate::model::WhitelistEntry;
use crate::model::{SaslUser, Source, Timestamp};
use crate::ownership::Ownership;

/// One account after a replay: what `ingest` stores and reports.
#[derive(Debug, Default, Clone)]
pub struct Replayed {
    pub state: AccountState,
    pub last_seen: Option<Timestamp>,
    pub changes: Vec<(Timestamp, Transition)>,
    /// Its messages before containment, with and without quarantine.
    pub leak: Leak,
}

/// What `Replay::push` did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Replayed for the account numbered `account` (accounts are numbered in the
    /// order they are met); `new`: its first event.
    Replayed { account: usize, new: bool },
    /// The same call (time, source, address, count, Fail2ban ticket id) was replayed
    /// before: skipped, as the store skips it.
    Duplicate,
}

#[derive(Default)]
struct Account {
    out: Replayed,
    /// Evidence within the lookback (window or spread window) of the last event, in
    /// time order.
    recent: VecDeque<Counted>,
    /// The ticket id of each of `recent`, in the same order: part of what makes two
    /// events the same call (see `has`). Not in `Seen`, which detection copies.
    fids: VecDeque<Option<Box<str>>>,
    /// How many of `recent`, from the front, already left the window / the spread
    /// window: one deque, a cursor per window.
    left_window: usize,
    left_spread: usize,
    /// What evaluation counts of `recent`, kept up to date event by event.
    tally: Tally,
    /// An event came earlier than the one before: the running tally no longer holds
    /// and each evaluation counts `recent` from scratch.
    out_of_order: bool,
    /// Evidence before `recent`, within the baseline history.
    earlier: VecDeque<Seen>,
    usual: Option<(i64, Usual)>,
    whitelist: Option<Whitelist>,
    /// Every party it used, as the store's parties table holds them.
    known: Option<Known>,
}

impl Account {
    /// Moves the windows to end at `at`: what slid out of each leaves the tally, what
    /// slid out of the lookback goes to `earlier`, what is at or before `keep_from`
    /// goes.
    fn slide(&mut self, d: &Detection, keep_from: Timestamp, at: Timestamp) {
        if !self.out_of_order {
            let tally = &mut self.tally;
            let starts = d.window_starts(at);
            let (window_start, spread_start) = (starts.window, starts.spread);
            slide_out(&self.recent, &mut self.left_window, window_start, |c| {
                tally.change_window(c, Change::Remove)
            });
            slide_out(&self.recent, &mut self.left_spread, spread_start, |c| {
                tally.change_spread(c, Change::Remove)
            });
        }
        let lookback_start = at.minus(d.lookback());
        while self
            .recent
            .front()
            .is_some_and(|c| c.seen.time <= lookback_start)
        {
            let Some(c) = self.recent.pop_front() else {
                break;
            };
            self.fids.pop_front();
            self.earlier.push_back(c.seen);
            // In time order it left both windows first, so both cursors are past it.
            self.left_window = self.left_window.saturating_sub(1);
            self.left_spread = self.left_spread.saturating_sub(1);
        }
        while self.earlier.front().is_some_and(|s| s.time <= keep_from) {
            self.earlier.pop_front();
        }
    }

    /// Adds evidence at the end of `recent`.
    fn push(&mut self, c: Counted, fid: Option<&str>) {
        if self
            .recent
            .back()
            .is_some_and(|b| b.seen.time > c.seen.time)
        {
            self.out_of_order = true;
        }
        if !self.out_of_order {
            self.tally.add(&c);
        }
        self.recent.push_back(c);
        self.fids.push_back(fid.map(Box::from));
    }

    /// Whether the same call is among the recent ones (which hold every event as
    /// late as it; in time order, only the last ones can be). The store's rule: the
    /// same time, source, address, count and ticket id (none matches none).
    fn has(&self, seen: &Seen, fid: Option<&str>) -> bool {
        self.recent
            .iter()
            .zip(&self.fids)
            .rev()
            .take_while(|(c, _)| self.out_of_order || c.seen.time >= seen.time)
            .any(|(c, f)| {
                let s = &c.seen;
                s.time == seen.time
                    && s.source == seen.source
                    && s.addr == seen.addr
                    && s.count == seen.count
                    && f.as_deref() == fid
            })
    }

    fn recent_seen(&self) -> impl Iterator<Item = &Seen> {
        self.recent.iter().map(|c| &c.seen)
    }
}

/// Moves one window's cursor over `recent` past what is at or before `since`, handing
/// each piece that leaves to `leave`.
fn slide_out(
    recent: &VecDeque<Counted>,
    cursor: &mut usize,
    since: Timestamp,
    mut leave: impl FnMut(&Counted),
) {
    while let Some(c) = recent.get(*cursor).filter(|c| c.seen.time <= since) {
        leave(c);
        *cursor += 1;
    }
}

pub struct Replay<'a> {
    cfg: &'a Config,
    owners: &'a Ownership,
    db_whitelist: &'a [WhitelistEntry],
    /// Where each account is in `accounts`: one look-up per event, no copy of the name.
    index: HashMap<SaslUser, usize>,
    accounts: Vec<Account>,
}

impl<'a> Replay<'a> {
    /// `db_whitelist`: the scratch database's entries.
    pub fn new(cfg: &'a Config, owners: &'a Ownership, db_whitelist: &'a [WhitelistEntry]) -> Self {
        Self {
            cfg,
            owners,
            db_whitelist,
            index: HashMap::default(),
            accounts: Vec::new(),
        }
    }

    /// Adds one event of `user` (events come in log-time order) with its Fail2ban
    /// ticket id, if any, and re-evaluates the account, as `record` does with what it
    /// loads from the database.
    pub fn push(&mut self, user: &SaslUser, seen: Seen, fid: Option<&str>) -> Pushed {
        let engine = Engine::new(self.cfg, self.owners);
        let d = &self.cfg.detection;
        let (i, new) = match self.index.get(user) {
            Some(&i) => (i, false),
            None => {
                self.index.insert(user.clone(), self.accounts.len());
                self.accounts.push(Account::default());
                (self.accounts.len() - 1, true)
            }
        };
        let seen = Seen {
            message: message_of(seen.source, fid),
            ..seen
        };
        let a = &mut self.accounts[i];
        if !new && a.has(&seen, fid) {
            return Pushed::Duplicate;
        }
        let at = seen.time;
        let whitelist = a
            .whitelist
            .take()
            .unwrap_or_else(|| Whitelist::for_account(self.cfg, user, self.db_whitelist));
        // Slide: the lookback keeps what evaluation sees; `earlier` what the day's
        // baseline and the explanation of a rise see, as the store reads them.
        let baseline_range = engine.history_range(at);
        let explain_from = engine.explain_from(at);
        let keep_from = baseline_range.map_or(explain_from, |(from, _)| from.min(explain_from));
        a.slide(d, keep_from, at);
        // As `record` stores the login's party before it evaluates.
        let known = a.known.get_or_insert_with(|| Known::new(d));
        let origin = engine.origin(&whitelist, seen.addr);
        if let Some(p) = origin.party {
            known.see(p, at);
        }
        let counted = Counted::of(d, known, seen, origin);
        let warm = known.warm(at);
        a.push(counted, fid);
        a.out.last_seen = Some(a.out.last_seen.map_or(at, |l| l.max(at)));

        let usual = baseline_range.map(|(from, until)| {
            let day = baseline::day_of(at);
            match a.usual {
                Some((d, u)) if d == day => u,
                _ => {
                    let history: Vec<Seen> = a
                        .earlier
                        .iter()
                        .chain(a.recent_seen())
                        .filter(|s| s.time > from && s.time <= until)
                        .copied()
                        .collect();
                    let u = engine.usual(&history, &whitelist);
                    a.usual = Some((day, u));
                    u
                }
            }
        });
        a.whitelist = Some(whitelist);
        // No release happens in a replay, so counting never restarts (count_from).
        let from_scratch;
        let tally = if a.out_of_order {
            from_scratch = Tally::at(d, at, a.recent.iter().copied());
            &from_scratch
        } else {
            &a.tally
        };
        let mut verdict = engine.judge(&Evidence {
            user,
            at,
            state: &a.out.state,
            tally,
            deferred: None,
            usual,
            warm,
        });
        if verdict.rose() {
            let earlier: Vec<Seen> = a
                .earlier
                .iter()
                .filter(|s| s.time > explain_from)
                .copied()
                .collect();
            let recent: Vec<Seen> = a.recent_seen().copied().collect();
            engine.explain(&mut verdict, at, &earlier, &recent);
        }
        let before = a.out.state.level;
        a.out.state = verdict.state;
        let window_start = d.window_starts(at).window;
        let recent = &a.recent;
        a.out.leak.note(before, a.out.state.level, &seen, || {
            (recent.iter())
                .filter(|c| c.seen.source == Source::Rate && c.seen.time > window_start)
                .map(|c| u64::from(c.seen.count))
                .sum()
        });
        if let Some(t) = verdict.transition {
            a.out.changes.push((at, t));
        }
        Pushed::Replayed { account: i, new }
    }

    /// Every account's outcome, in the order the accounts were met.
    pub fn finish(self) -> Vec<(SaslUser, Replayed)> {
        let mut users: Vec<(SaslUser, usize)> = self.index.into_iter().collect();
        users.sort_by_key(|(_, i)| *i);
        users
            .into_iter()
            .zip(self.accounts)
            .map(|((u, _), a)| (u, a.out))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{decide, evaluate};
    use crate::model::{ClientAddr, Level, Source};

    /// Levels as counting each account's evidence from scratch at every event gives
    /// them: what the replay must reproduce, in or out of time order.
    fn from_scratch(cfg: &Config, events: &[Seen]) -> Vec<(Timestamp, Level, Level)> {
        let wl = Whitelist::new(cfg, &user(), &[]);
        let mut state = AccountState::default();
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for e in events {
            seen.push(*e);
            let none = (&wl, &Ownership::none(), &Known::none());
            let tally = Tally::count(&cfg.detection, none, e.time, &seen);
            let eval = evaluate(cfg, &user(), &crate::detect::tests::facts(&tally));
            let (next, t) = decide(cfg, &state, &eval, e.time);
            state = next;
            out.extend(t.map(|t| (e.time, t.from, t.to)));
        }
        out
    }

    fn user() -> SaslUser {
        SaslUser::parse("a@example.com").unwrap()
    }

    fn replayed(cfg: &Config, events: &[Seen]) -> Vec<(Timestamp, Level, Level)> {
        let none = Ownership::none();
        let mut replay = Replay::new(cfg, &none, &[]);
        for e in events {
            replay.push(&user(), *e, None);
        }
        let out = replay.finish();
        out[0]
            .1
            .changes
            .iter()
            .map(|(at, t)| (*at, t.from, t.to))
            .collect()
    }

    #[test]
    fn running_tally_matches_counting_from_scratch_in_and_out_of_order() {
        let mut cfg = Config::default();
        cfg.detection.baseline.factor = 0;
        // Bursts of new /24s every few hours over two days, with message counts.
        let mut events: Vec<Seen> = (0..400i64)
            .map(|i| Seen {
                time: Timestamp::from_millis((i / 40) * 5 * 3_600_000 + (i % 40) * 90_000),
                source: if i % 3 == 0 {
                    Source::Rate
                } else {
                    Source::Smtp
                },
                addr: ClientAddr::parse(&format!("198.51.{}.{}", (i * 7) % 23, i % 5)).unwrap(),
                count: 1 + (i % 4) as u32 * 20,
                events: 1,
                message: None,
            })
            .collect();
        let expected = from_scratch(&cfg, &events);
        assert!(expected.iter().any(|(_, _, to)| *to >= Level::Block));
        assert_eq!(replayed(&cfg, &events), expected);
        // One event late: from then on the account is counted from scratch.
        events.swap(150, 153);
        assert_eq!(replayed(&cfg, &events), from_scratch(&cfg, &events));
    }

    #[test]
    fn a_retried_call_is_one_event_and_calls_with_other_ids_are_each_one() {
        let cfg = Config::default();
        let none = Ownership::none();
        let mut replay = Replay::new(&cfg, &none, &[]);
        let bounce = Seen {
            time: Timestamp::from_millis(1_795_418_066_000),
            source: Source::Bounces,
            addr: ClientAddr::parse("198.51.100.1").unwrap(),
            count: 1,
            events: 1,
            message: None,
        };
        let ids: Vec<String> = (0..10)
            .map(|r| format!("('4F1A32C0D1', 'r{r}@x')"))
            .collect();
        for id in &ids {
            assert!(matches!(
                replay.push(&user(), bounce, Some(id)),
                Pushed::Replayed { .. }
            ));
        }
        // Fail2ban's retry of a failed action: the same id, time and count.
        assert_eq!(
            replay.push(&user(), bounce, Some(&ids[3])),
            Pushed::Duplicate
        );
        // Without an id, the same event of the same second is one, as in the store.
        assert!(matches!(
            replay.push(&user(), bounce, None),
            Pushed::Replayed { .. }
        ));
        assert_eq!(replay.push(&user(), bounce, None), Pushed::Duplicate);
    }
}
