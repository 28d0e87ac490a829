//! An IMAP client session against a private Dovecot, held open so a test can see
//! whether `doveadm kick` disconnected it.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A logged-in IMAP connection.
pub struct Session {
    input: BufReader<TcpStream>,
    out: TcpStream,
    tag: u32,
}

impl Session {
    pub fn login(port: u16, (user, password): (&str, &str)) -> Self {
        let conn = TcpStream::connect(("127.0.0.1", port)).expect("connect imap");
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let out = conn.try_clone().expect("clone");
        let mut s = Self {
            input: BufReader::new(conn),
            out,
            tag: 0,
        };
        let mut greeting = String::new();
        s.input.read_line(&mut greeting).expect("greeting");
        assert!(
            s.command(&format!("LOGIN \"{user}\" \"{password}\"")),
            "{user} logs in"
        );
        s
    }

    /// Sends one command; whether it was answered OK (false once disconnected).
    pub fn command(&mut self, cmd: &str) -> bool {
        self.tag += 1;
        let tag = format!("a{} ", self.tag);
        if write!(self.out, "{tag}{cmd}\r\n").is_err() {
            return false;
        }
        let mut line = String::new();
        loop {
            line.clear();
            match self.input.read_line(&mut line) {
                Ok(0) | Err(_) => return false,
                Ok(_) if line.starts_with(&tag) => return line[tag.len()..].starts_with("OK"),
                Ok(_) => {}
            }
        }
    }

    pub fn alive(&mut self) -> bool {
        self.command("NOOP")
    }
}
