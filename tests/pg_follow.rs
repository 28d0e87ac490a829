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
    let s = Sandbox::acting("");
    let map = dir.join(format!("{name}.map"));
    std::fs::write(
        s.config_path(),
        format!(
            "database = {:?}\nlocal_dir = {:?}\nserver_name = {name:?}\nmode = \"enforce\"\n\
             [actions]\nnotify = []\nblock = [\"sasl_block\"]\nlock = [\"sasl_block\"]\n\
             [postfix]\nsasl_map = {:?}\npostmap = \"/bin/true\"\npostqueue = \"/bin/true\"\n\
             postsuper = \"/bin/true\"\n",
            pg.url(),
            s.path().join("local").display().to_string(),
            map.display().to_string()
        ),
    )
    .expect("config");
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

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn a_block_and_its_release_on_one_server_reach_the_other_at_once() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().expect("dir");
    let (a, _) = server(&pg, dir.path(), "mx1");
    let (b, b_map) = server(&pg, dir.path(), "mx2");
    let (out, err) = (dir.path().join("follow.out"), dir.path().join("follow.err"));
    let follow = Running(
        b.cmd()
            .args(["run-actions", "--follow"])
            .stdout(std::fs::File::create(&out).expect("out"))
            .stderr(std::fs::File::create(&err).expect("err"))
            .stdin(Stdio::null())
            .spawn()
            .expect("run-actions --follow"),
    );
    let said = || format!("{}{}", read(&out), read(&err));
    // It listens before its first run: from then on no change is missed.
    wait_until("B to listen", Duration::from_secs(60), || {
        read(&out).contains("run-actions (started)")
    });
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
