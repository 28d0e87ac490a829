//! Faults a store must survive, made for one test and undone when dropped: a disk
//! that fills up, a database another program holds locked.

use std::path::Path;
use std::process::Command;

/// A small tmpfs mounted for one test and unmounted when dropped.
pub struct SmallDisk {
    pub path: std::path::PathBuf,
}

impl SmallDisk {
    pub fn mount(path: std::path::PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&path).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&path)
            .status()
            .expect("mount (the tests run as root)");
        assert!(st.success(), "mounting a tmpfs needs root");
        Self { path }
    }

    pub fn remount(&self, opt: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{opt}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl SmallDisk {
    /// Fills the disk to the last block with a file `unfill` removes.
    pub fn fill(&self) {
        let mut f = std::fs::File::create(self.path.join("filler")).expect("filler");
        let chunk = vec![0u8; 4096];
        while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    }

    pub fn unfill(&self) {
        std::fs::remove_file(self.path.join("filler")).expect("remove filler");
    }

    /// Frees `bytes` of a filled disk, by shortening the filler.
    pub fn free(&self, bytes: u64) {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.path.join("filler"))
            .expect("filler");
        let len = f.metadata().expect("filler size").len();
        f.set_len(len.saturating_sub(bytes))
            .expect("shorten filler");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// SQLite's own check of a database file.
pub fn integrity(db: &Path) -> String {
    let conn = rusqlite::Connection::open(db).expect("open db");
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check")
}

/// An `sqlite3` shell holding a database's exclusive lock, as a backup or an admin's
/// session can: no other connection reads or writes it until `release`.
pub struct SqliteLock {
    child: std::process::Child,
}

impl SqliteLock {
    /// Returns once the shell holds the lock.
    pub fn hold(db: &Path) -> Self {
        use std::io::{BufRead, Write};
        let mut child = Command::new("sqlite3")
            .arg(db)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sqlite3 (Debian package sqlite3)");
        let stdin = child.stdin.as_mut().expect("sqlite3 stdin");
        writeln!(
            stdin,
            "BEGIN EXCLUSIVE;\nSELECT count(*) FROM users;\nSELECT 'held';"
        )
        .expect("to sqlite3");
        stdin.flush().expect("to sqlite3");
        let mut out = std::io::BufReader::new(child.stdout.as_mut().expect("sqlite3 stdout"));
        let mut line = String::new();
        while line.trim() != "held" {
            line.clear();
            let n = out.read_line(&mut line).expect("from sqlite3");
            assert!(n > 0, "sqlite3 ended without taking the lock");
        }
        Self { child }
    }

    /// Ends the transaction and the shell, and waits for it.
    pub fn release(mut self) {
        use std::io::Write;
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = writeln!(stdin, "ROLLBACK;\n.quit");
        }
        let _ = self.child.wait();
    }
}

impl Drop for SqliteLock {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            super::mailstack::kill(self.child.id());
            let _ = self.child.wait();
        }
    }
}
