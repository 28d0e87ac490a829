//! `metrics`: Prometheus text exposition, for node_exporter's textfile collector.

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};

use super::{App, Run};
use crate::cli::Metrics;
use crate::error::{Error, Result};
use crate::files::write_atomically;
use crate::model::ActionKind;
use crate::model::{Level, Source, Timestamp};
use crate::report;
use crate::spool::Backlog;
use crate::store::{self, ActionState};

fn family(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP f2b_mailguard_{name} {help}");
    let _ = writeln!(out, "# TYPE f2b_mailguard_{name} gauge");
}

/// A family of one sample.
fn gauge(out: &mut String, name: &str, help: &str, value: impl Display) {
    family(out, name, help);
    let _ = writeln!(out, "f2b_mailguard_{name} {value}");
}

/// A family of one sample per value of `label`.
fn by_label<K: Display, V: Display>(
    out: &mut String,
    (name, label): (&str, &str),
    help: &str,
    samples: impl IntoIterator<Item = (K, V)>,
) {
    family(out, name, help);
    for (k, v) in samples {
        let _ = writeln!(out, "f2b_mailguard_{name}{{{label}=\"{k}\"}} {v}");
    }
}

/// Whether the store answered: 0 when the shared one is unreachable, with what can
/// still be counted (the logins waiting in this server's spool).
fn store_up(out: &mut String, up: bool) {
    gauge(
        out,
        "store_up",
        "1 if the database opened; 0 if the shared PostgreSQL store is unreachable.",
        u8::from(up),
    );
}

/// Whether each listener of an enabled policy service answered (nothing when the
/// service is not enabled).
fn policy_up(out: &mut String, cfg: &crate::config::Config) {
    let answers = crate::policy::probe::listeners(cfg);
    if answers.is_empty() {
        return;
    }
    by_label(
        out,
        ("policy_up", "listener"),
        "1 if the in-band policy service answered on this listener; 0: mail and logins flow unjudged.",
        answers.into_iter().map(|(name, a)| (name, u8::from(a.is_ok()))),
    );
}

fn backlog(out: &mut String, b: &Backlog) {
    gauge(
        out,
        "spooled_logins",
        "Logins kept in the spool while the config or database failed, not yet stored.",
        b.spooled,
    );
    gauge(
        out,
        "rejected_logins",
        "Logins refused for good as invalid input (record exit 2) in the last 24h.",
        b.rejected_24h,
    );
    gauge(
        out,
        "last_rejected_timestamp_seconds",
        "When record last refused a login as invalid input (0: not in 24h).",
        b.last_rejected.unwrap_or(0.0) as i64,
    );
}

impl Metrics {
    fn emit(&self, out: &str) -> Result<()> {
        match &self.textfile {
            Some(path) => {
                write_atomically(path, out.as_bytes(), 0o644, None).map_err(|e| Error::io(path, e))
            }
            None => {
                print!("{out}");
                Ok(())
            }
        }
    }
}

impl Run for Metrics {
    fn run(&self, app: &App) -> Result<()> {
        let cfg = app.config()?;
        let now = Timestamp::now();
        let mut store = match store::open(&cfg) {
            Ok(store) => store,
            Err(e @ Error::SharedStoreUnreachable { .. }) => {
                // Written all the same, so the collector shows the outage; exit 1 too.
                let mut out = String::new();
                store_up(&mut out, false);
                policy_up(&mut out, &cfg);
                backlog(&mut out, &Backlog::of(&cfg.local_base(), now));
                self.emit(&out)?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let h = report::health(&cfg, store.as_mut(), now)?;
        let mut out = String::new();
        store_up(&mut out, true);
        policy_up(&mut out, &cfg);

        let states = [
            ("notify", Level::Notify, false),
            ("block", Level::Block, true),
            ("lock", Level::Lock, true),
            ("would_block", Level::Block, false),
            ("would_lock", Level::Lock, false),
        ];
        by_label(
            &mut out,
            ("accounts", "state"),
            "Accounts by level; would_block and would_lock are decided in warn mode.",
            states.map(|(state, level, enforced)| (state, h.count(level, enforced))),
        );

        let activity = store.activity(now.minus(cfg.detection.window), now)?;
        let mut logins: BTreeMap<Source, u64> = Source::ALL
            .iter()
            .filter(|s| s.is_login())
            .map(|s| (*s, 0))
            .collect();
        let mut messages: BTreeMap<Source, u64> = [Source::Rate, Source::Bounces]
            .into_iter()
            .map(|s| (s, 0))
            .collect();
        for (_, seen) in &activity {
            if let Some(n) = logins.get_mut(&seen.source) {
                *n += 1;
            } else if let Some(n) = messages.get_mut(&seen.source) {
                *n += u64::from(seen.count);
            }
        }
        by_label(
            &mut out,
            ("logins", "source"),
            "Logins recorded within the detection window, by source.",
            &logins,
        );
        by_label(
            &mut out,
            ("messages", "kind"),
            "Messages accepted (rate) and hard bounces (bounces) within the detection window.",
            &messages,
        );

        family(
            &mut out,
            "actions",
            "Containment actions by kind and state.",
        );
        let counts: BTreeMap<(ActionKind, &str), u64> = store
            .action_counts()?
            .into_iter()
            .map(|(k, s, n)| ((k, s.as_str()), n))
            .collect();
        for kind in ActionKind::ALL {
            for state in [
                ActionState::Pending,
                ActionState::Done,
                ActionState::Skipped,
                ActionState::Failed,
                ActionState::Cancelled,
            ] {
                let n = counts.get(&(kind, state.as_str())).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "f2b_mailguard_actions{{kind=\"{kind}\",state=\"{}\"}} {n}",
                    state.as_str()
                );
            }
        }

        gauge(
            &mut out,
            "oldest_pending_action_age_seconds",
            "How long the oldest queued action has waited.",
            h.oldest_pending_secs(now),
        );

        backlog(&mut out, &h.backlog);

        gauge(
            &mut out,
            "database_bytes",
            "Size of the database: the SQLite file and its write-ahead log, or the shared PostgreSQL database (pg_database_size).",
            store.size_bytes()?,
        );
        let last = store
            .meta("last_prune")?
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0);
        gauge(
            &mut out,
            "last_prune_timestamp_seconds",
            "When `prune` last ran (0: never).",
            last / 1000,
        );

        self.emit(&out)
    }
}
