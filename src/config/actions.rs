//! Settings of the containment actions: which run at each level, and how each
//! reaches its target (SMTP server, Postfix map, password store, Dovecot).

use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::model::{ActionKind, Level, Mode, Span};

use super::reject::check_reject;
use super::user_mail::UserMailConfig;
use super::value::{
    abs_path, address, addresses, default_from, named, named_enum, no_controls, one_of,
    opt_abs_path, parsed, secret, Named, Range,
};
use super::Misfit;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActionsConfig {
    pub notify: Vec<ActionKind>,
    pub block: Vec<ActionKind>,
    pub lock: Vec<ActionKind>,
    /// First retry after this long, doubling up to an hour.
    pub retry_base: Span,
    #[serde(with = "Range::<1, 1000>")]
    pub max_attempts: u32,
    /// Every external command (postmap, postqueue, postsuper, postcat, doveadm, password
    /// command) is killed after this.
    pub command_timeout: Span,
    /// In warn mode, notify_user mails the owner too (off: nothing was done to them).
    pub user_mail_in_warn_mode: bool,
    /// Enforce mode: from notify on, the account's new mail goes to Postfix's hold
    /// queue (a HOLD answer in the check_sasl_access map) until release or until
    /// notify clears; block still refuses (see `detect::PostfixAnswer`).
    pub quarantine: bool,
}

impl ActionsConfig {
    pub fn for_level(&self, level: Level) -> &[ActionKind] {
        match level {
            Level::Ok => &[],
            Level::Notify => &self.notify,
            Level::Block => &self.block,
            Level::Lock => &self.lock,
        }
    }

    /// The actions a level change queues: a rise (or a block becoming enforced) runs
    /// the new level's list; unenforced (warn mode), only the mail goes out, saying what
    /// would be done, and the owner's mail if user_mail_in_warn_mode. A rise to notify
    /// in enforce mode with quarantine also rewrites the map (sasl_block), which then
    /// holds the account's mail.
    pub fn plan(&self, from: Level, to: Level, enforced: bool, mode: Mode) -> Vec<ActionKind> {
        let newly_enforced = to == from && enforced;
        if to <= from && !newly_enforced {
            return Vec::new();
        }
        let list = self.for_level(to);
        if enforced || !to.needs_enforcement() {
            let mut planned = list.to_vec();
            let quarantines = to == Level::Notify && mode == Mode::Enforce && self.quarantine;
            if quarantines && !planned.contains(&ActionKind::SaslBlock) {
                planned.insert(0, ActionKind::SaslBlock);
            }
            planned
        } else {
            list.iter()
                .copied()
                .filter(|a| {
                    *a == ActionKind::Mail
                        || *a == ActionKind::NotifyUser && self.user_mail_in_warn_mode
                })
                .collect()
        }
    }
}

named_enum! {
    pub enum MailTransport {
        Smtp = "smtp",
        Sendmail = "sendmail",
    }
}

named_enum! {
    pub enum MailSecurity {
        None = "none",
        Starttls = "starttls",
        Tls = "tls",
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    #[serde(with = "named")]
    pub transport: MailTransport,
    #[serde(with = "address")]
    pub from: lettre::Address,
    #[serde(with = "addresses")]
    pub to: Vec<lettre::Address>,
    /// At most one mail per account and level within this time.
    pub cooldown: Span,
    #[serde(deserialize_with = "host_name")]
    pub smtp_host: String,
    #[serde(with = "Range::<1, 65535>")]
    pub smtp_port: u16,
    #[serde(with = "named")]
    pub smtp_security: MailSecurity,
    #[serde(deserialize_with = "no_controls")]
    pub smtp_user: String,
    #[serde(deserialize_with = "no_controls", serialize_with = "secret")]
    pub smtp_password: String,
    #[serde(with = "abs_path")]
    pub sendmail: PathBuf,
}

fn host_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    parsed(d, |v| {
        if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Err(format!("{v:?} is not a host name"))
        } else {
            Ok(v.to_owned())
        }
    })
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostfixConfig {
    #[serde(with = "abs_path")]
    pub sasl_map: PathBuf,
    #[serde(deserialize_with = "map_type")]
    pub map_type: String,
    /// `CODE X.Y.Z text` written after the user name in the access map.
    #[serde(deserialize_with = "reject")]
    pub reject: String,
    #[serde(with = "abs_path")]
    pub postmap: PathBuf,
    #[serde(with = "abs_path")]
    pub postqueue: PathBuf,
    #[serde(with = "abs_path")]
    pub postsuper: PathBuf,
    #[serde(with = "abs_path")]
    pub postcat: PathBuf,
}

fn map_type<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    parsed(d, |v| {
        one_of(v, &["lmdb", "hash", "cdb"]).map(str::to_owned)
    })
}

fn reject<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    parsed(d, |v| check_reject(v).map(|()| v.to_owned()))
}

#[derive(Debug, Clone, PartialEq)]
pub enum PasswordBackend {
    None,
    /// argv template; `{user}` is replaced; the new password and its {SSHA512} hash on stdin.
    Command(Vec<String>),
    /// Rewrite the user's hash in a Dovecot passwd-file.
    DovecotPasswdFile(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainConfig {
    pub actions: ActionsConfig,
    pub mail: MailConfig,
    pub user_mail: UserMailConfig,
    pub postfix: PostfixConfig,
    pub password: PasswordBackend,
    pub password_length: u32,
    pub doveadm: PathBuf,
}

impl Default for ActionsConfig {
    fn default() -> Self {
        use ActionKind::*;
        Self {
            notify: vec![Mail],
            block: vec![SaslBlock, HoldQueue, Mail],
            lock: vec![SaslBlock, HoldQueue, ResetPassword, DovecotKick, Mail],
            retry_base: Span::secs(30),
            max_attempts: 12,
            command_timeout: Span::secs(30),
            user_mail_in_warn_mode: false,
            quarantine: true,
        }
    }
}

impl Default for MailConfig {
    fn default() -> Self {
        let addr = |s: &str| lettre::Address::from_str(s).expect("valid built-in address");
        Self {
            transport: MailTransport::Smtp,
            from: addr("f2b-mailguard@localhost"),
            to: vec![addr("root@localhost")],
            cooldown: Span::secs(6 * 3600),
            smtp_host: "localhost".into(),
            smtp_port: 25,
            smtp_security: MailSecurity::None,
            smtp_user: String::new(),
            smtp_password: String::new(),
            sendmail: PathBuf::from("/usr/sbin/sendmail"),
        }
    }
}

impl Default for PostfixConfig {
    fn default() -> Self {
        Self {
            sasl_map: PathBuf::from("/etc/postfix/mailguard_sasl_access"),
            map_type: "lmdb".into(),
            // 550, not 554: common Fail2ban filters ban the client IP on 554 5.7.1,
            // which would ban the real user's office along with the botnet.
            reject: "550 5.7.1 Account suspended after suspicious logins, contact your postmaster"
                .into(),
            postmap: PathBuf::from("/usr/sbin/postmap"),
            postqueue: PathBuf::from("/usr/sbin/postqueue"),
            postsuper: PathBuf::from("/usr/sbin/postsuper"),
            postcat: PathBuf::from("/usr/sbin/postcat"),
        }
    }
}

impl Default for ContainConfig {
    fn default() -> Self {
        Self {
            actions: ActionsConfig::default(),
            mail: MailConfig::default(),
            user_mail: UserMailConfig::default(),
            postfix: PostfixConfig::default(),
            password: PasswordBackend::None,
            password_length: 24,
            doveadm: PathBuf::from("/usr/bin/doveadm"),
        }
    }
}

named_enum! {
    enum Backend {
        None = "none",
        Command = "command",
        DovecotPasswdFile = "dovecot-passwd-file",
    }
}

/// `[password]` as written: a backend and what that backend needs.
#[derive(Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct PasswordSection {
    #[serde(with = "named")]
    backend: Backend,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<Vec<String>>,
    #[serde(
        deserialize_with = "abs_path::some",
        serialize_with = "opt_abs_path::serialize",
        skip_serializing_if = "Option::is_none"
    )]
    passwd_file: Option<PathBuf>,
    #[serde(with = "Range::<20, 128>")]
    length: u32,
}

default_from!(PasswordSection, contain);

impl From<&ContainConfig> for PasswordSection {
    fn from(c: &ContainConfig) -> Self {
        let (backend, command, passwd_file) = match &c.password {
            PasswordBackend::None => (Backend::None, None, None),
            PasswordBackend::Command(argv) => (Backend::Command, Some(argv.clone()), None),
            PasswordBackend::DovecotPasswdFile(f) => {
                (Backend::DovecotPasswdFile, None, Some(f.clone()))
            }
        };
        Self {
            backend,
            command,
            passwd_file,
            length: c.password_length,
        }
    }
}

impl PasswordSection {
    /// The backend, with what it needs, and the password length.
    pub(super) fn into_parts(self) -> Result<(PasswordBackend, u32), Misfit> {
        let backend =
            match self.backend {
                Backend::None => PasswordBackend::None,
                Backend::Command => match self.command {
                    Some(argv) if argv.first().is_some_and(|a| a.starts_with('/')) => {
                        PasswordBackend::Command(argv)
                    }
                    _ => return Err(Misfit::new(
                        ["password", "command"],
                        "backend \"command\" needs command = [\"/absolute/program\", \"arg\", ...]",
                    )),
                },
                Backend::DovecotPasswdFile => match self.passwd_file {
                    Some(f) => PasswordBackend::DovecotPasswdFile(f),
                    None => {
                        return Err(Misfit::new(
                            ["password", "passwd_file"],
                            "backend \"dovecot-passwd-file\" needs passwd_file",
                        ))
                    }
                },
            };
        Ok((backend, self.length))
    }
}

/// `[dovecot]` as written.
#[derive(Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct DovecotSection {
    #[serde(with = "abs_path")]
    pub(super) doveadm: PathBuf,
}

impl Default for DovecotSection {
    fn default() -> Self {
        Self {
            doveadm: super::Config::defaults().contain.doveadm.clone(),
        }
    }
}
