//! The TOML configuration: every key optional, every value validated, unknown keys refused.
//!
//! The file is walked by hand rather than through `serde` derive so that every error
//! names the file, the full key path (`thresholds.smtp.block`) and the reason on one line.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

mod actions;
mod ownership;
mod reject;
mod user_mail;
mod walker;

pub use actions::{ContainConfig, MailSecurity, MailTransport, PasswordBackend};
pub use ownership::OwnershipConfig;
pub use user_mail::{
    unknown_placeholders as user_mail_unknown_placeholders, UserMailConfig, USER_MAIL_PLACEHOLDERS,
};

use crate::error::{Error, Result};
use crate::model::{Cidr, LogTime, Mode, NetPrefixes, SaslUser, Source, Span};
use walker::{quote, Walker};

pub const DEFAULT_CONFIG: &str = "/etc/f2b-mailguard/config.toml";
pub const DEFAULT_DATABASE: &str = "/var/lib/f2b-mailguard/mailguard.db";

/// Network-count thresholds per level: the level is reached when the count is *above*
/// the threshold. `None` (written `0`) switches that level off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Thresholds {
    pub notify: Option<u32>,
    pub block: Option<u32>,
    pub lock: Option<u32>,
}

impl Thresholds {
    const fn new(notify: u32, block: u32, lock: u32) -> Self {
        Self {
            notify: Some(notify),
            block: Some(block),
            lock: Some(lock),
        }
    }

    const fn notify_only(notify: u32) -> Self {
        Self {
            notify: Some(notify),
            block: None,
            lock: None,
        }
    }

    fn overlay(self, over: &PartialThresholds) -> Self {
        Self {
            notify: over.notify.unwrap_or(self.notify),
            block: over.block.unwrap_or(self.block),
            lock: over.lock.unwrap_or(self.lock),
        }
    }

    fn check_order(&self) -> std::result::Result<(), String> {
        let set: Vec<(&str, u32)> = [
            ("notify", self.notify),
            ("block", self.block),
            ("lock", self.lock),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.map(|v| (n, v)))
        .collect();
        for pair in set.windows(2) {
            if pair[0].1 >= pair[1].1 {
                return Err(format!(
                    "{} ({}) must be below {} ({})",
                    pair[0].0, pair[0].1, pair[1].0, pair[1].1
                ));
            }
        }
        Ok(())
    }
}

/// A per-user override: only the levels given replace the global ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartialThresholds {
    pub notify: Option<Option<u32>>,
    pub block: Option<Option<u32>>,
    pub lock: Option<Option<u32>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserPolicy {
    /// Newsletter and shared accounts: recorded, never flagged.
    pub exempt: bool,
    pub whitelist: Vec<Cidr>,
    pub thresholds: BTreeMap<Source, PartialThresholds>,
}

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
    /// Bounced recipients per accepted message, in percent, at which an account
    /// blocks once it has more than `bounce_share_min` bounces in the window; 0 off.
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
    pub fn window_starts(&self, at: LogTime) -> WindowStarts {
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
    pub window: LogTime,
    pub spread: LogTime,
}

impl WindowStarts {
    pub fn earliest(self) -> LogTime {
        self.window.min(self.spread)
    }

    /// How many of the two windows `t` falls in (0, 1 or 2): evidence on the same
    /// side of both starts counts alike.
    pub fn side(self, t: LogTime) -> usize {
        usize::from(t > self.window) + usize::from(t > self.spread)
    }
}

/// Each account against its own usual figures: the busiest hour of sending and the
/// day's spread of networks, as medians over the days it was active.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    /// How far back the usual figures are taken from.
    pub history: Span,
    /// Days with activity needed before an account has a baseline at all.
    pub min_days: u32,
    /// Flag at more than this many times the usual figure (0: baselines off)...
    pub factor: u32,
    /// ...and above these floors, so a quiet account is not flagged for 3 mails.
    pub min_messages: u32,
    pub min_networks: u32,
}

/// Where doctor reaches Fail2ban.
#[derive(Debug, Clone, PartialEq)]
pub struct Fail2banPaths {
    pub client: PathBuf,
    pub socket: PathBuf,
    /// Fail2ban's configuration directory, where doctor reads the jails' filters.
    pub config_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this came from, if any (the default path may be absent).
    pub file: Option<PathBuf>,
    pub database: PathBuf,
    /// This machine's own state (what convergence did to the local Postfix and
    /// Dovecot); `None`: the database's directory. Never shared between servers.
    pub state_dir: Option<PathBuf>,
    pub mode: Mode,
    pub busy_timeout: Span,
    pub retention: Span,
    pub detection: Detection,
    pub ownership: OwnershipConfig,
    pub contain: ContainConfig,
    pub fail2ban: Fail2banPaths,
    pub users: BTreeMap<SaslUser, UserPolicy>,
}

impl Default for Config {
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
            file: None,
            database: PathBuf::from(DEFAULT_DATABASE),
            state_dir: None,
            mode: Mode::Warn,
            busy_timeout: Span::secs(5),
            retention: Span::secs(30 * 86_400),
            detection: Detection {
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
                thresholds,
                baseline: Baseline {
                    history: Span::secs(30 * 86_400),
                    min_days: 7,
                    factor: 3,
                    min_messages: 30,
                    min_networks: 5,
                },
            },
            ownership: OwnershipConfig::default(),
            contain: ContainConfig::default(),
            fail2ban: Fail2banPaths {
                client: PathBuf::from("/usr/bin/fail2ban-client"),
                socket: PathBuf::from("/var/run/fail2ban/fail2ban.sock"),
                config_dir: PathBuf::from("/etc/fail2ban"),
            },
            users: BTreeMap::new(),
        }
    }
}

impl Config {
    /// Where this machine keeps its own state: `state_dir`, else the database's directory.
    pub fn local_dir(&self) -> PathBuf {
        match (&self.state_dir, self.database.parent()) {
            (Some(d), _) => d.clone(),
            (None, Some(p)) if !p.as_os_str().is_empty() => p.to_path_buf(),
            (None, _) => PathBuf::from("."),
        }
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
        let table: toml::Table = toml::from_str(text).map_err(|e| Error::Config {
            file: match e.span() {
                Some(span) => format!("{file}:{}", walker::line_column(text, span.start)),
                None => file.to_owned(),
            },
            key: "syntax error".into(),
            reason: e.message().replace('\n', " "),
        })?;
        let mut cfg = Self::default();
        let mut root = Walker::new(file, "", table);
        if let Some(v) = root.string("database")? {
            if v.is_empty() {
                return Err(root.bad("database", "is empty"));
            }
            cfg.database = PathBuf::from(v);
        }
        if let Some(v) = root.string("state_dir")? {
            // "" is the rendered default: the database's directory.
            if !v.is_empty() && !v.starts_with('/') {
                return Err(root.bad("state_dir", format!("{v:?} must be an absolute path")));
            }
            cfg.state_dir = (!v.is_empty()).then(|| PathBuf::from(v));
        }
        if let Some(v) = root.string("mode")? {
            cfg.mode = match v.as_str() {
                "warn" => Mode::Warn,
                "enforce" => Mode::Enforce,
                _ => return Err(root.bad("mode", format!("{v:?} is not \"warn\" or \"enforce\""))),
            };
        }
        if let Some(v) = root.span("busy_timeout")? {
            cfg.busy_timeout = v;
        }
        if let Some(v) = root.span("retention")? {
            cfg.retention = v;
        }
        if let Some(mut det) = root.table("detection")? {
            let d = &mut cfg.detection;
            if let Some(v) = det.span("window")? {
                d.window = v;
            }
            if let Some(v) = det.span("notify_quiet")? {
                d.notify_quiet = v;
            }
            if let Some(v) = det.int("ipv4_prefix", 1, 32)? {
                d.prefixes.v4 = v as u8;
            }
            if let Some(v) = det.int("ipv6_prefix", 1, 128)? {
                d.prefixes.v6 = v as u8;
            }
            if let Some(v) = det.cidrs("whitelist")? {
                d.whitelist = v;
            }
            if let Some(v) = det.boolean("whitelist_builtin")? {
                d.whitelist_builtin = v;
            }
            if let Some(v) = det.span("spread_window")? {
                d.spread_window = v;
            }
            if let Some(v) = det.int("spread_ipv4_prefix", 1, 32)? {
                d.spread_prefixes.v4 = v as u8;
            }
            if let Some(v) = det.int("spread_ipv6_prefix", 1, 128)? {
                d.spread_prefixes.v6 = v as u8;
            }
            if let Some(v) = det.int("escalate_min_spread", 0, 1_000_000)? {
                d.escalate_min_spread = v as u32;
            }
            if let Some(v) = det.boolean("corroborate")? {
                d.corroborate = v;
            }
            if let Some(v) = det.int("bounce_share", 0, 100)? {
                d.bounce_share = v as u32;
            }
            if let Some(v) = det.int("bounce_share_min", 0, 1_000_000)? {
                d.bounce_share_min = v as u32;
            }
            for (key, slot) in [
                ("owners_notify", &mut d.owners_notify),
                ("owners_block", &mut d.owners_block),
                ("owners_lock", &mut d.owners_lock),
                ("spread_owners_block", &mut d.spread_owners_block),
            ] {
                if let Some(v) = det.int(key, 0, 1_000_000)? {
                    *slot = v as u32;
                }
            }
            det.finish()?;
        }
        if let Some(mut b) = root.table("baseline")? {
            let base = &mut cfg.detection.baseline;
            if let Some(v) = b.span("history")? {
                base.history = v;
            }
            for (key, slot, max) in [
                ("min_days", &mut base.min_days, 365),
                ("factor", &mut base.factor, 1000),
                ("min_messages", &mut base.min_messages, 1_000_000),
                ("min_networks", &mut base.min_networks, 1_000_000),
            ] {
                if let Some(v) = b.int(key, 0, max)? {
                    *slot = v as u32;
                }
            }
            b.finish()?;
        }
        if let Some(mut th) = root.table("thresholds")? {
            for source in Source::ALL.into_iter().filter(|s| s.has_thresholds()) {
                if let Some(mut t) = th.table(source.as_str())? {
                    let over = t.thresholds()?;
                    let merged = cfg.detection.thresholds[&source].overlay(&over);
                    merged.check_order().map_err(|r| t.bad_here(r))?;
                    cfg.detection.thresholds.insert(source, merged);
                    t.finish()?;
                }
            }
            th.finish()?;
        }
        if let Some(mut users) = root.table("users")? {
            for name in users.keys() {
                let user = SaslUser::parse(&name).map_err(|e| users.bad(&name, e.reason))?;
                let mut u = users
                    .table(&name)?
                    .ok_or_else(|| users.bad(&name, "must be a table"))?;
                let mut policy = UserPolicy::default();
                if let Some(v) = u.boolean("exempt")? {
                    policy.exempt = v;
                }
                if let Some(v) = u.cidrs("whitelist")? {
                    policy.whitelist = v;
                }
                for source in Source::ALL.into_iter().filter(|s| s.has_thresholds()) {
                    if let Some(mut t) = u.table(source.as_str())? {
                        let over = t.thresholds()?;
                        cfg.detection.thresholds[&source]
                            .overlay(&over)
                            .check_order()
                            .map_err(|r| t.bad_here(r))?;
                        policy.thresholds.insert(source, over);
                        t.finish()?;
                    }
                }
                u.finish()?;
                cfg.users.insert(user, policy);
            }
            users.finish()?;
        }
        ownership::parse(&mut root, &mut cfg.ownership)?;
        actions::parse(&mut root, &mut cfg.contain)?;
        if let Some(mut w) = root.table("fail2ban")? {
            let f = &mut cfg.fail2ban;
            for (key, slot) in [
                ("client", &mut f.client),
                ("socket", &mut f.socket),
                ("config_dir", &mut f.config_dir),
            ] {
                if let Some(v) = w.string(key)? {
                    if !v.starts_with('/') {
                        return Err(w.bad(key, format!("{v:?} must be an absolute path")));
                    }
                    *slot = PathBuf::from(v);
                }
            }
            w.finish()?;
        }
        root.finish()?;
        Ok(cfg)
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

    /// The effective configuration as TOML, every key with its value (defaults included).
    /// Also the machine-checked source of the README's reference table.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let q = quote;
        let list = |v: &[Cidr]| {
            let items: Vec<String> = v.iter().map(|c| q(&c.to_string())).collect();
            format!("[{}]", items.join(", "))
        };
        let th = |v: Option<u32>| v.unwrap_or(0);
        let _ = writeln!(
            out,
            "database = {}",
            q(&self.database.display().to_string())
        );
        let state_dir = self.state_dir.as_ref().map(|d| d.display().to_string());
        let _ = writeln!(out, "state_dir = {}", q(&state_dir.unwrap_or_default()));
        let _ = writeln!(out, "mode = {}", q(self.mode.as_str()));
        let _ = writeln!(out, "busy_timeout = {}", q(&self.busy_timeout.to_string()));
        let _ = writeln!(out, "retention = {}", q(&self.retention.to_string()));
        let d = &self.detection;
        let _ = writeln!(out, "\n[detection]");
        let _ = writeln!(out, "window = {}", q(&d.window.to_string()));
        let _ = writeln!(out, "ipv4_prefix = {}", d.prefixes.v4);
        let _ = writeln!(out, "ipv6_prefix = {}", d.prefixes.v6);
        let _ = writeln!(out, "notify_quiet = {}", q(&d.notify_quiet.to_string()));
        let _ = writeln!(out, "whitelist = {}", list(&d.whitelist));
        let _ = writeln!(out, "whitelist_builtin = {}", d.whitelist_builtin);
        let _ = writeln!(out, "spread_window = {}", q(&d.spread_window.to_string()));
        let _ = writeln!(out, "spread_ipv4_prefix = {}", d.spread_prefixes.v4);
        let _ = writeln!(out, "spread_ipv6_prefix = {}", d.spread_prefixes.v6);
        let _ = writeln!(out, "escalate_min_spread = {}", d.escalate_min_spread);
        let _ = writeln!(out, "corroborate = {}", d.corroborate);
        let _ = writeln!(out, "bounce_share = {}", d.bounce_share);
        let _ = writeln!(out, "bounce_share_min = {}", d.bounce_share_min);
        let _ = writeln!(out, "owners_notify = {}", d.owners_notify);
        let _ = writeln!(out, "owners_block = {}", d.owners_block);
        let _ = writeln!(out, "owners_lock = {}", d.owners_lock);
        let _ = writeln!(out, "spread_owners_block = {}", d.spread_owners_block);
        let b = &d.baseline;
        let _ = writeln!(out, "\n[baseline]");
        let _ = writeln!(out, "history = {}", q(&b.history.to_string()));
        let _ = writeln!(out, "min_days = {}", b.min_days);
        let _ = writeln!(out, "factor = {}", b.factor);
        let _ = writeln!(out, "min_messages = {}", b.min_messages);
        let _ = writeln!(out, "min_networks = {}", b.min_networks);
        for (source, t) in &d.thresholds {
            let _ = writeln!(out, "\n[thresholds.{source}]");
            let _ = writeln!(out, "notify = {}", th(t.notify));
            let _ = writeln!(out, "block = {}", th(t.block));
            let _ = writeln!(out, "lock = {}", th(t.lock));
        }
        ownership::render(&mut out, &self.ownership);
        actions::render(&mut out, &self.contain);
        let _ = writeln!(out, "\n[fail2ban]");
        let _ = writeln!(
            out,
            "client = {}",
            q(&self.fail2ban.client.display().to_string())
        );
        let _ = writeln!(
            out,
            "socket = {}",
            q(&self.fail2ban.socket.display().to_string())
        );
        let _ = writeln!(
            out,
            "config_dir = {}",
            q(&self.fail2ban.config_dir.display().to_string())
        );
        for (user, p) in &self.users {
            let _ = writeln!(out, "\n[users.{}]", q(user.as_str()));
            let _ = writeln!(out, "exempt = {}", p.exempt);
            let _ = writeln!(out, "whitelist = {}", list(&p.whitelist));
            for (source, over) in &p.thresholds {
                let _ = writeln!(out, "[users.{}.{source}]", q(user.as_str()));
                for (name, v) in [
                    ("notify", over.notify),
                    ("block", over.block),
                    ("lock", over.lock),
                ] {
                    if let Some(v) = v {
                        let _ = writeln!(out, "{name} = {}", th(v));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::parse("t.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn empty_is_default() {
        assert_eq!(Config::parse("t.toml", "").unwrap(), Config::default());
    }

    #[test]
    fn errors_name_key() {
        assert_eq!(
            err("mode = \"x\""),
            "t.toml: mode: \"x\" is not \"warn\" or \"enforce\""
        );
        assert_eq!(
            err("[detection]\nwindo = \"1h\""),
            "t.toml: detection.windo: unknown key"
        );
        assert!(err("[thresholds.smtp]\nnotify = 12")
            .starts_with("t.toml: thresholds.smtp: notify (12) must be below block"));
        assert!(err("[detection]\nwhitelist = [\"10.0.0.1/8\"]").contains("detection.whitelist"));
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
        let mut again = Config::parse("r.toml", &c.render()).unwrap();
        again.file = None;
        assert_eq!(again, c);
    }
}
