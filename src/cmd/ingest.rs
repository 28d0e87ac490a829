//! `ingest`: the backtest. Replays logins from stdin into a scratch database, using
//! the log times, with every action off, and reports which accounts would have been
//! flagged, when (log time) each level was reached, and why.
//!
//! Input, one event per line, in log-time order, either
//!   `TIME USER ADDRESS`   as printed by `fail2ban-regex -o '<time> <F-USER> <ip>' LOG FILTER`
//!   `{"time": 1795418066.0, "user": "...", "ip": "...", "source": "smtp", "count": 1}`
//!                         (JSON lines; source and count optional)
//!
//! Live, Fail2ban's smtp jail reports each (user, address) pair once per bantime and
//! the rate jail reads the same Postfix line to count messages. Here every smtp line is
//! both a login and one message, and the messages (and bounces) of one second are
//! summed, so the backtest sees what both jails together would have recorded.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{App, Run};
use crate::cli::Ingest;
use crate::config::Config;
use crate::detect::replay::Replay;
use crate::detect::Seen;
use crate::error::{Error, Invalid, Result};
use crate::files::same_file;
use crate::model::{ClientAddr, Label, Level, LogTime, MessageCount, SaslUser, Source};
use crate::store;

#[derive(Deserialize)]
struct JsonLogin {
    time: serde_json::Value,
    user: String,
    ip: String,
    source: Option<String>,
    count: Option<u32>,
}

/// One input line: whose event it is, and the event.
fn parse_line(
    line: &str,
    default_source: Source,
) -> std::result::Result<(SaslUser, Seen), Invalid> {
    if !line.starts_with('{') {
        let mut f = line.split_whitespace();
        return match (f.next(), f.next(), f.next(), f.next()) {
            (Some(t), Some(u), Some(i), None) => event(default_source, 1, t, u, i),
            _ => Err(Invalid::new("line", "is not TIME USER ADDRESS")),
        };
    }
    let j: JsonLogin = serde_json::from_str(line)
        .map_err(|e| Invalid::new("line", format!("not a JSON login: {e}")))?;
    let time: Cow<str> = match &j.time {
        serde_json::Value::Number(n) => n.to_string().into(),
        serde_json::Value::String(s) => s.as_str().into(),
        _ => return Err(Invalid::new("time", "must be a number")),
    };
    let source = j
        .source
        .as_deref()
        .map(Source::parse)
        .transpose()?
        .unwrap_or(default_source);
    let count = match j.count {
        Some(n) => MessageCount::parse(&n.to_string())?,
        None => 1,
    };
    event(source, count, &time, &j.user, &j.ip)
}

/// Validates one event's fields, in the order their errors are reported.
fn event(
    source: Source,
    count: u32,
    time: &str,
    user: &str,
    ip: &str,
) -> std::result::Result<(SaslUser, Seen), Invalid> {
    if !source.is_recorded() {
        return Err(Invalid::new(
            "source",
            format!("{source} is computed by f2b-mailguard, not recorded"),
        ));
    }
    let time = LogTime::parse("time", time)?;
    let user = SaslUser::parse(user)?;
    let addr = ClientAddr::parse(ip)?;
    Ok((
        user,
        Seen {
            source,
            addr,
            time,
            count,
            hits: 1,
        },
    ))
}

/// The events of one log second: logins as they come, message counts summed per
/// (source, user, address), since one second can hold many messages of one sender.
#[derive(Default)]
struct Second {
    time: Option<LogTime>,
    logins: Vec<(SaslUser, Seen)>,
    counts: BTreeMap<(Source, SaslUser, ClientAddr), u32>,
}

impl Second {
    /// Adds an event; replays the previous second's events once the time moves on.
    fn push(&mut self, user: SaslUser, ev: Seen, replay: &mut Replay) {
        if self.time != Some(ev.time) {
            self.flush(replay);
            self.time = Some(ev.time);
        }
        if ev.source == Source::Smtp {
            self.add(Source::Rate, &user, ev.addr, 1);
        }
        if ev.source.is_login() {
            self.logins.push((user, ev));
        } else {
            self.add(ev.source, &user, ev.addr, ev.count);
        }
    }

    fn add(&mut self, source: Source, user: &SaslUser, addr: ClientAddr, count: u32) {
        let n = self.counts.entry((source, user.clone(), addr)).or_default();
        *n = n.saturating_add(count);
    }

    /// Replays this second's events: the logins as they came, then the counts.
    fn flush(&mut self, replay: &mut Replay) {
        for (user, seen) in self.logins.drain(..) {
            replay.push(&user, seen);
        }
        let Some(time) = self.time else {
            return;
        };
        for ((source, user, addr), count) in std::mem::take(&mut self.counts) {
            let seen = Seen {
                source,
                addr,
                time,
                count,
                hits: 1,
            };
            replay.push(&user, seen);
        }
    }
}

#[derive(Serialize)]
struct Report {
    events: u64,
    skipped: u64,
    accounts: Vec<Account>,
}

#[derive(Serialize)]
struct Account {
    user: SaslUser,
    highest: Level,
    levels: Vec<Reached>,
}

#[derive(Serialize)]
struct Reached {
    level: Level,
    time: f64,
    reason: String,
}

impl Run for Ingest {
    fn run(&self, app: &App) -> Result<()> {
        let default_source = Source::parse(&self.source)?;
        let Some(scratch) = &app.db else {
            return Err(Error::Usage(
                "ingest writes a scratch database: give --db PATH (never the live one)".into(),
            ));
        };
        let live = Config::load(app.config_path.as_deref())?.database;
        if same_file(scratch, &live) {
            return Err(Error::Usage(format!(
                "{} is the live database; ingest needs a scratch one",
                scratch.display()
            )));
        }
        let cfg = app.config()?;
        let mut store = store::open(&cfg)?;
        let jail = Label::parse("jail", "ingest")?;
        let whitelist = store.whitelist()?;
        // A backtest never acts: it replays in memory, then writes the outcome.
        let mut replay = Replay::new(&cfg, &whitelist);
        let started = Instant::now();
        let (mut events, mut skipped) = (0u64, 0u64);
        let mut second = Second::default();
        let mut input = std::io::stdin().lock();
        let mut buf = String::new();
        for n in 1.. {
            buf.clear();
            if input
                .read_line(&mut buf)
                .map_err(|e| Error::io("stdin", e))?
                == 0
            {
                break;
            }
            let line = buf.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_line(line, default_source) {
                Ok((user, ev)) => {
                    events += 1;
                    second.push(user, ev, &mut replay);
                }
                Err(e) => {
                    if skipped < 5 {
                        eprintln!("f2b-mailguard: line {n}: {e}; skipped");
                    }
                    skipped += 1;
                }
            }
        }
        second.flush(&mut replay);
        let replayed = replay.finish();
        store.import(&jail, &replayed)?;
        let took = started.elapsed().as_secs_f64();
        eprintln!(
            "f2b-mailguard: ingested {events} events in {took:.2} s ({:.0}/s); {skipped} line(s) skipped",
            events as f64 / took.max(1e-9)
        );

        let accounts: Vec<Account> = replayed
            .into_iter()
            .filter_map(|(user, r)| {
                let levels: Vec<Reached> = r
                    .changes
                    .iter()
                    .filter(|(_, t)| t.to > t.from)
                    .map(|(at, t)| Reached {
                        level: t.to,
                        time: at.secs_f64(),
                        reason: t.reason.clone(),
                    })
                    .collect();
                let highest = levels.iter().map(|r| r.level).max()?;
                Some(Account {
                    user,
                    highest,
                    levels,
                })
            })
            .collect();
        let report = Report {
            events,
            skipped,
            accounts,
        };
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        } else if report.accounts.is_empty() {
            println!("no account would have been flagged");
        } else {
            println!(
                "{:<34} {:<7} {:<20} WHY",
                "ACCOUNT", "LEVEL", "REACHED (UTC)"
            );
            for a in &report.accounts {
                for (i, r) in a.levels.iter().enumerate() {
                    let who = if i == 0 { a.user.as_str() } else { "" };
                    let when = LogTime::from_millis((r.time * 1000.0) as i64).rfc3339();
                    println!(
                        "{:<34} {:<7} {:<20} {}",
                        who,
                        r.level.as_str(),
                        &when[..19],
                        r.reason
                    );
                }
            }
        }
        Ok(())
    }
}
