//! Is `run-actions` run periodically? `record` starts it after a level rise, but a
//! retry (SMTP down, Postfix reloading) and the spool's drain wait for the next run:
//! the shipped timer, or a cron line.

use std::path::{Path, PathBuf};

use super::{Finding, Status};
use crate::config::Config;

const AREA: &str = "mailguard";
const TIMER: &str = "f2b-mailguard-actions.timer";

/// Where the timer's enablement and cron lines are looked for (overridable for tests).
pub struct Paths {
    /// `systemctl enable` links the timer into `DIR/timers.target.wants/`.
    pub systemd_dir: PathBuf,
    pub cron_dir: PathBuf,
    /// Exists only while systemd runs: a timer's symlink means nothing without it.
    pub systemd_running: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Self {
            systemd_dir: PathBuf::from("/etc/systemd/system"),
            cron_dir: PathBuf::from("/etc/cron.d"),
            systemd_running: PathBuf::from("/run/systemd/system"),
        }
    }
}

/// cron runs only files in cron.d whose names are letters, digits, `-` and `_`
/// (run-parts rules): `f2b-mailguard.cron` is silently skipped.
fn cron_runs(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The first active (uncommented) cron line in `dir` that runs `run-actions`, with
/// its file, and whether cron reads that file.
fn cron_line(dir: &Path) -> Option<(PathBuf, bool)> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    entries.into_iter().find_map(|path| {
        let text = std::fs::read_to_string(&path).ok()?;
        let active = text.lines().any(|l| {
            let l = l.trim();
            !l.starts_with('#') && l.contains("f2b-mailguard") && l.contains("run-actions")
        });
        let name = path.file_name()?.to_string_lossy().into_owned();
        active.then_some((path, cron_runs(&name)))
    })
}

/// The cron lines that stand in for the shipped timers without systemd: run-actions
/// every minute, queue-scan every minute (needs Postfix), prune daily. The one source
/// of these lines: doctor prints them and the docs quote doctor.
pub fn cron_lines(bin: &Path, config: Option<&Path>) -> Vec<String> {
    // The default config needs no --config: the lines then read as the docs show them.
    let config = config
        .filter(|c| *c != Path::new(crate::config::DEFAULT_CONFIG))
        .map(|c| format!(" --config {}", c.display()))
        .unwrap_or_default();
    let bin = bin.display();
    vec![
        format!("* * * * * root {bin}{config} run-actions"),
        format!("* * * * * root {bin}{config} queue-scan --quiet"),
        format!("17 3 * * * root {bin}{config} prune"),
    ]
}

pub fn check(cfg: &Config, paths: &Paths, out: &mut Vec<Finding>) {
    let link = paths.systemd_dir.join("timers.target.wants").join(TIMER);
    let bin = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("f2b-mailguard"));
    let cron_file = paths.cron_dir.join("f2b-mailguard");
    let cron_fix = format!(
        "printf '%s\\n' {} > {}",
        cron_lines(&bin, cfg.file.as_deref())
            .iter()
            .map(|l| format!("'{l}'"))
            .collect::<Vec<_>>()
            .join(" "),
        cron_file.display()
    );
    // exists() follows the link: one left by a removed unit does not count.
    let enabled = link.exists();
    if enabled && paths.systemd_running.is_dir() {
        out.push(Finding::ok(
            AREA,
            format!("{TIMER} is enabled: run-actions runs every minute"),
        ));
        return;
    }
    if enabled && cron_line(&paths.cron_dir).is_none() {
        out.push(Finding::new(
            Status::Warn,
            AREA,
            format!(
                "{TIMER} is enabled, but systemd is not running here (no {}): the timer never fires",
                paths.systemd_running.display()
            ),
            Some(format!("cron instead: {cron_fix}")),
        ));
        return;
    }
    match cron_line(&paths.cron_dir) {
        Some((file, true)) => out.push(Finding::ok(AREA, format!("{} runs run-actions", file.display()))),
        Some((file, false)) => out.push(Finding::new(
            Status::Warn,
            AREA,
            format!(
                "{} runs run-actions, but cron skips files whose names hold anything but letters, digits, - and _",
                file.display()
            ),
            Some(format!(
                "mv {} {}",
                file.display(),
                cron_file.display()
            )),
        )),
        None => {
            out.push(Finding::new(
                Status::Warn,
                AREA,
                format!(
                    "nothing runs run-actions periodically ({TIMER} not enabled, no line in {}): failed actions are not retried and spooled logins wait",
                    paths.cron_dir.display()
                ),
                Some(format!(
                    "systemctl enable --now {TIMER}   (without systemd: {cron_fix})"
                )),
            ));
        }
    }
}
