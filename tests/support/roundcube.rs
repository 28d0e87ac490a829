//! A real Roundcube (Debian's roundcube-core 1.6, installed by tests/run) under PHP's
//! built-in server on a loopback port, with its own config, SQLite database, logs and
//! IMAP to a private Dovecot. PHP runs as www-data, as under Debian's web servers, in
//! a private mount namespace whose /dev is a tmpfs with `/dev/log` pointing at a
//! socket of the test, so `log_driver = syslog` is received here; nothing system-wide
//! is touched. PHP is stopped by its pid on drop.

use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::fail2ban::{need, stdout_of};
use super::smtp_sink::free_port;
use super::wait_until;

/// Debian's www-data, the user PHP runs as here.
pub const WEB_UID: u32 = 33;
/// Debian's Roundcube application directory (program/, index.php, skins/).
const APP: &str = "/var/lib/roundcube";

/// Sets up the namespace: the host's /dev stays as it is, PHP sees a /dev with
/// null, zero, random, urandom and log only. Then runs "$@" as www-data.
const NAMESPACE: &str = r#"set -e
r=$1; shift
mount --make-rprivate /
for n in null zero random urandom; do : > "$r/dev-$n"; mount --bind "/dev/$n" "$r/dev-$n"; done
mount -t tmpfs -o mode=755 mailguard-test /dev
for n in null zero random urandom; do : > "/dev/$n"; mount --bind "$r/dev-$n" "/dev/$n"; done
ln -s "$r/syslog.sock" /dev/log
cd /var/lib/roundcube
exec setpriv --reuid=www-data --regid=www-data --clear-groups "$@"
"#;

pub struct Roundcube {
    pub root: PathBuf,
    pub port: u16,
    syslog: Syslog,
    php: Child,
}

/// Receives syslog datagrams as they come: a sender blocks once a few are queued.
struct Syslog {
    got: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syslog {
    fn bind(path: &Path) -> Self {
        let sock = UnixDatagram::bind(path).expect("syslog socket");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, st) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !st.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    g.lock().expect("lock").push(text);
                }
            }
        });
        Self {
            got,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Syslog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One HTTP answer: status, Set-Cookie values (name=value), body.
pub struct Response {
    pub status: u16,
    pub cookies: Vec<String>,
    pub body: String,
}

impl Roundcube {
    /// Starts Roundcube under `dir` with `log_driver` ("file" or "syslog"), logging
    /// logins (log_logins) and reaching IMAP on 127.0.0.1:`imap_port`.
    pub fn start(dir: &Path, imap_port: u16, log_driver: &str) -> Self {
        for p in [
            "/usr/bin/php",
            "/usr/bin/sqlite3",
            "/usr/bin/unshare",
            "/usr/bin/setpriv",
        ] {
            need(p);
        }
        need(&format!("{APP}/index.php"));
        let root = dir.join("roundcube");
        for d in ["config", "logs", "temp"] {
            std::fs::create_dir_all(root.join(d)).expect("roundcube dirs");
        }
        // www-data must reach the socket and its own files under the test's temp dir.
        stdout_of(Command::new("chmod").arg("755").arg(dir));
        let config = root.join("config");
        std::os::unix::fs::symlink(
            "/etc/roundcube/defaults.inc.php",
            config.join("defaults.inc.php"),
        )
        .expect("defaults.inc.php");
        let r = root.display();
        std::fs::write(
            config.join("config.inc.php"),
            format!(
                "<?php\n$config = [];\n\
                 $config['db_dsnw'] = 'sqlite:///{r}/roundcube.db?mode=0600';\n\
                 $config['imap_host'] = '127.0.0.1:{imap_port}';\n\
                 $config['smtp_host'] = '127.0.0.1:1';\n\
                 $config['log_dir'] = '{r}/logs/';\n\
                 $config['temp_dir'] = '{r}/temp/';\n\
                 $config['log_driver'] = '{log_driver}';\n\
                 $config['log_logins'] = true;\n\
                 $config['des_key'] = 'mailguard-test-des-key-1';\n\
                 $config['plugins'] = [];\n"
            ),
        )
        .expect("config.inc.php");
        let db = root.join("roundcube.db");
        let schema = std::fs::File::open("/usr/share/roundcube/SQL/sqlite.initial.sql")
            .expect("Roundcube's SQLite schema");
        let out = Command::new("sqlite3")
            .arg(&db)
            .stdin(schema)
            .output()
            .expect("sqlite3");
        assert!(out.status.success(), "schema: {out:?}");
        stdout_of(
            Command::new("chown")
                .args(["-R", "www-data:www-data"])
                .arg(&root),
        );
        let syslog = Syslog::bind(&root.join("syslog.sock"));
        stdout_of(
            Command::new("chmod")
                .arg("666")
                .arg(root.join("syslog.sock")),
        );
        let port = free_port();
        let out = std::fs::File::create(root.join("php.out")).expect("php.out");
        // unshare and sh exec: the child's pid ends up as PHP's.
        let php = Command::new("unshare")
            .args(["--mount", "sh", "-c", NAMESPACE, "sh"])
            .arg(&root)
            .args(["php", "-S", &format!("127.0.0.1:{port}")])
            .env("ROUNDCUBE_CONFIG_DIR", &config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone"))
            .stderr(out)
            .spawn()
            .expect("php -S");
        let rc = Self {
            root,
            port,
            syslog,
            php,
        };
        wait_until("Roundcube under php -S", Duration::from_secs(15), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        rc
    }

    pub fn pid(&self) -> u32 {
        self.php.id()
    }

    /// logs/userlogins.log (log_driver = file).
    pub fn userlogins(&self) -> PathBuf {
        self.root.join("logs/userlogins.log")
    }

    /// The syslog messages received since the last call, as sent
    /// (`<PRI>Mmm dd hh:mm:ss TAG: MSG`), once 300 ms passed without a new one.
    pub fn syslog(&self) -> Vec<String> {
        let count = || self.syslog.got.lock().expect("lock").len();
        let mut seen = count();
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = count();
            if now == seen {
                break;
            }
            seen = now;
        }
        std::mem::take(&mut *self.syslog.got.lock().expect("lock"))
    }

    /// One request to Roundcube; `extra` are whole header lines.
    pub fn http(&self, method: &str, body: &str, extra: &[String]) -> Response {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut req = format!(
            "{method} /?_task=login HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        for h in extra {
            req.push_str(&format!("{h}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        conn.write_all(req.as_bytes()).expect("send");
        let mut answer = String::new();
        conn.read_to_string(&mut answer).expect("answer");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        let cookies = head
            .lines()
            .filter_map(|l| l.strip_prefix("Set-Cookie: "))
            .filter_map(|c| c.split(';').next())
            .map(str::to_owned)
            .collect();
        Response {
            status,
            cookies,
            body: body.to_owned(),
        }
    }

    /// A real login as the browser does it: the login page's session cookie and
    /// `_token`, then the form. `extra` header lines (e.g. X-Real-IP). Returns the status
    /// (302 on success).
    pub fn login(&self, user: &str, pass: &str, extra: &[String]) -> u16 {
        let page = self.http("GET", "", &[]);
        let token = page
            .body
            .split("name=\"_token\" value=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("_token on the login page");
        let cookie = page
            .cookies
            .iter()
            .rfind(|c| c.starts_with("roundcube_sessid="))
            .expect("session cookie");
        let mut headers = vec![format!("Cookie: {cookie}")];
        headers.extend_from_slice(extra);
        let body = form(&[
            ("_token", token),
            ("_task", "login"),
            ("_action", "login"),
            ("_timezone", "UTC"),
            ("_url", ""),
            ("_user", user),
            ("_pass", pass),
        ]);
        self.http("POST", &body, &headers).status
    }

    /// A login form posted by anyone: no session, no token. Returns the status.
    pub fn post_login(&self, user: &str) -> u16 {
        let body = form(&[
            ("_task", "login"),
            ("_action", "login"),
            ("_user", user),
            ("_pass", "x"),
        ]);
        self.http("POST", &body, &[]).status
    }
}

/// application/x-www-form-urlencoded.
fn form(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Drop for Roundcube {
    fn drop(&mut self) {
        let _ = self.php.kill();
        let _ = self.php.wait();
    }
}
