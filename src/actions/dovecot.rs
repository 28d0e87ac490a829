//! Dovecot: cached credentials keep an old password valid after a reset, and open
//! IMAP/POP3 sessions outlive it, so flush the account's cache entries, then kick it.
//!
//! The name goes after `--` (doveadm 2.3 honours it), so a name like `-h` is never
//! an option. `doveadm kick` also reads its argument as a mask, which no quoting
//! changes: see `kick_refusal`.

use super::{exec, Outcome};
use crate::config::Config;
use crate::model::SaslUser;

/// `doveadm kick` exits 68 when the account had no session: not an error.
const NO_USERS_KICKED: i32 = 68;

/// Why `doveadm kick` would not take `user` as exactly this one account, if it would
/// not. Dovecot 2.3 (doveadm-who.c, `who_parse_args`) reads a kick argument that
/// parses as an IP address or network (`net_parse_range`) as one, so `0.0.0.0/0`
/// kicks everyone, and any other argument as a case-insensitive wildcard mask, so
/// `*@example.test` kicks a whole domain. The flush has neither: auth-cache.c
/// compares the name with each entry's key literally.
pub fn kick_refusal(user: &SaslUser) -> Option<String> {
    let name = user.as_str();
    let what = if name.contains(['*', '?']) {
        "a wildcard mask ('*' or '?')"
    } else if looks_like_network(name) {
        "an IP address or network"
    } else {
        return None;
    };
    Some(format!(
        "sessions not kicked: doveadm kick would read {name:?} as {what} and could \
         disconnect other accounts; refused, and no retry will change that \
         (find this account's sessions with `doveadm who` and kick them by hand)"
    ))
}

/// Whether Dovecot's `net_parse_range` could take `name` as `ip[/bits]`. Errs towards
/// yes: IPv4 goes through inet_aton, which also takes `10`, `0x7f.1` or `010.1`, so
/// any digit-led run of hex digits, `x` and dots counts, as does any run of hex digits,
/// colons and dots with a colon (IPv6, optionally in brackets).
fn looks_like_network(name: &str) -> bool {
    let addr = name.split('/').next().unwrap_or(name);
    if addr.contains(':') {
        let inner = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr);
        inner
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
    } else {
        addr.starts_with(|c: char| c.is_ascii_digit())
            && addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || matches!(c, 'x' | 'X' | '.'))
    }
}

/// `doveadm auth cache flush -- USER`.
pub fn flush(cfg: &Config, user: &SaslUser) -> Result<String, String> {
    let doveadm = &cfg.contain.doveadm;
    let timeout = cfg.contain.actions.command_timeout;
    let flushed = exec::run(
        doveadm,
        &["auth", "cache", "flush", "--", user.as_str()],
        None,
        timeout,
    )?;
    if !flushed.success() {
        return Err(flushed.failure(doveadm));
    }
    Ok(flushed.first_line())
}

/// Flushes Dovecot's auth cache for `user` and kicks its sessions. A kick that
/// `kick_refusal` refuses never runs, and no retry changes that; the flush matches the
/// name literally, so it still runs.
pub fn flush_and_kick(cfg: &Config, user: &SaslUser) -> Outcome {
    let flushed = match flush(cfg, user) {
        Ok(flushed) => flushed,
        Err(e) => return Outcome::Failed(e),
    };
    if let Some(why) = kick_refusal(user) {
        return Outcome::Refused(format!("{flushed}; {why}"));
    }
    let doveadm = &cfg.contain.doveadm;
    let timeout = cfg.contain.actions.command_timeout;
    match exec::run(doveadm, &["kick", "--", user.as_str()], None, timeout) {
        Err(e) => Outcome::Failed(e),
        Ok(kicked) => match kicked.code {
            Some(0) => Outcome::Done(format!("{flushed}; sessions kicked")),
            Some(NO_USERS_KICKED) => Outcome::Done(format!("{flushed}; no open session")),
            _ => Outcome::Failed(kicked.failure(doveadm)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(name: &str) -> bool {
        kick_refusal(&SaslUser::parse(name).unwrap()).is_some()
    }

    #[test]
    fn masks_and_networks_are_refused() {
        for name in [
            "*@example.test",
            "*",
            "al?ce@example.test",
            "0.0.0.0/0",
            "10",
            "0x7f.1",
            "010.0.0.1/8",
            "::",
            "::/0",
            "[2001:db8::1]/32",
            "::ffff:10.0.0.1",
        ] {
            assert!(refused(name), "{name}");
        }
    }

    #[test]
    fn ordinary_names_pass() {
        for name in [
            "alice@example.test",
            "-h",
            "--all",
            "bob",
            "1st.floor@example.test",
            "deadbeef",
            "ab:cd:user",
            "user/0",
        ] {
            assert!(!refused(name), "{name}");
        }
    }
}
