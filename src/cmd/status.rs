//! `status`: the overview (worst accounts first) and one account in detail.
//! The JSON shapes are documented in docs/commands.md and kept stable.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

mod print;

use self::print::{fit, print_detail, print_overview, when};
use super::{at_arg, user_arg, App, Run};
use crate::cli::Status;
use crate::config::Config;
use crate::detect::{self, AccountState, Facts, Seen, Tally, Whitelist};
use crate::error::Result;
use crate::model::display::shown;
use crate::model::{Level, SaslUser, Source, Span, Timestamp};
use crate::ownership::Ownership;
use crate::report::{self, effective};
use crate::spool::Backlog;
use crate::store::{self, Store};

#[derive(Serialize)]
struct Overview {
    mode: &'static str,
    window_secs: i64,
    at: f64,
    actions: ActionSummary,
    /// Logins waiting in the spool and logins refused for good.
    backlog: Backlog,
    accounts: Vec<Row>,
}

#[derive(Serialize)]
struct ActionSummary {
    pending: u64,
    failed: u64,
    oldest_pending: Option<f64>,
}

#[derive(Serialize)]
struct Row {
    user: SaslUser,
    level: Level,
    enforced: bool,
    /// `would block` in warn mode: what the admin reads.
    state: String,
    networks: usize,
    logins: u32,
    /// Messages accepted (rate) and hard bounces in the window.
    messages: u64,
    bounces: u64,
    /// Deferred mail at the last queue-scan.
    deferred: Option<u32>,
    last_seen: Option<f64>,
    reason: String,
    /// The signals that fire now, with figures and thresholds.
    signals: Vec<String>,
}

impl Run for Status {
    fn run(&self, app: &App) -> Result<()> {
        let user = user_arg("USER", self.user.as_deref())?;
        let at = at_arg(self.at.as_deref())?;
        let mut cfg = app.config()?;
        for w in cfg.warnings() {
            eprintln!("f2b-mailguard: warning: {w}");
        }
        if let Some(w) = &self.window {
            cfg.detection.window = Span::parse("window", w)?;
        }
        let mut store = store::open(&cfg)?;
        store.check_whole()?;
        if self.queue {
            let (scanned, senders) = store.queue()?;
            let report = QueueReport::new(scanned, senders);
            if self.json {
                print_json(&report);
            } else {
                report.print();
            }
            return Ok(());
        }
        // Counted as detection counts: owners decide whether a network count escalates.
        let owners = Ownership::open_or_warn(&cfg);
        match user {
            Some(user) => {
                let detail = report::detail(&cfg, &owners, store.as_mut(), &user, at)?;
                if self.json {
                    print_json(&detail);
                } else {
                    print_detail(&cfg, &detail);
                }
            }
            None => {
                let overview = overview(&cfg, &owners, store.as_mut(), at)?;
                if self.json {
                    print_json(&overview);
                } else {
                    print_overview(&cfg, &overview);
                }
            }
        }
        Ok(())
    }
}

/// Senders listed per queue in `status --queue`.
const TOP_SENDERS: usize = 10;

#[derive(Serialize)]
struct QueueReport {
    scanned_at: Option<f64>,
    /// Per queue (deferred, active, hold, incoming...), the most prolific senders first.
    queues: BTreeMap<String, QueueSummary>,
}

#[derive(Serialize, Default)]
struct QueueSummary {
    messages: u64,
    senders: usize,
    top: Vec<QueueTop>,
}

#[derive(Serialize)]
struct QueueTop {
    sender: String,
    messages: u32,
    recipients: u32,
    oldest: Option<f64>,
}

impl QueueReport {
    fn new(scanned: Option<Timestamp>, senders: Vec<store::QueueSender>) -> Self {
        let mut queues: BTreeMap<String, QueueSummary> = BTreeMap::new();
        // The store lists each queue's senders most messages first.
        for s in senders {
            let q = queues.entry(s.queue.clone()).or_default();
            q.messages += u64::from(s.messages);
            q.senders += 1;
            if q.top.len() < TOP_SENDERS {
                q.top.push(QueueTop {
                    sender: s.sender,
                    messages: s.messages,
                    recipients: s.recipients,
                    oldest: s.oldest.map(Timestamp::secs_f64),
                });
            }
        }
        Self {
            scanned_at: scanned.map(Timestamp::secs_f64),
            queues,
        }
    }

    fn print(&self) {
        let Some(at) = self.scanned_at else {
            println!("no queue-scan yet: run `f2b-mailguard queue-scan` (or enable its timer)");
            return;
        };
        println!("queues at {}", when(at));
        if self.queues.is_empty() {
            println!("all queues are empty");
        }
        for (name, q) in &self.queues {
            println!(
                "\n{name}: {} message(s) from {} sender(s)",
                q.messages, q.senders
            );
            println!(
                "  {:>6} {:>6}  {:<20} SENDER",
                "MSGS", "RCPTS", "OLDEST (UTC)"
            );
            for t in &q.top {
                let oldest = t
                    .oldest
                    .map(|t| when(t)[..16].to_owned())
                    .unwrap_or_default();
                let sender = if t.sender.is_empty() { "<>" } else { &t.sender };
                println!(
                    "  {:>6} {:>6}  {:<20} {}",
                    t.messages,
                    t.recipients,
                    oldest,
                    fit(&shown(sender), 44)
                );
            }
        }
    }
}

fn print_json<T: Serialize>(value: &T) {
    // Serialising plain structs of strings and numbers cannot fail.
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn overview(
    cfg: &Config,
    owners: &Ownership,
    store: &mut dyn Store,
    at: Timestamp,
) -> Result<Overview> {
    let since = at.minus(cfg.detection.window);
    let mut seen: BTreeMap<SaslUser, Vec<Seen>> = BTreeMap::new();
    for (user, s) in store.activity(since, at)? {
        seen.entry(user).or_default().push(s);
    }
    let mut states: BTreeMap<SaslUser, (AccountState, Option<Timestamp>)> = BTreeMap::new();
    for a in store.flagged()? {
        states.insert(a.user, (a.state, a.last_seen));
    }
    let entries = store.whitelist()?;
    let deferred = store.deferred_per_account()?;
    let users: BTreeSet<SaslUser> = seen.keys().chain(states.keys()).cloned().collect();
    let mut rows = Vec::with_capacity(users.len());
    for user in users {
        let logins = seen.remove(&user).unwrap_or_default();
        let (state, stored_last_seen) = states.remove(&user).unwrap_or_default();
        let (level, enforced) = effective(cfg, &state, at);
        let whitelist = Whitelist::for_account(cfg, &user, &entries);
        // The window only, without the account's parties: the stored reason says
        // what was new to it.
        let tally = Tally::count(
            &cfg.detection,
            (&whitelist, owners, &detect::Known::none()),
            at,
            &logins,
        );
        // The window only: the stored level and its reason carry the longer signals.
        let facts = Facts {
            tally: &tally,
            covers_spread: false,
            refused: detect::refused_counts(cfg, &state),
            deferred: deferred.get(user.as_str()).copied(),
            usual: None,
            warm: false,
        };
        let eval = detect::evaluate(cfg, &user, &facts);
        let reason = if level > Level::Ok {
            last_reason(store, &user)?.unwrap_or_else(|| eval.reason())
        } else {
            eval.reason()
        };
        let last_seen = logins.iter().map(|s| s.time).max().or(stored_last_seen);
        rows.push(Row {
            state: level.describe(enforced),
            user,
            level,
            enforced,
            networks: eval.networks(),
            logins: eval.logins(),
            messages: eval.messages(Source::Rate),
            bounces: eval.messages(Source::Bounces),
            deferred: facts.deferred,
            last_seen: last_seen.map(Timestamp::secs_f64),
            reason,
            signals: eval.signals.iter().map(ToString::to_string).collect(),
        });
    }
    rows.sort_by(|a, b| {
        (
            b.level,
            b.enforced,
            b.networks,
            b.last_seen.map(|t| t as i64),
        )
            .cmp(&(
                a.level,
                a.enforced,
                a.networks,
                a.last_seen.map(|t| t as i64),
            ))
            .then_with(|| a.user.cmp(&b.user))
    });
    let totals = store.action_totals()?;
    Ok(Overview {
        actions: ActionSummary {
            pending: totals.pending,
            failed: totals.failed,
            oldest_pending: totals.oldest_pending.map(Timestamp::secs_f64),
        },
        backlog: Backlog::of(&cfg.local_base(), Timestamp::now()),
        mode: cfg.mode.as_str(),
        window_secs: cfg.detection.window.as_secs(),
        at: at.secs_f64(),
        accounts: rows,
    })
}

fn last_reason(store: &mut dyn Store, user: &SaslUser) -> Result<Option<String>> {
    Ok(store.history(user)?.pop().map(|c| c.reason))
}
