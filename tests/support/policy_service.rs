//! The in-band policy service (`serve`) wired into a private Dovecot and Postfix as
//! docs/policy-service.md says, and its process, stopped by pid when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::mailstack::{Dovecot, Postfix, PostfixSetup};
use super::smtp_sink::{free_port, SmtpSink};
use super::{assert_success, wait_until, Sandbox};

pub const KEY: &str = "policy-test-key";

/// Where the service listens: Dovecot's HTTP port and Postfix's Unix socket.
pub struct Wiring {
    pub dovecot_port: u16,
    pub socket: PathBuf,
}

impl Wiring {
    pub fn new(dir: &Path) -> Self {
        Self {
            dovecot_port: free_port(),
            socket: dir.join("policy.sock"),
        }
    }

    /// Dovecot asks the service about every authentication (before it starts).
    pub fn dovecot(&self, dv: &Dovecot) {
        dv.add_config(&format!(
            "auth_policy_server_url = http://127.0.0.1:{}/\n\
             auth_policy_server_api_header = X-API-Key: {KEY}\n\
             auth_policy_hash_nonce = test-nonce\n\
             auth_policy_server_timeout_msecs = 1000\n\
             auth_policy_reject_on_fail = no\n\
             login_trusted_networks = 127.0.0.0/8\n",
            self.dovecot_port
        ));
    }

    /// Postfix asks the service at every message's end of data (before it starts).
    pub fn postfix(&self, pf: &Postfix) {
        let out = Command::new("/usr/sbin/postconf")
            .arg("-c")
            .arg(&pf.config_dir)
            .arg("-e")
            .arg(format!(
                "smtpd_end_of_data_restrictions = check_policy_service {{ unix:{}, timeout=1s, try_limit=1, default_action=DUNNO }}",
                self.socket.display()
            ))
            .output()
            .unwrap();
        assert_success("postconf", &out);
    }

    /// The service's `[policy]` table.
    pub fn config(&self) -> String {
        format!(
            "[policy]\nenabled = true\ndovecot_listen = \"127.0.0.1:{}\"\ndovecot_api_key = \"{KEY}\"\npostfix_listen = \"unix:{}\"\npostfix_group = \"postfix\"\n",
            self.dovecot_port,
            self.socket.display()
        )
    }

    /// Starts `serve` with the sandbox's config, its output in `serve.log` there, and
    /// waits until both listeners answer.
    pub fn start(&self, s: &Sandbox) -> Service {
        let log = std::fs::File::create(s.path().join("serve.log")).unwrap();
        let child = s
            .cmd()
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let service = Service(child);
        let (port, sock) = (self.dovecot_port, &self.socket);
        wait_until("the policy service", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && std::os::unix::net::UnixStream::connect(sock).is_ok()
        });
        service
    }
}

/// An SMTP sink that stands for the Internet, Dovecot for `users` (running), and a
/// Postfix relaying to the sink with SMTP AUTH through that Dovecot (configured, not
/// started: the test's own settings come first); with `wiring`, both ask the service.
pub fn relay_stack(
    dir: &Path,
    users: &[(&str, &str)],
    wiring: Option<&Wiring>,
) -> (SmtpSink, Dovecot, Postfix) {
    let sink = SmtpSink::start();
    let mut dv = Dovecot::configure(dir, users);
    if let Some(w) = wiring {
        w.dovecot(&dv);
    }
    dv.start();
    let pf = Postfix::configure(
        dir,
        &PostfixSetup {
            relay_port: sink.port,
            defer_outbound: false,
            sasl_socket: Some(&dv.auth_socket),
            submission_restrictions: None,
        },
    );
    if let Some(w) = wiring {
        w.postfix(&pf);
    }
    (sink, dv, pf)
}

/// The running service.
pub struct Service(Child);

impl Drop for Service {
    /// Kills it (SIGKILL, by pid) and waits for it.
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
