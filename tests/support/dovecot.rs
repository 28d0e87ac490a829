//! A private Dovecot from Debian's package, under a temp directory: passwd-file users,
//! IMAP on a loopback port and the auth socket Postfix uses; stopped by its pid when
//! the value is dropped. (`mailstack` re-exports it beside Postfix.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::fail2ban::stdout_of;
use super::mailstack::{alive, kill, need, start_daemon};
use super::smtp_sink::free_port;
use super::wait_until;

/// A private Dovecot: passwd-file users, IMAP on a loopback port, and the auth socket
/// Postfix uses for SMTP AUTH.
pub struct Dovecot {
    pub root: PathBuf,
    pub config: PathBuf,
    pub users: PathBuf,
    pub auth_socket: PathBuf,
    pub imap_port: u16,
    /// `doveadm` bound to this instance's config, for f2b-mailguard's `[dovecot] doveadm`.
    pub doveadm: PathBuf,
    master_pid: Option<u32>,
}

impl Dovecot {
    /// `users`: (login, password) pairs.
    pub fn configure(root: &Path, users: &[(&str, &str)]) -> Self {
        need("/usr/sbin/dovecot");
        let root = root.join("dovecot");
        for d in ["run", "state", "mail"] {
            std::fs::create_dir_all(root.join(d)).expect("dovecot dirs");
        }
        stdout_of(
            Command::new("chown")
                .args(["nobody:nogroup"])
                .arg(root.join("mail")),
        );
        let users_file = root.join("users");
        let lines: String = users
            .iter()
            .map(|(u, p)| format!("{u}:{{PLAIN}}{p}::::::\n"))
            .collect();
        std::fs::write(&users_file, lines).expect("users");
        let auth_socket = root.join("postfix-auth");
        let imap_port = free_port();
        let r = root.display();
        // Dovecot's default `auth_username_chars` is ASCII letters, digits and `.-_@`:
        // an internationalised name logs in only where the admin empties it.
        let any_chars = if users.iter().any(|(u, _)| !u.is_ascii()) {
            "auth_username_chars =\n"
        } else {
            ""
        };
        // auth_failure_delay: failed and refused logins answered at once, not after
        // Dovecot's default 2 s; bots refused by the policy service retry for the
        // rest of their attack, and each wait only held the test's thread.
        let conf = format!(
            "base_dir = {r}/run\n\
             state_dir = {r}/state\n\
             instance_name = mailguard-test-{imap_port}\n\
             log_path = {r}/dovecot.log\n\
             protocols = imap\n\
             listen = 127.0.0.1\n\
             ssl = no\n\
             disable_plaintext_auth = no\n\
             auth_mechanisms = plain login\n\
             auth_verbose = yes\n\
             auth_failure_delay = 0\n\
             {any_chars}auth_cache_size = 1M\n\
             default_internal_user = dovecot\n\
             default_login_user = dovenull\n\
             first_valid_uid = 1\n\
             mail_location = maildir:{r}/mail/%u\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {users}\n}}\n\
             userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={r}/mail/%u\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {imap_port}\n  }}\n}}\n\
             service auth {{\n  unix_listener {sock} {{\n    mode = 0660\n    user = postfix\n    group = postfix\n  }}\n}}\n",
            users = users_file.display(),
            sock = auth_socket.display(),
        );
        let config = root.join("dovecot.conf");
        std::fs::write(&config, conf).expect("dovecot.conf");
        let doveadm = root.join("doveadm");
        std::fs::write(
            &doveadm,
            format!(
                "#!/bin/sh\nexec /usr/bin/doveadm -c {} \"$@\"\n",
                config.display()
            ),
        )
        .expect("doveadm wrapper");
        stdout_of(Command::new("chmod").arg("755").arg(&doveadm));
        Self {
            root,
            config,
            users: users_file,
            auth_socket,
            imap_port,
            doveadm,
            master_pid: None,
        }
    }

    pub fn start(&mut self) {
        start_daemon(
            Command::new("/usr/sbin/dovecot")
                .arg("-c")
                .arg(&self.config),
            &self.root.join("start.out"),
        );
        let pidfile = self.root.join("run/master.pid");
        wait_until("dovecot master pid", Duration::from_secs(10), || {
            std::fs::read_to_string(&pidfile).is_ok_and(|p| p.trim().parse::<u32>().is_ok())
        });
        self.master_pid = Some(
            std::fs::read_to_string(&pidfile)
                .expect("pid")
                .trim()
                .parse()
                .expect("pid"),
        );
        let (port, sock) = (self.imap_port, self.auth_socket.clone());
        wait_until("dovecot imap and auth", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && sock.exists()
        });
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("dovecot.log")).unwrap_or_default()
    }

    /// Adds settings to the config before `start` (the auth policy, trusted networks).
    pub fn add_config(&self, extra: &str) {
        let mut conf = std::fs::read_to_string(&self.config).expect("dovecot.conf");
        conf.push_str(extra);
        std::fs::write(&self.config, conf).expect("dovecot.conf");
    }

    /// An IMAP LOGIN as a client at `client_addr` (the ID command's x-originating-ip,
    /// honoured from `login_trusted_networks`, as a proxy or webmail passes it on).
    pub fn imap_login_from(&self, client_addr: &str, user: &str, password: &str) -> bool {
        self.imap_session(
            &format!("a0 ID (\"x-originating-ip\" \"{client_addr}\")\r\n"),
            user,
            password,
        )
    }

    /// Whether `user` can log in with `password` (a real IMAP LOGIN).
    pub fn imap_login(&self, user: &str, password: &str) -> bool {
        self.imap_session("", user, password)
    }

    fn imap_session(&self, first: &str, user: &str, password: &str) -> bool {
        use std::io::{BufRead, BufReader, Write};
        let Ok(conn) = std::net::TcpStream::connect(("127.0.0.1", self.imap_port)) else {
            return false;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
        let mut out = conn.try_clone().expect("clone");
        let mut input = BufReader::new(conn);
        let mut line = String::new();
        let _ = input.read_line(&mut line);
        if !first.is_empty() {
            let _ = out.write_all(first.as_bytes());
            loop {
                line.clear();
                if input.read_line(&mut line).unwrap_or(0) == 0 || line.starts_with("a0 ") {
                    break;
                }
            }
        }
        let _ = write!(out, "a1 LOGIN \"{user}\" \"{password}\"\r\n");
        loop {
            line.clear();
            if input.read_line(&mut line).unwrap_or(0) == 0 {
                return false;
            }
            if line.starts_with("a1 ") {
                let _ = out.write_all(b"a2 LOGOUT\r\n");
                return line.starts_with("a1 OK");
            }
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Some(pid) = self.master_pid {
            kill(pid);
            super::try_wait_until(Duration::from_secs(5), || !alive(pid));
        }
    }
}
