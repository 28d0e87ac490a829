//! Real Postfix (and Dovecot) from Debian's packages, as private instances under a
//! temp directory: own config, spool, log and loopback ports; nothing system-wide is
//! touched. Every daemon is stopped by its pid when the value is dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::fail2ban::stdout_of;
use super::smtp_client::{message, Session};
use super::smtp_sink::free_port;
use super::wait_until;

pub use super::dovecot::Dovecot;

pub(super) fn need(program: &str) {
    assert!(
        Path::new(program).exists(),
        "{program} is missing: run tests/run, which installs the mail stack (postfix, postfix-lmdb, dovecot)"
    );
}

/// Starts a daemon that forks into the background. Its output goes to a file, not a
/// pipe: the daemon keeps the inherited descriptors, and a pipe would never see EOF.
pub(super) fn start_daemon(cmd: &mut Command, errors: &Path) {
    let file = std::fs::File::create(errors).expect("daemon output file");
    let status = cmd
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().expect("clone"))
        .stderr(file)
        .status()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        status.success(),
        "{cmd:?} failed: {}",
        std::fs::read_to_string(errors).unwrap_or_default()
    );
}

pub fn kill(pid: u32) {
    let _ = Command::new("kill").arg(pid.to_string()).status();
}

pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

pub struct Postfix {
    pub root: PathBuf,
    pub config_dir: PathBuf,
    pub sasl_map: PathBuf,
    pub submission_port: u16,
    /// Port 25's stand-in: no AUTH, mail accepted only for `RELAYED_DOMAIN`, as an MX
    /// accepts it from anyone on the Internet.
    pub mx_port: u16,
    master_pid: Option<u32>,
}

/// The domain the private Postfix relays for: mail to it comes in on `mx_port` without
/// AUTH and goes out to the relay host.
pub const RELAYED_DOMAIN: &str = "partner.example.test";

/// Options of the private Postfix.
pub struct PostfixSetup<'a> {
    /// Where outbound mail goes (the sink standing for the Internet).
    pub relay_port: u16,
    /// Keep outbound mail in the queue instead of delivering it.
    pub defer_outbound: bool,
    /// Dovecot's auth socket for SMTP AUTH, if any.
    pub sasl_socket: Option<&'a Path>,
    /// The submission service's smtpd_recipient_restrictions; `None`: the right one,
    /// check_sasl_access on our map before permit_sasl_authenticated. `{map}` is
    /// replaced by the map.
    pub submission_restrictions: Option<&'a str>,
}

impl Postfix {
    /// A started Postfix under `root` relaying to `relay_port`, with SMTP AUTH through
    /// Dovecot's `auth_socket` and the usual submission restrictions.
    pub fn submitting(root: &Path, relay_port: u16, auth_socket: &Path) -> Self {
        let mut pf = Self::configure(
            root,
            &PostfixSetup {
                relay_port,
                defer_outbound: false,
                sasl_socket: Some(auth_socket),
                submission_restrictions: None,
            },
        );
        pf.start();
        pf
    }

    /// Writes a private Postfix under `root` (config, spool, data, log) and an empty
    /// check_sasl_access map in lmdb, placed before permit_sasl_authenticated.
    pub fn configure(root: &Path, setup: &PostfixSetup) -> Self {
        need("/usr/sbin/postfix");
        let root = root.join("postfix");
        let etc = root.join("etc");
        for d in ["etc", "spool", "data"] {
            std::fs::create_dir_all(root.join(d)).expect("postfix dirs");
        }
        stdout_of(Command::new("chown").arg("postfix").arg(root.join("data")));
        let map = root.join("etc/mailguard_sasl_access");
        std::fs::write(&map, "").expect("map");
        stdout_of(Command::new("/usr/sbin/postmap").arg(format!("lmdb:{}", map.display())));
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
             relay_domains = {RELAYED_DOMAIN}\n\
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
        let map_ref = format!("lmdb:{}", map.display());
        let restrictions = setup
            .submission_restrictions
            .unwrap_or("check_sasl_access,{map},permit_sasl_authenticated,reject")
            .replace("{map}", &map_ref);
        master.push_str(&format!(
            "127.0.0.1:{port} inet n - n - - smtpd\n  -o syslog_name=postfix/submission\n  -o smtpd_sasl_auth_enable={sasl_enable}\n  -o smtpd_recipient_restrictions={restrictions}\n  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject\n"
        ));
        let mx_port = free_port();
        master.push_str(&format!(
            "127.0.0.1:{mx_port} inet n - n - - smtpd\n  -o smtpd_sasl_auth_enable=no\n  -o smtpd_relay_restrictions=permit_auth_destination,reject\n  -o smtpd_recipient_restrictions=permit_auth_destination,reject\n"
        ));
        std::fs::write(etc.join("master.cf"), master).expect("master.cf");
        stdout_of(
            Command::new("/usr/sbin/postconf")
                .arg("-c")
                .arg(&etc)
                .args(["-F", "*/*/chroot = n"]),
        );
        stdout_of(
            Command::new("/usr/sbin/postfix")
                .arg("-c")
                .arg(&etc)
                .arg("check"),
        );
        Self {
            root,
            config_dir: etc,
            sasl_map: map,
            submission_port: port,
            mx_port,
            master_pid: None,
        }
    }

    /// A started Postfix without SMTP AUTH relaying to `relay_port`, for mail injected
    /// with sendmail: deferred by the sink when it answers 4xx, or held in the queue
    /// with `defer_outbound`.
    pub fn relaying(root: &Path, relay_port: u16, defer_outbound: bool) -> Self {
        let mut pf = Self::configure(
            root,
            &PostfixSetup {
                relay_port,
                defer_outbound,
                sasl_socket: None,
                submission_restrictions: None,
            },
        );
        pf.start();
        pf
    }

    pub fn start(&mut self) {
        for attempt in 1.. {
            // `configure` ran `postfix check` (missing queue directories made, owners
            // and modes checked): quick-start spares each start the same checks.
            std::fs::write(self.root.join("spool/quick-start"), "").expect("quick-start");
            let mut cmd = Command::new("/usr/sbin/postfix");
            cmd.arg("-c").arg(&self.config_dir).arg("start");
            let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
            if out.status.success() {
                break;
            }
            // `free_port` found the port free when the instance was configured; a test
            // running beside this one can have taken it since. Postfix says so in its log.
            let log = self.log();
            if attempt < 3 && log.contains("Address already in use") {
                self.move_ports();
                continue;
            }
            panic!(
                "{cmd:?} failed: {}{}\npostfix.log:\n{log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
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

    /// Moves both listeners to other free ports (master.cf and ours).
    fn move_ports(&mut self) {
        let master = self.config_dir.join("master.cf");
        let mut text = std::fs::read_to_string(&master).expect("master.cf");
        for port in [&mut self.submission_port, &mut self.mx_port] {
            let new = free_port();
            text = text.replace(
                &format!("127.0.0.1:{port} inet"),
                &format!("127.0.0.1:{new} inet"),
            );
            *port = new;
        }
        std::fs::write(&master, text).expect("master.cf");
    }

    /// MAIL_CONFIG for Postfix commands (postqueue, postsuper, postmap, sendmail).
    pub fn env(&self) -> (&'static str, &Path) {
        ("MAIL_CONFIG", &self.config_dir)
    }

    /// `postmap -q KEY` against the SASL map, as smtpd looks it up (this instance's
    /// main.cf: `smtputf8_enable` is Debian's default, yes). None: not in the map.
    pub fn map_lookup(&self, key: &str) -> Option<String> {
        let out = Command::new("/usr/sbin/postmap")
            .env("MAIL_CONFIG", &self.config_dir)
            .arg("-q")
            .arg(key)
            .arg(format!("lmdb:{}", self.sasl_map.display()))
            .output()
            .expect("postmap -q");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("postfix.log")).unwrap_or_default()
    }

    /// Queues one local message from `from` with Postfix's own sendmail.
    pub fn sendmail(&self, from: &str, to: &str) {
        use std::io::Write;
        let mut child = Command::new("/usr/sbin/sendmail")
            .args(["-f", from, to])
            .env("MAIL_CONFIG", &self.config_dir)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sendmail");
        let _ = child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"Subject: test\n\nhello\n");
        assert!(child.wait().expect("sendmail").success());
    }

    /// `postqueue -j`, one JSON value per message.
    pub fn queue(&self) -> Vec<serde_json::Value> {
        let out = stdout_of(
            Command::new("/usr/sbin/postqueue")
                .arg("-j")
                .env("MAIL_CONFIG", &self.config_dir),
        );
        // A message moving between queue directories while showq reads them can be
        // listed twice: each queue id once, as listed last.
        let mut listed: Vec<serde_json::Value> = Vec::new();
        let mut at = std::collections::HashMap::new();
        for m in out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        {
            let id = m["queue_id"].as_str().unwrap_or_default().to_owned();
            match at.get(&id) {
                Some(&i) => listed[i] = m,
                None => {
                    at.insert(id, listed.len());
                    listed.push(m);
                }
            }
        }
        listed
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
    /// SIGTERM to the master by its pid, which is all `postfix stop` sends (the master
    /// then stops its children); the script only added a poll in whole seconds.
    fn drop(&mut self) {
        if let Some(pid) = self.master_pid {
            kill(pid);
            if !super::try_wait_until(Duration::from_secs(10), || !alive(pid)) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

/// A running mail server: Dovecot with `users`, and Postfix doing SMTP AUTH through it
/// and keeping outbound mail queued (relay to `relay_port` deferred).
pub fn mail_server(dir: &Path, users: &[(&str, &str)], relay_port: u16) -> (Dovecot, Postfix) {
    let mut dv = Dovecot::configure(dir, users);
    dv.start();
    let mut pf = Postfix::configure(
        dir,
        &PostfixSetup {
            relay_port,
            defer_outbound: true,
            sasl_socket: Some(&dv.auth_socket),
            submission_restrictions: None,
        },
    );
    pf.start();
    (dv, pf)
}

/// One authenticated submission through Postfix, as a mail client would do it, from a
/// faked client address (XCLIENT, allowed from loopback in the private Postfix).
/// Returns the server's final reply, or the first rejection.
pub fn submit(
    port: u16,
    client_addr: &str,
    login: (&str, &str),
    from: &str,
    to: &str,
) -> Result<String, String> {
    smtp_session(port, client_addr, Some(login), from, &[to])
}

/// As `submit`, one message to every one of `to`.
pub fn submit_to_all(
    port: u16,
    client_addr: &str,
    login: (&str, &str),
    from: &str,
    to: &[&str],
) -> Result<String, String> {
    smtp_session(port, client_addr, Some(login), from, to)
}

/// One message without AUTH, as anyone on the Internet can send it to port 25 (`mx_port`)
/// with whatever MAIL FROM they like.
pub fn deliver_unauthenticated(
    port: u16,
    client_addr: &str,
    from: &str,
    to: &str,
) -> Result<String, String> {
    smtp_session(port, client_addr, None, from, &[to])
}

fn smtp_session(
    port: u16,
    client_addr: &str,
    login: Option<(&str, &str)>,
    from: &str,
    to: &[&str],
) -> Result<String, String> {
    let mut session = Session::open(port, client_addr, login)?;
    let first = to.first().copied().unwrap_or_default();
    let done = session.send_to_all(from, to, &message(from, first, "test", "hello"))?;
    session.quit();
    Ok(done)
}
