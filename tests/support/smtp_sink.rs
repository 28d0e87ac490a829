//! A tiny SMTP server on loopback standing for the outside world and the admin's
//! mailbox: accepts everything, keeps what it received.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// A recipient out on the Internet, which the sink stands for.
pub const TO: &str = "someone@remote.example";

#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// The first of `mails` whose subject ends with `suffix`.
pub fn with_subject<'a>(mails: &'a [Received], suffix: &str) -> Option<&'a Received> {
    mails
        .iter()
        .find(|m| m.header("Subject").is_some_and(|s| s.ends_with(suffix)))
}

impl Received {
    /// A header as a mail client shows it: folded lines joined, RFC 2047 words decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        let mut value: Option<String> = None;
        for line in self.data.lines().take_while(|l| !l.is_empty()) {
            match &mut value {
                Some(v) if line.starts_with([' ', '\t']) => v.push_str(line),
                Some(_) => break,
                None if line.to_ascii_lowercase().starts_with(&prefix) => {
                    value = Some(line[prefix.len()..].to_owned())
                }
                None => {}
            }
        }
        value.map(|v| decode_words(v.trim()))
    }
}

/// A quoted-printable text decoded (lettre uses it for long lines).
pub fn quoted_printable(data: &str) -> String {
    let joined = data.replace("=\r\n", "").replace("=\n", "");
    let raw = joined.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let hex = raw
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (raw[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'=', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The bytes of one encoded word's text, in encoding `enc` (`B` or `Q`).
pub fn decode_word(enc: &str, text: &str) -> Vec<u8> {
    use base64::Engine as _;
    if enc.eq_ignore_ascii_case("b") {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap_or_default()
    } else {
        let mut b = Vec::new();
        let raw = text.as_bytes();
        let mut i = 0;
        while i < raw.len() {
            match raw[i] {
                b'_' => b.push(b' '),
                b'=' if i + 2 < raw.len() => {
                    let hex = std::str::from_utf8(&raw[i + 1..i + 3]).unwrap_or("3F");
                    b.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                    i += 2;
                }
                c => b.push(c),
            }
            i += 1;
        }
        b
    }
}

/// Decodes `=?charset?B|Q?text?=` words; whitespace between two encoded words is dropped.
fn decode_words(v: &str) -> String {
    let mut out = String::new();
    let mut last_was_word = false;
    for part in v.split([' ', '\t']).filter(|p| !p.is_empty()) {
        let word = part
            .strip_prefix("=?")
            .and_then(|p| p.strip_suffix("?="))
            .and_then(|p| {
                let mut it = p.splitn(3, '?');
                Some((it.next()?, it.next()?, it.next()?))
            });
        match word {
            Some((_, enc, text)) => {
                let bytes = decode_word(enc, text);
                if !last_was_word && !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(&String::from_utf8_lossy(&bytes));
                last_was_word = true;
            }
            None => {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(part);
                last_was_word = false;
            }
        }
    }
    out
}

/// Recipients whose address starts with this do not exist here: RCPT gets 550, so
/// Postfix bounces them (`status=bounced`).
pub const GONE: &str = "gone";

pub struct SmtpSink {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    /// Milliseconds to wait before accepting a message's data (a slow server).
    delay: Arc<std::sync::atomic::AtomicU64>,
    /// Answer every RCPT with 451 (a remote server that defers).
    tempfail: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Ports handed out in this test binary, to `free_port` or to a sink. A port from
/// `free_port` is often bound only later (a private Postfix's listener), or on purpose
/// not at all (a mail server that is down), while other tests run beside it; the
/// kernel would hand it out again meanwhile, so this never does.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A loopback listener on a port never handed out before in this test binary.
fn fresh_listener() -> TcpListener {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("free port");
        let port = listener.local_addr().expect("addr").port();
        if HANDED_OUT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(port)
        {
            return listener;
        }
    }
}

/// A loopback port that was free a moment ago (for a server started later).
pub fn free_port() -> u16 {
    fresh_listener().local_addr().expect("addr").port()
}

impl SmtpSink {
    pub fn start() -> Self {
        Self::serve(fresh_listener())
    }

    pub fn start_on(port: u16) -> Self {
        Self::serve(TcpListener::bind(("127.0.0.1", port)).expect("bind sink"))
    }

    fn serve(listener: TcpListener) -> Self {
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let delay = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let tempfail = Arc::new(AtomicBool::new(false));
        let (r, s, d, t) = (
            received.clone(),
            stop.clone(),
            delay.clone(),
            tempfail.clone(),
        );
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (r, d, t) = (r.clone(), d.clone(), t.clone());
                        thread::spawn(move || {
                            let _ = serve(conn, &r, &d, &t);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self {
            port,
            received,
            stop,
            delay,
            tempfail,
            thread: Some(thread),
        }
    }

    /// From now on, wait this long before accepting each message's data.
    pub fn set_delay(&self, delay: Duration) {
        self.delay
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn set_tempfail(&self, on: bool) {
        self.tempfail.store(on, Ordering::Relaxed);
    }

    pub fn messages(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// Waits until `n` messages arrived (or the timeout passed) and returns them.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        super::try_wait_until(timeout, || self.messages().len() >= n);
        self.messages()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    conn: TcpStream,
    received: &Mutex<Vec<Received>>,
    delay: &std::sync::atomic::AtomicU64,
    tempfail: &AtomicBool,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = conn.try_clone()?;
    let mut input = BufReader::new(conn);
    out.write_all(b"220 sink.example.test ESMTP test sink\r\n")?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_owned();
        let upper = cmd.to_ascii_uppercase();
        let arg = |s: &str| {
            s.split_once(':')
                .map(|(_, a)| {
                    a.trim()
                        .trim_matches(['<', '>'])
                        .split(' ')
                        .next()
                        .unwrap_or("")
                        .trim_matches(['<', '>'])
                        .to_owned()
                })
                .unwrap_or_default()
        };
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            out.write_all(b"250-sink.example.test\r\n250 8BITMIME\r\n")?;
        } else if upper.starts_with("MAIL FROM") {
            from = arg(&cmd);
            to.clear();
            out.write_all(b"250 2.1.0 Ok\r\n")?;
        } else if upper.starts_with("RCPT TO") && tempfail.load(Ordering::Relaxed) {
            out.write_all(b"451 4.3.0 Try again later\r\n")?;
        } else if upper.starts_with("RCPT TO") && arg(&cmd).starts_with(GONE) {
            out.write_all(b"550 5.1.1 Recipient address rejected: User unknown\r\n")?;
        } else if upper.starts_with("RCPT TO") {
            to.push(arg(&cmd));
            out.write_all(b"250 2.1.5 Ok\r\n")?;
        } else if upper == "DATA" {
            out.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
            let mut data = String::new();
            loop {
                line.clear();
                if input.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                if line.trim_end_matches(['\r', '\n']) == "." {
                    break;
                }
                data.push_str(
                    line.strip_prefix('.')
                        .unwrap_or(&line)
                        .trim_end_matches(['\r', '\n']),
                );
                data.push('\n');
            }
            // A client that goes away while we wait has not delivered anything.
            let wait = delay.load(Ordering::Relaxed);
            if wait > 0 {
                thread::sleep(Duration::from_millis(wait));
                let sock = input.get_ref();
                sock.set_nonblocking(true)?;
                let gone = matches!(sock.peek(&mut [0u8; 1]), Ok(0));
                sock.set_nonblocking(false)?;
                if gone {
                    return Ok(());
                }
            }
            received.lock().expect("lock").push(Received {
                from: from.clone(),
                to: to.clone(),
                data,
            });
            out.write_all(b"250 2.0.0 Ok: queued as SINK\r\n")?;
        } else if upper == "QUIT" {
            out.write_all(b"221 2.0.0 Bye\r\n")?;
            return Ok(());
        } else {
            out.write_all(b"250 2.0.0 Ok\r\n")?;
        }
    }
}
