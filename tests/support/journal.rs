//! Journal files for Fail2ban's systemd backend, written by the real
//! `systemd-journal-remote` from journal export format.

use std::path::Path;
use std::process::{Command, Stdio};

use super::fail2ban::need;

/// Writes journal files from journal export format (package systemd-journal-remote).
const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";

/// `systemd-journal-remote` writing the journal export format read on its stdin
/// into the journal file `out`; the caller chooses what its output goes to.
pub fn journal_remote(out: &Path) -> Command {
    need(JOURNAL_REMOTE);
    let mut cmd = Command::new(JOURNAL_REMOTE);
    cmd.arg(format!("--output={}", out.display()))
        .arg("-")
        .stdin(Stdio::piped());
    cmd
}

/// A real journal file at `out` holding the entries of `export` (journal export
/// format), for Fail2ban's systemd backend: `systemd-journal[journalfiles=OUT]`.
pub fn journal_file(export: &[u8], out: &Path) -> String {
    use std::io::Write;
    let mut child = journal_remote(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-journal-remote");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(export)
        .expect("export");
    let done = child.wait_with_output().expect("systemd-journal-remote");
    assert!(
        done.status.success() && out.is_file(),
        "systemd-journal-remote: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    format!("systemd-journal[journalfiles={}]", out.display())
}
