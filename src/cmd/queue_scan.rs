//! `queue-scan`: who has mail waiting in Postfix's queues. Run every minute by a timer;
//! an account whose deferred mail passes `thresholds.queue` is flagged like any other
//! signal ("a spike in the deferred queue is typically a compromised account").

use std::collections::BTreeMap;

use serde::Serialize;

use super::{App, Run};
use crate::actions::{self, postfix};
use crate::cli::QueueScan;
use crate::detect::Engine;
use crate::error::{Error, Result};
use crate::model::LogTime;
use crate::store::{self, QueueSender};

/// Messages per (queue, sender), from `postqueue -j` lines.
pub fn by_sender(messages: &[postfix::QueuedMessage]) -> Vec<QueueSender> {
    let mut out: BTreeMap<(&str, String), QueueSender> = BTreeMap::new();
    for m in messages {
        // Senders are matched to accounts like the hold action does: case-insensitively.
        let sender = m.sender.to_ascii_lowercase();
        let s = out
            .entry((m.queue_name.as_str(), sender.clone()))
            .or_insert_with(|| QueueSender {
                queue: m.queue_name.clone(),
                sender,
                messages: 0,
                recipients: 0,
                oldest: None,
            });
        s.messages = s.messages.saturating_add(1);
        s.recipients = s
            .recipients
            .saturating_add(u32::try_from(m.recipients.len()).unwrap_or(u32::MAX));
        if let Some(t) = m.arrival_time.filter(|t| t.is_finite()) {
            let t = LogTime::from_millis((t * 1000.0) as i64);
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
        let senders = by_sender(&messages);
        let at = LogTime::now();
        let mut store = store::open(&cfg)?;
        let queued = store.replace_queue(at, &senders, &Engine::new(&cfg, true))?;
        if queued > 0 {
            actions::worker::spawn(app.config_path.as_deref(), app.db.as_deref());
        }
        let mut per_queue: BTreeMap<String, u64> = BTreeMap::new();
        for s in &senders {
            *per_queue.entry(s.queue.clone()).or_default() += u64::from(s.messages);
        }
        let summary = Summary {
            at: at.secs_f64(),
            messages: per_queue,
            senders: senders.len(),
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
