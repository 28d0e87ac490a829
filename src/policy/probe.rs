//! Whether the service answers, as `check`, `doctor` and `metrics` ask it: one
//! request that changes nothing on each listener, with a short time limit.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::config::{Config, PostfixListen};

/// How long `check`, `metrics` and `doctor` wait for an answer.
pub const LIMIT: Duration = Duration::from_secs(1);

/// Each listener of an enabled service, named (`dovecot`, `postfix`), with how long it
/// took to answer or why it did not; nothing when the service is not enabled.
pub fn listeners(cfg: &Config) -> Vec<(&'static str, Result<Duration, String>)> {
    let p = &cfg.policy;
    let mut out = Vec::new();
    if !p.enabled {
        return out;
    }
    if let Some(a) = p.dovecot_listen {
        out.push(("dovecot", dovecot(a, &p.dovecot_api_key, LIMIT)));
    }
    if let Some(l) = &p.postfix_listen {
        out.push(("postfix", postfix(l, LIMIT)));
    }
    out
}

/// A request about no account: the answer is always DUNNO and nothing is recorded.
const POSTFIX_PROBE: &str =
    "request=smtpd_access_policy\nprotocol_state=RCPT\nsasl_username=\nclient_address=127.0.0.1\n\n";

/// How long the Postfix listener took to answer, or why it did not.
pub fn postfix(listen: &PostfixListen, limit: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let answer = match listen {
        PostfixListen::Unix(path) => {
            let s = UnixStream::connect(path).map_err(|e| format!("{listen}: {e}"))?;
            s.set_read_timeout(Some(limit)).map_err(|e| e.to_string())?;
            s.set_write_timeout(Some(limit))
                .map_err(|e| e.to_string())?;
            exchange_postfix(s)
        }
        PostfixListen::Inet(a) => {
            let s = TcpStream::connect_timeout(a, limit).map_err(|e| format!("{listen}: {e}"))?;
            s.set_read_timeout(Some(limit)).map_err(|e| e.to_string())?;
            s.set_write_timeout(Some(limit))
                .map_err(|e| e.to_string())?;
            exchange_postfix(s)
        }
    }
    .map_err(|e| format!("{listen}: {e}"))?;
    if answer != "action=DUNNO" {
        return Err(format!("{listen} answered {answer:?}, not action=DUNNO"));
    }
    Ok(start.elapsed())
}

fn exchange_postfix(mut s: impl Read + Write) -> std::io::Result<String> {
    s.write_all(POSTFIX_PROBE.as_bytes())?;
    let mut line = String::new();
    BufReader::new(s.take(512)).read_line(&mut line)?;
    Ok(line.trim_end().to_owned())
}

/// How long the Dovecot listener took to answer a report of a failed login by nobody
/// (which records nothing), or why it did not.
pub fn dovecot(addr: SocketAddr, api_key: &str, limit: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let fail = |e: std::io::Error| format!("http://{addr}: {e}");
    let mut s = TcpStream::connect_timeout(&addr, limit).map_err(fail)?;
    s.set_read_timeout(Some(limit)).map_err(fail)?;
    s.set_write_timeout(Some(limit)).map_err(fail)?;
    let body = r#"{"login":"","remote":"","protocol":"","session_id":"","success":false}"#;
    write!(
        s,
        "POST /?command=report HTTP/1.1\r\nHost: {addr}\r\nX-API-Key: {api_key}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(fail)?;
    let mut status = String::new();
    BufReader::new(s.take(512))
        .read_line(&mut status)
        .map_err(fail)?;
    let status = status.trim_end();
    match status.split(' ').nth(1) {
        Some("200") => Ok(start.elapsed()),
        Some("403") => Err(format!(
            "http://{addr} refused the API key: policy.dovecot_api_key differs from the service's"
        )),
        _ => Err(format!("http://{addr} answered {status:?}")),
    }
}
