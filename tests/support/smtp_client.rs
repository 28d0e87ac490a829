//! An SMTP client that keeps its session open, as a mail client or a bot does: AUTH
//! once, then any number of messages, each answered at its end of data.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct SmtpClient {
    out: TcpStream,
    input: BufReader<TcpStream>,
    /// When the last message's end of data went out (ms since 1970): from then on
    /// the server decides about it.
    pub data_end_ms: i64,
}

impl SmtpClient {
    /// Connects to `port`, says EHLO and takes `client_addr` as its address (XCLIENT,
    /// allowed from loopback in the private Postfix).
    pub fn connect(port: u16, client_addr: &str) -> Result<Self, String> {
        let conn = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        let out = conn.try_clone().map_err(|e| e.to_string())?;
        let mut c = Self {
            out,
            input: BufReader::new(conn),
            data_end_ms: 0,
        };
        c.step(None, '2')?;
        c.step(Some("EHLO client.example.net\r\n"), '2')?;
        c.step(
            Some(&format!(
                "XCLIENT ADDR={client_addr} NAME=[UNAVAILABLE]\r\n"
            )),
            '2',
        )?;
        c.step(Some("EHLO client.example.net\r\n"), '2')?;
        Ok(c)
    }

    /// AUTH PLAIN; the server's reply either way.
    pub fn auth(&mut self, user: &str, password: &str) -> Result<String, String> {
        use base64::Engine as _;
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.step(Some(&format!("AUTH PLAIN {token}\r\n")), '2')
    }

    /// One message; the reply to its end of data, or the first refusal.
    pub fn send(&mut self, from: &str, to: &str, subject: &str) -> Result<String, String> {
        self.step(Some(&format!("MAIL FROM:<{from}>\r\n")), '2')?;
        if let Err(e) = self.step(Some(&format!("RCPT TO:<{to}>\r\n")), '2') {
            let _ = self.step(Some("RSET\r\n"), '2');
            return Err(e);
        }
        self.step(Some("DATA\r\n"), '3')?;
        self.data_end_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.step(
            Some(&format!(
                "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\r\nhello\r\n.\r\n"
            )),
            '2',
        )
    }

    pub fn quit(mut self) {
        let _ = self.step(Some("QUIT\r\n"), '2');
    }

    fn reply(&mut self) -> Result<String, String> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.input.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err(format!("connection closed after {all:?}"));
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(all.trim_end().to_owned());
            }
        }
    }

    fn step(&mut self, cmd: Option<&str>, want: char) -> Result<String, String> {
        if let Some(c) = cmd {
            self.out
                .write_all(c.as_bytes())
                .map_err(|e| e.to_string())?;
        }
        let r = self.reply()?;
        if r.starts_with(want) {
            Ok(r)
        } else {
            Err(r)
        }
    }
}
