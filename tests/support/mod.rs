//! Shared harness for tests that run the real binary the way Fail2ban and admins do:
//! a private temp directory holding the config and the SQLite database.

pub mod changes;
pub mod corpus;
pub mod debian_root;
pub mod dovecot;
pub mod fail2ban;
pub mod faults;
pub mod http;
pub mod imap;
pub mod journal;
pub mod mailstack;
pub mod mmdb;
pub mod policy_service;
pub mod postgres;
pub mod roundcube;
pub mod smtp_client;
pub mod smtp_sink;

pub use faults::{integrity, SmallDisk, SqliteLock};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_f2b-mailguard");

/// A fixed log time (2026-11-23 07:00:00 UTC) so tests never depend on the clock.
pub const T0: i64 = 1_795_417_200;

/// Polls `ok` until it holds; panics naming `what` once `timeout` has passed.
#[track_caller]
pub fn wait_until(what: &str, timeout: Duration, ok: impl FnMut() -> bool) {
    assert!(try_wait_until(timeout, ok), "timed out waiting for {what}");
}

/// Polls `ok` until it holds or `timeout` has passed; whether it held. For waits
/// whose failure message needs what was seen last (keep it in the closure).
pub fn try_wait_until(timeout: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Panics unless the process behind `out` succeeded, naming `what` and showing its
/// exit status and output.
#[track_caller]
pub fn assert_success(what: impl std::fmt::Display, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A command's exit status and output, for assertion messages.
pub fn described(out: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The `[actions]` table of a server whose levels queue nothing.
/// The `i`-th host (from 0, below 200) of a botnet: each in a /16 of its own, as
/// real botnets' hosts are, outside the built-in whitelist (198.51.100.7,
/// 198.52.100.7, ...; the first is a documentation address).
pub fn bot(i: i64) -> String {
    format!("198.{}.100.7", 51 + i)
}

pub const NO_ACTIONS: &str = "[actions]\nnotify = []\nblock = []\nlock = []\n";

/// Wall-clock seconds since 1970, for tests that mix log time with real actions.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// The text at `key` of each item of the JSON array `list`.
pub fn texts<'a>(list: &'a serde_json::Value, key: &str) -> Vec<&'a str> {
    (list.as_array().expect("a JSON array").iter())
        .map(|item| item[key].as_str().expect("a string"))
        .collect()
}

/// The first action of `kind` in a `status USER --json`.
pub fn action<'a>(d: &'a serde_json::Value, kind: &str) -> Option<&'a serde_json::Value> {
    d["actions"]
        .as_array()
        .expect("actions array")
        .iter()
        .find(|a| a["kind"] == kind)
}

pub struct Sandbox {
    pub dir: tempfile::TempDir,
    /// Whether containment actions run; off unless a test is about them, so no
    /// worker is started behind other tests' backs.
    actions: bool,
    /// Extra environment for every run (e.g. MAIL_CONFIG of a private Postfix),
    /// inherited by the worker `record` starts.
    pub env: Vec<(String, PathBuf)>,
}

impl Sandbox {
    /// A sandbox whose config holds `config` (TOML) plus the database path, with
    /// every containment action switched off.
    pub fn new(config: &str) -> Self {
        Self::build(config, false)
    }

    /// A sandbox with the defaults and, if given, `asn_database` as its ASN database.
    pub fn with_asn(asn_database: Option<&Path>) -> Self {
        Self::new(&asn_database.map_or(String::new(), |p| {
            format!(
                "[ownership]\nasn_database = {:?}\n",
                p.display().to_string()
            )
        }))
    }

    /// A sandbox whose config (with an `[actions]` table or the defaults) queues actions.
    pub fn acting(config: &str) -> Self {
        Self::build(config, true)
    }

    /// Server `server` on the store `database` (a SQLite path or a PostgreSQL URL),
    /// with its own `local_dir`; `rest` holds the other settings and tables.
    pub fn server(database: &str, server: &str, rest: &str) -> Self {
        let s = Self::new("");
        std::fs::write(
            s.config_path(),
            format!(
                "database = {database:?}\nlocal_dir = {:?}\nserver_name = {server:?}\n{rest}",
                s.path().join("local").display().to_string()
            ),
        )
        .expect("config");
        s
    }

    /// The spool of a server on a shared store (in the `local_dir` `server` sets).
    pub fn shared_spool(&self) -> PathBuf {
        self.path().join("local/postgresql.spool")
    }

    /// The logins waiting in `shared_spool`.
    pub fn spooled_shared(&self) -> usize {
        std::fs::read_to_string(self.shared_spool())
            .unwrap_or_default()
            .lines()
            .count()
    }

    fn build(config: &str, actions: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = Self {
            dir,
            actions,
            env: Vec::new(),
        };
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
        let mut text = format!(
            "database = {:?}\n{extra}\n",
            self.db().display().to_string()
        );
        if !self.actions {
            text.push_str("[actions]\nnotify = []\nblock = []\nlock = []\n");
        }
        std::fs::write(self.config_path(), text).expect("write config");
    }

    /// The binary with this sandbox's config, and no outside environment leaking in.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env_remove("F2B_MAILGUARD_DB")
            .env("F2B_MAILGUARD_CONFIG", self.config_path())
            .env("NO_COLOR", "1");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run f2b-mailguard")
    }

    /// Runs and insists on success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_success(format_args!("f2b-mailguard {args:?}"), &out);
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// What Fail2ban's action runs for one matched successful login.
    /// Stored at once: a login kept in a spool would say so on stderr.
    pub fn record(&self, source: &str, user: &str, ip: &str, time: i64) {
        self.record_with(source, user, ip, time, None);
    }

    /// `record --count`: `count` logins or messages in one call (the shipped rate and
    /// bounce jails pass 1 a message or bounced recipient; other callers may sum).
    pub fn record_count(&self, source: &str, user: &str, ip: &str, time: i64, count: u32) {
        self.record_with(source, user, ip, time, Some(count));
    }

    fn record_with(&self, source: &str, user: &str, ip: &str, time: i64, count: Option<u32>) {
        let mut args = vec![
            "record".to_owned(),
            format!("--source={source}"),
            "--jail=test".to_owned(),
            format!("--user={user}"),
            format!("--ip={ip}"),
            format!("--time={time}.0"),
        ];
        args.extend(count.map(|n| format!("--count={n}")));
        let out = self.cmd().args(&args).output().expect("run f2b-mailguard");
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "record must succeed and print nothing: {}",
            described(&out)
        );
    }

    /// A botnet's burst: `n` SMTP logins of `user`, one a second from `first`, each
    /// from another /16 as a botnet's hosts are (198.51.100.7, 198.52.100.7, ...), so
    /// the count escalates on a first day without an ASN database too.
    pub fn burst(&self, user: &str, n: usize, first: i64) {
        self.each(n as i64, first, "smtp", user, bot);
    }

    /// `n` logins of `user` through `source`, one a second from `first`, the i-th
    /// (from 0) from the address `addr(i)`.
    pub fn each(&self, n: i64, first: i64, source: &str, user: &str, addr: impl Fn(i64) -> String) {
        for i in 0..n {
            self.record(source, user, &addr(i), first + i);
        }
    }

    /// `record` into the database `db` (or the sandbox's), without asserting success:
    /// for tests about failures.
    pub fn try_record(&self, db: Option<&Path>, user: &str, ip: &str, time: Option<i64>) -> Output {
        let mut c = self.cmd();
        if let Some(db) = db {
            c.arg("--db").arg(db);
        }
        c.args([
            "record",
            "--source=smtp",
            "--jail=test",
            &format!("--user={user}"),
            &format!("--ip={ip}"),
        ]);
        if let Some(t) = time {
            c.arg(format!("--time={t}"));
        }
        c.output().expect("run f2b-mailguard")
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

    /// Waits until `ok` holds for the account's `status USER --json`, returning it.
    pub fn wait_user(
        &self,
        user: &str,
        what: &str,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut d = serde_json::Value::Null;
        let held = try_wait_until(Duration::from_secs(30), || {
            d = self.status_user(user, now());
            ok(&d)
        });
        assert!(held, "timed out waiting for {what}: {d:#}");
        d
    }

    /// Waits until the account's first action of `kind` satisfies `ok`, returning the
    /// account's `status USER --json` and that action.
    pub fn wait_action(
        &self,
        user: &str,
        kind: &str,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> (serde_json::Value, serde_json::Value) {
        let d = self.wait_user(user, &format!("{kind} to settle"), |d| {
            action(d, kind).is_some_and(&ok)
        });
        let a = action(&d, kind).cloned().expect("waited for it");
        (d, a)
    }

    /// `ingest --json` of `input` (JSON lines) into the scratch database `scratch`,
    /// insisting on success; returns its report.
    pub fn ingest(&self, scratch: &Path, input: String) -> String {
        use std::io::Write;
        use std::process::Stdio;
        let mut child = self
            .cmd()
            .arg("--db")
            .arg(scratch)
            .args(["ingest", "--json"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("f2b-mailguard ingest");
        let mut stdin = child.stdin.take().expect("stdin");
        // Fed from a thread: ingest writes while it reads, and a full pipe would stall.
        let feed = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out = child.wait_with_output().expect("ingest");
        feed.join().expect("feed").expect("write stdin");
        assert_success("ingest", &out);
        String::from_utf8(out.stdout).expect("utf-8 report")
    }

    /// Rows in a table, read straight from the SQLite file; 0 before the file or its
    /// schema exists (a long-lived `stream` child creates both with its first batch).
    pub fn rows(&self, table: &str) -> i64 {
        if !self.db().exists() {
            return 0;
        }
        let conn = rusqlite::Connection::open(self.db()).expect("open db");
        let exists: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .expect("read the schema");
        if exists == 0 {
            return 0;
        }
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .expect("count rows")
    }
}

impl Drop for Sandbox {
    /// Stops, by pid, any `run-actions` worker a `record` of this sandbox started.
    fn drop(&mut self) {
        let config = self.config_path().display().to_string();
        for pid in processes_mentioning(&config) {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

/// Pids of processes whose command line contains `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}
