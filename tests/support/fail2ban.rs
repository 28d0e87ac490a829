//! A real Fail2ban server (Debian's package) as a private instance: own config dir,
//! socket, pidfile, in-memory database, `polling` backend on temporary logs. The
//! shipped filter, action and jail files are copied unmodified; paths reach them only
//! through `.local` files, as an admin would set them.
//!
//! The server is stopped by its pid, also when a test panics (Drop).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SERVER: &str = "/usr/bin/fail2ban-server";
const REGEX: &str = "/usr/bin/fail2ban-regex";
const CLIENT: &str = "/usr/bin/fail2ban-client";

/// One jail to enable, reading `logpath`.
pub struct Jail<'a> {
    pub name: &'a str,
    pub logpath: &'a Path,
}

/// The shipped jails that see a message: its login, its acceptance, its bounces.
pub const MESSAGE_JAILS: [&str; 3] = ["mailguard-smtp", "mailguard-rate", "mailguard-bounce"];

impl<'a> Jail<'a> {
    /// Each of `names`, all reading `logpath`.
    pub fn each(names: impl IntoIterator<Item = &'a str>, logpath: &'a Path) -> Vec<Self> {
        (names.into_iter())
            .map(|name| Jail { name, logpath })
            .collect()
    }
}

pub struct Fail2ban {
    pub conf: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    pidfile: PathBuf,
    server: Child,
    env: Vec<(String, PathBuf)>,
}

/// Fails (never skips) when a program the tests drive is missing.
pub fn need(program: &str) {
    assert!(
        Path::new(program).exists(),
        "{program} is missing: run tests/run, which installs fail2ban (and the other \
         packages the tests drive) from Debian's packages"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        if e.file_type().expect("file type").is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

/// The shipped filters in `dir/filter.d`, beside the system's common.conf as on a
/// real install.
pub fn filter_dir(dir: &Path) -> PathBuf {
    let fd = dir.join("filter.d");
    copy_dir(&Path::new(ROOT).join("fail2ban/filter.d"), &fd);
    std::fs::copy("/etc/fail2ban/filter.d/common.conf", fd.join("common.conf"))
        .expect("system common.conf");
    fd
}

/// `fail2ban-regex [-o OUTPUT] LOG FILTER`, in UTC. `log` is a file path or
/// `systemd-journal[...]`; `filter` a file name under `fd` with optional `[args]`,
/// e.g. `mailguard-dovecot-login[service=imap]`. Asserts success; returns stdout.
pub fn regex(log: &str, filter: &str, fd: &Path, output: Option<&str>) -> String {
    need(REGEX);
    let (name, args) = filter.split_once('[').unwrap_or((filter, ""));
    let mut target = fd.join(format!("{name}.conf")).into_os_string();
    if !args.is_empty() {
        target.push(format!("[{args}"));
    }
    let mut cmd = Command::new(REGEX);
    cmd.env("TZ", "UTC");
    if let Some(o) = output {
        cmd.args(["-o", o]);
    }
    stdout_of(cmd.arg(log).arg(&target))
}

/// Runs a program (a Fail2ban tool; the mail stack's set-up uses it too) to its end;
/// asserts that it succeeded (the panic shows what it printed) and returns its
/// standard output, which must be UTF-8.
pub fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A Fail2ban config dir under `dir`: the shipped filter.d, action.d and jail.d files
/// unmodified, the system's common.conf beside the filters, `binary` and `config`
/// injected with action.d/mailguard.local, `jails` enabled on their log files with
/// jail.d/mailguard.local, and `extra` files (relative path, content) added as given.
pub fn conf_dir(
    dir: &Path,
    binary: &Path,
    config: &Path,
    jails: &[Jail],
    extra: &[(&str, &str)],
) -> PathBuf {
    need(SERVER);
    let conf = dir.join("conf");
    filter_dir(&conf);
    for d in ["action.d", "jail.d"] {
        copy_dir(&Path::new(ROOT).join("fail2ban").join(d), &conf.join(d));
    }
    std::fs::write(conf.join("jail.conf"), "[DEFAULT]\nbackend = polling\n").expect("jail.conf");
    // The Python action has no .local: its paths are set in the file, as install.sh does.
    let py = conf.join("action.d/f2b_mailguard.py");
    let text = std::fs::read_to_string(&py).expect("f2b_mailguard.py");
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("BINARY = ") {
                format!("BINARY = {:?}", binary.display().to_string())
            } else if l.starts_with("CONFIG = ") {
                format!("CONFIG = {:?}", config.display().to_string())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&py, text + "\n").expect("f2b_mailguard.py");
    std::fs::write(
        conf.join("action.d/mailguard.local"),
        format!(
            "[Init]\nbinary = {}\nconfig = {}\n",
            binary.display(),
            config.display()
        ),
    )
    .expect("action local");
    let mut local = String::new();
    for j in jails {
        local.push_str(&format!(
            "[{}]\nenabled = true\nlogpath = {}\nbackend = polling\n\n",
            j.name,
            j.logpath.display()
        ));
    }
    std::fs::write(conf.join("jail.d/mailguard.local"), local).expect("jail local");
    for (path, content) in extra {
        let p = conf.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("extra file");
    }
    conf
}

impl Fail2ban {
    /// Starts `fail2ban-server` with the shipped files, `binary` and `config` injected
    /// into the action, the given jails enabled on their log files.
    pub fn start(root: &Path, binary: &Path, config: &Path, jails: &[Jail]) -> Self {
        Self::start_with(root, binary, config, jails, &[], &[])
    }

    /// `start` with this build's binary and the jails `names`, all reading `log`.
    pub fn on_log(root: &Path, config: &Path, log: &Path, names: &[&str]) -> Self {
        let jails = Jail::each(names.iter().copied(), log);
        Self::start(root, Path::new(super::BIN), config, &jails)
    }

    /// As `start`, with extra environment for the server and so for every action it runs.
    pub fn start_with_env(
        root: &Path,
        binary: &Path,
        config: &Path,
        jails: &[Jail],
        env: &[(&str, &Path)],
    ) -> Self {
        Self::start_with(root, binary, config, jails, env, &[])
    }

    /// The mailguard jails `names` on the log of the private Postfix in `mail_config`,
    /// whose commands the actions reach through MAIL_CONFIG.
    pub fn mail_jails(
        root: &Path,
        config: &Path,
        log: &Path,
        mail_config: &Path,
        names: &[&'static str],
    ) -> Self {
        let jails = Jail::each(names.iter().copied(), log);
        Self::start_with_env(
            root,
            Path::new(super::BIN),
            config,
            &jails,
            &[("MAIL_CONFIG", mail_config)],
        )
    }

    /// As `start_with_env`, with extra config files (e.g. a test-only filter and jail).
    pub fn start_with(
        root: &Path,
        binary: &Path,
        config: &Path,
        jails: &[Jail],
        env: &[(&str, &Path)],
        extra: &[(&str, &str)],
    ) -> Self {
        Self::launch([root, binary, config], jails, env, extra, false)
    }

    /// As `start_with` without environment, with Fail2ban's database in a file that
    /// outlives a restart, as Debian's `/var/lib/fail2ban/fail2ban.sqlite3` does.
    pub fn start_persistent(
        root: &Path,
        binary: &Path,
        config: &Path,
        jails: &[Jail],
        extra: &[(&str, &str)],
    ) -> Self {
        Self::launch([root, binary, config], jails, &[], extra, true)
    }

    /// `start_with`, its database in memory or (`persistent`) in a file. `paths`: the
    /// root, binary and config of `start_with`.
    fn launch(
        paths: [&Path; 3],
        jails: &[Jail],
        env: &[(&str, &Path)],
        extra: &[(&str, &str)],
        persistent: bool,
    ) -> Self {
        let [root, binary, config] = paths;
        need(CLIENT);
        let base = root.join("fail2ban");
        let conf = conf_dir(&base, binary, config, jails, extra);
        let run = base.join("run");
        std::fs::create_dir_all(&run).expect("run dir");
        let log = base.join("fail2ban.log");
        let socket = run.join("f2b.sock");
        let pidfile = run.join("f2b.pid");
        // Fail2ban's own database: in memory, unless the test restarts the server and
        // wants what it keeps across a restart, as Debian's file does.
        let dbfile = if persistent {
            base.join("fail2ban.sqlite3").display().to_string()
        } else {
            ":memory:".to_owned()
        };
        std::fs::write(
            conf.join("fail2ban.conf"),
            format!(
                "[Definition]\nloglevel = INFO\nlogtarget = {}\nsocket = {}\npidfile = {}\n\
                 dbfile = {dbfile}\n",
                log.display(),
                socket.display(),
                pidfile.display()
            ),
        )
        .expect("fail2ban.conf");
        let env: Vec<(String, PathBuf)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_path_buf()))
            .collect();
        let server = spawn_server(&conf, &socket, &pidfile, &env, &base);
        let mut f2b = Self {
            conf,
            socket,
            log,
            pidfile,
            server,
            env,
        };
        f2b.wait_jails(jails);
        f2b
    }

    /// Stops the server (by its pid, see `stop`) and starts it again on the same
    /// config, database and logs, as `systemctl restart fail2ban` does.
    pub fn restart(&mut self, jails: &[Jail]) {
        assert!(
            self.stop(),
            "fail2ban did not stop on SIGTERM:\n{}",
            self.log()
        );
        let base = self.conf.parent().expect("base").to_path_buf();
        self.server = spawn_server(&self.conf, &self.socket, &self.pidfile, &self.env, &base);
        self.wait_jails(jails);
    }

    fn wait_jails(&mut self, jails: &[Jail]) {
        let f2b = &*self;
        let base = f2b.conf.parent().expect("base");
        let started = Instant::now();
        for j in jails {
            let left = Duration::from_secs(30).saturating_sub(started.elapsed());
            let up = super::try_wait_until(left, || {
                f2b.client(&["status", j.name])
                    .is_ok_and(|o| o.contains("Currently failed"))
            });
            assert!(
                up,
                "fail2ban jail {} did not start: {}{}",
                j.name,
                f2b.log(),
                std::fs::read_to_string(base.join("server.out")).unwrap_or_default()
            );
        }
    }

    /// `fail2ban-client` on this server's socket; stdout, or stdout+stderr on failure.
    pub fn client(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(CLIENT)
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(text)
        } else {
            Err(text + &String::from_utf8_lossy(&out.stderr))
        }
    }

    /// The server's own log (INFO level).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the server by its pid with SIGKILL, as a crash or the OOM killer would:
    /// no stop, no flush, its socket and pidfile left behind.
    pub fn kill(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }

    /// Stops the server by its pid: SIGTERM (Fail2ban shuts down cleanly), SIGKILL if it
    /// is still there after 10 s. Returns whether it ended on SIGTERM.
    pub fn stop(&mut self) -> bool {
        if let Ok(Some(_)) = self.server.try_wait() {
            return true;
        }
        // The shell's own kill: /bin/kill (procps) may be absent on a minimal system.
        let _ = Command::new("/bin/sh")
            .args([
                "-c",
                "kill -TERM \"$1\"",
                "sh",
                &self.server.id().to_string(),
            ])
            .status();
        // The action's own stop may wait up to 30 s for the last tickets to reach its
        // child; a loaded machine adds to Fail2ban's joins.
        if super::try_wait_until(Duration::from_secs(60), || {
            matches!(self.server.try_wait(), Ok(Some(_)))
        }) {
            return true;
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
        false
    }
}

/// `fail2ban-server` in the foreground (the child we hold is the server itself), `-x`
/// dropping a stale socket; its output appended to `base/server.out`.
fn spawn_server(
    conf: &Path,
    socket: &Path,
    pidfile: &Path,
    env: &[(String, PathBuf)],
    base: &Path,
) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(base.join("server.out"))
        .expect("server.out");
    Command::new(SERVER)
        .arg("-c")
        .arg(conf)
        .arg("-s")
        .arg(socket)
        .arg("-p")
        .arg(pidfile)
        .args(["-x", "-f", "start"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone"))
        .stderr(out)
        .spawn()
        .expect("fail2ban-server")
}

impl Drop for Fail2ban {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A classic syslog timestamp ("Nov  3 07:22:28") for now, in the local time zone the
/// server also uses to read it.
pub fn syslog_now() -> String {
    let out = Command::new("date")
        .arg("+%b %e %H:%M:%S")
        .env("LC_ALL", "C")
        .output()
        .expect("date");
    assert!(out.status.success(), "date failed");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim_end()
        .to_string()
}

/// Postfix's line for an accepted SASL submission, which the mailguard-smtp jail reads.
pub fn postfix_login(pid: u32, qid: &str, addr: &str, user: &str) -> String {
    format!(
        "{} mx postfix/submission/smtpd[{pid}]: {qid}: client=unknown[{addr}], sasl_method=PLAIN, sasl_username={user}",
        syslog_now()
    )
}

/// Appends lines to a log file in one write, as syslog writes a batch.
pub fn append(log: &Path, lines: &[String]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .expect("open log");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    f.write_all(text.as_bytes()).expect("append");
}
