//! A real Fail2ban server (Debian's package) as a private instance: own config dir,
//! socket, pidfile, in-memory database, polling temp logs. The shipped filter, action
//! and jail files are copied unmodified; paths reach them only through `.local` files.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One shipped jail to enable, reading `logpath`.
pub struct Jail<'a> {
    pub name: &'a str,
    pub logpath: &'a Path,
}

pub struct Fail2ban {
    pub conf: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    server: Child,
}

fn need(program: &str) {
    assert!(
        Path::new(program).exists(),
        "{program} is missing: run tests/run, which installs fail2ban from Debian's packages"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

impl Fail2ban {
    /// Starts `fail2ban-server` with the shipped files, `binary` and `config` injected
    /// into the action, the given jails enabled on their log files.
    pub fn start(root: &Path, binary: &Path, config: &Path, jails: &[Jail]) -> Self {
        Self::start_with_env(root, binary, config, jails, &[])
    }

    /// As `start`, with extra environment for the server and so for every action it runs.
    pub fn start_with_env(
        root: &Path,
        binary: &Path,
        config: &Path,
        jails: &[Jail],
        env: &[(&str, &Path)],
    ) -> Self {
        need("/usr/bin/fail2ban-server");
        let base = root.join("fail2ban");
        let conf = base.join("conf");
        let run = base.join("run");
        std::fs::create_dir_all(&run).expect("run dir");
        for d in ["filter.d", "action.d", "jail.d"] {
            copy_dir(&Path::new(ROOT).join("fail2ban").join(d), &conf.join(d));
        }
        std::fs::copy(
            "/etc/fail2ban/filter.d/common.conf",
            conf.join("filter.d/common.conf"),
        )
        .expect("common.conf");
        let log = base.join("fail2ban.log");
        let socket = run.join("f2b.sock");
        let pidfile = run.join("f2b.pid");
        std::fs::write(
            conf.join("fail2ban.conf"),
            format!(
                "[Definition]\nloglevel = INFO\nlogtarget = {}\nsocket = {}\npidfile = {}\ndbfile = :memory:\n",
                log.display(),
                socket.display(),
                pidfile.display()
            ),
        )
        .expect("fail2ban.conf");
        std::fs::write(conf.join("jail.conf"), "[DEFAULT]\nbackend = polling\n")
            .expect("jail.conf");
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
        let out = std::fs::File::create(base.join("server.out")).expect("server.out");
        let server = Command::new("/usr/bin/fail2ban-server")
            .arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(&socket)
            .arg("-p")
            .arg(&pidfile)
            .args(["-x", "-f", "start"])
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone"))
            .stderr(out)
            .spawn()
            .expect("fail2ban-server");
        let f2b = Self {
            conf,
            socket,
            log,
            server,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        for j in jails {
            while !f2b
                .client(&["status", j.name])
                .is_ok_and(|o| o.contains("Currently failed"))
            {
                assert!(
                    Instant::now() < deadline,
                    "fail2ban jail {} did not start: {}",
                    j.name,
                    std::fs::read_to_string(&f2b.log).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        f2b
    }

    pub fn client(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("/usr/bin/fail2ban-client")
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Fail2ban {
    fn drop(&mut self) {
        let _ = self.client(&["stop"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.server.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// A syslog timestamp for now, in local time as Fail2ban reads it.
pub fn syslog_now() -> String {
    chrono::Local::now().format("%b %e %H:%M:%S").to_string()
}

/// Appends lines to a log file, as the mail server would.
pub fn append(log: &Path, lines: &[String]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .expect("open log");
    for l in lines {
        writeln!(f, "{l}").expect("append");
    }
}
