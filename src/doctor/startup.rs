//! Can Fail2ban start with its configuration? `fail2ban-client -t` reads it as the
//! server would at start; one broken jail (on Debian 12 without rsyslog: the stock
//! sshd jail, whose /var/log/auth.log does not exist) aborts every jail, ours too.

use super::{Finding, Status};
use crate::actions::exec;
use crate::config::Config;

const AREA: &str = "fail2ban";

/// What `fail2ban-client -t` found wrong: its ERROR messages, without time stamps.
#[derive(Debug, PartialEq)]
pub struct Broken {
    pub errors: Vec<String>,
}

impl Broken {
    /// The jail Fail2ban names in its errors, if any.
    pub fn jail(&self) -> Option<&str> {
        self.errors.iter().find_map(|e| {
            e.strip_prefix("Have not found any log file for ")
                .and_then(|r| r.strip_suffix(" jail"))
                .or_else(|| {
                    e.strip_prefix("Errors in jail '")
                        .and_then(|r| r.strip_suffix("'."))
                })
        })
    }

    fn missing_log(&self) -> bool {
        self.errors
            .iter()
            .any(|e| e.starts_with("Have not found any log file"))
    }
}

/// The ERROR lines of fail2ban-client's output: `2026-12-01 19:15:29,312 fail2ban
/// [15315]: ERROR   Failed during configuration: X` gives `X`; the closing summary
/// ("test configuration failed") says nothing new.
/// When the output names the failure itself, only that is kept: lesser complaints
/// (an unreadable fail2ban.conf) come before it and do not stop the start.
pub fn parse(output: &str) -> Broken {
    let mut all: Vec<String> = Vec::new();
    let mut decisive: Vec<String> = Vec::new();
    for l in output.lines() {
        let Some((_, m)) = l.split_once(": ERROR") else {
            continue;
        };
        let m = m.trim();
        if m.ends_with("test configuration failed") || m.is_empty() {
            continue;
        }
        if let Some(cause) = m.strip_prefix("Failed during configuration:") {
            decisive.push(cause.trim().to_owned());
        } else if m.starts_with("Errors in jail") || m.starts_with("Unable to") {
            decisive.push(m.to_owned());
        }
        if !all.iter().any(|a| a == m) {
            all.push(m.to_owned());
        }
    }
    Broken {
        errors: if decisive.is_empty() { all } else { decisive },
    }
}

/// Runs `fail2ban-client -c DIR -t`: Ok when the configuration loads.
pub fn test_config(cfg: &Config) -> Result<(), Broken> {
    let dir = cfg.fail2ban.config_dir.display().to_string();
    let ran = exec::run(
        &cfg.fail2ban.client,
        &["-c", &dir, "-t"],
        None,
        cfg.contain.actions.command_timeout,
    )
    .map_err(|e| Broken { errors: vec![e] })?;
    if ran.success() {
        return Ok(());
    }
    let text =
        String::from_utf8_lossy(&ran.stderr).into_owned() + &String::from_utf8_lossy(&ran.stdout);
    let mut broken = parse(&text);
    if broken.errors.is_empty() {
        broken.errors.push(ran.failure(&cfg.fail2ban.client));
    }
    Err(broken)
}

/// The finding for the configuration test, with the fix for what it found.
pub fn check(cfg: &Config) -> (Finding, bool) {
    let dir = cfg.fail2ban.config_dir.display();
    let broken = match test_config(cfg) {
        Ok(()) => {
            return (
                Finding::ok(
                    AREA,
                    format!("configuration in {dir} loads (fail2ban-client -t)"),
                ),
                true,
            )
        }
        Err(b) => b,
    };
    let what = broken.errors.join("; ");
    let (message, fix) = match broken.jail() {
        Some(jail) if broken.missing_log() => (
            format!("Fail2ban cannot start, so no jail runs, ours neither: jail {jail}: {what} (fail2ban-client -c {dir} -t)"),
            format!(
                "printf '[{jail}]\\nbackend = systemd\\n' > {dir}/jail.d/{jail}-journal.local && fail2ban-client -t && systemctl restart fail2ban   \
                 (the journal: Debian 12 logs there without rsyslog; or apt-get install rsyslog, which writes the log files)"
            ),
        ),
        Some(jail) => (
            format!("Fail2ban cannot start, so no jail runs, ours neither: jail {jail}: {what} (fail2ban-client -c {dir} -t)"),
            format!("correct or disable [{jail}] (enabled = false) in {dir}/jail.d/, then fail2ban-client -t && systemctl restart fail2ban"),
        ),
        None => (
            format!("Fail2ban cannot start, so no jail runs: {what} (fail2ban-client -c {dir} -t)"),
            format!("correct {dir} until fail2ban-client -t passes, then systemctl restart fail2ban"),
        ),
    };
    (Finding::new(Status::Fail, AREA, message, Some(fix)), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jail_at_fault_is_read_from_fail2bans_errors() {
        let out = "2026-12-01 19:15:29,306 fail2ban.configreader   [15315]: WARNING 'allowipv6' not defined\n\
                   2026-12-01 19:15:29,312 fail2ban                [15315]: ERROR   Failed during configuration: Have not found any log file for sshd jail\n\
                   2026-12-01 19:15:29,312 fail2ban                [15315]: ERROR   ERROR: test configuration failed\n";
        let b = parse(&format!("x [1]: ERROR   No section: 'Definition'\n{out}"));
        assert_eq!(b.errors, ["Have not found any log file for sshd jail"]);
        assert_eq!(b.jail(), Some("sshd"));
        assert!(b.missing_log());
        let b = parse("x [1]: ERROR   Unable to read the filter 'nosuch'\nx [1]: ERROR   Errors in jail 'mailguard-smtp'.\n");
        assert_eq!(b.jail(), Some("mailguard-smtp"));
        assert!(!b.missing_log());
    }
}
