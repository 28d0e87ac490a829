//! Fail2ban: installed and new enough, running, the mailguard jails loaded, each
//! reading a log that is written, matching, and calling this binary with this config.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{Finding, Status};
use crate::actions::exec;
use crate::config::Config;
use crate::files::same_file;

const AREA: &str = "fail2ban";
/// A log not written for this long is probably not the one the mail server writes.
const STALE: Duration = Duration::from_secs(24 * 3600);

fn client(cfg: &Config, args: &[&str]) -> Result<String, String> {
    let program = &cfg.fail2ban.client;
    let socket = cfg.fail2ban.socket.display().to_string();
    let all: Vec<&str> = ["-s", socket.as_str()]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    let ran = exec::run(program, &all, None, cfg.contain.actions.command_timeout)?;
    if !ran.success() {
        // fail2ban-client prefixes its errors with a time stamp and a log level.
        let line = ran.first_line();
        return Err(line
            .split_once("ERROR")
            .map_or(line.clone(), |(_, m)| m.trim().to_owned()));
    }
    Ok(String::from_utf8_lossy(&ran.stdout).into_owned())
}

/// `Fail2Ban v1.0.2` -> (1, 0).
fn version(text: &str) -> Option<(u32, u32)> {
    let v = text.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    let mut parts = v.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

pub fn check(cfg: &Config, out: &mut Vec<Finding>) {
    let program = &cfg.fail2ban.client;
    let installed = exec::run(
        program,
        &["--version"],
        None,
        cfg.contain.actions.command_timeout,
    );
    let text = match installed {
        Ok(r) if r.success() => String::from_utf8_lossy(&r.stdout).into_owned(),
        _ => {
            out.push(Finding::new(
                Status::Fail,
                AREA,
                format!(
                    "{} does not run: Fail2ban is not installed",
                    program.display()
                ),
                Some("apt-get install fail2ban".into()),
            ));
            return;
        }
    };
    match version(&text) {
        Some((major, minor)) if (major, minor) >= (0, 10) => {
            out.push(Finding::ok(AREA, format!("{} installed", text.trim())))
        }
        _ => out.push(Finding::new(
            Status::Fail,
            AREA,
            format!(
                "{} is too old or unknown: 0.10 or later is needed",
                text.trim()
            ),
            Some("upgrade fail2ban".into()),
        )),
    }
    super::jails::check_backend(&cfg.fail2ban.config_dir, out);
    let (loads, ok) = super::startup::check(cfg);
    out.push(loads);
    if let Err(e) = client(cfg, &["ping"]) {
        // Starting it is the fix only once its configuration loads.
        let fix = if ok {
            "systemctl enable --now fail2ban"
        } else {
            "fix the configuration (above) first; systemctl enable --now fail2ban alone fails the same way"
        };
        out.push(Finding::new(
            Status::Fail,
            AREA,
            format!(
                "the server does not answer on {}: {e}",
                cfg.fail2ban.socket.display()
            ),
            Some(fix.into()),
        ));
        return;
    }
    let jails: Vec<String> = client(cfg, &["status"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once("Jail list:"))
        .flat_map(|(_, list)| {
            list.split(',')
                .map(|j| j.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|j| j.starts_with("mailguard-"))
        .collect();
    if jails.is_empty() {
        out.push(Finding::new(
            Status::Fail,
            AREA,
            "no mailguard jail is enabled: no login reaches f2b-mailguard",
            Some("printf '[mailguard-smtp]\\nenabled = true\\n' >> /etc/fail2ban/jail.d/mailguard.local && fail2ban-client reload".into()),
        ));
        return;
    }
    for jail in &jails {
        check_jail(cfg, jail, out);
    }
}

fn check_jail(cfg: &Config, jail: &str, out: &mut Vec<Finding>) {
    let get = |what: &[&str]| {
        client(cfg, &[&["get", jail][..], what].concat()).map(|t| t.trim().to_owned())
    };
    let actions = get(&["actions"]).unwrap_or_default();
    // The Python action (f2b_mailguard.py, the jails' default) or the command action;
    // both name the binary and the config they hand tickets to.
    let Some(action) = actions
        .lines()
        .skip(1)
        .map(str::trim)
        .find(|a| matches!(*a, "f2b_mailguard" | "mailguard"))
    else {
        out.push(Finding::new(
            Status::Fail,
            AREA,
            format!("jail {jail} does not use the mailguard action"),
            Some(format!(
                "action = %(mailguard_action)s[source=...] in the [{jail}] section"
            )),
        ));
        return;
    };
    let binary = get(&["action", action, "binary"]).unwrap_or_default();
    let config = get(&["action", action, "config"]).unwrap_or_default();
    let this = std::env::current_exe().unwrap_or_default();
    let ours = cfg
        .file
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_CONFIG));
    if same_file(Path::new(&binary), &this) && same_file(Path::new(&config), &ours) {
        out.push(Finding::ok(
            AREA,
            format!("jail {jail} runs {binary} with {config}"),
        ));
    } else {
        out.push(Finding::new(
            Status::Warn,
            AREA,
            format!(
                "jail {jail} runs {binary} with {config}; this is {} with {}",
                this.display(),
                ours.display()
            ),
            Some("set binary and config in /etc/fail2ban/action.d/mailguard.local [Init]".into()),
        ));
    }
    let logs: Vec<PathBuf> = get(&["logpath"])
        .unwrap_or_default()
        .lines()
        .skip(1)
        .map(|l| PathBuf::from(l.trim_start_matches(['|', '`', '-', ' '])))
        .collect();
    if logs.is_empty() {
        out.push(Finding::ok(
            AREA,
            format!("jail {jail} reads the systemd journal"),
        ));
    }
    for log in &logs {
        let meta = std::fs::File::open(log).and_then(|f| f.metadata());
        match meta {
            Err(e) => out.push(Finding::new(
                Status::Fail,
                AREA,
                format!("jail {jail}: {} cannot be read: {e}", log.display()),
                Some(
                    "point logpath at the file the mail server writes, or use backend = systemd"
                        .into(),
                ),
            )),
            Ok(m) => {
                let age = m
                    .modified()
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .unwrap_or_default();
                if age > STALE {
                    out.push(Finding::new(
                        Status::Warn,
                        AREA,
                        format!("jail {jail}: {} was last written {} h ago", log.display(), age.as_secs() / 3600),
                        Some("is this the log the mail server writes now? (Debian 12 without rsyslog: backend = systemd)".into()),
                    ));
                } else {
                    out.push(Finding::ok(
                        AREA,
                        format!("jail {jail} reads {}", log.display()),
                    ));
                }
            }
        }
    }
    let filter = super::jails::filters(&cfg.fail2ban.config_dir).remove(jail);
    if let Some(filter) = &filter {
        for log in &logs {
            if let Some(f) = regex_on_tail(cfg, log, filter, jail) {
                out.push(f);
            }
        }
    }
    // What a match is depends on the jail: rate and bounce jails count mail.
    let source = get(&["action", action, "source"]);
    if source.as_deref() == Ok("rate") && cfg.policy.counts_messages() {
        out.push(super::policy::rate_jail(cfg, jail));
    }
    let what = match source.as_deref() {
        Ok("rate") => "message",
        Ok("bounces") => "bounce",
        _ => "login",
    };
    let matched = client(cfg, &["status", jail])
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.split_once("Total failed:")
                .and_then(|(_, n)| n.trim().parse::<u64>().ok())
        });
    match matched {
        // A note, not a warning: a jail with nothing to match yet (POP3 enabled, no POP3
        // user) would otherwise keep doctor's exit code at 1 for good.
        Some(0) | None => out.push(Finding::new(
            Status::Note,
            AREA,
            format!("jail {jail}: its filter has matched no {what} since Fail2ban started (normal until the first one; if they happen, check the filter)"),
            regex_fix(cfg, &logs, filter.as_deref()),
        )),
        Some(n) => out.push(Finding::ok(
            AREA,
            format!("jail {jail} matched {n} {what}(s) since Fail2ban started"),
        )),
    }
}

/// The fail2ban-regex command that shows whether the jail's input matches its filter:
/// its log files, or the journal.
fn regex_fix(cfg: &Config, logs: &[PathBuf], filter: Option<&str>) -> Option<String> {
    let filter = filter?;
    let conf = cfg.fail2ban.config_dir.display();
    let sources: Vec<String> = if logs.is_empty() {
        vec!["systemd-journal".into()]
    } else {
        logs.iter().map(|l| l.display().to_string()).collect()
    };
    Some(
        sources
            .iter()
            .map(|s| format!("fail2ban-regex -c {conf} {s} '{filter}'"))
            .collect::<Vec<_>>()
            .join("; ")
            + "   shows whether its lines match",
    )
}

/// Lines of a log's end the filter is tried on.
const TAIL_LINES: usize = 1000;
const TAIL_BYTES: u64 = 1 << 20;

/// Runs fail2ban-regex with the jail's filter on the last lines of its log.
fn regex_on_tail(cfg: &Config, log: &Path, filter: &str, jail: &str) -> Option<Finding> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(log).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)))
        .ok()?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
    if tail.is_empty() {
        return Some(Finding::warn(
            AREA,
            format!("jail {jail}: {} is empty", log.display()),
        ));
    }
    // A fresh private directory with a random name: a fixed name in /tmp could be
    // taken (or linked) by any local user first.
    let dir = tempfile::Builder::new()
        .prefix("f2b-mailguard-doctor.")
        .tempdir()
        .ok()?;
    let sample = dir.path().join("tail.log");
    std::fs::write(&sample, tail.join("\n") + "\n").ok()?;
    let regex = cfg.fail2ban.client.with_file_name("fail2ban-regex");
    let conf = cfg.fail2ban.config_dir.display().to_string();
    let sample_arg = sample.display().to_string();
    let ran = exec::run(
        &regex,
        &["-c", &conf, &sample_arg, filter],
        None,
        cfg.contain.actions.command_timeout,
    );
    drop(dir);
    let ran = ran.ok()?;
    let summary = String::from_utf8_lossy(&ran.stdout).into_owned();
    let counts = summary
        .lines()
        .find(|l| l.starts_with("Lines:"))?
        .to_owned();
    let matched: u64 = counts
        .split(", ")
        .find_map(|p| p.strip_suffix(" matched"))?
        .trim()
        .parse()
        .ok()?;
    Some(if matched > 0 {
        Finding::ok(
            AREA,
            format!(
                "jail {jail}: {filter} matches {matched} of the last {} lines of {}",
                tail.len(),
                log.display()
            ),
        )
    } else {
        Finding::new(
            Status::Note,
            AREA,
            format!("jail {jail}: {filter} matches none of the last {} lines of {}: nothing to match yet, a wrong log, or a format the filter misses", tail.len(), log.display()),
            Some(format!("fail2ban-regex {} {filter}", log.display())),
        )
    })
}
