//! `check`: a Nagios/Icinga plugin. One status line with performance data; exit 0 OK,
//! 1 WARNING, 2 CRITICAL, 3 UNKNOWN (the plugin could not look).

use super::{App, Run};
use crate::cli::Check;
use crate::config::Config;
use crate::error::{one_line, Error, Result};
use crate::model::{Level, SaslUser, Span, Timestamp};
use crate::report::{self, Health};
use crate::spool::Backlog;
use crate::store;

const OK: u8 = 0;
const WARNING: u8 = 1;
const CRITICAL: u8 = 2;
const UNKNOWN: u8 = 3;

impl Run for Check {
    fn run(&self, app: &App) -> Result<()> {
        let code = match self.look(app) {
            Ok((code, line)) => {
                println!(
                    "F2B-MAILGUARD {} - {line}",
                    ["OK", "WARNING", "CRITICAL", "UNKNOWN"][code as usize]
                );
                code
            }
            Err(e) => {
                println!("F2B-MAILGUARD UNKNOWN - {}", crate::error::one_line(&e));
                UNKNOWN
            }
        };
        Err(Error::Exit(code))
    }
}

/// Up to three names, then a count.
fn names(users: &[&SaslUser]) -> String {
    let shown: Vec<String> = users
        .iter()
        .take(3)
        .map(|u| u.shown().into_owned())
        .collect();
    match users.len() {
        n if n > 3 => format!("{} and {} more", shown.join(", "), n - 3),
        _ => shown.join(", "),
    }
}

impl Check {
    fn look(&self, app: &App) -> Result<(u8, String)> {
        let pending_age = Span::parse("pending-age", &self.pending_age)?;
        let cfg = app.config()?;
        let now = Timestamp::now();
        let mut store = match store::open(&cfg) {
            Ok(store) => store,
            Err(e @ Error::SharedStoreUnreachable { .. }) => return Ok(unreachable(&cfg, &e, now)),
            Err(e) => return Err(e),
        };
        let h = report::health(&cfg, store.as_mut(), now)?;
        let oldest = h.oldest_pending_secs(now);
        let mut problems = Vec::new();
        let mut code = OK;
        // Block and lock are critical even when enforced: the account is compromised and
        // its owner needs a new password; in warn mode nobody has contained it yet.
        for (level, enforced) in [
            (Level::Lock, true),
            (Level::Lock, false),
            (Level::Block, true),
            (Level::Block, false),
        ] {
            let users: Vec<&SaslUser> = h
                .flagged
                .iter()
                .filter(|(_, l, e)| *l == level && *e == enforced)
                .map(|(u, ..)| u)
                .collect();
            if !users.is_empty() {
                code = CRITICAL;
                problems.push(format!(
                    "{} {}: {}",
                    users.len(),
                    level.describe(enforced),
                    names(&users)
                ));
            }
        }
        // Down, mail and logins flow unjudged in-band: loud, as a block is.
        for (name, answer) in crate::policy::probe::listeners(&cfg) {
            if let Err(e) = answer {
                code = CRITICAL;
                problems.push(format!("policy service ({name}) down: {e}"));
            }
        }
        if h.failed > 0 {
            code = CRITICAL;
            problems.push(format!("{} action(s) failed for good", h.failed));
        }
        let notify: Vec<&SaslUser> = h
            .flagged
            .iter()
            .filter(|(_, l, _)| *l == Level::Notify)
            .map(|(u, ..)| u)
            .collect();
        if !notify.is_empty() {
            code = code.max(WARNING);
            problems.push(format!("{} notify: {}", notify.len(), names(&notify)));
        }
        // A damaged or hostile row hides its account from every listing: say so here,
        // where monitoring looks, not only on stderr.
        let skipped = store::skipped_rows();
        if skipped > 0 {
            code = code.max(WARNING);
            problems.push(format!(
                "{skipped} stored row(s) under account names that are not valid skipped (see status)"
            ));
        }
        for w in cfg.warnings() {
            code = code.max(WARNING);
            problems.push(w);
        }
        // A login lost (rejected) or not yet stored (spooled) may be a missed botnet.
        for p in h.backlog.problems() {
            code = code.max(WARNING);
            problems.push(p);
        }
        if oldest > pending_age.as_secs() {
            code = code.max(WARNING);
            problems.push(format!(
                "an action has waited {oldest}s (is run-actions running?)"
            ));
        }
        let summary = if problems.is_empty() {
            format!(
                "no account flagged, {} action(s) pending (mode {})",
                h.pending,
                cfg.mode.as_str()
            )
        } else {
            problems.join("; ")
        };
        // The first `|` starts the perfdata: one in a name (or any text) is escaped
        // the way display escapes, so it cannot move the split.
        let summary = summary.replace('|', r"\u{7c}");
        Ok((code, format!("{summary} | {}", perfdata(&h, oldest))))
    }
}

/// The shared store is down: critical, as no login is judged until it is back; the
/// logins wait in this server's spool, which is what can still be counted.
fn unreachable(cfg: &Config, e: &Error, now: Timestamp) -> (u8, String) {
    let backlog = Backlog::of(&cfg.local_base(), now);
    let mut problems = vec![one_line(e)];
    problems.extend(backlog.problems());
    let summary = problems.join("; ").replace('|', r"\u{7c}");
    let perf = format!(
        "spooled={} rejected_24h={}",
        backlog.spooled, backlog.rejected_24h
    );
    (CRITICAL, format!("{summary} | {perf}"))
}

fn perfdata(h: &Health, oldest: i64) -> String {
    format!(
        "notify={} block={} lock={} would_block={} would_lock={} pending={} failed={} oldest_pending={oldest}s spooled={} rejected_24h={}",
        h.count(Level::Notify, false),
        h.count(Level::Block, true),
        h.count(Level::Lock, true),
        h.count(Level::Block, false),
        h.count(Level::Lock, false),
        h.pending,
        h.failed,
        h.backlog.spooled,
        h.backlog.rejected_24h
    )
}
