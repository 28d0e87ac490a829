//! The TOML configuration: every key optional, every value validated, unknown keys refused.
//!
//! The file is walked by hand rather than through `serde` derive so that every error
//! names the file, the full key path (`thresholds.smtp.block`) and the reason on one line.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{Error, Invalid, Result};
use crate::model::{Cidr, Mode, NetPrefixes, SaslUser, Source, Span};

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
    pub thresholds: BTreeMap<Source, Thresholds>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this came from, if any (the default path may be absent).
    pub file: Option<PathBuf>,
    pub database: PathBuf,
    pub mode: Mode,
    pub busy_timeout: Span,
    pub retention: Span,
    pub detection: Detection,
    pub users: BTreeMap<SaslUser, UserPolicy>,
}

impl Default for Config {
    fn default() -> Self {
        let mut thresholds = BTreeMap::new();
        for source in Source::ALL {
            thresholds.insert(source, Thresholds::default());
        }
        // Admins' rule of thumb: more than 5 addresses in an hour is suspicious.
        thresholds.insert(Source::Smtp, Thresholds::new(5, 10, 20));
        Self {
            file: None,
            database: PathBuf::from(DEFAULT_DATABASE),
            mode: Mode::Warn,
            busy_timeout: Span::secs(5),
            retention: Span::secs(30 * 86_400),
            detection: Detection {
                window: Span::secs(3600),
                prefixes: NetPrefixes { v4: 32, v6: 64 },
                notify_quiet: Span::secs(86_400),
                whitelist: Vec::new(),
                whitelist_builtin: true,
                thresholds,
            },
            users: BTreeMap::new(),
        }
    }
}

impl Config {
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

    pub fn parse(file: &str, text: &str) -> Result<Self> {
        let table: toml::Table = toml::from_str(text).map_err(|e| Error::Config {
            file: file.to_owned(),
            key: "(syntax)".into(),
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
            det.finish()?;
        }
        if let Some(mut th) = root.table("thresholds")? {
            for source in Source::ALL {
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
                for source in Source::ALL {
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
        root.finish()?;
        Ok(cfg)
    }

    /// The thresholds that apply to `user` for `source`, with per-user overrides applied.
    pub fn thresholds_for(&self, user: &SaslUser, source: Source) -> Thresholds {
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
        for (source, t) in &d.thresholds {
            let _ = writeln!(out, "\n[thresholds.{source}]");
            let _ = writeln!(out, "notify = {}", th(t.notify));
            let _ = writeln!(out, "block = {}", th(t.block));
            let _ = writeln!(out, "lock = {}", th(t.lock));
        }
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

/// A TOML basic string. JSON's string escapes are a subset of TOML's.
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Walks one TOML table, removing keys as they are read so leftovers can be reported.
struct Walker {
    file: String,
    prefix: String,
    table: toml::Table,
}

impl Walker {
    fn new(file: &str, prefix: &str, table: toml::Table) -> Self {
        Self {
            file: file.to_owned(),
            prefix: prefix.to_owned(),
            table,
        }
    }

    fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else if key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            format!("{}.{key}", self.prefix)
        } else {
            format!("{}.{}", self.prefix, quote(key))
        }
    }

    fn bad(&self, key: &str, reason: impl Into<String>) -> Error {
        Error::Config {
            file: self.file.clone(),
            key: self.path(key),
            reason: reason.into(),
        }
    }

    fn bad_here(&self, reason: impl Into<String>) -> Error {
        Error::Config {
            file: self.file.clone(),
            key: self.prefix.clone(),
            reason: reason.into(),
        }
    }

    fn keys(&self) -> Vec<String> {
        self.table.keys().cloned().collect()
    }

    fn take(&mut self, key: &str, want: &str) -> Result<Option<toml::Value>> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(v) if v.type_str() == want => Ok(Some(v)),
            Some(v) => Err(self.bad(key, format!("must be a {want}, not a {}", v.type_str()))),
        }
    }

    fn string(&mut self, key: &str) -> Result<Option<String>> {
        Ok(self
            .take(key, "string")?
            .and_then(|v| v.as_str().map(str::to_owned)))
    }

    fn boolean(&mut self, key: &str) -> Result<Option<bool>> {
        Ok(self.take(key, "boolean")?.and_then(|v| v.as_bool()))
    }

    fn int(&mut self, key: &str, min: i64, max: i64) -> Result<Option<i64>> {
        let Some(v) = self.take(key, "integer")?.and_then(|v| v.as_integer()) else {
            return Ok(None);
        };
        if !(min..=max).contains(&v) {
            return Err(self.bad(key, format!("{v} is outside {min}..={max}")));
        }
        Ok(Some(v))
    }

    fn span(&mut self, key: &str) -> Result<Option<Span>> {
        let Some(v) = self.string(key)? else {
            return Ok(None);
        };
        Span::parse("", &v)
            .map(Some)
            .map_err(|e| self.bad(key, e.reason))
    }

    fn cidrs(&mut self, key: &str) -> Result<Option<Vec<Cidr>>> {
        let Some(v) = self.take(key, "array")? else {
            return Ok(None);
        };
        let items = v.as_array().cloned().unwrap_or_default();
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let s = item
                .as_str()
                .ok_or_else(|| self.bad(key, "must list CIDRs as strings"))?;
            out.push(Cidr::parse("", s).map_err(|e: Invalid| self.bad(key, e.reason))?);
        }
        Ok(Some(out))
    }

    fn threshold(&mut self, key: &str) -> Result<Option<Option<u32>>> {
        let v = self.int(key, 0, 1_000_000)?;
        Ok(v.map(|n| if n == 0 { None } else { Some(n as u32) }))
    }

    fn thresholds(&mut self) -> Result<PartialThresholds> {
        Ok(PartialThresholds {
            notify: self.threshold("notify")?,
            block: self.threshold("block")?,
            lock: self.threshold("lock")?,
        })
    }

    fn table(&mut self, key: &str) -> Result<Option<Walker>> {
        let path = self.path(key);
        Ok(self.take(key, "table")?.and_then(|v| match v {
            toml::Value::Table(t) => Some(Walker {
                file: self.file.clone(),
                prefix: path,
                table: t,
            }),
            _ => None,
        }))
    }

    fn finish(self) -> Result<()> {
        match self.table.keys().next() {
            Some(k) => Err(self.bad(k, "unknown key")),
            None => Ok(()),
        }
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
