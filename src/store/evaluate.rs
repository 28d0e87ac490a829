//! One account's re-evaluation, the same on every backend: load its evidence, let
//! `detect` judge, store the state, the level change and the actions with their
//! cooldowns. A backend supplies the row operations ([`EvalRows`]) inside the
//! transaction it holds; nothing here decides.

use crate::config::Config;
use crate::detect::{baseline, AccountState, Engine, Evidence, Fold, Seen, Transition, Usual};
use crate::detect::{Verdict, Whitelist};
use crate::model::{ActionKind, Cidr, LogTime, SaslUser};

/// An account as the write path needs it.
pub(super) struct Stored {
    pub id: i64,
    pub state: AccountState,
    /// The cached usual figures and the day they are for.
    pub usual: Option<(i64, Usual)>,
}

/// An action row to insert; `skipped` holds why it is stored as skipped.
pub(super) struct NewAction<'a> {
    pub user_id: i64,
    pub change_id: i64,
    pub kind: ActionKind,
    pub transition: &'a Transition,
    pub logged: LogTime,
    pub skipped: Option<String>,
}

/// The reads and writes of one evaluation, inside the backend's transaction.
pub(super) trait EvalRows {
    type Error;
    /// Feeds the account's logins in `(since, until]` to `fold`.
    fn fold_seen(
        &mut self,
        id: i64,
        since: LogTime,
        until: LogTime,
        fold: &mut Fold,
    ) -> Result<(), Self::Error>;
    /// The account's logins in `(since, until]`, a `Seen` per row.
    fn seen(&mut self, id: i64, since: LogTime, until: LogTime) -> Result<Vec<Seen>, Self::Error>;
    /// The database whitelist entries for every account and for `user`.
    fn whitelist_of(&mut self, user: &SaslUser) -> Result<Vec<Cidr>, Self::Error>;
    /// The account's mail in the deferred queue at the last scan.
    fn deferred_of(&mut self, user: &SaslUser) -> Result<Option<u32>, Self::Error>;
    fn cache_usual(&mut self, id: i64, day: i64, usual: &Usual) -> Result<(), Self::Error>;
    fn set_state(&mut self, id: i64, state: &AccountState) -> Result<(), Self::Error>;
    fn insert_change(
        &mut self,
        id: i64,
        at: LogTime,
        t: &Transition,
        actor: &str,
    ) -> Result<i64, Self::Error>;
    /// The log time of the latest action of `kind` for this level that went out or
    /// waits to, queued after `after` and since the account's last release.
    fn last_queued(
        &mut self,
        id: i64,
        kind: ActionKind,
        t: &Transition,
        after: LogTime,
    ) -> Result<Option<LogTime>, Self::Error>;
    fn insert_action(&mut self, action: &NewAction) -> Result<(), Self::Error>;
}

/// Re-evaluates one account at `at` and stores the outcome: its state, the level
/// change with its reason, the actions. Returns how many actions were queued.
pub(super) fn evaluate<R: EvalRows>(
    rows: &mut R,
    user: &SaslUser,
    account: &Stored,
    at: LogTime,
    engine: &Engine,
) -> Result<usize, R::Error> {
    let state = &account.state;
    let starts = engine.window_starts(at);
    let since = starts.earliest().max(state.count_from);
    let mut fold = Fold::new(starts);
    rows.fold_seen(account.id, since, at, &mut fold)?;
    let seen = fold.into_seen();
    let whitelist = engine.whitelist(user, &rows.whitelist_of(user)?);
    let usual = usual_of(rows, account, at, engine, &whitelist)?;
    let tally = engine.count(&whitelist, at, &seen);
    let mut verdict = engine.judge(&Evidence {
        user,
        at,
        state,
        tally: &tally,
        deferred: rows.deferred_of(user)?,
        usual,
    });
    if verdict.rose() {
        // Up to where `seen` begins; nothing from before a release.
        let from = engine.explain_from(at).max(state.count_from);
        let earlier = rows.seen(account.id, from, since)?;
        engine.explain(&mut verdict, at, &earlier, &seen);
    }
    apply(rows, account, at, &verdict, engine.config())
}

/// Stores a verdict: the account's new state, its level change, and the actions the
/// configuration lists for it. Returns how many actions were queued.
fn apply<R: EvalRows>(
    rows: &mut R,
    account: &Stored,
    at: LogTime,
    verdict: &Verdict,
    cfg: &Config,
) -> Result<usize, R::Error> {
    if verdict.state != account.state {
        rows.set_state(account.id, &verdict.state)?;
    }
    let Some(t) = &verdict.transition else {
        return Ok(0);
    };
    let change_id = rows.insert_change(account.id, at, t, "detector")?;
    let mut queued = 0;
    for kind in cfg.contain.actions.plan(t.from, t.to, t.enforced) {
        let skipped = cooled_down(rows, account.id, kind, t, at, cfg)?;
        queued += usize::from(skipped.is_none());
        rows.insert_action(&NewAction {
            user_id: account.id,
            change_id,
            kind,
            transition: t,
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
    id: i64,
    kind: ActionKind,
    t: &Transition,
    at: LogTime,
    cfg: &Config,
) -> Result<Option<String>, R::Error> {
    let (cooldown, key) = match kind {
        ActionKind::Mail => (cfg.contain.mail.cooldown, "mail.cooldown"),
        ActionKind::NotifyUser => (cfg.contain.user_mail.cooldown, "user_mail.cooldown"),
        _ => return Ok(None),
    };
    let recent = rows.last_queued(id, kind, t, at.minus(cooldown))?;
    Ok(recent.map(|when| {
        format!(
            "not sent: one about {} for this account was queued at {} (log time), \
             within {key} ({cooldown})",
            t.to,
            when.rfc3339()
        )
    }))
}

/// The account's usual figures for the day of `at`, computed at its first evaluation
/// that day and cached on its row.
fn usual_of<R: EvalRows>(
    rows: &mut R,
    account: &Stored,
    at: LogTime,
    engine: &Engine,
    whitelist: &Whitelist,
) -> Result<Option<Usual>, R::Error> {
    let Some((from, until)) = engine.history_range(at) else {
        return Ok(None);
    };
    let day = baseline::day_of(at);
    if let Some((cached_day, usual)) = account.usual {
        if cached_day == day {
            return Ok(Some(usual));
        }
    }
    let history = rows.seen(account.id, from, until)?;
    let usual = engine.usual(&history, whitelist);
    rows.cache_usual(account.id, day, &usual)?;
    Ok(Some(usual))
}
