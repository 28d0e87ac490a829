//! What is known about one account, in one shape for `status USER`, its JSON, and
//! the admin mail.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::config::Config;
use crate::detect::{self, PostfixAnswer, Whitelist};
use crate::error::{Error, Result};
use crate::model::display::shown;
use crate::model::{ActionKind, Asn, ClientAddr, CountryCode};
use crate::model::{ClientNet, Level, SaslUser, Source, Timestamp};
use crate::ownership::Ownership;
use crate::spool::Backlog;
use crate::store::{ActionState, Between, Store};

#[derive(Serialize)]
pub struct Detail {
    pub user: SaslUser,
    pub level: Level,
    pub enforced: bool,
    pub state: String,
    pub counting_from: Option<f64>,
    /// What fires now (window, spread window, last queue scan), figures included.
    pub signals: Vec<String>,
    /// Messages accepted and hard bounces in the window.
    pub messages: u64,
    pub bounces: u64,
    /// Logins with the right password that Postfix refused (the account is in the SASL
    /// block map) in the window, and their distinct networks; counted as smtp.
    pub refused_logins: u32,
    pub refused_networks: usize,
    /// Whether they count as smtp logins: only while the account is blocked in
    /// enforce mode (only then can Postfix have refused it); otherwise someone shaped
    /// those lines, and they are stored and shown but never counted.
    pub refused_counted: bool,
    /// What Postfix answers to the account's mail now (the map's entry).
    pub postfix: PostfixAnswer,
    pub networks: Vec<NetRow>,
    pub history: Vec<HistoryRow>,
    pub actions: Vec<ActionRow>,
}

#[derive(Serialize)]
pub struct NetRow {
    pub network: String,
    pub first_seen: f64,
    pub last_seen: f64,
    pub count: u64,
    pub whitelisted: bool,
    pub sources: BTreeSet<Source>,
    pub addresses: BTreeSet<String>,
    /// The servers (`server_name`) that saw these logins, where known.
    pub servers: BTreeSet<String>,
    /// Who owns the network, from the ownership databases (null without them).
    pub asn: Option<Asn>,
    pub as_org: Option<String>,
    pub country: Option<CountryCode>,
    /// The address the owner is looked up by: one of the network's own.
    #[serde(skip)]
    probe: ClientAddr,
}

impl NetRow {
    /// `AS15169 Google LLC, US`, `AS64500, DE`, `DE`: what is known of the owner, the
    /// organisation escaped for display (any AS holder writes its own).
    pub fn owner(&self) -> Option<String> {
        let asn = self.asn.map(|asn| match &self.as_org {
            Some(org) => format!("{asn} {}", shown(org)),
            None => asn.to_string(),
        });
        let parts: Vec<String> = asn
            .into_iter()
            .chain(self.country.map(|c| c.to_string()))
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

#[derive(Serialize)]
pub struct HistoryRow {
    pub time: f64,
    pub from: Level,
    pub to: Level,
    pub enforced: bool,
    pub reason: String,
    pub actor: String,
}

#[derive(Serialize)]
pub struct ActionRow {
    pub id: i64,
    pub change_id: i64,
    pub kind: ActionKind,
    pub level: Level,
    pub enforced: bool,
    pub state: &'static str,
    pub attempts: u32,
    pub created: f64,
    pub updated: Option<f64>,
    pub next_attempt: Option<f64>,
    pub outcome: Option<String>,
    /// The server that queued it, where known.
    pub server: Option<String>,
}

pub use crate::detect::effective;

pub fn detail(
    cfg: &Config,
    owners: &Ownership,
    store: &mut dyn Store,
    user: &SaslUser,
    at: Timestamp,
) -> Result<Detail> {
    let account = store
        .account(user)?
        .ok_or_else(|| Error::Usage(format!("no login of {} is recorded", user.shown())))?;
    let entries = store.whitelist()?;
    let whitelist = Whitelist::for_account(cfg, user, &entries);
    let mut nets: BTreeMap<ClientNet, NetRow> = BTreeMap::new();
    for a in store
        .addresses(user)?
        .into_iter()
        .filter(|a| a.source.is_login())
    {
        let net = a.addr.net(cfg.detection.prefixes);
        let row = nets.entry(net).or_insert_with(|| NetRow {
            network: net.to_string(),
            first_seen: a.first_seen.secs_f64(),
            last_seen: a.last_seen.secs_f64(),
            count: 0,
            whitelisted: true,
            sources: BTreeSet::new(),
            addresses: BTreeSet::new(),
            servers: BTreeSet::new(),
            asn: None,
            as_org: None,
            country: None,
            probe: a.addr,
        });
        row.first_seen = row.first_seen.min(a.first_seen.secs_f64());
        row.last_seen = row.last_seen.max(a.last_seen.secs_f64());
        row.count += a.count;
        row.whitelisted &= whitelist.covers(a.addr);
        row.sources.insert(a.source);
        row.addresses.insert(a.addr.to_string());
        row.servers.extend(a.server);
    }
    let mut networks: Vec<NetRow> = nets.into_values().collect();
    for row in &mut networks {
        match owners.lookup(row.probe) {
            Some(o) => {
                row.asn = Some(o.asn);
                row.as_org = o.org.map(|org| org.to_string());
                row.country = o.country;
            }
            None => row.country = owners.country(row.probe),
        }
    }
    networks.sort_by(|a, b| b.last_seen.total_cmp(&a.last_seen));
    let history = store
        .history(user)?
        .into_iter()
        .map(|c| HistoryRow {
            time: c.time.secs_f64(),
            from: c.from,
            to: c.to,
            enforced: c.enforced,
            reason: c.reason,
            actor: c.actor,
        })
        .collect();
    let actions = store
        .actions_of(user)?
        .into_iter()
        .map(|a| ActionRow {
            id: a.id,
            change_id: a.change_id,
            kind: a.kind,
            level: a.level,
            enforced: a.enforced,
            state: a.state.as_str(),
            attempts: a.attempts,
            created: a.created.secs_f64(),
            updated: a.updated.map(Timestamp::secs_f64),
            next_attempt: (a.state == ActionState::Pending).then(|| a.next.secs_f64()),
            outcome: a.outcome,
            server: a.server,
        })
        .collect();
    let (level, enforced) = effective(cfg, &account.state, at);
    let from = account.state.count_from;
    let since = at.minus(cfg.detection.lookback()).max(from);
    let seen = store.evidence(user, Between { since, until: at })?;
    let deferred = store.deferred(user)?;
    let engine = detect::Engine::new(cfg, owners);
    let known = store
        .known(user, engine.party_scheme(), engine.known_from(at))?
        .known(&engine);
    let tally = engine.count(&whitelist, &known, at, &seen);
    let facts = detect::Facts {
        tally: &tally,
        covers_spread: true,
        refused: detect::refused_counts(cfg, &account.state),
        deferred,
        usual: None,
        warm: known.warm(at),
    };
    let eval = detect::evaluate(cfg, user, &facts);
    let since = at.minus(cfg.detection.window);
    let refused: Vec<_> = seen
        .iter()
        .filter(|s| s.source == Source::SmtpRefused && s.time > since && s.time <= at)
        .collect();
    let refused_nets: BTreeSet<ClientNet> = refused
        .iter()
        .map(|s| s.addr.net(cfg.detection.prefixes))
        .collect();
    Ok(Detail {
        refused_logins: refused.iter().map(|s| s.events).sum(),
        refused_networks: refused_nets.len(),
        refused_counted: detect::refused_counts(cfg, &account.state),
        postfix: PostfixAnswer::of(cfg, &account.state, at),
        signals: eval.signals.iter().map(ToString::to_string).collect(),
        messages: eval.messages(Source::Rate),
        bounces: eval.messages(Source::Bounces),
        user: user.clone(),
        level,
        enforced,
        state: level.describe(enforced),
        counting_from: (from.millis() > 0).then(|| from.secs_f64()),
        networks,
        history,
        actions,
    })
}

/// The state of the whole installation, for monitoring (`check`, `metrics`).
pub struct Health {
    /// Accounts above ok, with their effective level and enforcement.
    pub flagged: Vec<(SaslUser, Level, bool)>,
    pub pending: u64,
    pub failed: u64,
    pub oldest_pending: Option<Timestamp>,
    /// Logins waiting in the spool and logins refused for good.
    pub backlog: Backlog,
}

impl Health {
    /// Seconds the oldest queued action has waited at `now` (0: none waits).
    pub fn oldest_pending_secs(&self, now: Timestamp) -> i64 {
        self.oldest_pending
            .map_or(0, |t| (now.millis() - t.millis()).max(0) / 1000)
    }

    pub fn count(&self, level: Level, enforced: bool) -> usize {
        self.flagged
            .iter()
            .filter(|(_, l, e)| *l == level && (*e == enforced || !level.needs_enforcement()))
            .count()
    }
}

pub fn health(cfg: &Config, store: &mut dyn Store, at: Timestamp) -> Result<Health> {
    let mut flagged: Vec<(SaslUser, Level, bool)> = store
        .flagged()?
        .into_iter()
        .map(|a| {
            let (level, enforced) = effective(cfg, &a.state, at);
            (a.user, level, enforced)
        })
        .filter(|(_, level, _)| *level > Level::Ok)
        .collect();
    flagged.sort_by(|a, b| (b.1, b.2).cmp(&(a.1, a.2)).then_with(|| a.0.cmp(&b.0)));
    let totals = store.action_totals()?;
    Ok(Health {
        flagged,
        pending: totals.pending,
        failed: totals.failed,
        oldest_pending: totals.oldest_pending,
        backlog: Backlog::of(&cfg.local_base(), Timestamp::now()),
    })
}
