//! Real Postfix (and Dovecot) from Debian's packages, as private instances under a
//! temp directory: own config, spool, log and loopback ports; nothing system-wide is
//! touched. Every daemon is stopped by its pid when the value is dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::smtp_sink::free_port;

fn need(program: &str) {
    assert!(
        Path::new(program).exists(),
        "{program} is missing: run tests/run, which installs the mail stack (postfix, postfix-lmdb, dovecot)"
    );
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill(pid: u32) {
    let _ = Command::new("kill").arg(pid.to_string()).status();
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

pub struct Postfix {
    pub root: PathBuf,
    pub config_dir: PathBuf,
    pub sasl_map: PathBuf,
    pub submission_port: u16,
    master_pid: Option<u32>,
}

/// Options of the private Postfix.
pub struct PostfixSetup<'a> {
    /// Where outbound mail goes (the sink standing for the Internet).
    pub relay_port: u16,
    /// Keep outbound mail in the queue instead of delivering it.
    pub defer_outbound: bool,
    /// Dovecot's auth socket for SMTP AUTH, if any.
    pub sasl_socket: Option<&'a Path>,
}

impl Postfix {
    /// Writes a private Postfix under `root` (config, spool, data, log) and an empty
    /// check_sasl_access map in lmdb, placed before permit_sasl_authenticated.
    pub fn configure(root: &Path, setup: &PostfixSetup) -> Self {
        need("/usr/sbin/postfix");
        let root = root.join("postfix");
        let etc = root.join("etc");
        for d in ["etc", "spool", "data"] {
            std::fs::create_dir_all(root.join(d)).expect("postfix dirs");
        }
        run(Command::new("chown").arg("postfix").arg(root.join("data")));
        let map = root.join("etc/mailguard_sasl_access");
        std::fs::write(&map, "").expect("map");
        run(Command::new("/usr/sbin/postmap").arg(format!("lmdb:{}", map.display())));
        let port = free_port();
        let r = root.display();
        let (sasl, sasl_enable) = match setup.sasl_socket {
            Some(s) => (
                format!(
                    "smtpd_sasl_type = dovecot\nsmtpd_sasl_path = {}\n",
                    s.display()
                ),
                "yes",
            ),
            None => (String::new(), "no"),
        };
        let main = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {r}/spool\n\
             data_directory = {r}/data\n\
             maillog_file = {r}/postfix.log\n\
             maillog_file_prefixes = {r}\n\
             myhostname = mail.example.test\n\
             mydomain = example.test\n\
             myorigin = example.test\n\
             mydestination =\n\
             local_recipient_maps =\n\
             alias_maps =\n\
             alias_database =\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             mynetworks = 127.0.0.0/8\n\
             relayhost = [127.0.0.1]:{relay}\n\
             smtp_dns_support_level = disabled\n\
             smtp_tls_security_level = none\n\
             smtpd_tls_security_level = none\n\
             smtpd_authorized_xclient_hosts = 127.0.0.0/8\n\
             {defer}\
             {sasl}",
            relay = setup.relay_port,
            defer = if setup.defer_outbound {
                "defer_transports = smtp\n"
            } else {
                ""
            },
        );
        std::fs::write(etc.join("main.cf"), main).expect("main.cf");
        // Debian's master.cf, minus the public port 25 listener, plus our submission port.
        let stock =
            std::fs::read_to_string("/etc/postfix/master.cf").expect("/etc/postfix/master.cf");
        let mut master: String = stock
            .lines()
            .filter(|l| !l.starts_with("smtp      inet") && !l.starts_with("smtp inet"))
            .map(|l| format!("{l}\n"))
            .collect();
        master.push_str(&format!(
            "127.0.0.1:{port} inet n - n - - smtpd\n  -o syslog_name=postfix/submission\n  -o smtpd_sasl_auth_enable={sasl_enable}\n  -o smtpd_recipient_restrictions=check_sasl_access,lmdb:{map},permit_sasl_authenticated,reject\n  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject\n",
            map = map.display()
        ));
        std::fs::write(etc.join("master.cf"), master).expect("master.cf");
        run(Command::new("/usr/sbin/postconf")
            .arg("-c")
            .arg(&etc)
            .args(["-F", "*/*/chroot = n"]));
        run(Command::new("/usr/sbin/postfix")
            .arg("-c")
            .arg(&etc)
            .arg("check"));
        Self {
            root,
            config_dir: etc,
            sasl_map: map,
            submission_port: port,
            master_pid: None,
        }
    }

    pub fn start(&mut self) {
        run(Command::new("/usr/sbin/postfix")
            .arg("-c")
            .arg(&self.config_dir)
            .arg("start"));
        let pidfile = self.root.join("spool/pid/master.pid");
        wait_until("postfix master pid", Duration::from_secs(10), || {
            std::fs::read_to_string(&pidfile).is_ok_and(|p| p.trim().parse::<u32>().is_ok())
        });
        let pid = std::fs::read_to_string(&pidfile)
            .expect("pid")
            .trim()
            .parse()
            .expect("pid");
        self.master_pid = Some(pid);
        let port = self.submission_port;
        wait_until("postfix submission port", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// MAIL_CONFIG for Postfix commands (postqueue, postsuper, postmap, sendmail).
    pub fn env(&self) -> (&'static str, &Path) {
        ("MAIL_CONFIG", &self.config_dir)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("postfix.log")).unwrap_or_default()
    }

    /// `postqueue -j`, one JSON value per message.
    pub fn queue(&self) -> Vec<serde_json::Value> {
        let out = run(Command::new("/usr/sbin/postqueue")
            .arg("-j")
            .env("MAIL_CONFIG", &self.config_dir));
        out.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Queued messages of `sender` in `queue` (e.g. "hold", "deferred").
    pub fn queued(&self, sender: &str, queue: &str) -> usize {
        self.queue()
            .iter()
            .filter(|m| m["sender"] == sender && m["queue_name"] == queue)
            .count()
    }

    pub fn wait_queue(&self, what: &str, mut ok: impl FnMut(&Self) -> bool) {
        wait_until(what, Duration::from_secs(20), || ok(self));
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if let Some(pid) = self.master_pid {
            let _ = Command::new("/usr/sbin/postfix")
                .arg("-c")
                .arg(&self.config_dir)
                .arg("stop")
                .output();
            let deadline = Instant::now() + Duration::from_secs(5);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if alive(pid) {
                kill(pid);
            }
        }
    }
}
