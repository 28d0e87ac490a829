//! `queue-scan`: who has mail waiting in Postfix's queues. Run every minute by a timer;
//! an account whose deferred mail passes `thresholds.queue` is flagged like any other
//! signal ("a spike in the deferred queue is typically a compromised account").

use std::collections::BTreeMap;

use serde::Serialize;

use super::{App, Run};
use crate::actions::{self, postcat, postfix};
use crate::cli::QueueScan;
use crate::detect::Engine;
use crate::error::{Error, Result};
use crate::model::{fold_case, SaslUser, Timestamp};
use crate::ownership::Ownership;
use crate::store::{self, QueueSender, QueueSnapshot};

/// Messages per (queue, sender, submitting account), from `postqueue -j` lines and
/// the logins in the queue files (`submitters`, by queue id).
pub fn by_sender(
    messages: &[postfix::QueuedMessage],
    submitters: &BTreeMap<String, SaslUser>,
) -> Vec<QueueSender> {
    let mut out: BTreeMap<(&str, String, &str), QueueSender> = BTreeMap::new();
    for m in messages {
        // Addresses are shown as accounts are named: in lower case.
        let sender = fold_case(&m.sender);
        let account = submitters.get(&m.queue_id).map_or("", SaslUser::as_str);
        let s = out
            .entry((m.queue_name.as_str(), sender.clone(), account))
            .or_insert_with(|| QueueSender {
                queue: m.queue_name.clone(),
                sender,
                account: account.to_owned(),
                messages: 0,
                recipients: 0,
                oldest: None,
            });
        s.messages = s.messages.saturating_add(1);
        s.recipients = s
            .recipients
            .saturating_add(u32::try_from(m.recipients.len()).unwrap_or(u32::MAX));
        if let Some(t) = m.arrival_time.filter(|t| t.is_finite()) {
            let t = Timestamp::from_millis((t * 1000.0) as i64);
            s.oldest = Some(s.oldest.map_or(t, |o| o.min(t)));
        }
    }
    out.into_values().collect()
}

#[derive(Serialize)]
struct Summary {
    at: f64,
    messages: BTreeMap<String, u64>,
    senders: usize,
    actions_queued: usize,
}

impl Run for QueueScan {
    fn run(&self, app: &App) -> Result<()> {
        let cfg = app.config()?;
        let messages = postfix::queue(&cfg).map_err(Error::External)?;
        // Only the deferred queue feeds detection; only its submitters are read.
        let deferred: Vec<&str> = messages
            .iter()
            .filter(|m| m.queue_name == "deferred")
            .map(|m| m.queue_id.as_str())
            .collect();
        let submitters = postcat::submitters(&cfg, &deferred).map_err(Error::External)?;
        let senders = by_sender(&messages, &submitters);
        let at = Timestamp::now();
        let mut store = store::open(&cfg)?;
        let queued = store.replace_queue(
            &QueueSnapshot {
                at,
                senders: &senders,
            },
            &Engine::new(&cfg, &Ownership::open_or_warn(&cfg)),
        )?;
        if queued > 0 {
            actions::worker::spawn(app.config_path.as_deref(), app.db_arg.as_deref());
        }
        let mut per_queue: BTreeMap<String, u64> = BTreeMap::new();
        for s in &senders {
            *per_queue.entry(s.queue.clone()).or_default() += u64::from(s.messages);
        }
        let summary = Summary {
            at: at.secs_f64(),
            messages: per_queue,
            senders: senders
                .iter()
                .map(|s| (&s.queue, &s.sender))
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            actions_queued: queued,
        };
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&summary).unwrap_or_default()
            );
        } else if !self.quiet {
            let counts: Vec<String> = summary
                .messages
                .iter()
                .map(|(q, n)| format!("{n} {q}"))
                .collect();
            println!(
                "queue: {} message(s){}{}; {} sender(s); {} action(s) queued",
                messages.len(),
                if counts.is_empty() { "" } else { ": " },
                counts.join(", "),
                summary.senders,
                queued
            );
        }
        Ok(())
    }
}
