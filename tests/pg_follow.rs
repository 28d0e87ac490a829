//! `run-actions --follow`: on a shared PostgreSQL store, a server hears
//! every level change (LISTEN/NOTIFY) and converges its own Postfix map at once,
//! without waiting for its timer.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use support::postgres::Postgres;
use support::{now, wait_until, Sandbox};

const ALICE: &str = "alice@example.com";

/// Server `name` on `pg`, enforcing, whose only action is the SASL map `dir/map`
/// (postmap and the queue commands are /bin/true: the map's text is what we check).
fn server(pg: &Postgres, dir: &Path, name: &str) -> (Sandbox, PathBuf) {
    let map = dir.join(format!("{name}.map"));
    let s = pg.server(
        name,
        &format!(
            "mode = \"enforce\"\n\
             [actions]\nnotify = []\nblock = [\"sasl_block\"]\nlock = [\"sasl_block\"]\n\
             [postfix]\nsasl_map = {:?}\npostmap = \"/bin/true\"\npostqueue = \"/bin/true\"\n\
             postsuper = \"/bin/true\"\n",
            map.display().to_string()
        ),
    );
    (s, map)
}

/// A process the test started, stopped by its pid.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        support::mailstack::kill(self.0.id());
        let _ = self.0.wait();
    }
}

/// `run-actions --follow` of `s`, its stdout and stderr in `dir`, once it listens.
fn follow(s: &Sandbox, dir: &Path) -> (Running, PathBuf, PathBuf) {
    let (out, err) = (dir.join("follow.out"), dir.join("follow.err"));
    let follow = Running(
        s.cmd()
            .args(["run-actions", "--follow"])
            .stdout(std::fs::File::create(&out).expect("out"))
            .stderr(std::fs::File::create(&err).expect("err"))
            .stdin(Stdio::null())
            .spawn()
            .expect("run-actions --follow"),
    );
    // It listens before its first run: from then on no change is missed.
    wait_until("the follower to listen", Duration::from_secs(60), || {
        read(&out).contains("run-actions (started)")
    });
    (follow, out, err)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn a_block_and_its_release_on_one_server_reach_the_other_at_once() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().expect("dir");
    let (a, _) = server(&pg, dir.path(), "mx1");
    let (b, b_map) = server(&pg, dir.path(), "mx2");
    let (follow, out, err) = follow(&b, dir.path());
    let said = || format!("{}{}", read(&out), read(&err));
    assert!(!read(&b_map).contains(ALICE), "{}", said());

    // Eleven networks through A: blocked there, and B hears of it.
    a.burst(ALICE, 11, now() - 300);
    assert_eq!(a.status_user(ALICE, now())["state"], "block");
    wait_until("B's map to block alice", Duration::from_secs(120), || {
        read(&b_map).contains(ALICE)
    });
    assert!(
        said().contains("run-actions (a level changed)"),
        "{}",
        said()
    );

    // Released on A: gone from B's map too.
    let before = said().matches("(a level changed)").count();
    a.ok(&["release", ALICE]);
    wait_until("B's map to let alice go", Duration::from_secs(120), || {
        !read(&b_map).contains(ALICE)
    });
    assert!(
        said().matches("(a level changed)").count() > before,
        "{}",
        said()
    );
    assert!(!said().contains("f2b-mailguard:"), "no error: {}", said());
    drop(follow);
}

#[test]
fn follow_needs_a_shared_database() {
    let s = Sandbox::new("");
    let o = s.run(&["run-actions", "--follow"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("needs a shared PostgreSQL database"), "{err}");
}

/// A field of /proc/PID/status in kB (`VmRSS`, `VmHWM`).
fn status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {text}"))
}

/// Any role that may connect may NOTIFY the channel: a flood of large notifications,
/// each its own transaction, costs one convergence pass per interval at most and no
/// memory for what is only the same news again.
#[test]
fn a_notify_flood_is_coalesced_and_not_kept() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().expect("dir");
    let (b, _) = server(&pg, dir.path(), "mx2");
    let (follow, out, err) = follow(&b, dir.path());
    let said = || format!("{}{}", read(&out), read(&err));
    let pid = follow.0.id();
    let rss_before = status_kb(pid, "VmRSS");

    // 20,000 notifications of 7,900 bytes (150 MB), each committed alone, from psql.
    let payload = "x".repeat(7_900);
    let script: String = (0..20_000)
        .map(|i| format!("SELECT pg_notify('f2b_mailguard_changes', '{payload}{i}');\n"))
        .collect();
    let script_path = dir.path().join("flood.sql");
    std::fs::write(&script_path, script).expect("flood script");
    let passes_before = read(&out).matches("run-actions (").count();
    let started = std::time::Instant::now();
    let flood = std::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            "-o",
            "/dev/null",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
        ])
        .arg("-h")
        .arg(pg.socket_dir())
        .args(["-d", support::postgres::DB, "-f"])
        .arg(&script_path)
        .output()
        .expect("psql flood");
    support::assert_success("psql flood", &flood);
    // And 15,000 more (115 MB) in one transaction: all delivered at its commit.
    pg.psql(&format!(
        "SELECT count(pg_notify('f2b_mailguard_changes', '{payload}' || g)) \
         FROM generate_series(1, 15000) g"
    ));
    // What the server still holds for the follower arrives within its next interval.
    std::thread::sleep(Duration::from_secs(6));
    let elapsed = started.elapsed().as_secs();
    let passes = read(&out).matches("run-actions (").count() - passes_before;
    let peak = status_kb(pid, "VmHWM");
    let rss_after = status_kb(pid, "VmRSS");
    eprintln!("flood: {passes} passes in {elapsed} s, RSS {rss_before} kB before, peak {peak} kB, {rss_after} kB after");

    // One pass per 5 s interval, and one for the news still waiting at the end.
    assert!(
        passes as u64 <= elapsed / 5 + 2,
        "{passes} passes in {elapsed} s (peak RSS {peak} kB, {rss_before} kB before): {}",
        said().lines().take(3).collect::<Vec<_>>().join("\n")
    );
    assert!(passes >= 1, "the flood is still heard: {}", said());
    // Only a few notifications are ever held at once (each is 8 kB).
    assert!(
        peak <= rss_before + 16 * 1024,
        "peak RSS {peak} kB, {rss_before} kB before the flood, {rss_after} kB after"
    );
    assert!(!said().contains("f2b-mailguard:"), "no error: {}", said());
    drop(follow);
}
