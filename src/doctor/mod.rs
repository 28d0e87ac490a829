//! `doctor`: audits the set-up around f2b-mailguard and says what to fix. Each check
//! gives one finding: ok, warn or fail, the evidence, and a fix to copy.

mod fail2ban;
pub mod jails;
mod ownership;
mod periodic;
mod policy;
mod postfix;
mod startup;
mod system;

use serde::Serialize;

use crate::config::Config;
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Worth knowing, nothing to fix yet (a jail that has matched nothing so far: a
    /// POP3 jail on a server with no POP3 user): does not raise the exit code.
    Note,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Note => "note",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub status: Status,
    /// `mailguard`, `fail2ban`, `postfix`, `dovecot`, `mail`.
    pub area: &'static str,
    /// What was found, with the evidence.
    pub message: String,
    /// A command or config line that fixes it, when there is something to fix.
    pub fix: Option<String>,
}

impl Finding {
    fn new(
        status: Status,
        area: &'static str,
        message: impl Into<String>,
        fix: Option<String>,
    ) -> Self {
        Self {
            status,
            area,
            message: message.into(),
            fix,
        }
    }

    /// Findings with nothing to copy: a pass, or a warning the message explains.
    fn ok(area: &'static str, message: impl Into<String>) -> Self {
        Self::new(Status::Ok, area, message, None)
    }

    fn warn(area: &'static str, message: impl Into<String>) -> Self {
        Self::new(Status::Warn, area, message, None)
    }

    fn fail(area: &'static str, message: impl Into<String>) -> Self {
        Self::new(Status::Fail, area, message, None)
    }
}

pub use periodic::Paths as WorkerPaths;

pub struct Options {
    pub send_test_mail: bool,
    /// Why the config did not load, if it did not: reported, and the checks that
    /// need no setting of it run with the built-in defaults.
    pub config_error: Option<String>,
    /// Where the run-actions timer or cron line is looked for.
    pub worker: WorkerPaths,
}

/// Every check, in the order an admin would fix things.
pub fn run(
    cfg: &Config,
    store: Option<&mut dyn Store>,
    store_error: Option<String>,
    opts: &Options,
) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(e) = &opts.config_error {
        out.push(Finding::new(
            Status::Fail,
            "mailguard",
            format!("{e}; the checks below use the built-in defaults and skip the database, ownership and mail"),
            Some("fix the config, then run f2b-mailguard config check".into()),
        ));
        periodic::check(cfg, &opts.worker, &mut out);
        fail2ban::check(cfg, &mut out);
        postfix::check(cfg, &mut out);
        system::dovecot(cfg, &mut out);
        return out;
    }
    system::mailguard(cfg, store, store_error, &mut out);
    periodic::check(cfg, &opts.worker, &mut out);
    ownership::check(cfg, &mut out);
    fail2ban::check(cfg, &mut out);
    postfix::check(cfg, &mut out);
    system::dovecot(cfg, &mut out);
    policy::check(cfg, &mut out);
    system::mail(cfg, opts.send_test_mail, &mut out);
    out
}
