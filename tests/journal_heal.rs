//! Healing what Fail2ban drops with the journal backend (Debian 12 without rsyslog):
//! the same burst as fail2ban_heal, written as Postfix's journal entries by one
//! systemd-journal-remote process into a private journal file that the three message
//! jails read (`backend = systemd[journalfiles=...]`). Fail2ban restarted or killed
//! mid-burst goes on from the time it saved; the action re-reads the journal from the
//! cursor of its checkpoint, so every message, bounce and login is stored exactly once,
//! and re-reading everything again adds nothing.

use crate::fail2ban_heal::{interrupted_mid_burst, reread_everything, N};
use crate::fail2ban_reconcile::write_to;
use crate::support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::AtomicU32;
use std::sync::Mutex;
use std::time::Duration;

use support::fail2ban::{Jail, MESSAGE_JAILS};
use support::Sandbox;

/// One systemd-journal-remote writing `file` from journal export entries on its input,
/// as journald writes what Postfix logs; stopped by its pid.
struct JournalWriter {
    child: Child,
    input: Option<ChildStdin>,
    seq: u64,
}

impl JournalWriter {
    /// Started with one entry no jail matches, so the file exists for Fail2ban.
    fn start(file: &Path) -> Self {
        let mut child = support::journal::journal_remote(file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("systemd-journal-remote");
        let input = child.stdin.take();
        let mut w = Self {
            child,
            input,
            seq: 0,
        };
        let t = support::now() - 1;
        w.syslog(&["x mx postfix/master[900]: daemon started".to_owned()], t);
        support::wait_until("the journal file", Duration::from_secs(30), || {
            file.is_file()
        });
        w
    }

    /// Syslog lines ("STAMP mx IDENT[PID]: MESSAGE") as Postfix's entries at `t`.
    fn syslog(&mut self, lines: &[String], t: i64) {
        let mut export = String::new();
        for line in lines {
            let rest = &line[line.find(" mx ").expect("host") + 4..];
            let (tag, message) = rest.split_once(": ").expect("tag");
            let (ident, pid) = tag.trim_end_matches(']').split_once('[').expect("pid");
            self.seq += 1;
            export.push_str(&format!(
                "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n\
                 _BOOT_ID=5e1f0c2a9b8d4e7fa1c3b5d7e9f00112\n_HOSTNAME=mx\n\
                 _SYSTEMD_UNIT=postfix@-.service\n_SYSTEMD_SLICE=system-postfix.slice\n\
                 SYSLOG_IDENTIFIER={ident}\n_PID={pid}\nPRIORITY=6\nMESSAGE={message}\n\n",
                t * 1_000_000,
                self.seq * 1000,
            ));
        }
        let input = self.input.as_mut().expect("input");
        input.write_all(export.as_bytes()).expect("export");
        input.flush().expect("flush");
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        // The end of its input ends it; by its pid if it does not.
        drop(self.input.take());
        if !support::try_wait_until(Duration::from_secs(10), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        }) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The journal file and its writer, and the jail.d file that points the three message
/// jails at it.
fn journal(s: &Sandbox) -> (PathBuf, Mutex<JournalWriter>, String) {
    let file = s.path().join("mail.journal");
    let writer = Mutex::new(JournalWriter::start(&file));
    let local: String = MESSAGE_JAILS
        .iter()
        .map(|j| {
            format!(
                "[{j}]\nbackend = systemd[journalfiles={}]\n",
                file.display()
            )
        })
        .collect();
    (file, writer, local)
}

fn burst(writer: &Mutex<JournalWriter>, n: &AtomicU32) -> Vec<(u32, i64)> {
    write_to(
        &mut |lines, t| writer.lock().expect("writer").syslog(lines, t),
        0,
        N,
        n,
    )
}

/// The cursor of the journal's first entry (the writer's own, before the burst).
fn first_cursor(file: &Path) -> String {
    let out = support::fail2ban::stdout_of(
        Command::new("journalctl")
            .arg(format!("--file={}", file.display()))
            .args(["-o", "json", "--no-pager", "-n", "all"]),
    );
    let first: serde_json::Value =
        serde_json::from_str(out.lines().next().expect("an entry")).expect("json");
    first["__CURSOR"].as_str().expect("cursor").to_owned()
}

/// The burst interrupted (`kill`: SIGKILL, else SIGTERM), then everything re-read from
/// the journal's first entry: stored once, handed over again exactly.
fn interrupted_then_reread(kill: bool) {
    let s = Sandbox::new("");
    let (file, writer, local) = journal(&s);
    let jails = Jail::each(MESSAGE_JAILS, &file);
    let extra = [("jail.d/zz-journal.local", local.as_str())];
    let write = |n: &AtomicU32| burst(&writer, n);
    let (f2b, calls) = interrupted_mid_burst(&s, &jails, &extra, &write, kill);
    let first = first_cursor(&file);
    reread_everything(&s, f2b, &jails, &extra, &calls, &|l| {
        l["pos"] = first.clone().into();
        l["ctx"] = first.clone().into();
    });
}

#[test]
fn fail2ban_restarted_mid_burst_on_the_journal_loses_nothing_and_stores_nothing_twice() {
    interrupted_then_reread(false);
}

#[test]
fn fail2ban_killed_mid_burst_on_the_journal_loses_nothing_and_stores_nothing_twice() {
    interrupted_then_reread(true);
}
