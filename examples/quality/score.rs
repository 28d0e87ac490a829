//! Scores an `f2b-mailguard ingest --json` report against the corpus labels
//! (labels.jsonl of `examples/scenario`): per class, how many accounts reached notify,
//! block and lock, and for compromised accounts how long (log time) after the
//! compromise started. Used by `examples/quality` and `tests/quality.rs`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;

// Explicit path: this file is also included by tests through `#[path]`.
#[path = "targets.rs"]
mod targets;
pub use targets::targets;

/// Compromised classes first, then the honest ones, as the generator names them.
pub const CLASS_ORDER: &[&str] = &[
    "botnet_burst",
    "cloud_botnet",
    "imap_checker",
    "slow_drip",
    "single_ip_spammer",
    "hosting_botnet",
    "residential_proxy",
    "quiet_sender",
    "quiet_sender_clean",
    "imap_theft",
    "drip_two_days",
    "multi_device",
    "phone",
    "office_nat",
    "traveller",
    "provider",
    "provider_pool",
    "newsletter",
    "newsletter_office",
    "vpn_user",
    "outlook_fetch",
    "shared_mailbox",
    "crm",
];

/// The quiet attacks: a steady trickle or a drip, often to a clean list. Their
/// messages accepted before block are judged apart from the ordinary attacks'.
pub const QUIET: &[&str] = &["quiet_sender", "quiet_sender_clean", "drip_two_days"];

#[derive(Debug, Clone, Deserialize)]
pub struct Label {
    pub user: String,
    pub class: String,
    pub compromised: bool,
    pub compromise_start: Option<i64>,
    /// The attacker's first message (after compromise_start for a credential checker).
    #[serde(default)]
    pub first_message: Option<i64>,
    /// Log times of the attacker's messages.
    #[serde(default)]
    pub attack_messages: Vec<i64>,
}

#[derive(Deserialize)]
struct Report {
    accounts: Vec<Account>,
}

#[derive(Deserialize)]
struct Account {
    user: String,
    levels: Vec<Reached>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Reached {
    pub level: String,
    pub time: f64,
    pub reason: String,
}

pub fn rank(level: &str) -> u8 {
    match level {
        "notify" => 1,
        "block" => 2,
        "lock" => 3,
        _ => 0,
    }
}

pub fn level_name(rank: u8) -> &'static str {
    ["ok", "notify", "block", "lock"][rank.min(3) as usize]
}

/// What happened to one labelled account.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub label: Label,
    /// Highest level reached: for a compromised account at or after compromise_start,
    /// for an honest one at any time.
    pub highest: u8,
    /// Compromised only: highest level reached before compromise_start (a false alarm
    /// on the honest part of its life).
    pub before: u8,
    /// Log seconds from compromise_start to the first notify-or-above.
    pub to_notify: Option<f64>,
    /// Log seconds from compromise_start to the first block-or-above.
    pub to_block: Option<f64>,
    /// Log seconds from the first message to that block (0 if it came before).
    pub message_to_block: Option<f64>,
    /// Every rise the report gives, times corrected by the offset.
    pub rises: Vec<Reached>,
    /// The attacker's messages sent before the first block (all of them if never
    /// blocked), and all of them.
    pub accepted: (usize, usize),
}

pub fn parse_labels(text: &str) -> Result<Vec<Label>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, l)| serde_json::from_str(l).map_err(|e| format!("labels line {}: {e}", n + 1)))
        .collect()
}

/// `offset`: seconds to subtract from report times (see `time_offset`).
pub fn score(labels: &[Label], ingest_json: &str, offset: f64) -> Result<Vec<Outcome>, String> {
    let report: Report =
        serde_json::from_str(ingest_json).map_err(|e| format!("ingest report: {e}"))?;
    let mut by_user: BTreeMap<&str, Vec<Reached>> = BTreeMap::new();
    for a in &report.accounts {
        let rises = a
            .levels
            .iter()
            .map(|r| Reached {
                time: r.time - offset,
                ..r.clone()
            })
            .collect();
        by_user.insert(a.user.as_str(), rises);
    }
    Ok(labels
        .iter()
        .map(|l| {
            let rises = by_user.get(l.user.as_str()).cloned().unwrap_or_default();
            let start = l.compromise_start.map(|s| s as f64);
            let after = |r: &&Reached| start.is_none_or(|s| r.time >= s);
            let highest = rises
                .iter()
                .filter(after)
                .map(|r| rank(&r.level))
                .max()
                .unwrap_or(0);
            let before = match start {
                Some(s) => rises
                    .iter()
                    .filter(|r| r.time < s)
                    .map(|r| rank(&r.level))
                    .max()
                    .unwrap_or(0),
                None => 0,
            };
            let first = |min: u8| {
                let s = start?;
                rises
                    .iter()
                    .filter(|r| r.time >= s && rank(&r.level) >= min)
                    .map(|r| r.time - s)
                    .next()
            };
            let to_block = first(2);
            let sending = l.first_message.or(l.compromise_start);
            let message_to_block = to_block
                .zip(start.zip(sending))
                .map(|(b, (s, m))| (s + b - m as f64).max(0.0));
            let block_at = start.zip(to_block).map(|(s, b)| s + b);
            let accepted = l
                .attack_messages
                .iter()
                .filter(|&&t| block_at.is_none_or(|b| (t as f64) < b))
                .count();
            Outcome {
                label: l.clone(),
                highest,
                before,
                to_notify: first(1),
                to_block,
                message_to_block,
                rises,
                accepted: (accepted, l.attack_messages.len()),
            }
        })
        .collect())
}

/// Fail2ban reads year-less syslog times as this year (or last year, for a date that
/// would lie in the future) in the local time zone. The corpus knows its first
/// submission's time; the difference to the first smtp event is the offset.
pub fn time_offset(events_jsonl: &str, first_login: i64) -> f64 {
    first_time(events_jsonl, "smtp").map_or(0.0, |t| t - first_login as f64)
}

#[derive(Deserialize)]
struct Event {
    time: f64,
    source: String,
}

fn events(text: &str) -> impl Iterator<Item = Event> + '_ {
    text.lines().filter_map(|l| serde_json::from_str(l).ok())
}

pub fn first_time(events_jsonl: &str, source: &str) -> Option<f64> {
    events(events_jsonl)
        .filter(|e| e.source == source)
        .map(|e| e.time)
        .reduce(f64::min)
}

/// Events per source in the merged input of ingest.
pub fn count_sources(events_jsonl: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for e in events(events_jsonl) {
        *m.entry(e.source).or_insert(0) += 1;
    }
    m
}

/// h:mm:ss, or m:ss under an hour.
pub fn duration(secs: f64) -> String {
    let s = secs.round().max(0.0) as i64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// "median / max" over the accounts that got there, and how many never did.
fn ttd(values: impl Iterator<Item = Option<f64>>) -> String {
    let all: Vec<Option<f64>> = values.collect();
    let never = all.iter().filter(|v| v.is_none()).count();
    let mut v: Vec<f64> = all.into_iter().flatten().collect();
    let Some(m) = median(&mut v) else {
        return "–".into();
    };
    let max = v.iter().copied().fold(0.0, f64::max);
    let tail = if never > 0 {
        format!(" ({never} never)")
    } else {
        String::new()
    };
    format!("{} / {}{tail}", duration(m), duration(max))
}

fn pct1(num: usize, den: usize) -> String {
    if den == 0 {
        "–".into()
    } else {
        format!("{:.1} %", 100.0 * num as f64 / den as f64)
    }
}

/// The attacker's messages accepted before block over the compromised accounts of
/// the quiet classes (`quiet`) or the others: (accepted, all).
pub fn accepted_share(outcomes: &[Outcome], quiet: bool) -> (usize, usize) {
    outcomes
        .iter()
        .filter(|o| o.label.compromised && QUIET.contains(&o.label.class.as_str()) == quiet)
        .fold((0, 0), |(a, b), o| (a + o.accepted.0, b + o.accepted.1))
}

fn pct(num: usize, den: usize) -> String {
    if den == 0 {
        "–".into()
    } else {
        format!("{:.0} %", 100.0 * num as f64 / den as f64)
    }
}

fn classes(outcomes: &[Outcome]) -> Vec<&str> {
    let mut classes: Vec<&str> = CLASS_ORDER.to_vec();
    for o in outcomes {
        if !classes.contains(&o.label.class.as_str()) {
            classes.push(&o.label.class);
        }
    }
    classes
}

/// The Markdown report: one row per class, then precision and recall, then the
/// issue's targets, each met or not.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    s.push_str(
        "| class | accounts | compromised | notify+ | block+ | lock | to notify (median / max) | to block (median / max) | first message to block | attack msgs before block |\n",
    );
    s.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    for c in classes(outcomes) {
        let rows: Vec<&Outcome> = outcomes.iter().filter(|o| o.label.class == c).collect();
        if rows.is_empty() {
            continue;
        }
        let n = rows.len();
        let bad = rows.iter().filter(|o| o.label.compromised).count();
        let at = |min: u8| rows.iter().filter(|o| o.highest >= min).count();
        let (acc, all) = rows
            .iter()
            .fold((0, 0), |(a, b), o| (a + o.accepted.0, b + o.accepted.1));
        let acc = if all > 0 {
            format!("{} ({acc}/{all})", pct1(acc, all))
        } else {
            "–".into()
        };
        let (tn, tb, mb) = if bad > 0 {
            (
                ttd(rows.iter().map(|o| o.to_notify)),
                ttd(rows.iter().map(|o| o.to_block)),
                ttd(rows.iter().map(|o| o.message_to_block)),
            )
        } else {
            Default::default()
        };
        let _ = writeln!(
            s,
            "| {c} | {n} | {bad} | {} | {} | {} | {tn} | {tb} | {mb} | {acc} |",
            at(1),
            at(2),
            at(3)
        );
    }
    let pre = outcomes.iter().filter(|o| o.before > 0).count();
    s.push('\n');
    s.push_str("| flag | flagged compromised | flagged honest | missed | precision | recall |\n");
    s.push_str("|---|---|---|---|---|---|\n");
    for (name, min) in [("notify or above", 1), ("block or above", 2)] {
        let tp = outcomes
            .iter()
            .filter(|o| o.label.compromised && o.highest >= min)
            .count();
        let fp = outcomes
            .iter()
            .filter(|o| !o.label.compromised && o.highest >= min)
            .count();
        let fneg = outcomes
            .iter()
            .filter(|o| o.label.compromised && o.highest < min)
            .count();
        let _ = writeln!(
            s,
            "| {name} | {tp} | {fp} | {fneg} | {} | {} |",
            pct(tp, tp + fp),
            pct(tp, tp + fneg)
        );
    }
    if pre > 0 {
        let _ = writeln!(
            s,
            "\n{pre} compromised account(s) were also flagged before their compromise (not counted above)."
        );
    }
    let honest_beyond = outcomes
        .iter()
        .filter(|o| !o.label.compromised && o.highest >= 2)
        .count();
    let sending = |o: &&&Outcome| !o.label.attack_messages.is_empty();
    let bad: Vec<&Outcome> = outcomes.iter().filter(|o| o.label.compromised).collect();
    let blocked = bad.iter().filter(|o| o.highest >= 2).count();
    let blocked_sending = bad
        .iter()
        .filter(sending)
        .filter(|o| o.highest >= 2)
        .count();
    let (oa, on) = accepted_share(outcomes, false);
    let (qa, qn) = accepted_share(outcomes, true);
    let _ = writeln!(
        s,
        "\nhonest accounts beyond notify: {honest_beyond}; compromised blocked: {blocked}/{} \
         (that send mail: {blocked_sending}/{}); attack messages accepted before block: \
         ordinary {} ({oa}/{on}), quiet/clean-list {} ({qa}/{qn})",
        bad.len(),
        bad.iter().filter(sending).count(),
        pct1(oa, on),
        pct1(qa, qn)
    );
    s.push('\n');
    for (line, met) in targets(outcomes) {
        let _ = writeln!(s, "- {} {line}", if met { "met:" } else { "NOT MET:" });
    }
    s
}
