//! `status`: the overview (worst accounts first) and one account in detail.
//! The JSON shapes are documented in the README and kept stable.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{at_arg, user_arg, App, Run};
use crate::cli::Status;
use crate::config::Config;
use crate::detect::{self, AccountState, Facts, Seen, Tally, Whitelist};
use crate::error::Result;
use crate::model::display::shown;
use crate::model::{Level, LogTime, SaslUser, Source, Span};
use crate::ownership::Ownership;
use crate::report::{self, effective, Detail};
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
    fn new(scanned: Option<LogTime>, senders: Vec<store::QueueSender>) -> Self {
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
                    oldest: s.oldest.map(LogTime::secs_f64),
                });
            }
        }
        Self {
            scanned_at: scanned.map(LogTime::secs_f64),
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
    at: LogTime,
) -> Result<Overview> {
    let since = at.minus(cfg.detection.window);
    let mut seen: BTreeMap<SaslUser, Vec<Seen>> = BTreeMap::new();
    for (user, s) in store.activity(since, at)? {
        seen.entry(user).or_default().push(s);
    }
    let mut states: BTreeMap<SaslUser, (AccountState, Option<LogTime>)> = BTreeMap::new();
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
        let tally = Tally::count(&cfg.detection, &whitelist, owners, at, &logins);
        // The window only: the stored level and its reason carry the longer signals.
        let facts = Facts {
            tally: &tally,
            covers_spread: false,
            deferred: deferred.get(user.as_str()).copied(),
            usual: None,
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
            last_seen: last_seen.map(LogTime::secs_f64),
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
            oldest_pending: totals.oldest_pending.map(LogTime::secs_f64),
        },
        backlog: Backlog::of(&cfg.local_base(), LogTime::now()),
        mode: cfg.mode.as_str(),
        window_secs: cfg.detection.window.as_secs(),
        at: at.secs_f64(),
        accounts: rows,
    })
}

fn last_reason(store: &mut dyn Store, user: &SaslUser) -> Result<Option<String>> {
    Ok(store.history(user)?.pop().map(|c| c.reason))
}

fn when(secs: f64) -> String {
    LogTime::from_millis((secs * 1000.0) as i64).rfc3339()
}

/// Cuts to `width` characters, marking the cut, so columns stay aligned.
fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('~');
    out
}

/// Colour only for a person at a terminal, and never with NO_COLOR set (no-color.org).
fn use_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Red for block and lock, yellow for notify; the padding stays outside the codes.
fn paint(text: &str, level: Level, colour: bool) -> String {
    let code = match level {
        Level::Block | Level::Lock => "31",
        Level::Notify => "33",
        Level::Ok => return text.to_owned(),
    };
    if !colour {
        return text.to_owned();
    }
    let trimmed = text.trim_end();
    format!("\x1b[{code}m{trimmed}\x1b[0m{}", &text[trimmed.len()..])
}

fn print_overview(cfg: &Config, o: &Overview) {
    let colour = use_colour();
    println!(
        "mode {} · window {} · as of {}",
        o.mode,
        cfg.detection.window,
        when(o.at)
    );
    if o.actions.pending + o.actions.failed > 0 {
        let oldest = o
            .actions
            .oldest_pending
            .map(|t| format!(", oldest queued {}", when(t)))
            .unwrap_or_default();
        println!(
            "actions: {} pending, {} failed{oldest} (status USER shows them)",
            o.actions.pending, o.actions.failed
        );
    }
    for problem in o.backlog.problems() {
        println!("{problem}");
    }
    if o.accounts.is_empty() {
        println!(
            "no account logged in during the last {}",
            cfg.detection.window
        );
        return;
    }
    println!(
        "{:<30} {:<12} {:>5} {:>6} {:>5}  LAST SEEN (UTC)",
        "USER", "LEVEL", "NETS", "LOGINS", "MSGS"
    );
    for r in &o.accounts {
        let last = r
            .last_seen
            .map(|t| when(t)[..16].to_owned())
            .unwrap_or_default();
        println!(
            "{:<30} {} {:>5} {:>6} {:>5}  {}",
            fit(&r.user.shown(), 30),
            paint(&format!("{:<12}", r.state), r.level, colour),
            r.networks,
            r.logins,
            r.messages,
            last
        );
        if r.level > Level::Ok || !r.reason.is_empty() && r.networks > 1 {
            println!("    {}", fit(&r.reason, 74));
        }
        // What fires now, when the stored reason (of the last change) says otherwise.
        let now = r.signals.join("; ");
        if !now.is_empty() && now != r.reason {
            println!("    now: {}", fit(&now, 69));
        }
    }
}

fn print_detail(cfg: &Config, d: &Detail) {
    println!(
        "{}: {} (mode {})",
        d.user.shown(),
        d.state,
        cfg.mode.as_str()
    );
    if let Some(from) = d.counting_from {
        println!("counting logins from {} (last release)", when(from));
    }
    println!(
        "sent {} message(s), {} hard bounce(s) in the last {}",
        d.messages, d.bounces, cfg.detection.window
    );
    if d.refused_logins > 0 {
        // The botnet still has the password: Postfix refuses it, we keep counting it.
        println!(
            "refused {} login(s) with the right password from {} network(s) in the last {} \
             (blocked in Postfix; counted as smtp, shown as smtp-refused below)",
            d.refused_logins, d.refused_networks, cfg.detection.window
        );
    }
    for s in &d.signals {
        println!("now: {s}");
    }
    println!();
    // The owner column only when an ownership database knows one, the servers' when
    // the store does (not for logins stored before servers were).
    let owners = d.networks.iter().any(|n| n.owner().is_some());
    let servers = d.networks.iter().any(|n| !n.servers.is_empty());
    let server_col = |names: &str| {
        if servers {
            format!("{:<12} ", fit(names, 12))
        } else {
            String::new()
        }
    };
    println!(
        "{:<24} {:<16} {:<16} {}{:>6}  {}",
        "NETWORK",
        "FIRST SEEN",
        "LAST SEEN",
        server_col("SERVERS"),
        "COUNT",
        if owners {
            "SOURCES       OWNER"
        } else {
            "SOURCES"
        }
    );
    for n in &d.networks {
        let sources: Vec<&str> = n.sources.iter().map(|s| s.as_str()).collect();
        let mut sources = sources.join(",");
        if n.whitelisted {
            sources.push_str(" (whitelisted)");
        }
        let line = match n.owner() {
            Some(owner) => format!("{sources:<13} {}", fit(&owner, 48)),
            None => sources,
        };
        let names: Vec<&str> = n.servers.iter().map(String::as_str).collect();
        println!(
            "{:<24} {:<16} {:<16} {}{:>6}  {}",
            fit(&n.network, 24),
            &when(n.first_seen)[..16],
            &when(n.last_seen)[..16],
            server_col(&shown(&names.join(","))),
            n.count,
            line.trim_end()
        );
    }
    println!();
    if d.history.is_empty() {
        println!("level history: none (never flagged)");
        return;
    }
    print_history(d);
    if d.actions.is_empty() {
        return;
    }
    println!("\nactions:");
    for a in &d.actions {
        let when_done = a.updated.or(Some(a.created)).map(when).unwrap_or_default();
        let retry = a
            .next_attempt
            .map(|t| format!(", next try {}", when(t)))
            .unwrap_or_default();
        let on = a
            .server
            .as_deref()
            .map(|s| format!(" on {}", shown(s)))
            .unwrap_or_default();
        println!(
            "  #{} {} ({}){on}: {} after {} attempt(s), {when_done}{retry}",
            a.id,
            a.kind,
            a.level.describe(a.enforced),
            a.state,
            a.attempts
        );
        // Whole: it is short, and a cut queue id or error is of no use.
        if let Some(o) = &a.outcome {
            println!("      {}", shown(o));
        }
    }
}

fn print_history(d: &Detail) {
    println!("level history:");
    for h in &d.history {
        println!(
            "  {}  {} -> {}  by {}",
            when(h.time),
            h.from,
            h.to.describe(h.enforced),
            h.actor
        );
        println!("      {}", fit(&h.reason, 72));
    }
}
