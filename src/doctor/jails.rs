//! The mailguard jails as configured: their filters (for doctor) and the log backend
//! each should use on this system (for install.sh and the package's postinst, through
//! `f2b-mailguard generate fail2ban-backend`: the one place that choice is made).

use std::collections::BTreeMap;
use std::path::Path;

/// The shipped jails, compiled in: the backend choice needs no installed file.
const SHIPPED: &str = include_str!("../../fail2ban/jail.d/mailguard.conf");

/// The file the backend choice is written to, read after mailguard.conf and before the
/// admin's mailguard.local ('-' sorts before '.'), so the admin's settings win.
pub const BACKEND_LOCAL: &str = "jail.d/mailguard-backend.local";

/// `key = value` settings per `[section]` of a Fail2ban ini text (no continuation
/// lines: the mailguard files have none).
fn sections(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
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
         # and rewritten by each install: settings of your own go in mailguard.local.\n\
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
}
