//! One account's re-evaluation, the same on every backend: load its evidence, let
//! `detect` judge, store the state, the level change and the actions with their
//! cooldowns. A backend supplies the row operations ([`EvalRows`]) inside the
//! transaction it holds; nothing here decides.
//!
//! Most evaluations change no level: for them each source is read only as far as its
//! counts can still change the verdict (`detect::Bounded`), so the cost stays bounded
//! however many networks an account has; a level change is judged again from all the
//! evidence, for the figures its reason gives.
//!
//! A login can arrive after later ones of its account (several servers, a spool
//! forwarded after an outage). In log-time order every moment a login was stored at
//! is judged with all logins up to it; [`evaluate`] keeps that true by judging again
//! each stored moment whose windows the late login falls in.

use crate::config::Config;
use crate::detect::{baseline, AccountState, Counted, Engine, Evidence, Fold, Known, OwnerKey};
use crate::detect::{Seen, Tally, Transition, Usual, Verdict, Whitelist};
use crate::model::{ActionKind, Cidr, SaslUser, Span, Timestamp};
use crate::store::{ActionState, Between, LevelEdit};

mod bounded;
use bounded::count_bounded;
pub(super) use bounded::Page;

/// An account as the write path needs it.
pub(super) struct Stored {
    pub id: i64,
    pub state: AccountState,
    /// The cached usual figures and the day they are for.
    pub usual: Option<(i64, Usual)>,
    /// Its latest login's log time, this one's included.
    pub latest: Option<Timestamp>,
}

/// A level change row to insert for an account.
pub(super) struct NewChange<'a> {
    pub at: Timestamp,
    pub transition: &'a Transition,
    pub actor: &'a str,
}

impl<'a> NewChange<'a> {
    /// The change an admin's level edit stores.
    pub fn edited(edit: &LevelEdit<'a>) -> Self {
        NewChange {
            at: edit.at,
            transition: edit.transition,
            actor: edit.actor,
        }
    }
}

/// What an action is for: its account, kind and the level (with enforcement) it
/// acts on; a cooldown counts the earlier actions with the same key.
pub(super) struct ActionKey<'a> {
    pub user_id: i64,
    pub kind: ActionKind,
    pub transition: &'a Transition,
}

/// Automatic retention runs on one insert in this many, deleting at most
/// `AUTO_PRUNE_BATCH` rows: a few milliseconds now and then instead of an unbounded
/// table. Both backends' `record`.
const AUTO_PRUNE_EVERY: i64 = 256;
pub(super) const AUTO_PRUNE_BATCH: u32 = 2000;
/// How far a party's stored last use may lag behind its logins: it only decides when
/// retention drops the party, so both backends rewrite a known party's row at most
/// once per step instead of on every login.
pub(super) const PARTY_LAST_STEP: Span = Span::secs(3600);

/// Before when the insert of login `event_id` prunes the stored logins, if it does.
pub(super) fn auto_prune_before(event_id: i64, retention: Span) -> Option<Timestamp> {
    (event_id % AUTO_PRUNE_EVERY == 0).then(|| Timestamp::now().minus(retention))
}

/// An action row to insert; `skipped` holds why it is stored as skipped.
pub(super) struct NewAction<'a> {
    pub key: ActionKey<'a>,
    pub change_id: i64,
    pub logged: Timestamp,
    pub skipped: Option<String>,
}

impl NewAction<'_> {
    /// How the row starts: skipped (with the reason) or waiting for the worker.
    pub fn state(&self) -> ActionState {
        if self.skipped.is_some() {
            ActionState::Skipped
        } else {
            ActionState::Pending
        }
    }
}

/// An account's parties as stored (see `detect::Known`): when it was first seen, and
/// the parties first seen recently, as stored text.
#[derive(Debug, Default)]
pub struct KnownRows {
    pub since: Option<Timestamp>,
    pub recent: Vec<(String, Timestamp)>,
}

/// At most this many recently new parties are read per evaluation, the earliest
/// first: a botnet's thousands of owners would otherwise make one `record` slow.
/// Parties past it count as known, and a count that large has crossed every
/// threshold already.
pub const KNOWN_READ_MAX: u32 = 2000;

impl KnownRows {
    /// As detection needs them; rows that do not read back (another scheme's, an
    /// older version's) are left out, so they count as known.
    pub fn known(self, engine: &Engine) -> Known {
        engine.known(
            self.since,
            self.recent
                .into_iter()
                .filter_map(|(k, t)| OwnerKey::parse(&k).map(|k| (k, t))),
        )
    }
}

/// The reads and writes of one evaluation, inside the backend's transaction.
pub(super) trait EvalRows {
    type Error;
    /// The account's parties of `scheme`: its first log time, and those first seen
    /// after `from` (at most `KNOWN_READ_MAX`).
    fn known(&mut self, id: i64, scheme: &str, from: Timestamp) -> Result<KnownRows, Self::Error>;
    /// Feeds the account's logins in `window` to `fold`.
    fn fold_seen(&mut self, id: i64, window: Between, fold: &mut Fold) -> Result<(), Self::Error>;
    /// The account's logins in `window`, a `Seen` per row.
    fn seen(&mut self, id: i64, window: Between) -> Result<Vec<Seen>, Self::Error>;
    /// For each page, up to `limit` rows of its source in `(since, until]` that come
    /// before `before` (log time, row id), newest first, each with its row id. A
    /// backend may add the rest of the last row's log time (SQLite does, and then
    /// starts a next page below that time).
    fn newest(
        &mut self,
        user_id: i64,
        pages: &[Page],
        limit: u32,
    ) -> Result<Vec<Vec<(Seen, i64)>>, Self::Error>;
    fn cache_usual(&mut self, id: i64, day: i64, usual: &Usual) -> Result<(), Self::Error>;
    fn set_state(&mut self, id: i64, state: &AccountState) -> Result<(), Self::Error>;
    fn insert_change(&mut self, id: i64, change: &NewChange) -> Result<i64, Self::Error>;
    /// The log time of the latest action with `key` that went out or waits to, queued
    /// after `after` and since the account's last release.
    fn last_queued(
        &mut self,
        key: &ActionKey,
        after: Timestamp,
    ) -> Result<Option<Timestamp>, Self::Error>;
    fn insert_action(&mut self, action: &NewAction) -> Result<(), Self::Error>;
}

/// What the caller read for the account inside the evaluation's transaction (a
/// backend may read it for many accounts at once).
pub(super) struct Given {
    /// The database whitelist entries for every account and for this one.
    pub whitelist: Vec<Cidr>,
    /// Its mail in the deferred queue at the last scan.
    pub deferred: Option<u32>,
}

/// What one judgement at `at` is made from.
struct Moment<'a> {
    at: Timestamp,
    /// Where the evidence in `seen` begins.
    since: Timestamp,
    seen: &'a [Seen],
    tally: &'a Tally,
    usual: Option<Usual>,
    deferred: Option<u32>,
    warm: bool,
}

/// Re-evaluates one account at `at` and stores the outcome: its state, the level
/// change with its reason, the actions. Returns how many actions were queued.
///
/// A login can arrive after later ones of its account. It then also falls in the
/// windows of the stored moments after it (up to a lookback later), which were judged
/// without it: each is judged again, in time order, with the evidence now complete.
/// Every stored moment is thus judged at least once with all logins up to it, whatever
/// order they arrived in, so the highest level reached is the one log-time order
/// reaches. Levels only rise here, so a moment judged again decides nothing twice.
pub(super) fn evaluate<R: EvalRows>(
    rows: &mut R,
    user: &SaslUser,
    account: &Stored,
    given: &Given,
    at: Timestamp,
    engine: &Engine,
) -> Result<usize, R::Error> {
    if account.latest.is_some_and(|latest| latest > at) {
        return judge_again(rows, engine, user, account, given, at);
    }
    let state = &account.state;
    let whitelist = engine.whitelist(user, &given.whitelist);
    let mut cached = account.usual;
    let usual = usual_of(rows, account.id, &mut cached, at, engine, &whitelist)?;
    let deferred = given.deferred;
    let known = rows
        .known(account.id, engine.party_scheme(), engine.known_from(at))?
        .known(engine);
    let mut bounded = engine.bounded(&whitelist, &known, user, at, state, usual);
    count_bounded(rows, &mut bounded, account.id, at)?;
    let verdict = engine.judge(&Evidence {
        user,
        at,
        state,
        tally: bounded.tally(),
        deferred,
        usual,
        warm: known.warm(at),
    });
    if verdict.transition.is_none() {
        // The level all the evidence gives: only the last hit can move.
        return apply(rows, account.id, state, at, &verdict, engine.config());
    }
    // A level change: judged again from all the evidence, for the figures of its reason.
    let starts = engine.window_starts(at);
    let since = starts.earliest().max(state.count_from);
    let mut fold = Fold::new(starts);
    rows.fold_seen(account.id, Between { since, until: at }, &mut fold)?;
    let seen = fold.into_seen();
    let tally = engine.count(&whitelist, &known, at, &seen);
    let moment = Moment {
        at,
        since,
        seen: &seen,
        tally: &tally,
        usual,
        deferred,
        warm: known.warm(at),
    };
    let (_, queued) = judge(rows, user, account.id, state, &moment, engine)?;
    Ok(queued)
}

/// `evaluate` for a late login at `at`: judges `at` and each stored moment after it
/// whose windows hold it, counting the evidence read once.
fn judge_again<R: EvalRows>(
    rows: &mut R,
    engine: &Engine,
    user: &SaslUser,
    account: &Stored,
    given: &Given,
    at: Timestamp,
) -> Result<usize, R::Error> {
    let state = account.state.clone();
    let first = engine.window_starts(at).earliest().max(state.count_from);
    // The last moment whose windows hold `at`: one lookback later, exclusive.
    let last = Timestamp::from_millis(at.plus(engine.lookback()).millis() - 1);
    let mut seen = rows.seen(
        account.id,
        Between {
            since: first,
            until: last,
        },
    )?;
    seen.sort_by_key(|s| s.time);
    let whitelist = engine.whitelist(user, &given.whitelist);
    let known = rows
        .known(account.id, engine.party_scheme(), engine.known_from(at))?
        .known(engine);
    let counted: Vec<Counted> = seen
        .iter()
        .map(|s| engine.counted(&whitelist, &known, *s))
        .collect();
    let deferred = given.deferred;
    let mut moments: Vec<Timestamp> = seen.iter().map(|s| s.time).filter(|t| *t > at).collect();
    moments.dedup();
    let mut cached = account.usual;
    let (mut state, mut queued) = (state, 0);
    for moment in std::iter::once(at).chain(moments) {
        let since = engine
            .window_starts(moment)
            .earliest()
            .max(state.count_from);
        let from = seen.partition_point(|s| s.time <= since);
        let until = seen.partition_point(|s| s.time <= moment);
        let usual = usual_of(rows, account.id, &mut cached, moment, engine, &whitelist)?;
        let tally = engine.tally(moment, &counted[from..until]);
        let (next, n) = judge(
            rows,
            user,
            account.id,
            &state,
            &Moment {
                at: moment,
                since,
                seen: &seen[from..until],
                tally: &tally,
                usual,
                deferred,
                warm: known.warm(moment),
            },
            engine,
        )?;
        state = next;
        queued += n;
    }
    Ok(queued)
}

/// Judges the account at one moment and stores the verdict; returns its next state
/// and how many actions were queued.
fn judge<R: EvalRows>(
    rows: &mut R,
    user: &SaslUser,
    id: i64,
    state: &AccountState,
    m: &Moment,
    engine: &Engine,
) -> Result<(AccountState, usize), R::Error> {
    let mut verdict = engine.judge(&Evidence {
        user,
        at: m.at,
        state,
        tally: m.tally,
        deferred: m.deferred,
        usual: m.usual,
        warm: m.warm,
    });
    if verdict.rose() {
        // Up to where `seen` begins; nothing from before a release.
        let from = engine.explain_from(m.at).max(state.count_from);
        let earlier = rows.seen(
            id,
            Between {
                since: from,
                until: m.since,
            },
        )?;
        engine.explain(&mut verdict, m.at, &earlier, m.seen);
    }
    let queued = apply(rows, id, state, m.at, &verdict, engine.config())?;
    Ok((verdict.state, queued))
}

/// Stores a verdict: the account's new state, its level change, and the actions the
/// configuration lists for it. Returns how many actions were queued.
fn apply<R: EvalRows>(
    rows: &mut R,
    id: i64,
    state: &AccountState,
    at: Timestamp,
    verdict: &Verdict,
    cfg: &Config,
) -> Result<usize, R::Error> {
    if verdict.state != *state {
        rows.set_state(id, &verdict.state)?;
    }
    let Some(t) = &verdict.transition else {
        return Ok(0);
    };
    let change = NewChange {
        at,
        transition: t,
        actor: "detector",
    };
    let change_id = rows.insert_change(id, &change)?;
    let mut queued = 0;
    for kind in cfg.contain.actions.plan(t.from, t.to, t.enforced, cfg.mode) {
        let key = ActionKey {
            user_id: id,
            kind,
            transition: t,
        };
        let skipped = cooled_down(rows, &key, at, cfg)?;
        queued += usize::from(skipped.is_none());
        rows.insert_action(&NewAction {
            key,
            change_id,
            logged: at,
            skipped,
        })?;
    }
    Ok(queued)
}

/// Why a mail (to the admin or to the owner) is not sent: one of its kind for the
/// same account and level was queued within its cooldown of log time since the
/// account's last release. None: it goes out.
fn cooled_down<R: EvalRows>(
    rows: &mut R,
    action: &ActionKey,
    at: Timestamp,
    cfg: &Config,
) -> Result<Option<String>, R::Error> {
    let (cooldown, key) = match action.kind {
        ActionKind::Mail => (cfg.contain.mail.cooldown, "mail.cooldown"),
        ActionKind::NotifyUser => (cfg.contain.user_mail.cooldown, "user_mail.cooldown"),
        _ => return Ok(None),
    };
    let recent = rows.last_queued(action, at.minus(cooldown))?;
    Ok(recent.map(|when| {
        format!(
            "not sent: one about {} for this account was queued at {} (log time), \
             within {key} ({cooldown})",
            action.transition.to,
            when.rfc3339()
        )
    }))
}

/// The account's usual figures for the day of `at`, computed at its first evaluation
/// that day and cached on its row (`cached`: what the row holds).
fn usual_of<R: EvalRows>(
    rows: &mut R,
    id: i64,
    cached: &mut Option<(i64, Usual)>,
    at: Timestamp,
    engine: &Engine,
    whitelist: &Whitelist,
) -> Result<Option<Usual>, R::Error> {
    let Some((from, until)) = engine.history_range(at) else {
        return Ok(None);
    };
    let day = baseline::day_of(at);
    if let Some((cached_day, usual)) = *cached {
        if cached_day == day {
            return Ok(Some(usual));
        }
    }
    let history = rows.seen(id, Between { since: from, until })?;
    let usual = engine.usual(&history, whitelist);
    rows.cache_usual(id, day, &usual)?;
    *cached = Some((day, usual));
    Ok(Some(usual))
}
