//! Dovecot: cached credentials keep an old password valid after a reset, and open
//! IMAP/POP3 sessions outlive it, so flush the account's cache entries, then kick it.

use super::exec;
use crate::config::Config;
use crate::model::SaslUser;

/// `doveadm kick` exits 68 when the account had no session: not an error.
const NO_USERS_KICKED: i32 = 68;

pub fn flush_and_kick(cfg: &Config, user: &SaslUser) -> Result<String, String> {
    let doveadm = &cfg.contain.doveadm;
    let timeout = cfg.contain.actions.command_timeout;
    let flushed = exec::run(
        doveadm,
        &["auth", "cache", "flush", user.as_str()],
        None,
        timeout,
    )?;
    if !flushed.success() {
        return Err(flushed.failure(doveadm));
    }
    let kicked = exec::run(doveadm, &["kick", user.as_str()], None, timeout)?;
    match kicked.code {
        Some(0) => Ok(format!("{}; sessions kicked", flushed.first_line())),
        Some(NO_USERS_KICKED) => Ok(format!("{}; no open session", flushed.first_line())),
        _ => Err(kicked.failure(doveadm)),
    }
}
