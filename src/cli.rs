//! Every command-line definition, in one place. Values that come from logs or admins
//! are taken raw here and validated into model types by each command, so errors name
//! the field in our own one-line format.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "f2b-mailguard",
    version,
    about = "Catch and contain compromised mail accounts, fed by Fail2ban",
    propagate_version = true
)]
pub struct Cli {
    /// Configuration file
    #[arg(long, global = true, env = "F2B_MAILGUARD_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// SQLite database (overrides `database` in the config)
    #[arg(long, global = true, env = "F2B_MAILGUARD_DB", value_name = "PATH")]
    pub db: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store one successful login and re-evaluate the account (run by Fail2ban)
    Record(Record),
    /// Show accounts with recent activity, or one account in detail
    Status(Status),
    /// Manage networks that never count (office NATs, VPNs)
    #[command(subcommand)]
    Whitelist(Whitelist),
    /// Delete logins older than the retention period
    Prune(Prune),
    /// Run queued containment actions (started by `record`, and by a timer for retries)
    RunActions,
    /// Put a flagged account back to ok: unblock, release its held mail, restart counting
    Release(Release),
    /// Nagios/Icinga plugin: one status line with performance data, exit 0/1/2/3
    Check(Check),
    /// Prometheus metrics, to stdout or atomically to a node_exporter textfile
    Metrics(Metrics),
    /// Audit the set-up (Postfix, Dovecot, the database, admin mail) and say what to fix
    Doctor(Doctor),
    /// Backtest: replay past logins from stdin into a scratch database (--db) with every
    /// action off, and report which accounts would have been flagged, when and why
    Ingest(Ingest),
    /// Count each sender's mail in Postfix's queues (postqueue -j) and flag accounts
    /// whose deferred mail passes thresholds.queue; run every minute by a timer
    QueueScan(QueueScan),
    /// Print the man page (roff) or a shell completion script, for packaging
    #[command(hide = true)]
    Generate(Generate),
    /// Inspect the configuration
    #[command(subcommand)]
    Config(ConfigCmd),
}

/// All options are optional to clap so that a missing one gets our one-line error.
#[derive(Debug, Args)]
pub struct Record {
    /// smtp, imap, pop3, webmail (a login), rate (accepted messages) or bounces
    #[arg(long, allow_hyphen_values = true)]
    pub source: Option<OsString>,
    /// Name of the Fail2ban jail that matched
    #[arg(long, allow_hyphen_values = true)]
    pub jail: Option<OsString>,
    /// SASL login name from the log
    #[arg(long, allow_hyphen_values = true)]
    pub user: Option<OsString>,
    /// Client IP address from the log
    #[arg(long, allow_hyphen_values = true)]
    pub ip: Option<OsString>,
    /// Log time in seconds since 1970 (Fail2ban's <time>); default: now
    #[arg(long, allow_hyphen_values = true)]
    pub time: Option<OsString>,
    /// Fail2ban ticket id (<fid>), kept for reference
    #[arg(long, allow_hyphen_values = true)]
    pub fid: Option<OsString>,
    /// Messages this event stands for (Fail2ban's <failures>), for rate and bounces
    #[arg(long, allow_hyphen_values = true)]
    pub count: Option<OsString>,
}

#[derive(Debug, Args)]
pub struct QueueScan {
    /// The summary as JSON
    #[arg(long)]
    pub json: bool,
    /// Print nothing on success (for the timer)
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct Status {
    /// Show one account: every network, the level history
    pub user: Option<OsString>,
    /// Machine-readable output (stable shape, see README)
    #[arg(long)]
    pub json: bool,
    /// Look back this far (default: detection.window), e.g. 24h
    #[arg(long, value_name = "SPAN")]
    pub window: Option<String>,
    /// Evaluate as of this time (seconds since 1970) instead of now, for replayed logs
    #[arg(long, value_name = "EPOCH")]
    pub at: Option<String>,
    /// The top senders in each Postfix queue at the last queue-scan (like qshape -s)
    #[arg(long, conflicts_with = "user")]
    pub queue: bool,
}

#[derive(Debug, Subcommand)]
pub enum Whitelist {
    /// Never count logins from CIDR (for every account, or only --user)
    Add {
        cidr: String,
        #[arg(long, allow_hyphen_values = true)]
        user: Option<OsString>,
        #[arg(long, allow_hyphen_values = true)]
        note: Option<OsString>,
    },
    /// List whitelist entries, from the database, the config file and built in
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a database entry
    Remove {
        cidr: String,
        #[arg(long, allow_hyphen_values = true)]
        user: Option<OsString>,
    },
}

#[derive(Debug, Args)]
pub struct Release {
    /// The account to release
    pub user: OsString,
    /// Delete the account's held mail instead of sending it
    #[arg(long)]
    pub purge_held: bool,
}

#[derive(Debug, Args)]
pub struct Check {
    /// WARNING when a queued action has waited longer than this (worker not running)
    #[arg(long, value_name = "SPAN", default_value = "10m")]
    pub pending_age: String,
}

#[derive(Debug, Args)]
pub struct Metrics {
    /// Write to this file (atomically) instead of stdout, e.g.
    /// /var/lib/prometheus/node-exporter/f2b_mailguard.prom
    #[arg(long, value_name = "PATH")]
    pub textfile: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct Ingest {
    /// Source of lines without one (the `fail2ban-regex -o '<time> <F-USER> <ip>'` form)
    #[arg(long, default_value = "smtp")]
    pub source: String,
    /// The report as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct Doctor {
    /// The same checks as JSON
    #[arg(long)]
    pub json: bool,
    /// Send a test mail to the admin addresses and report the server's answer
    #[arg(long)]
    pub send_test_mail: bool,
}

#[derive(Debug, Args)]
pub struct Generate {
    /// `man`, or a shell: bash, zsh, fish, elvish, powershell
    pub what: String,
    /// For `man`: the directory to write the pages into
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct Prune {
    /// Delete logins older than this (default: retention from the config)
    #[arg(long, value_name = "SPAN")]
    pub older_than: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Validate the configuration and print the effective values
    Check,
}
