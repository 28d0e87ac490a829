//! Settings of the containment actions: which run at each level, and how each
//! reaches its target (SMTP server, Postfix map, password store, Dovecot).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::Result;
use crate::model::{ActionKind, Level, Span};

use super::reject::check_reject;
use super::user_mail::{self, UserMailConfig};
use super::walker::{quote, Walker};

#[derive(Debug, Clone, PartialEq)]
pub struct ActionsConfig {
    pub notify: Vec<ActionKind>,
    pub block: Vec<ActionKind>,
    pub lock: Vec<ActionKind>,
    /// First retry after this long, doubling up to an hour.
    pub retry_base: Span,
    pub max_attempts: u32,
    /// Every external command (postmap, postqueue, postsuper, postcat, doveadm, password
    /// command) is killed after this.
    pub command_timeout: Span,
    /// In warn mode, notify_user mails the owner too (off: nothing was done to them).
    pub user_mail_in_warn_mode: bool,
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
    /// would be done, and the owner's mail if user_mail_in_warn_mode.
    pub fn plan(&self, from: Level, to: Level, enforced: bool) -> Vec<ActionKind> {
        let newly_enforced = to == from && enforced;
        if to <= from && !newly_enforced {
            return Vec::new();
        }
        let list = self.for_level(to);
        if enforced || !to.needs_enforcement() {
            list.to_vec()
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailTransport {
    Smtp,
    Sendmail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailSecurity {
    None,
    Starttls,
    Tls,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MailConfig {
    pub transport: MailTransport,
    pub from: lettre::Address,
    pub to: Vec<lettre::Address>,
    /// At most one mail per account and level within this time.
    pub cooldown: Span,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_security: MailSecurity,
    pub smtp_user: String,
    pub smtp_password: String,
    pub sendmail: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PostfixConfig {
    pub sasl_map: PathBuf,
    pub map_type: String,
    /// `CODE X.Y.Z text` written after the user name in the access map.
    pub reject: String,
    pub postmap: PathBuf,
    pub postqueue: PathBuf,
    pub postsuper: PathBuf,
    pub postcat: PathBuf,
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

impl Default for ContainConfig {
    fn default() -> Self {
        use ActionKind::*;
        let addr = |s: &str| lettre::Address::from_str(s).expect("valid built-in address");
        Self {
            actions: ActionsConfig {
                notify: vec![Mail],
                block: vec![SaslBlock, HoldQueue, Mail],
                lock: vec![SaslBlock, HoldQueue, ResetPassword, DovecotKick, Mail],
                retry_base: Span::secs(30),
                max_attempts: 12,
                command_timeout: Span::secs(30),
                user_mail_in_warn_mode: false,
            },
            mail: MailConfig {
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
            },
            user_mail: UserMailConfig::default(),
            postfix: PostfixConfig {
                sasl_map: PathBuf::from("/etc/postfix/mailguard_sasl_access"),
                map_type: "lmdb".into(),
                // 550, not 554: common Fail2ban filters ban the client IP on 554 5.7.1,
                // which would ban the real user's office along with the botnet.
                reject:
                    "550 5.7.1 Account suspended after suspicious logins, contact your postmaster"
                        .into(),
                postmap: PathBuf::from("/usr/sbin/postmap"),
                postqueue: PathBuf::from("/usr/sbin/postqueue"),
                postsuper: PathBuf::from("/usr/sbin/postsuper"),
                postcat: PathBuf::from("/usr/sbin/postcat"),
            },
            password: PasswordBackend::None,
            password_length: 24,
            doveadm: PathBuf::from("/usr/bin/doveadm"),
        }
    }
}

fn path(w: &mut Walker, key: &str) -> Result<Option<PathBuf>> {
    match w.string(key)? {
        Some(p) if !p.starts_with('/') => {
            Err(w.bad(key, format!("{p:?} must be an absolute path")))
        }
        other => Ok(other.map(PathBuf::from)),
    }
}

fn address(s: &str) -> std::result::Result<lettre::Address, String> {
    lettre::Address::from_str(s).map_err(|_| format!("{s:?} is not a mail address"))
}

fn no_controls(w: &Walker, key: &str, v: &str) -> Result<()> {
    if v.chars().any(char::is_control) {
        return Err(w.bad(key, "contains a control character"));
    }
    Ok(())
}

pub(super) fn parse(root: &mut Walker, c: &mut ContainConfig) -> Result<()> {
    if let Some(mut w) = root.table("actions")? {
        let a = &mut c.actions;
        for (key, list) in [
            ("notify", &mut a.notify),
            ("block", &mut a.block),
            ("lock", &mut a.lock),
        ] {
            if let Some(v) = w.list(key, ActionKind::from_str)? {
                *list = v;
            }
        }
        if let Some(v) = w.span("retry_base")? {
            a.retry_base = v;
        }
        if let Some(v) = w.int("max_attempts", 1, 1000)? {
            a.max_attempts = v as u32;
        }
        if let Some(v) = w.span("command_timeout")? {
            a.command_timeout = v;
        }
        if let Some(v) = w.boolean("user_mail_in_warn_mode")? {
            a.user_mail_in_warn_mode = v;
        }
        w.finish()?;
    }
    if let Some(mut w) = root.table("mail")? {
        let m = &mut c.mail;
        if let Some(v) = w.string("transport")? {
            m.transport = match v.as_str() {
                "smtp" => MailTransport::Smtp,
                "sendmail" => MailTransport::Sendmail,
                _ => {
                    return Err(w.bad(
                        "transport",
                        format!("{v:?} is not \"smtp\" or \"sendmail\""),
                    ))
                }
            };
        }
        if let Some(v) = w.string("from")? {
            m.from = address(&v).map_err(|r| w.bad("from", r))?;
        }
        if let Some(v) = w.list("to", address)? {
            if v.is_empty() {
                return Err(w.bad("to", "needs at least one address"));
            }
            m.to = v;
        }
        if let Some(v) = w.span("cooldown")? {
            m.cooldown = v;
        }
        if let Some(v) = w.string("smtp_host")? {
            if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(w.bad("smtp_host", format!("{v:?} is not a host name")));
            }
            m.smtp_host = v;
        }
        if let Some(v) = w.int("smtp_port", 1, 65535)? {
            m.smtp_port = v as u16;
        }
        if let Some(v) = w.string("smtp_security")? {
            m.smtp_security = match v.as_str() {
                "none" => MailSecurity::None,
                "starttls" => MailSecurity::Starttls,
                "tls" => MailSecurity::Tls,
                _ => {
                    return Err(w.bad(
                        "smtp_security",
                        format!("{v:?} is not \"none\", \"starttls\" or \"tls\""),
                    ))
                }
            };
        }
        if let Some(v) = w.string("smtp_user")? {
            no_controls(&w, "smtp_user", &v)?;
            m.smtp_user = v;
        }
        if let Some(v) = w.string("smtp_password")? {
            no_controls(&w, "smtp_password", &v)?;
            m.smtp_password = v;
        }
        if let Some(v) = path(&mut w, "sendmail")? {
            m.sendmail = v;
        }
        w.finish()?;
    }
    user_mail::parse(root, &mut c.user_mail)?;
    if let Some(mut w) = root.table("postfix")? {
        let p = &mut c.postfix;
        if let Some(v) = path(&mut w, "sasl_map")? {
            p.sasl_map = v;
        }
        if let Some(v) = w.string("map_type")? {
            if !matches!(v.as_str(), "lmdb" | "hash" | "cdb") {
                return Err(w.bad(
                    "map_type",
                    format!("{v:?} is not \"lmdb\", \"hash\" or \"cdb\""),
                ));
            }
            p.map_type = v;
        }
        if let Some(v) = w.string("reject")? {
            check_reject(&v).map_err(|r| w.bad("reject", r))?;
            p.reject = v;
        }
        for (key, slot) in [
            ("postmap", &mut p.postmap),
            ("postqueue", &mut p.postqueue),
            ("postsuper", &mut p.postsuper),
            ("postcat", &mut p.postcat),
        ] {
            if let Some(v) = path(&mut w, key)? {
                *slot = v;
            }
        }
        w.finish()?;
    }
    if let Some(mut w) = root.table("password")? {
        let backend = w.string("backend")?;
        let command = w.list("command", |s| Ok(s.to_owned()))?;
        let file = path(&mut w, "passwd_file")?;
        if let Some(v) = w.int("length", 20, 128)? {
            c.password_length = v as u32;
        }
        c.password = match backend.as_deref() {
            None | Some("none") => PasswordBackend::None,
            Some("command") => {
                match command {
                    Some(argv) if argv.first().is_some_and(|a| a.starts_with('/')) => {
                        PasswordBackend::Command(argv)
                    }
                    _ => return Err(w.bad(
                        "command",
                        "backend \"command\" needs command = [\"/absolute/program\", \"arg\", ...]",
                    )),
                }
            }
            Some("dovecot-passwd-file") => match file {
                Some(f) => PasswordBackend::DovecotPasswdFile(f),
                None => {
                    return Err(w.bad(
                        "passwd_file",
                        "backend \"dovecot-passwd-file\" needs passwd_file",
                    ))
                }
            },
            Some(other) => {
                return Err(w.bad(
                    "backend",
                    format!("{other:?} is not \"none\", \"command\" or \"dovecot-passwd-file\""),
                ))
            }
        };
        w.finish()?;
    }
    if let Some(mut w) = root.table("dovecot")? {
        if let Some(v) = path(&mut w, "doveadm")? {
            c.doveadm = v;
        }
        w.finish()?;
    }
    Ok(())
}

pub(super) fn render(out: &mut String, c: &ContainConfig) {
    let list = |v: &[ActionKind]| {
        let items: Vec<String> = v.iter().map(|a| quote(a.as_str())).collect();
        format!("[{}]", items.join(", "))
    };
    let p = |p: &PathBuf| quote(&p.display().to_string());
    let a = &c.actions;
    let _ = writeln!(out, "\n[actions]");
    let _ = writeln!(out, "notify = {}", list(&a.notify));
    let _ = writeln!(out, "block = {}", list(&a.block));
    let _ = writeln!(out, "lock = {}", list(&a.lock));
    let _ = writeln!(out, "retry_base = {}", quote(&a.retry_base.to_string()));
    let _ = writeln!(out, "max_attempts = {}", a.max_attempts);
    let _ = writeln!(
        out,
        "command_timeout = {}",
        quote(&a.command_timeout.to_string())
    );
    let _ = writeln!(out, "user_mail_in_warn_mode = {}", a.user_mail_in_warn_mode);
    let m = &c.mail;
    let _ = writeln!(out, "\n[mail]");
    let transport = match m.transport {
        MailTransport::Smtp => "smtp",
        MailTransport::Sendmail => "sendmail",
    };
    let _ = writeln!(out, "transport = {}", quote(transport));
    let _ = writeln!(out, "from = {}", quote(m.from.as_ref()));
    let to: Vec<String> = m.to.iter().map(|a| quote(a.as_ref())).collect();
    let _ = writeln!(out, "to = [{}]", to.join(", "));
    let _ = writeln!(out, "cooldown = {}", quote(&m.cooldown.to_string()));
    let _ = writeln!(out, "smtp_host = {}", quote(&m.smtp_host));
    let _ = writeln!(out, "smtp_port = {}", m.smtp_port);
    let security = match m.smtp_security {
        MailSecurity::None => "none",
        MailSecurity::Starttls => "starttls",
        MailSecurity::Tls => "tls",
    };
    let _ = writeln!(out, "smtp_security = {}", quote(security));
    let _ = writeln!(out, "smtp_user = {}", quote(&m.smtp_user));
    // Never print a secret; say whether one is set.
    let secret = if m.smtp_password.is_empty() {
        ""
    } else {
        "(set)"
    };
    let _ = writeln!(out, "smtp_password = {}", quote(secret));
    let _ = writeln!(out, "sendmail = {}", p(&m.sendmail));
    user_mail::render(out, &c.user_mail);
    let f = &c.postfix;
    let _ = writeln!(out, "\n[postfix]");
    let _ = writeln!(out, "sasl_map = {}", p(&f.sasl_map));
    let _ = writeln!(out, "map_type = {}", quote(&f.map_type));
    let _ = writeln!(out, "reject = {}", quote(&f.reject));
    let _ = writeln!(out, "postmap = {}", p(&f.postmap));
    let _ = writeln!(out, "postqueue = {}", p(&f.postqueue));
    let _ = writeln!(out, "postsuper = {}", p(&f.postsuper));
    let _ = writeln!(out, "postcat = {}", p(&f.postcat));
    let _ = writeln!(out, "\n[password]");
    match &c.password {
        PasswordBackend::None => {
            let _ = writeln!(out, "backend = \"none\"");
        }
        PasswordBackend::Command(argv) => {
            let items: Vec<String> = argv.iter().map(|s| quote(s)).collect();
            let _ = writeln!(
                out,
                "backend = \"command\"\ncommand = [{}]",
                items.join(", ")
            );
        }
        PasswordBackend::DovecotPasswdFile(f) => {
            let _ = writeln!(
                out,
                "backend = \"dovecot-passwd-file\"\npasswd_file = {}",
                p(f)
            );
        }
    }
    let _ = writeln!(out, "length = {}", c.password_length);
    let _ = writeln!(out, "\n[dovecot]");
    let _ = writeln!(out, "doveadm = {}", p(&c.doveadm));
}
