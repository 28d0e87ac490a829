//! The file's shape: its tables and keys in the order `config check` prints them. Most
//! tables are the config's own types; this holds the few that the program keeps in
//! another shape (`[detection]`'s prefixes, `[baseline]` and `[thresholds]` inside
//! `Detection`, `[password]` and `[dovecot]` inside `ContainConfig`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::actions::{DovecotSection, MailConfig, PasswordSection, PostfixConfig};
use super::thresholds::by_source;
use super::value::{default_from, named, opt_abs_path, parsed, Range};
use super::{
    ActionsConfig, Baseline, Config, ContainConfig, Detection, Fail2banPaths, Misfit,
    OwnershipConfig, PartialThresholds, PolicyConfig, UserMailConfig, UserPolicy,
};
use crate::model::{Cidr, DatabaseLocation, Label, Mode, NetPrefixes, SaslUser, Source, Span};

#[derive(Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct Document {
    database: DatabaseLocation,
    /// "" (the default): see `Config::local_dir`.
    #[serde(with = "opt_abs_path")]
    local_dir: Option<PathBuf>,
    /// "" (the default): the host name.
    #[serde(
        deserialize_with = "server_name",
        serialize_with = "serialize_server_name"
    )]
    server_name: Option<Label>,
    connect_timeout: Span,
    #[serde(with = "named")]
    mode: Mode,
    busy_timeout: Span,
    record_wait: Span,
    retention: Span,
    detection: DetectionSection,
    baseline: Baseline,
    /// Only the levels written; `Config::default` has the rest.
    #[serde(with = "by_source")]
    thresholds: BTreeMap<Source, PartialThresholds>,
    ownership: OwnershipConfig,
    actions: ActionsConfig,
    mail: MailConfig,
    user_mail: UserMailConfig,
    postfix: PostfixConfig,
    password: PasswordSection,
    dovecot: DovecotSection,
    fail2ban: Fail2banPaths,
    policy: PolicyConfig,
    /// None by default, and none printed then.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    users: BTreeMap<SaslUser, UserPolicy>,
}

fn server_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Label>, D::Error> {
    parsed(d, |v| {
        let name = Label::parse("", v).map_err(|e| e.reason)?;
        Ok(Some(name).filter(|n| !n.as_str().is_empty()))
    })
}

fn serialize_server_name<S: serde::Serializer>(v: &Option<Label>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_ref().map_or("", |n| n.as_str()))
}

impl Default for Document {
    fn default() -> Self {
        let mut document = Self::from(Config::defaults());
        // What the file leaves out keeps the defaults; what it writes replaces them.
        document.thresholds.clear();
        document
    }
}

impl From<&Config> for Document {
    fn from(c: &Config) -> Self {
        let d = &c.detection;
        Self {
            database: c.database.clone(),
            local_dir: c.local_dir.clone(),
            server_name: c.server_name.clone(),
            connect_timeout: c.connect_timeout,
            mode: c.mode,
            busy_timeout: c.busy_timeout,
            record_wait: c.record_wait,
            retention: c.retention,
            detection: DetectionSection::from(d),
            baseline: d.baseline,
            thresholds: d
                .thresholds
                .iter()
                .map(|(s, t)| (*s, PartialThresholds::from(*t)))
                .collect(),
            ownership: c.ownership.clone(),
            actions: c.contain.actions.clone(),
            mail: c.contain.mail.clone(),
            user_mail: c.contain.user_mail.clone(),
            postfix: c.contain.postfix.clone(),
            password: PasswordSection::from(&c.contain),
            dovecot: DovecotSection {
                doveadm: c.contain.doveadm.clone(),
            },
            fail2ban: c.fail2ban.clone(),
            policy: c.policy.clone(),
            users: c.users.clone(),
        }
    }
}

impl Document {
    /// The config, once the keys together make sense.
    pub(super) fn into_config(self) -> Result<Config, Misfit> {
        let mut detection = self.detection.into_detection(self.baseline);
        for (source, over) in &self.thresholds {
            let merged = detection.thresholds[source].overlay(over);
            merged
                .check_order()
                .map_err(|r| Misfit::new(["thresholds", source.as_str()], r))?;
            detection.thresholds.insert(*source, merged);
        }
        for (user, policy) in &self.users {
            for (source, over) in &policy.thresholds {
                detection.thresholds[source]
                    .overlay(over)
                    .check_order()
                    .map_err(|r| Misfit::new(["users", user.as_str(), source.as_str()], r))?;
            }
        }
        self.user_mail.check()?;
        let (password, password_length) = self.password.into_parts()?;
        Ok(Config {
            file: None,
            database: self.database,
            local_dir: self.local_dir,
            server_name: self.server_name,
            connect_timeout: self.connect_timeout,
            mode: self.mode,
            busy_timeout: self.busy_timeout,
            record_wait: self.record_wait,
            retention: self.retention,
            detection,
            ownership: self.ownership,
            contain: ContainConfig {
                actions: self.actions,
                mail: self.mail,
                user_mail: self.user_mail,
                postfix: self.postfix,
                password,
                password_length,
                doveadm: self.dovecot.doveadm,
            },
            fail2ban: self.fail2ban,
            policy: self.policy,
            users: self.users,
        })
    }
}

/// `[detection]` as written.
#[derive(Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
struct DetectionSection {
    window: Span,
    #[serde(with = "Range::<1, 32>")]
    ipv4_prefix: u8,
    #[serde(with = "Range::<1, 128>")]
    ipv6_prefix: u8,
    notify_quiet: Span,
    whitelist: Vec<Cidr>,
    whitelist_builtin: bool,
    spread_window: Span,
    #[serde(with = "Range::<1, 32>")]
    spread_ipv4_prefix: u8,
    #[serde(with = "Range::<1, 128>")]
    spread_ipv6_prefix: u8,
    #[serde(with = "Range::<0, 1_000_000>")]
    escalate_min_spread: u32,
    corroborate: bool,
    #[serde(with = "Range::<0, 100>")]
    bounce_share: u32,
    #[serde(with = "Range::<0, 1_000_000>")]
    bounce_share_min: u32,
    #[serde(with = "Range::<0, 1_000_000>")]
    owners_notify: u32,
    #[serde(with = "Range::<0, 1_000_000>")]
    owners_block: u32,
    #[serde(with = "Range::<0, 1_000_000>")]
    owners_lock: u32,
    #[serde(with = "Range::<0, 1_000_000>")]
    spread_owners_block: u32,
    #[serde(with = "Range::<1, 32>")]
    party_ipv4_prefix: u8,
    #[serde(with = "Range::<1, 128>")]
    party_ipv6_prefix: u8,
    known_after: Span,
    new_for: Span,
}

default_from!(DetectionSection, detection);

impl From<&Detection> for DetectionSection {
    fn from(d: &Detection) -> Self {
        Self {
            window: d.window,
            ipv4_prefix: d.prefixes.v4,
            ipv6_prefix: d.prefixes.v6,
            notify_quiet: d.notify_quiet,
            whitelist: d.whitelist.clone(),
            whitelist_builtin: d.whitelist_builtin,
            spread_window: d.spread_window,
            spread_ipv4_prefix: d.spread_prefixes.v4,
            spread_ipv6_prefix: d.spread_prefixes.v6,
            escalate_min_spread: d.escalate_min_spread,
            corroborate: d.corroborate,
            bounce_share: d.bounce_share,
            bounce_share_min: d.bounce_share_min,
            owners_notify: d.owners_notify,
            owners_block: d.owners_block,
            owners_lock: d.owners_lock,
            spread_owners_block: d.spread_owners_block,
            party_ipv4_prefix: d.party_prefixes.v4,
            party_ipv6_prefix: d.party_prefixes.v6,
            known_after: d.known_after,
            new_for: d.new_for,
        }
    }
}

impl DetectionSection {
    /// With the default thresholds, which `[thresholds]` then overlays.
    fn into_detection(self, baseline: Baseline) -> Detection {
        Detection {
            window: self.window,
            prefixes: NetPrefixes {
                v4: self.ipv4_prefix,
                v6: self.ipv6_prefix,
            },
            notify_quiet: self.notify_quiet,
            whitelist: self.whitelist,
            whitelist_builtin: self.whitelist_builtin,
            spread_window: self.spread_window,
            spread_prefixes: NetPrefixes {
                v4: self.spread_ipv4_prefix,
                v6: self.spread_ipv6_prefix,
            },
            escalate_min_spread: self.escalate_min_spread,
            corroborate: self.corroborate,
            bounce_share: self.bounce_share,
            bounce_share_min: self.bounce_share_min,
            owners_notify: self.owners_notify,
            owners_block: self.owners_block,
            owners_lock: self.owners_lock,
            spread_owners_block: self.spread_owners_block,
            party_prefixes: NetPrefixes {
                v4: self.party_ipv4_prefix,
                v6: self.party_ipv6_prefix,
            },
            known_after: self.known_after,
            new_for: self.new_for,
            thresholds: Config::defaults().detection.thresholds.clone(),
            baseline,
        }
    }
}
