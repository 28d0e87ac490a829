//! An SMTP client for the private Postfix: one session from a faked client address
//! (XCLIENT, allowed from loopback there), optionally authenticated, that can submit
//! several messages, as a mail client or a spam bot keeping its connection open does.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct Session {
    out: TcpStream,
    input: BufReader<TcpStream>,
    /// When the last message's end of data went out (ms since 1970): from then on
    /// the server decides about it.
    pub data_end_ms: i64,
}

impl Session {
    /// Connects to `port`, says EHLO and takes `client_addr` as its address.
    /// Err: the first refusal (or I/O error) as text.
    pub fn connect(port: u16, client_addr: &str) -> Result<Self, String> {
        let conn = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        let out = conn.try_clone().map_err(|e| e.to_string())?;
        let mut s = Self {
            out,
            input: BufReader::new(conn),
            data_end_ms: 0,
        };
        s.step(None, '2')?;
        s.step(Some("EHLO client.example.net\r\n"), '2')?;
        s.step(
            Some(&format!(
                "XCLIENT ADDR={client_addr} NAME=[UNAVAILABLE]\r\n"
            )),
            '2',
        )?;
        s.step(Some("EHLO client.example.net\r\n"), '2')?;
        Ok(s)
    }

    /// As `connect`, then logs in with `login` if given.
    pub fn open(port: u16, client_addr: &str, login: Option<(&str, &str)>) -> Result<Self, String> {
        let mut s = Self::connect(port, client_addr)?;
        if let Some((user, password)) = login {
            s.auth(user, password)?;
        }
        Ok(s)
    }

    /// AUTH PLAIN; the server's reply either way.
    pub fn auth(&mut self, user: &str, password: &str) -> Result<String, String> {
        use base64::Engine as _;
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.step(Some(&format!("AUTH PLAIN {token}\r\n")), '2')
    }

    /// One message: `data` is its header and body (lines ending in CRLF, no final
    /// dot). Returns the server's reply to the data, or the first refusal; after a
    /// refusal the session is reset and can go on.
    pub fn send(&mut self, from: &str, to: &str, data: &str) -> Result<String, String> {
        self.send_to_all(from, &[to], data)
    }

    /// As `send`, one message to every one of `to`.
    pub fn send_to_all(&mut self, from: &str, to: &[&str], data: &str) -> Result<String, String> {
        let sent = self.transaction(from, to, data);
        if sent.is_err() {
            let _ = self.step(Some("RSET\r\n"), '2');
        }
        sent
    }

    fn transaction(&mut self, from: &str, to: &[&str], data: &str) -> Result<String, String> {
        self.step(Some(&format!("MAIL FROM:<{from}>\r\n")), '2')?;
        for to in to {
            self.step(Some(&format!("RCPT TO:<{to}>\r\n")), '2')?;
        }
        self.step(Some("DATA\r\n"), '3')?;
        // Dot-stuffing: a line starting with "." gets another.
        let stuffed = data.replace("\r\n.", "\r\n..");
        let stuffed = stuffed
            .strip_prefix('.')
            .map_or(stuffed.clone(), |s| format!("..{s}"));
        self.data_end_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.step(Some(&format!("{stuffed}.\r\n")), '2')
    }

    pub fn quit(mut self) {
        let _ = self.step(Some("QUIT\r\n"), '2');
    }

    fn step(&mut self, cmd: Option<&str>, want: char) -> Result<String, String> {
        if let Some(c) = cmd {
            self.out
                .write_all(c.as_bytes())
                .map_err(|e| e.to_string())?;
        }
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.input.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err(format!("connection closed after {all:?}"));
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
        let r = all.trim_end().to_owned();
        if r.starts_with(want) {
            Ok(r)
        } else {
            Err(r)
        }
    }
}

/// The plain message the helpers send: a From, To and Subject header and `body`.
pub fn message(from: &str, to: &str, subject: &str, body: &str) -> String {
    format!("From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\r\n{body}\r\n")
}
