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
    #[command(flatten)]
    pub globals: Globals,

    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
pub struct Globals {
    /// Configuration file
    #[arg(long, global = true, env = "F2B_MAILGUARD_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// SQLite database (overrides `database` in the config)
    #[arg(long, global = true, env = "F2B_MAILGUARD_DB", value_name = "PATH")]
    pub db: Option<PathBuf>,
}

/// `f2b-mailguard record ...` alone. Fail2ban waits for every `record` under its
/// global lock, and building the parser of all subcommands costs as much as storing
/// the login; so `main` parses `record` with this, from the same `Globals` and
/// `Record` definitions.
#[derive(Debug, Parser)]
#[command(name = "f2b-mailguard record", version, about = RECORD_ABOUT)]
pub struct RecordCli {
    #[command(flatten)]
    pub globals: Globals,

    #[command(flatten)]
    pub record: Record,
}

const RECORD_ABOUT: &str =
    "Store one successful login and re-evaluate the account (run by Fail2ban)";

impl RecordCli {
    /// The index of the subcommand word in `args` (program name first) if it is
    /// `record`: the first argument that is neither an option nor a global option's value.
    pub fn position(args: &[OsString]) -> Option<usize> {
        // The global options that take a separate value, from their definitions.
        let globals = Globals::augment_args(clap::Command::new("globals"));
        let takes_value = |arg: &OsString| {
            globals.get_arguments().any(|a| {
                a.get_action().takes_values()
                    && a.get_long().is_some_and(|long| {
                        arg.as_encoded_bytes().strip_prefix(b"--") == Some(long.as_bytes())
                    })
            })
        };
        let mut i = 1;
        while let Some(arg) = args.get(i) {
            if takes_value(arg) {
                i += 2;
            } else if arg.as_encoded_bytes().starts_with(b"-") {
                i += 1;
            } else {
                return (arg == "record").then_some(i);
            }
        }
        None
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(about = RECORD_ABOUT)]
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
    #[arg(long, value_name = "SPAN", default_value_t = crate::actions::STUCK_AFTER.to_string())]
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn args(line: &str) -> Vec<OsString> {
        line.split(' ').map(OsString::from).collect()
    }

    #[test]
    fn both_parsers_are_well_formed() {
        Cli::command().debug_assert();
        RecordCli::command().debug_assert();
    }

    #[test]
    fn finds_the_record_word_after_global_options_only() {
        let at = |line| RecordCli::position(&args(line));
        assert_eq!(at("f2b-mailguard record --user=a"), Some(1));
        assert_eq!(
            at("f2b-mailguard --config /x/record record --ip=1"),
            Some(3)
        );
        assert_eq!(at("f2b-mailguard --db=record record"), Some(2));
        assert_eq!(at("f2b-mailguard status record"), None);
        assert_eq!(at("f2b-mailguard help record"), None);
        assert_eq!(at("f2b-mailguard --db x"), None);
    }

    #[test]
    fn record_parses_the_same_either_way() {
        let line =
            "f2b-mailguard --db /d record --source=smtp --jail j --user u@x --ip=::1 --count=3";
        let full = Cli::try_parse_from(args(line)).expect("full parser");
        let mut short_args = args(line);
        short_args.remove(RecordCli::position(&short_args).expect("record word"));
        let short = RecordCli::try_parse_from(short_args).expect("record parser");
        let Command::Record(full_record) = full.command else {
            panic!("not record: {:?}", full.command)
        };
        assert_eq!(format!("{full_record:?}"), format!("{:?}", short.record));
        assert_eq!(full.globals.db, short.globals.db);
    }
}
