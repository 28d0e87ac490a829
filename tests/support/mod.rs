//! Shared harness for tests that run the real binary the way Fail2ban and admins do:
//! a private temp directory holding the config and the SQLite database.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_f2b-mailguard");

/// A fixed log time (2026-11-23 07:00:00 UTC) so tests never depend on the clock.
pub const T0: i64 = 1_795_417_200;

pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    /// A sandbox whose config holds `config` (TOML) plus the database path.
    pub fn new(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = Self { dir };
        s.write_config(config);
        s
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn db(&self) -> PathBuf {
        self.path().join("state/mailguard.db")
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("config.toml")
    }

    pub fn write_config(&self, extra: &str) {
        let text = format!(
            "database = {:?}\n{extra}\n",
            self.db().display().to_string()
        );
        std::fs::write(self.config_path(), text).expect("write config");
    }

    /// The binary with this sandbox's config, and no outside environment leaking in.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env_remove("F2B_MAILGUARD_DB")
            .env("F2B_MAILGUARD_CONFIG", self.config_path())
            .env("NO_COLOR", "1");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run f2b-mailguard")
    }

    /// Runs and insists on success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "f2b-mailguard {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// What Fail2ban's action runs for one matched successful login.
    pub fn record(&self, source: &str, user: &str, ip: &str, time: i64) {
        let out = self.ok(&[
            "record",
            &format!("--source={source}"),
            "--jail=test",
            &format!("--user={user}"),
            &format!("--ip={ip}"),
            &format!("--time={time}.0"),
        ]);
        assert!(out.is_empty(), "record must print nothing, printed {out:?}");
    }

    pub fn status(&self, at: i64) -> serde_json::Value {
        let out = self.ok(&["status", "--json", &format!("--at={at}")]);
        serde_json::from_str(&out).expect("status --json is JSON")
    }

    pub fn status_user(&self, user: &str, at: i64) -> serde_json::Value {
        let out = self.ok(&["status", "--json", &format!("--at={at}"), "--", user]);
        serde_json::from_str(&out).expect("status USER --json is JSON")
    }

    /// The account's row in the overview, if listed.
    pub fn account(&self, user: &str, at: i64) -> Option<serde_json::Value> {
        self.status(at)["accounts"]
            .as_array()
            .expect("accounts array")
            .iter()
            .find(|a| a["user"] == user)
            .cloned()
    }

    /// Rows in a table, read straight from the SQLite file.
    pub fn rows(&self, table: &str) -> i64 {
        if !self.db().exists() {
            return 0;
        }
        let conn = rusqlite::Connection::open(self.db()).expect("open db");
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .expect("count rows")
    }
}
