//! Files we replace in directories other users own: a link planted there by that
//! user (`nobody` here; `prometheus` owns node_exporter's textfile directory) must
//! never make root write, chown or chmod its target.
//!
//! A temp name derived from the pid (`.NAME.PID.tmp`) would be guessable: each test
//! learns the pid before the binary runs (a shell prints its own pid, waits, then execs
//! the binary in place) and plants a link at that exact name, which must not be
//! written through.

use crate::support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use support::{now, Sandbox, BIN};

const SECRET: &str = "root:only root may read or change this\n";

/// A root-only file the attacker aims at, and a directory `nobody` owns.
struct Scene {
    _dir: tempfile::TempDir,
    victim: PathBuf,
    shared: PathBuf,
}

impl Scene {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // `nobody` must reach its own directory inside.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, SECRET).expect("victim");
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).expect("shared dir");
        run(Command::new("chown").arg("nobody:nogroup").arg(&shared));
        Self {
            _dir: dir,
            victim,
            shared,
        }
    }

    /// `nobody` plants `shared/NAME` -> victim.
    fn plant(&self, name: &str) {
        run(Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg("ln")
            .arg("-s")
            .arg(&self.victim)
            .arg(self.shared.join(name)));
    }

    fn assert_victim_untouched(&self) {
        let meta = std::fs::symlink_metadata(&self.victim).expect("victim");
        assert_eq!(
            std::fs::read_to_string(&self.victim).expect("victim"),
            SECRET,
            "root wrote through the planted link"
        );
        assert_eq!(
            meta.mode() & 0o7777,
            0o600,
            "root chmodded the link's target"
        );
        assert_eq!(
            (meta.uid(), meta.gid()),
            (0, 0),
            "root chowned the link's target"
        );
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    support::assert_success(format_args!("{cmd:?}"), &out);
}

/// Runs the binary with `args` under a pid known in advance: `plant(pid)` runs
/// before the binary starts, as that very process.
fn run_with_known_pid(s: &Sandbox, args: &[&str], plant: impl FnOnce(u32)) {
    let mut child = Command::new("/bin/sh")
        .args(["-c", "echo $$; read go; exec \"$@\"", "sh", BIN])
        .args(args)
        .env_remove("F2B_MAILGUARD_DB")
        .env("F2B_MAILGUARD_CONFIG", s.config_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("pid line");
    let pid = line.trim().parse().expect("pid");
    plant(pid);
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("go");
    let out = child.wait_with_output().expect("wait");
    support::assert_success(format_args!("f2b-mailguard {args:?}"), &out);
}

#[test]
fn metrics_textfile_never_writes_through_a_planted_link() {
    let scene = Scene::new();
    let s = Sandbox::new("");
    s.record("smtp", "alice@example.test", "198.51.100.7", now());
    let prom = scene.shared.join("f2b_mailguard.prom");
    let prom_arg = prom.display().to_string();
    run_with_known_pid(&s, &["metrics", "--textfile", &prom_arg], |pid| {
        scene.plant(&format!(".f2b_mailguard.prom.{pid}.tmp"));
    });
    scene.assert_victim_untouched();
    let meta = std::fs::symlink_metadata(&prom).expect("textfile");
    assert!(meta.is_file(), "the textfile is a plain file");
    assert_eq!(meta.mode() & 0o7777, 0o644);
    let text = std::fs::read_to_string(&prom).expect("textfile");
    assert!(text.contains("f2b_mailguard_database_bytes"), "{text}");
}

#[test]
fn the_passwd_file_rewrite_never_writes_through_a_planted_link() {
    const USER: &str = "victim@example.test";
    let scene = Scene::new();
    let users = scene.shared.join("users");
    std::fs::write(&users, format!("{USER}:{{PLAIN}}old-pw::::::\n")).expect("users");
    let s = Sandbox::acting(&format!(
        "mode = \"enforce\"\n\
         [actions]\nnotify = []\nblock = []\nlock = [\"reset_password\"]\n\
         [password]\nbackend = \"dovecot-passwd-file\"\npasswd_file = \"{}\"\n",
        users.display()
    ));
    // The reset must run in a worker whose pid is known: hold the worker lock while
    // escalating, so the workers `record` starts leave the action queued.
    s.record("smtp", USER, "192.0.2.1", now() - 400);
    let lock_path = PathBuf::from(format!("{}.worker.lock", s.db().display()));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .expect("worker lock");
    lock.lock().expect("take the worker lock");
    s.burst(USER, 21, now() - 300);
    let config = s.config_path().display().to_string();
    support::wait_until(
        "workers started by record to give up",
        std::time::Duration::from_secs(60),
        || support::processes_mentioning(&config).is_empty(),
    );
    lock.unlock().expect("unlock");

    run_with_known_pid(&s, &["run-actions"], |pid| {
        scene.plant(&format!(".users.{pid}.tmp"));
    });
    scene.assert_victim_untouched();
    let d = s.status_user(USER, now());
    let reset = support::action(&d, "reset_password")
        .expect("reset_password")
        .clone();
    assert_eq!(reset["state"], "done", "{reset:#}");
    assert!(
        std::fs::symlink_metadata(&users).expect("users").is_file(),
        "the passwd-file is a plain file"
    );
    let text = std::fs::read_to_string(&users).expect("users");
    assert!(text.starts_with(&format!("{USER}:{{SSHA512}}")), "{text}");
}
