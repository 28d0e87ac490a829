//! f2b-mailguard itself, Dovecot's auth cache, and the admin mail.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::{Finding, Status};
use crate::actions::{exec, mail, STUCK_AFTER};
use crate::config::{Config, MailTransport};
use crate::model::{DatabaseLocation, Mode, Timestamp};
use crate::spool::Backlog;
use crate::store::Store;

/// Logins waiting in the spool and refused in 24h, as findings.
fn backlog(cfg: &Config, out: &mut Vec<Finding>) {
    const AREA: &str = "mailguard";
    let backlog = Backlog::of(&cfg.local_base(), Timestamp::now());
    let problems = backlog.problems();
    if problems.is_empty() {
        out.push(Finding::ok(
            AREA,
            "no login waiting in the spool or rejected in 24h",
        ));
    }
    for p in problems {
        // A spooled login waits for a working database; a rejection names the field.
        let fix = if p.contains("spooled") {
            "f2b-mailguard config check; then f2b-mailguard run-actions stores them"
        } else {
            "check the jail's filter and action (the fail2ban checks below)"
        };
        out.push(Finding::new(Status::Warn, AREA, p, Some(fix.into())));
    }
}

pub fn mailguard(
    cfg: &Config,
    store: Option<&mut dyn Store>,
    store_error: Option<String>,
    out: &mut Vec<Finding>,
) {
    const AREA: &str = "mailguard";
    let origin = cfg
        .file
        .as_ref()
        .map_or("built-in defaults".into(), |f| f.display().to_string());
    out.push(Finding::ok(AREA, format!("config {origin} is valid")));
    out.push(match cfg.mode {
        Mode::Warn => Finding::new(
            Status::Warn,
            AREA,
            "mode warn: accounts are flagged and the admin mailed, but nothing is blocked",
            Some("set mode = \"enforce\" in the config when the reports look right".into()),
        ),
        Mode::Enforce => Finding::ok(AREA, "mode enforce: block and lock take effect"),
    });
    for w in cfg.warnings() {
        out.push(Finding::warn(AREA, w));
    }
    let Some(store) = store else {
        out.push(Finding::new(
            Status::Fail,
            AREA,
            store_error.unwrap_or_else(|| "the database did not open".into()),
            Some(match &cfg.database {
                DatabaseLocation::Sqlite(path) => {
                    format!("check {} and its directory", path.display())
                }
                DatabaseLocation::Postgres(url) => format!(
                    "the shared store is unreachable or refuses us: check that PostgreSQL at {url} runs and grants this server's role"
                ),
            }),
        ));
        // Logins wait in the spool above all while the store is down.
        backlog(cfg, out);
        return;
    };
    match store.set_meta("doctor", &Timestamp::now().millis().to_string()) {
        Ok(()) => out.push(Finding::ok(
            AREA,
            format!(
                "database {} opens, is writable and its schema is current",
                cfg.database
            ),
        )),
        Err(e) => out.push(Finding::fail(AREA, e.to_string())),
    }
    // The spool holds evidence too, beside a SQLite file or in local_dir.
    if let Some(dir) = cfg.local_base().parent() {
        let mode = std::fs::metadata(dir)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0);
        if mode & 0o077 != 0 {
            out.push(Finding::new(
                Status::Warn,
                AREA,
                format!(
                    "{} has mode {mode:o}: others can read the evidence",
                    dir.display()
                ),
                Some(format!("chmod 700 {}", dir.display())),
            ));
        }
    }
    backlog(cfg, out);
    match store.action_totals() {
        Ok(t) if t.failed > 0 => out.push(Finding::new(
            Status::Warn,
            AREA,
            format!("{} action(s) failed for good", t.failed),
            Some("f2b-mailguard status -- USER shows each error".into()),
        )),
        Ok(t) => {
            let last = store
                .meta("last_run_actions")
                .ok()
                .flatten()
                .and_then(|v| v.parse::<i64>().ok());
            let since = last.map_or("never".into(), |ms| Timestamp::from_millis(ms).rfc3339());
            let waiting = t
                .oldest_pending
                .is_some_and(|o| Timestamp::now().millis() - o.millis() > STUCK_AFTER.millis());
            out.push(Finding::new(
                if waiting { Status::Warn } else { Status::Ok },
                AREA,
                format!("{} action(s) pending; last run-actions: {since}", t.pending),
                waiting.then(|| "systemctl enable --now f2b-mailguard-actions.timer".into()),
            ));
        }
        Err(e) => out.push(Finding::fail(AREA, e.to_string())),
    }
}

pub fn dovecot(cfg: &Config, out: &mut Vec<Finding>) {
    const AREA: &str = "dovecot";
    let doveadm = &cfg.contain.doveadm;
    if !doveadm.exists() {
        out.push(Finding::ok(
            AREA,
            format!("{} not found: Dovecot checks skipped", doveadm.display()),
        ));
        return;
    }
    let timeout = cfg.contain.actions.command_timeout;
    match exec::run(doveadm, &["who"], None, timeout) {
        Ok(r) if r.success() => out.push(Finding::ok(AREA, "doveadm reaches the running Dovecot")),
        Ok(r) => out.push(Finding::new(
            Status::Warn,
            AREA,
            format!("doveadm cannot reach Dovecot: {}", r.first_line()),
            Some("is Dovecot running? the lock level's kick needs it".into()),
        )),
        Err(e) => out.push(Finding::warn(AREA, e)),
    }
    let doveconf: PathBuf = doveadm.with_file_name("doveconf");
    let Ok(r) = exec::run(&doveconf, &["-h", "auth_cache_size"], None, timeout) else {
        return;
    };
    let size = String::from_utf8_lossy(&r.stdout).trim().to_owned();
    if r.success() && !matches!(size.as_str(), "0" | "") {
        let ttl = exec::run(&doveconf, &["-h", "auth_cache_ttl"], None, timeout)
            .map(|r| String::from_utf8_lossy(&r.stdout).trim().to_owned())
            .unwrap_or_default();
        out.push(Finding::warn(AREA, format!("auth cache on (auth_cache_size = {size}, auth_cache_ttl = {ttl}): an old password keeps working until flushed; the lock level runs `doveadm auth cache flush -- USER` and `doveadm kick -- USER`")));
    } else if r.success() {
        out.push(Finding::ok(
            AREA,
            "auth cache off: a password change takes effect at once",
        ));
    }
}

pub fn mail(cfg: &Config, send_test: bool, out: &mut Vec<Finding>) {
    const AREA: &str = "mail";
    let m = &cfg.contain.mail;
    let to: Vec<String> = m.to.iter().map(|a| a.to_string()).collect();
    let via = match m.transport {
        MailTransport::Smtp => format!("SMTP {}:{}", m.smtp_host, m.smtp_port),
        MailTransport::Sendmail => m.sendmail.display().to_string(),
    };
    if m.transport == MailTransport::Sendmail && !m.sendmail.exists() {
        out.push(Finding::new(
            Status::Fail,
            AREA,
            format!("{} does not exist", m.sendmail.display()),
            Some("set [mail] sendmail or transport = \"smtp\"".into()),
        ));
        return;
    }
    if !send_test {
        out.push(Finding::ok(
            AREA,
            format!(
                "admin mail to {} via {via} (not tried; --send-test-mail sends one)",
                to.join(", ")
            ),
        ));
        return;
    }
    let body = "This is a test mail from `f2b-mailguard doctor --send-test-mail`.\nAdmin mail reaches you.\n".to_owned();
    match mail::deliver(cfg, "[f2b-mailguard] test mail from doctor".into(), body) {
        Ok(answer) => out.push(Finding::ok(AREA, format!("test mail {answer}"))),
        Err(e) => out.push(Finding::new(
            Status::Fail,
            AREA,
            format!("test mail failed: {e}"),
            Some("check [mail] in the config".into()),
        )),
    }
}
