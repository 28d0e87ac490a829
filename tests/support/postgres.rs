//! A private PostgreSQL 15 from Debian's packages per test: a copy of a cluster
//! initialised once, in a temp directory owned by the `postgres` user (initdb refuses
//! root), listening on a Unix socket in that directory only (no TCP), stopped by its
//! postmaster's pid.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::mailstack::{alive, kill};
use super::wait_until;

const BIN: &str = "/usr/lib/postgresql/15/bin";
pub const DB: &str = "mailguard";

pub struct Postgres {
    /// Holds the cluster (`data/`), the socket and the log; owned by `postgres`.
    dir: tempfile::TempDir,
    pid: Option<u32>,
    /// The port of its socket, and of 127.0.0.1 once `listen_tcp` has added it.
    port: u16,
    tcp: bool,
}

fn bin(program: &str) -> PathBuf {
    let path = Path::new(BIN).join(program);
    assert!(
        path.exists(),
        "{} is missing: run tests/run, which installs postgresql-15",
        path.display()
    );
    path
}

/// `program ARGS` as the `postgres` user; panics with its output on failure.
fn as_postgres(program: &Path, args: &[&str]) {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("runuser {}: {e}", program.display()));
    super::assert_success(format_args!("{} {args:?}", program.display()), &out);
}

/// A temp directory owned by `postgres` (initdb refuses root), for it alone.
fn postgres_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let st = Command::new("chown")
        .arg("postgres:postgres")
        .arg(dir.path())
        .status()
        .expect("chown");
    assert!(st.success(), "chown to postgres needs root");
    dir
}

/// The cluster every test's copy starts from, once made (see `template`).
static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();

/// A cluster with the database `DB`, made once per test binary and copied by each
/// `start`: initdb and createdb were most of a private cluster's start, and the
/// suite starts dozens. Made without a server (createdb's work in single-user mode),
/// removed when the test binary exits.
fn template() -> &'static Path {
    TEMPLATE.get_or_init(|| {
        let dir = postgres_dir().keep();
        let data = dir.join("data").display().to_string();
        // No fsync: a test's cluster is thrown away, and fsync is most of initdb's time.
        as_postgres(
            &bin("initdb"),
            &[
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "--no-instructions",
                "-D",
                &data,
            ],
        );
        let sql = dir.join("create.sql");
        std::fs::write(&sql, format!("CREATE DATABASE {DB};\n")).expect("create.sql");
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin("postgres"))
            .args(["--single", "-F", "-D", &data, "postgres"])
            .stdin(std::fs::File::open(&sql).expect("create.sql"))
            .output()
            .expect("postgres --single");
        super::assert_success("postgres --single: CREATE DATABASE", &out);
        extern "C" fn remove_template() {
            if let Some(dir) = TEMPLATE.get() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        // SAFETY: registers a plain function, which only removes a directory.
        unsafe { libc::atexit(remove_template) };
        dir
    })
}

impl Postgres {
    /// A copy of the template cluster, started: the database `DB` is there.
    pub fn start() -> Self {
        let template = template().join("data");
        let dir = postgres_dir();
        // -a: the owner (postgres) and modes initdb gave, which the server checks.
        let out = Command::new("cp")
            .arg("-a")
            .arg(&template)
            .arg(dir.path().join("data"))
            .output()
            .expect("cp");
        super::assert_success("copying the template cluster", &out);
        let mut pg = Self {
            dir,
            pid: None,
            port: 5432,
            tcp: false,
        };
        pg.start_server();
        pg
    }

    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Server `name` on this store; `rest` as `Sandbox::server` takes it.
    pub fn server(&self, name: &str, rest: &str) -> super::Sandbox {
        super::Sandbox::server(&self.url(), name, rest)
    }

    /// The libpq URL of the test database over the Unix socket.
    pub fn url(&self) -> String {
        self.url_of(DB)
    }

    /// The URL of another database of this server (`CREATE DATABASE` it first).
    pub fn url_of(&self, db: &str) -> String {
        self.url_as("postgres", db)
    }

    /// The URL of database `db` over the Unix socket as `user` (`role` or
    /// `role:password`, percent-encoded as a URL wants it).
    pub fn url_as(&self, user: &str, db: &str) -> String {
        format!(
            "postgresql://{user}@/{db}?host={}",
            self.socket_dir().display()
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Runs SQL with psql against the test database, returning its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in(DB, sql)
    }

    /// As `psql`, in database `db`.
    pub fn psql_in(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
            ])
            .arg("-h")
            .arg(self.socket_dir())
            .args(["-p", &self.port.to_string()])
            .args(["-d", db, "-c", sql])
            .output()
            .expect("psql");
        super::assert_success(format_args!("psql {sql:?}"), &out);
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned()
    }

    /// Starts the server again after `stop` (an outage's end).
    pub fn start_server(&mut self) {
        let data = self.dir.path().join("data");
        let socket = self.socket_dir().display().to_string();
        as_postgres(
            &bin("pg_ctl"),
            &[
                "-D",
                &data.display().to_string(),
                "-l",
                &self.dir.path().join("log").display().to_string(),
                // Unix socket in our directory only; no fsync (a test's throwaway data).
                "-o",
                &format!("-k {socket} -h {} -p {} -F", self.listen(), self.port),
                "-w",
                "start",
            ],
        );
        let pidfile = data.join("postmaster.pid");
        let pid: u32 = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid in {}: {}", pidfile.display(), self.log()));
        self.pid = Some(pid);
    }

    /// Stops the server by its pid (fast shutdown: SIGINT), waiting until it is gone.
    pub fn stop(&mut self) {
        let Some(pid) = self.pid.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // No panic here: Drop calls this, perhaps while a failing test unwinds.
        if alive(pid) {
            kill(pid);
            if !super::try_wait_until(Duration::from_secs(10), || !alive(pid)) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }

    /// The cluster's directory (postgresql.conf, pg_hba.conf), owned by `postgres`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Restarts listening on 127.0.0.1:`port` too (TLS tests), now and later.
    pub fn listen_tcp(&mut self, port: u16) {
        self.stop();
        (self.port, self.tcp) = (port, true);
        self.start_server();
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn listen(&self) -> &'static str {
        if self.tcp {
            "127.0.0.1"
        } else {
            "''"
        }
    }

    /// A psql session that runs `sql` and stays open (holding its locks) until
    /// `Session::end`; stopped by its pid when dropped.
    pub fn hold(&self, sql: &str) -> Session {
        use std::io::Write;
        let mut child = Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres"])
            .arg("-h")
            .arg(self.socket_dir())
            .args(["-p", &self.port.to_string(), "-d", DB])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("psql");
        let stdin = child.stdin.as_mut().expect("psql stdin");
        writeln!(stdin, "{sql}").expect("to psql");
        stdin.flush().expect("to psql");
        Session { child }
    }

    /// A superuser `role` that must log in with `password` (SCRAM) on the socket,
    /// while every other role keeps logging in without one.
    pub fn password_role(&self, role: &str, password: &str) {
        let quoted = password.replace('\'', "''");
        self.psql(&format!(
            "CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{quoted}'"
        ));
        let hba = self.data_dir().join("pg_hba.conf");
        let old = std::fs::read_to_string(&hba).expect("pg_hba.conf");
        std::fs::write(&hba, format!("local all {role} scram-sha-256\n{old}")).expect("pg_hba");
        self.psql("SELECT pg_reload_conf()");
        // The reload is a signal: wait until the role really needs its password.
        wait_until(
            "pg_hba to ask for a password",
            Duration::from_secs(60),
            || {
                let out = Command::new("psql")
                    .args(["-X", "-w", "-U", role, "-h"])
                    .arg(self.socket_dir())
                    .args(["-p", &self.port.to_string(), "-d", DB, "-c", "SELECT 1"])
                    .output()
                    .expect("psql");
                !out.status.success()
            },
        );
    }

    pub fn running(&self) -> bool {
        self.pid.is_some_and(alive)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A psql session started by `Postgres::hold`.
pub struct Session {
    child: std::process::Child,
}

impl Session {
    /// Ends the session (its transaction rolls back, its locks go) and waits for it.
    pub fn end(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            kill(self.child.id());
            let _ = self.child.wait();
        }
    }
}

/// A private PgBouncer (Debian's pgbouncer) in front of a `Postgres`, in session
/// pooling: each client session gets one of the pool's backends, kept open between
/// sessions. Unix socket only (in its own directory, port 6432), daemonised as
/// `postgres`, stopped by the pid in its pidfile.
pub struct Bouncer {
    dir: tempfile::TempDir,
    pid: u32,
}

impl Bouncer {
    pub fn start(pg: &Postgres) -> Self {
        let program = Path::new("/usr/sbin/pgbouncer");
        assert!(
            program.exists(),
            "{} is missing: run tests/run, which installs pgbouncer",
            program.display()
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let at = dir.path();
        std::fs::write(at.join("users.txt"), "\"postgres\" \"\"\n").expect("auth file");
        std::fs::write(
            at.join("pgbouncer.ini"),
            format!(
                "[databases]\n* = host={socket} port={port}\n\
                 [pgbouncer]\nlisten_addr =\nunix_socket_dir = {at}\nlisten_port = 6432\n\
                 auth_type = trust\nauth_file = {at}/users.txt\npool_mode = session\n\
                 logfile = {at}/log\npidfile = {at}/pid\n",
                socket = pg.socket_dir().display(),
                port = pg.port(),
                at = at.display()
            ),
        )
        .expect("pgbouncer.ini");
        let st = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(at)
            .status()
            .expect("chown");
        assert!(st.success(), "chown to postgres needs root");
        let ini = at.join("pgbouncer.ini").display().to_string();
        as_postgres(program, &["-d", "-q", &ini]);
        let pidfile = at.join("pid");
        let mut pid = None;
        wait_until("pgbouncer's pidfile", Duration::from_secs(60), || {
            pid = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|t| t.trim().parse().ok());
            pid.is_some()
        });
        let bouncer = Self {
            dir,
            pid: pid.expect("waited for it"),
        };
        let socket = bouncer.dir.path().join(".s.PGSQL.6432");
        wait_until("pgbouncer's socket", Duration::from_secs(60), || {
            socket.exists()
        });
        bouncer
    }

    /// The URL of the test database through the pool.
    pub fn url(&self) -> String {
        format!(
            "postgresql://postgres@/{DB}?host={}&port=6432",
            self.dir.path().display()
        )
    }
}

impl Drop for Bouncer {
    /// Never panics (a panic while a failing test unwinds would abort the suite).
    fn drop(&mut self) {
        let pid = self.pid;
        kill(pid);
        if !super::try_wait_until(Duration::from_secs(10), || !alive(pid)) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}
