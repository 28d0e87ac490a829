//! The mailguard jails as configured: their filters (for doctor) and the log backend
//! each should use on this system (for install.sh and the package's postinst, through
//! `f2b-mailguard generate fail2ban-backend`: the one place that choice is made).

use std::collections::BTreeMap;
use std::path::Path;

use super::{Finding, Status};

/// The shipped jails, compiled in: the backend choice needs no installed file.
const SHIPPED: &str = include_str!("../../fail2ban/jail.d/mailguard.conf");

/// The file the backend choice is written to, read after mailguard.conf and before the
/// admin's mailguard.local ('-' sorts before '.'), so the admin's settings win.
pub const BACKEND_LOCAL: &str = "jail.d/mailguard-backend.local";

/// `key = value` settings per `[section]` of a Fail2ban ini text (no continuation
/// lines: the mailguard files have none).
pub(super) fn sections(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_owned();
        } else if let Some((k, v)) = line.split_once('=') {
            out.entry(section.clone())
                .or_default()
                .insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    out
}

/// Each mailguard jail's `filter =`, from jail.d/mailguard.conf and then .local, as
/// Fail2ban reads them (fail2ban-client does not report a jail's filter).
pub fn filters(conf_dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for name in ["mailguard.conf", "mailguard.local"] {
        let Ok(text) = std::fs::read_to_string(conf_dir.join("jail.d").join(name)) else {
            continue;
        };
        for (jail, keys) in sections(&text) {
            if let Some(f) = keys.get("filter") {
                out.insert(jail, f.clone());
            }
        }
    }
    out
}

/// The content of [`BACKEND_LOCAL`] for the system below `root`: each shipped jail
/// whose log file is missing there reads the systemd journal instead (Debian 12 has
/// no rsyslog, so no /var/log/mail.log), since a jail without its log stops all of
/// Fail2ban from starting. Jails whose log exists keep it. The first comment line,
/// after "# choice: ", sums the choice up for install.sh to print.
pub fn backend_local(root: &Path) -> String {
    let mut journal = Vec::new();
    let mut files = Vec::new();
    for (jail, keys) in sections(SHIPPED) {
        let Some(log) = keys.get("logpath") else {
            continue;
        };
        if root.join(log.trim_start_matches('/')).exists() {
            files.push((jail, log.clone()));
        } else {
            journal.push((jail, log.clone()));
        }
    }
    let summary = match (journal.is_empty(), files.is_empty()) {
        (true, _) => "every mailguard jail reads its log file".to_owned(),
        (false, true) => "every mailguard jail reads the systemd journal".to_owned(),
        (false, false) => format!(
            "the systemd journal for {}; log files for the others",
            journal
                .iter()
                .map(|(j, _)| j.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut out = format!(
        "# choice: {summary}\n\
         # Written by `f2b-mailguard generate fail2ban-backend` (install.sh, the package)\n\
         # and rewritten by each install (unless edited: the checksum below then no longer\n\
         # matches and the file is kept): settings of your own go in mailguard.local.\n\
         # A jail whose log file is missing would stop all of Fail2ban from starting.\n"
    );
    for (jail, log) in &files {
        out.push_str(&format!("\n# [{jail}] reads {log}\n"));
    }
    for (jail, log) in &journal {
        let note = if jail == "mailguard-webmail" {
            "; Roundcube must then log with log_driver = syslog"
        } else {
            ""
        };
        out.push_str(&format!(
            "\n# {log} does not exist: the journal (the filter's journalmatch{note})\n[{jail}]\nbackend = systemd\n"
        ));
    }
    out
}

/// The last line of a generated backend file: the SHA-256 of everything above it. A
/// file whose checksum no longer matches was edited by the admin and is never replaced.
const STAMP: &str = "# sha256: ";

/// [`backend_local`] with its checksum line.
pub fn backend_local_stamped(root: &Path) -> String {
    stamp(&backend_local(root))
}

fn stamp(body: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("{body}{STAMP}{:x}\n", Sha256::digest(body.as_bytes()))
}

/// What an existing backend file is: as generated (its body, without the checksum
/// line), or edited (or written by hand) and so the admin's.
#[derive(Debug, PartialEq)]
pub enum Existing {
    Generated(String),
    Edited,
}

pub fn existing(text: &str) -> Existing {
    let body_end = text.trim_end_matches('\n').rfind('\n').map_or(0, |i| i + 1);
    let body = &text[..body_end];
    if text[body_end..].starts_with(STAMP) && stamp(body) == text {
        Existing::Generated(body.to_owned())
    } else {
        Existing::Edited
    }
}

/// Is the backend file in `conf_dir` the one this system needs now? Its choice
/// follows which log files exist: after installing rsyslog (or removing it) the file
/// must be generated again. One the admin edited is theirs.
pub(super) fn check_backend(conf_dir: &Path, out: &mut Vec<Finding>) {
    const AREA: &str = "fail2ban";
    let path = conf_dir.join(BACKEND_LOCAL);
    // Jails installed by hand or not at all: nothing generated to compare.
    if !conf_dir.join("jail.d/mailguard.conf").exists() {
        return;
    }
    let fix = if conf_dir == Path::new("/etc/fail2ban") {
        "f2b-mailguard generate fail2ban-backend && fail2ban-client reload".to_owned()
    } else {
        format!(
            "f2b-mailguard generate fail2ban-backend --stdout > {} && fail2ban-client reload",
            path.display()
        )
    };
    let now = backend_local(Path::new("/"));
    let choice = now
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# choice: "))
        .unwrap_or_default()
        .to_owned();
    match std::fs::read_to_string(&path).map(|t| existing(&t)) {
        Err(e) => out.push(Finding::new(
            Status::Warn,
            AREA,
            format!("{} cannot be read ({e}): a jail whose log file is missing stops all of Fail2ban", path.display()),
            Some(fix),
        )),
        Ok(Existing::Edited) => out.push(Finding::ok(
            AREA,
            format!("{} was edited: kept as it is (generated now: {choice})", path.display()),
        )),
        Ok(Existing::Generated(body)) if body == now => out.push(Finding::ok(
            AREA,
            format!("{} is current: {choice}", path.display()),
        )),
        Ok(Existing::Generated(_)) => out.push(Finding::new(
            Status::Warn,
            AREA,
            format!(
                "{} no longer fits the log files here (rsyslog installed or removed since): it must be generated again, for {choice}",
                path.display()
            ),
            Some(fix),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_log_chooses_the_journal_an_existing_one_keeps_the_file() {
        let root = tempfile::tempdir().expect("tmp");
        let text = backend_local(root.path());
        let s = sections(&text);
        assert_eq!(s["mailguard-smtp"]["backend"], "systemd", "{text}");
        assert_eq!(s["mailguard-webmail"]["backend"], "systemd", "{text}");
        assert!(text.starts_with("# choice: every mailguard jail reads the systemd journal"));

        std::fs::create_dir_all(root.path().join("var/log")).expect("mkdir");
        std::fs::write(root.path().join("var/log/mail.log"), "").expect("mail.log");
        let text = backend_local(root.path());
        let s = sections(&text);
        assert!(!s.contains_key("mailguard-smtp"), "{text}");
        assert_eq!(s["mailguard-webmail"]["backend"], "systemd", "{text}");
        assert!(text.contains("# [mailguard-bounce] reads /var/log/mail.log"));
    }

    #[test]
    fn a_generated_file_is_recognised_an_edited_one_is_not() {
        let root = tempfile::tempdir().expect("tmp");
        let text = backend_local_stamped(root.path());
        assert_eq!(
            existing(&text),
            Existing::Generated(backend_local(root.path()))
        );
        let edited = text.replace("backend = systemd", "backend = polling");
        assert_eq!(existing(&edited), Existing::Edited);
        assert_eq!(
            existing("[mailguard-smtp]\nbackend = auto\n"),
            Existing::Edited
        );
        assert_eq!(existing(""), Existing::Edited);
    }
}
