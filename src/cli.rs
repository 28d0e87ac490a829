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

    /// SQLite database file or postgresql:// URL (overrides `database` in the config)
    #[arg(long, global = true, env = "F2B_MAILGUARD_DB", value_name = "PATH|URL")]
    pub db: Option<OsString>,
}

/// `record`'s options and the global ones with their environment variables, as
/// `fast_record` reads them; a test checks they are the clap definitions'.
const RECORD_OPTIONS: [&str; 7] = ["source", "jail", "user", "ip", "time", "fid", "count"];
const GLOBAL_OPTIONS: [(&str, &str); 2] = [
    ("config", "F2B_MAILGUARD_CONFIG"),
    ("db", "F2B_MAILGUARD_DB"),
];

/// `f2b-mailguard [GLOBALS] record OPTIONS` read without building a clap parser,
/// which costs a twentieth of a `record`. Only the shape Fail2ban's action produces
/// is read here: long options, each at most once, as `--name=value` or
/// `--name value`. Anything else (help, version, an unknown or repeated option, a
/// missing value, another subcommand) is None, and clap parses the arguments, with
/// its messages.
pub fn fast_record(args: &[OsString]) -> Option<(Globals, Record)> {
    let mut values: [Option<OsString>; RECORD_OPTIONS.len() + GLOBAL_OPTIONS.len()] =
        Default::default();
    let names = RECORD_OPTIONS
        .iter()
        .chain(GLOBAL_OPTIONS.iter().map(|(name, _)| name));
    let slot = |name: &str| names.clone().position(|n| *n == name);
    let mut record_word = false;
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        // Not UTF-8: clap's parse hands it on, and `record` names the field.
        let arg = arg.to_str()?;
        let Some(option) = arg.strip_prefix("--") else {
            if record_word || arg != "record" {
                return None;
            }
            record_word = true;
            continue;
        };
        let (name, value) = match option.split_once('=') {
            Some((name, value)) => (name, value),
            // What a value that looks like an option means is clap's to say.
            None => (
                option,
                rest.next()?.to_str().filter(|v| !v.starts_with('-'))?,
            ),
        };
        let i = slot(name)?;
        // A global option goes before or after `record`; a record one after it.
        if i < RECORD_OPTIONS.len() && !record_word {
            return None;
        }
        if values[i].replace(value.into()).is_some() {
            return None;
        }
    }
    if !record_word {
        return None;
    }
    let [source, jail, user, ip, time, fid, count, config, db] = values;
    // An empty path, given or from the environment, is clap's to refuse.
    let global = |value: Option<OsString>, i: usize| match value
        .or_else(|| std::env::var_os(GLOBAL_OPTIONS[i].1))
    {
        Some(path) if path.is_empty() => None,
        path => Some(path),
    };
    Some((
        Globals {
            config: global(config, 0)?.map(PathBuf::from),
            db: global(db, 1)?,
        },
        Record {
            source,
            jail,
            user,
            ip,
            time,
            fid,
            count,
        },
    ))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store one successful login and re-evaluate the account (run by Fail2ban)
    Record(Record),
    /// Store tickets streamed on stdin, one JSON line each with record's options as
    /// strings; acknowledge each batch on stdout (run by the Python Fail2ban action)
    Stream(Stream),
    /// Show accounts with recent activity, or one account in detail
    Status(Status),
    /// Manage networks that never count (office NATs, VPNs)
    #[command(subcommand)]
    Whitelist(Whitelist),
    /// Delete logins older than the retention period
    Prune(Prune),
    /// Run queued containment actions (started by `record`, and by a timer for retries)
    RunActions(RunActions),
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
    /// The in-band policy service: answers Dovecot's auth policy and Postfix's policy
    /// delegation while a login or message is under way ([policy]; run by systemd)
    Serve(Serve),
    /// Write the jails' log backend file (fail2ban-backend), the man pages (man DIR) or
    /// print a shell completion script (bash, zsh, fish, elvish, powershell)
    Generate(Generate),
    /// Inspect the configuration
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Network ownership data (AS numbers, countries)
    #[command(subcommand)]
    Ownership(OwnershipCmd),
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
pub struct Stream {
    /// Most tickets stored in one transaction
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub batch: u16,
}

#[derive(Debug, Args)]
pub struct Serve {}

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
    /// Machine-readable output (stable shape, see docs/commands.md)
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
    // A literal, not actions::STUCK_AFTER: build.rs compiles this file on its own; a
    // test keeps the two equal.
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
    /// `man`, `fail2ban-backend`, or a shell: bash, zsh, fish, elvish, powershell
    pub what: String,
    /// For `man`: the directory to write the pages into; for `fail2ban-backend`: the
    /// root whose log files are looked for and below which
    /// etc/fail2ban/jail.d/mailguard-backend.local is written (default /)
    pub dir: Option<PathBuf>,
    /// For `fail2ban-backend`: print the file instead of writing it
    #[arg(long)]
    pub stdout: bool,
}

#[derive(Debug, Args)]
pub struct RunActions {
    /// Keep running (a shared PostgreSQL store): converge this server at once when any
    /// server changes a level, and every minute anyway
    #[arg(long)]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct Prune {
    /// Delete logins older than this (default: retention from the config)
    #[arg(long, value_name = "SPAN")]
    pub older_than: Option<String>,
    /// Prune even when --older-than is inside the detection lookback
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Validate the configuration and print the effective values
    Check,
}

#[derive(Debug, Subcommand)]
pub enum OwnershipCmd {
    /// Download the free ownership databases ([ownership] source, DB-IP Lite by
    /// default), check them and replace the installed ones; a failed download keeps
    /// them (run weekly by a timer)
    Update,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn args(line: &str) -> Vec<OsString> {
        line.split(' ').map(OsString::from).collect()
    }

    #[test]
    fn parser_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn check_pending_age_default_is_stuck_after() {
        let check = Check::augment_args(clap::Command::new("check"));
        let default = check
            .get_arguments()
            .find(|a| a.get_long() == Some("pending-age"))
            .map(|a| a.get_default_values().to_vec());
        let stuck = crate::actions::STUCK_AFTER.to_string();
        assert_eq!(
            default.as_deref().and_then(|d| d.first()?.to_str()),
            Some(stuck.as_str())
        );
    }

    #[test]
    fn fast_record_reads_the_options_clap_defines() {
        let record = Record::augment_args(clap::Command::new("record"));
        let longs: Vec<&str> = record
            .get_arguments()
            .filter_map(|a| a.get_long())
            .collect();
        assert_eq!(longs, RECORD_OPTIONS);
        assert!(record
            .get_arguments()
            .all(|a| a.get_action().takes_values() && a.is_allow_hyphen_values_set()));
        let globals = Globals::augment_args(clap::Command::new("globals"));
        let defined: Vec<(&str, String)> = globals
            .get_arguments()
            .filter_map(|a| Some((a.get_long()?, a.get_env()?.to_string_lossy().into_owned())))
            .collect();
        let read: Vec<(&str, String)> = GLOBAL_OPTIONS
            .iter()
            .map(|(long, env)| (*long, env.to_string()))
            .collect();
        assert_eq!(defined, read);
    }

    #[test]
    fn fast_record_parses_what_clap_parses() {
        for line in [
            "f2b-mailguard --db /d record --source=smtp --jail j --user u@x --ip=::1 --count=3",
            "f2b-mailguard record --source smtp --jail=j --user=u@x --ip 1.2.3.4 --time=1.5 --fid=7 --config=/c",
            "f2b-mailguard record --user= --ip=1.2.3.4 --source=imap",
            "f2b-mailguard --config=/c record --user=a=b --jail=-j --db /d",
        ] {
            let (globals, record) = fast_record(&args(line)).expect(line);
            let full = Cli::try_parse_from(args(line)).expect(line);
            let Command::Record(full_record) = full.command else {
                panic!("not record: {line}")
            };
            assert_eq!(format!("{record:?}"), format!("{full_record:?}"), "{line}");
            assert_eq!(
                format!("{globals:?}"),
                format!("{:?}", full.globals),
                "{line}"
            );
        }
    }

    #[test]
    fn fast_record_leaves_everything_else_to_clap() {
        for line in [
            "f2b-mailguard",
            "f2b-mailguard --version",
            "f2b-mailguard status",
            "f2b-mailguard status record",
            "f2b-mailguard record --help",
            "f2b-mailguard record -h",
            "f2b-mailguard record --user=a --user=b",
            "f2b-mailguard record --bogus=1",
            "f2b-mailguard --user=a record",
            "f2b-mailguard record --user",
            "f2b-mailguard record --user -x",
            "f2b-mailguard record extra",
            "f2b-mailguard record record",
            "f2b-mailguard record --db= --user=a",
            "f2b-mailguard --config= record --user=a",
        ] {
            assert!(fast_record(&args(line)).is_none(), "{line}");
        }
    }
}
