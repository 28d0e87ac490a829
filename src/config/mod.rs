//! The TOML configuration: every key optional, every value validated, unknown keys refused.
//!
//! Deserialised with serde into the types below (`document` has the file's shape); every
//! error names the file, the line and column, the full key path (`thresholds.smtp.block`)
//! and the reason on one line. `config check` prints the same types back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

mod actions;
mod document;
mod ownership;
mod parse;
mod policy;
mod reject;
mod thresholds;
mod user_mail;
mod value;

pub use actions::{ActionsConfig, ContainConfig, MailSecurity, MailTransport, PasswordBackend};
pub use ownership::{
    check_url, DatabaseFile, DatabaseKind, DownloadSource, OwnershipConfig, DOWNLOADED_ASN,
    DOWNLOADED_COUNTRY,
};
pub use policy::{PolicyConfig, PostfixListen};
pub use thresholds::{PartialThresholds, Thresholds, UserPolicy};
pub use user_mail::{
    unknown_placeholders as user_mail_unknown_placeholders, UserMailConfig, USER_MAIL_PLACEHOLDERS,
};

use crate::error::{Error, Result};
use crate::model::{
    Cidr, DatabaseLocation, Label, Mode, NetPrefixes, SaslUser, Source, Span, Timestamp,
};
use parse::Misfit;
use value::{abs_path, Range};

pub const DEFAULT_CONFIG: &str = "/etc/f2b-mailguard/config.toml";
pub const DEFAULT_DATABASE: &str = "/var/lib/f2b-mailguard/mailguard.db";
pub const DEFAULT_LOCAL_DIR: &str = "/var/lib/f2b-mailguard";

#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub window: Span,
    pub prefixes: NetPrefixes,
    pub notify_quiet: Span,
    pub whitelist: Vec<Cidr>,
    pub whitelist_builtin: bool,
    /// The `spread` signal: SMTP logins per wider network over a longer window.
    pub spread_window: Span,
    pub spread_prefixes: NetPrefixes,
    /// Network counts reach block or lock only when their networks span more than
    /// this many spread-prefix networks; a single pool (provider, carrier) stays at notify.
    pub escalate_min_spread: u32,
    /// A network count at notify that passes `escalate_min_spread`, with a message
    /// signal (rate, bounces, queue, baseline) at notify too, blocks.
    pub corroborate: bool,
    /// Messages with a bounced recipient per accepted message, in percent, at which
    /// an account blocks once more than `bounce_share_min` of its messages bounced in
    /// the window; 0 off.
    pub bounce_share: u32,
    pub bounce_share_min: u32,
    /// With an ASN database: IMAP, POP3 and webmail logins from more than this many
    /// owners in the window reach the level, whatever their own thresholds; 0 off.
    pub owners_notify: u32,
    pub owners_block: u32,
    pub owners_lock: u32,
    /// With an ASN database: SMTP logins from more than this many owners within the
    /// spread window block; 0 off.
    pub spread_owners_block: u32,
    /// Without an ASN database, addresses in one network of these lengths are taken
    /// as one party (the stand-in for an owner): a provider's pool, a carrier's NAT.
    pub party_prefixes: NetPrefixes,
    /// How long an account must have been seen before a party it had not used counts
    /// as new to it: at first, everything is new, which says nothing.
    pub known_after: Span,
    /// How long after its first login a party stays new to the account.
    pub new_for: Span,
    pub thresholds: BTreeMap<Source, Thresholds>,
    pub baseline: Baseline,
}

impl Detection {
    /// How far back one evaluation looks: the window or the spread window.
    pub fn lookback(&self) -> Span {
        if self.spread_window.millis() > self.window.millis() {
            self.spread_window
        } else {
            self.window
        }
    }

    /// Where the window and the spread window start for an evaluation at `at`.
    pub fn window_starts(&self, at: Timestamp) -> WindowStarts {
        WindowStarts {
            window: at.minus(self.window),
            spread: at.minus(self.spread_window),
        }
    }
}

/// Where an evaluation's two windows start: evidence at or before a start is out of
/// that window. What the store loads reaches back to the earlier of the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowStarts {
    pub window: Timestamp,
    pub spread: Timestamp,
}

impl WindowStarts {
    pub fn earliest(self) -> Timestamp {
        self.window.min(self.spread)
    }

    /// How many of the two windows `t` falls in (0, 1 or 2): evidence on the same
    /// side of both starts counts alike.
    pub fn side(self, t: Timestamp) -> usize {
        usize::from(t > self.window) + usize::from(t > self.spread)
    }
}

/// Each account against its own usual figures: the busiest hour of sending and the
/// day's spread of networks, as medians over the days it was active.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Baseline {
    /// How far back the usual figures are taken from.
    pub history: Span,
    /// Days with activity needed before an account has a baseline at all.
    #[serde(with = "Range::<0, 365>")]
    pub min_days: u32,
    /// Flag at more than this many times the usual figure (0: baselines off)...
    #[serde(with = "Range::<0, 1000>")]
    pub factor: u32,
    /// ...and above these floors, so a quiet account is not flagged for 3 mails.
    #[serde(with = "Range::<0, 1_000_000>")]
    pub min_messages: u32,
    #[serde(with = "Range::<0, 1_000_000>")]
    pub min_networks: u32,
}

impl Default for Baseline {
    fn default() -> Self {
        Self {
            history: Span::secs(30 * 86_400),
            min_days: 7,
            factor: 3,
            min_messages: 30,
            min_networks: 5,
        }
    }
}

/// Where doctor reaches Fail2ban.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Fail2banPaths {
    #[serde(with = "abs_path")]
    pub client: PathBuf,
    #[serde(with = "abs_path")]
    pub socket: PathBuf,
    /// Fail2ban's configuration directory, where doctor reads the jails' filters.
    #[serde(with = "abs_path")]
    pub config_dir: PathBuf,
}

impl Default for Fail2banPaths {
    fn default() -> Self {
        Self {
            client: PathBuf::from("/usr/bin/fail2ban-client"),
            socket: PathBuf::from("/var/run/fail2ban/fail2ban.sock"),
            config_dir: PathBuf::from("/etc/fail2ban"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this came from, if any (the default path may be absent).
    pub file: Option<PathBuf>,
    pub database: DatabaseLocation,
    /// This machine's own files, never shared between servers (a shared store's spool
    /// and worker lock, what convergence did to the local Postfix and Dovecot); `None`:
    /// see `local_dir()`.
    pub local_dir: Option<PathBuf>,
    /// This server's name in a shared store; `None`: the host name.
    pub server_name: Option<Label>,
    /// How long a shared store's connection may take before the login is spooled.
    pub connect_timeout: Span,
    pub mode: Mode,
    pub busy_timeout: Span,
    /// How long `record`, under Fail2ban's global lock, waits for a SQLite database
    /// another program holds, and spends storing logins waiting in the spool.
    pub record_wait: Span,
    pub retention: Span,
    pub detection: Detection,
    pub ownership: OwnershipConfig,
    pub contain: ContainConfig,
    pub fail2ban: Fail2banPaths,
    pub policy: PolicyConfig,
    pub users: BTreeMap<SaslUser, UserPolicy>,
}

impl Default for Detection {
    fn default() -> Self {
        let mut thresholds = BTreeMap::new();
        for source in Source::ALL.into_iter().filter(|s| s.has_thresholds()) {
            thresholds.insert(source, Thresholds::default());
        }
        // Admins' rule of thumb: more than 5 addresses in an hour is suspicious.
        thresholds.insert(Source::Smtp, Thresholds::new(5, 10, 20));
        // Message counts only notify by default: newsletters and bulk senders are honest
        // and must be exempted or given their own thresholds before anything blocks.
        thresholds.insert(Source::Rate, Thresholds::notify_only(100));
        thresholds.insert(Source::Bounces, Thresholds::notify_only(20));
        thresholds.insert(Source::Queue, Thresholds::notify_only(50));
        thresholds.insert(Source::Spread, Thresholds::notify_only(20));
        Self {
            window: Span::secs(3600),
            prefixes: NetPrefixes { v4: 32, v6: 64 },
            notify_quiet: Span::secs(86_400),
            whitelist: Vec::new(),
            whitelist_builtin: true,
            spread_window: Span::secs(86_400),
            spread_prefixes: NetPrefixes { v4: 24, v6: 48 },
            escalate_min_spread: 3,
            corroborate: true,
            bounce_share: 25,
            bounce_share_min: 50,
            owners_notify: 5,
            owners_block: 10,
            owners_lock: 20,
            spread_owners_block: 6,
            party_prefixes: NetPrefixes { v4: 16, v6: 32 },
            known_after: Span::secs(86_400),
            new_for: Span::secs(86_400),
            thresholds,
            baseline: Baseline::default(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            file: None,
            database: DatabaseLocation::Sqlite(PathBuf::from(DEFAULT_DATABASE)),
            local_dir: None,
            server_name: None,
            // Short: `record` runs under Fail2ban's global lock.
            connect_timeout: Span::secs(2),
            mode: Mode::Warn,
            busy_timeout: Span::secs(5),
            // Short: `record` runs under Fail2ban's global lock; what it cannot store
            // in this time waits in the spool for the next call.
            record_wait: Span::millis_of(250),
            retention: Span::secs(30 * 86_400),
            detection: Detection::default(),
            ownership: OwnershipConfig::default(),
            contain: ContainConfig::default(),
            fail2ban: Fail2banPaths::default(),
            policy: PolicyConfig::default(),
            users: BTreeMap::new(),
        }
    }
}

/// This machine's host name, or "this server" where the kernel does not say.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "this server".into())
}

impl Config {
    /// The defaults, built once per process: every table the file writes starts from
    /// them, and `record` parses the file at every login.
    pub fn defaults() -> &'static Config {
        static DEFAULTS: LazyLock<Config> = LazyLock::new(Config::default);
        &DEFAULTS
    }

    /// What this server's own files (spool, worker lock) are named after.
    pub fn local_base(&self) -> PathBuf {
        self.database.local_base(&self.local_dir())
    }

    /// Where this machine keeps its own files: `local_dir`, else a SQLite database's
    /// directory (one server, its files together), else `DEFAULT_LOCAL_DIR`.
    pub fn local_dir(&self) -> PathBuf {
        if let Some(dir) = &self.local_dir {
            return dir.clone();
        }
        match self.database.sqlite().map(|db| db.parent()) {
            Some(Some(p)) if !p.as_os_str().is_empty() => p.to_path_buf(),
            Some(_) => PathBuf::from("."),
            None => PathBuf::from(DEFAULT_LOCAL_DIR),
        }
    }

    /// This server's name in the store: `server_name`, or the host name.
    pub fn server_name(&self) -> String {
        self.server_name
            .as_ref()
            .map_or_else(hostname, |n| n.as_str().to_owned())
    }

    /// Loads the config named by `--config`/`F2B_MAILGUARD_CONFIG`, or the default path
    /// if present. An explicitly named file must exist; the default one may not.
    pub fn load(explicit: Option<&Path>) -> Result<Self> {
        let (path, required) = match explicit {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default())
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        let mut cfg = Self::parse(&path.display().to_string(), &text)?;
        cfg.file = Some(path);
        Ok(cfg)
    }

    /// Problems worth telling an admin about that do not stop the program.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Some(file) = &self.file else {
            return out;
        };
        use std::os::unix::fs::PermissionsExt;
        let readable_by_others =
            std::fs::metadata(file).is_ok_and(|m| m.permissions().mode() & 0o004 != 0);
        if readable_by_others && !self.contain.mail.smtp_password.is_empty() {
            out.push(format!(
                "{} is readable by other users and holds mail.smtp_password: chmod 600 {}",
                file.display(),
                file.display()
            ));
        }
        out
    }

    pub fn parse(file: &str, text: &str) -> Result<Self> {
        parse::parse(file, text)
    }

    /// The thresholds that apply to `user` for `source`, with per-user overrides applied.
    pub fn thresholds_for(&self, user: &SaslUser, source: Source) -> Thresholds {
        let source = source.counted_as();
        let global = self.detection.thresholds[&source];
        match self.users.get(user).and_then(|p| p.thresholds.get(&source)) {
            Some(over) => global.overlay(over),
            None => global,
        }
    }

    /// The effective configuration as TOML, every key with its value (defaults included),
    /// the secret hidden. tests/config.rs holds config.example.toml, from which
    /// docs/configuration.md is generated, to what this prints for an empty file.
    pub fn render(&self) -> Result<String> {
        toml::to_string(&document::Document::from(self))
            .map_err(|e| Error::External(format!("cannot print the configuration: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_default() {
        assert_eq!(Config::parse("t.toml", "").unwrap(), Config::default());
    }

    #[test]
    fn user_overrides() {
        let c = Config::parse(
            "t.toml",
            "[users.\"bob@example.com\"]\nexempt = true\n[users.\"bob@example.com\".smtp]\nnotify = 8\n",
        )
        .unwrap();
        let bob = SaslUser::parse("bob@example.com").unwrap();
        let t = c.thresholds_for(&bob, Source::Smtp);
        assert_eq!((t.notify, t.block, t.lock), (Some(8), Some(10), Some(20)));
        assert!(c.users[&bob].exempt);
        // The rendering parses back to the same config.
        let mut again = Config::parse("r.toml", &c.render().unwrap()).unwrap();
        again.file = None;
        assert_eq!(again, c);
    }

    #[test]
    fn every_section_prints_as_it_parses_but_the_secret() {
        let text = r#"
            mode = "enforce"
            [detection]
            whitelist = ["192.0.2.0/24", "2001:db8::/32"]
            ipv6_prefix = 56
            [thresholds.imap]
            block = 30
            [ownership]
            asn_database = "/var/lib/GeoIP/a b.mmdb"
            [actions]
            notify = ["mail", "notify_user"]
            [mail]
            transport = "sendmail"
            to = ["a@example.com", "b@example.com"]
            smtp_security = "tls"
            smtp_password = "s3cret"
            [user_mail]
            contact = "help@example.com"
            body = "Dear {user},\n\"quoted\" and 'single'\n"
            [user_mail.addresses]
            "Bob@example.com" = "bob@example.org"
            [password]
            backend = "command"
            command = ["/usr/local/sbin/set-password", "{user}"]
            length = 32
            [users."sales@example.com"]
            exempt = true
            [users."sales@example.com".spread]
            lock = 0
        "#;
        let c = Config::parse("t.toml", text).unwrap();
        let printed = c.render().unwrap();
        assert!(printed.contains("smtp_password = \"(set)\""), "{printed}");
        assert!(!printed.contains("s3cret"), "{printed}");
        let mut again = Config::parse("r.toml", &printed).unwrap();
        assert_eq!(again.contain.mail.smtp_password, "(set)");
        again.contain.mail.smtp_password = "s3cret".into();
        assert_eq!(again, c);
    }
}
