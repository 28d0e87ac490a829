//! One file per subcommand: each verb is an `impl Run` on its clap struct.

mod check;
mod config;
mod doctor;
mod generate;
mod ingest;
mod metrics;
mod ownership;
mod prune;
mod queue_scan;
mod record;
mod release;
mod run_actions;
mod serve;
mod status;
mod stream;
mod whitelist;

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use crate::cli::{Command, Globals};
use crate::config::Config;
use crate::error::{Invalid, Result};
use crate::model::{DatabaseLocation, SaslUser, Timestamp};

/// Global options every command may need.
pub struct App {
    pub config_path: Option<PathBuf>,
    /// `--db` / `F2B_MAILGUARD_DB` as given, handed on to the worker.
    pub db_arg: Option<OsString>,
    /// The same, validated.
    pub db: Result<Option<DatabaseLocation>, Invalid>,
}

impl App {
    pub fn new(globals: &Globals) -> Self {
        let db = globals
            .db
            .as_deref()
            .map(|raw| DatabaseLocation::parse("db", text("db", Some(raw))?))
            .transpose();
        Self {
            config_path: globals.config.clone(),
            db_arg: globals.db.clone(),
            db,
        }
    }

    /// Loads the config; `--db` / `F2B_MAILGUARD_DB` wins over its `database`.
    pub fn config(&self) -> Result<Config> {
        let db = self.db.clone()?;
        let mut cfg = Config::load(self.config_path.as_deref())?;
        if let Some(db) = db {
            cfg.database = db;
        }
        Ok(cfg)
    }

    /// Whether the database comes from the config rather than `--db`.
    pub fn db_from_config(&self) -> bool {
        self.db_arg.is_none()
    }

    /// What this server's own files would be named after, found even when the config
    /// does not load: where `record` keeps what it cannot store.
    pub fn spool_database(&self) -> PathBuf {
        let db = self.db.as_ref().ok().and_then(Option::as_ref);
        crate::spool::local_base_named(db, self.config_path.as_deref())
    }
}

pub trait Run {
    fn run(&self, app: &App) -> Result<()>;
}

impl Run for Command {
    fn run(&self, app: &App) -> Result<()> {
        match self {
            Command::Record(c) => c.run(app),
            Command::Stream(c) => c.run(app),
            Command::Status(c) => c.run(app),
            Command::Whitelist(c) => c.run(app),
            Command::Prune(c) => c.run(app),
            Command::Config(c) => c.run(app),
            Command::RunActions(c) => c.run(app),
            Command::Release(c) => c.run(app),
            Command::Check(c) => c.run(app),
            Command::Metrics(c) => c.run(app),
            Command::Generate(c) => c.run(app),
            Command::Doctor(c) => c.run(app),
            Command::Ingest(c) => c.run(app),
            Command::QueueScan(c) => c.run(app),
            Command::Ownership(c) => c.run(app),
            Command::Serve(c) => c.run(app),
        }
    }
}

/// A raw argument as UTF-8 text, or an error naming the field.
fn text<'a>(field: &'static str, raw: Option<&'a OsStr>) -> Result<&'a str, Invalid> {
    raw.ok_or_else(|| Invalid::new(field, "is missing"))?
        .to_str()
        .ok_or_else(|| Invalid::new(field, "is not valid UTF-8"))
}

/// An account name given as `field` (`user` for `--user`, `USER` positional).
fn user_named(field: &'static str, raw: &OsStr) -> Result<SaslUser, Invalid> {
    SaslUser::parse(text(field, Some(raw))?).map_err(|e| e.for_field(field))
}

fn user_arg(field: &'static str, raw: Option<&OsStr>) -> Result<Option<SaslUser>, Invalid> {
    raw.map(|r| user_named(field, r)).transpose()
}

/// `--at`: evaluate as of a given log time instead of now.
fn at_arg(raw: Option<&str>) -> Result<Timestamp, Invalid> {
    raw.map_or(Ok(Timestamp::now()), |r| Timestamp::parse("at", r))
}
