//! Dovecot's authentication policy: `POST <url>?command=allow|report` with a flat JSON
//! body, answered by `{"status":N,"msg":"..."}` (negative refuses). For one login
//! Dovecot asks `allow` before the password check, `allow` again after a successful
//! one, then `report` with `success`. The login is recorded at the second `allow`:
//! it is judged while Dovecot still waits, so the login that raises its account to a
//! refusal is itself refused. The session id tells the two `allow`s apart; without
//! one (or with `auth_policy_check_before_auth = no`) the login is recorded at the
//! successful `report`, which Dovecot no longer waits on.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::io::{Read, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::answer::{login_answer, LoginAnswer};
use super::{Service, Unanswerable};
use crate::detect::effective;
use crate::model::{ClientAddr, Label, MessageCount, SaslUser, Source, Timestamp};
use crate::store::LoginEvent;

const MAX_HEAD: usize = 8192;
const MAX_HEADERS: usize = 32;
const MAX_BODY: usize = 16384;
/// Sessions whose phase is remembered; a login's three requests come within seconds.
const MAX_SESSIONS: usize = 65_536;
const SESSION_TTL: Duration = Duration::from_secs(120);

/// The fields of Dovecot's default `auth_policy_request_attributes` we use; others
/// an admin adds are ignored. Every templated value is a JSON string.
#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    login: String,
    #[serde(default)]
    remote: String,
    #[serde(default)]
    protocol: String,
    #[serde(default)]
    session_id: String,
    /// Only in `report`.
    success: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Allow,
    Report,
}

/// Where each session is: seen once (before the password check) or recorded.
pub struct Sessions {
    hasher: RandomState,
    map: Mutex<HashMap<u64, Session>>,
}

#[derive(Clone, Copy)]
struct Session {
    at: Instant,
    recorded: bool,
}

/// What an `allow` is, by its place in the session.
#[derive(Debug, PartialEq, Eq)]
enum Phase {
    BeforeAuth,
    AfterAuth,
}

impl Sessions {
    pub fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn allow(&self, id: &str) -> Phase {
        if id.is_empty() {
            return Phase::BeforeAuth;
        }
        let key = self.hasher.hash_one(id);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get_mut(&key) {
            s.recorded = true;
            return Phase::AfterAuth;
        }
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| s.at.elapsed() < SESSION_TTL);
            if map.len() >= MAX_SESSIONS {
                // Under a flood the oldest phases are forgotten: such a login is then
                // recorded at its report instead.
                map.clear();
            }
        }
        map.insert(
            key,
            Session {
                at: Instant::now(),
                recorded: false,
            },
        );
        Phase::BeforeAuth
    }

    /// The session ends; true if its login was recorded at `allow` already.
    fn report(&self, id: &str) -> bool {
        if id.is_empty() {
            return false;
        }
        let key = self.hasher.hash_one(id);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&key).is_some_and(|s| s.recorded)
    }
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new()
    }
}

/// The source a Dovecot protocol's logins count as; None: not a mail login we count.
/// ManageSieve changes a mailbox's filters with its password, as IMAP reads it.
fn source_of(protocol: &str) -> Option<Source> {
    match protocol {
        "imap" => Some(Source::Imap),
        "pop3" => Some(Source::Pop3),
        "smtp" | "submission" => Some(Source::Smtp),
        "sieve" | "managesieve" => Some(Source::Imap),
        _ => None,
    }
}

/// One parsed HTTP request: its command and body.
struct HttpRequest {
    command: Command,
    body: Vec<u8>,
    close: bool,
}

fn bad(what: impl Into<String>) -> Unanswerable {
    Unanswerable::Bad(what.into())
}

/// Reads one request from `input`, with `buf` holding what was read past the last one.
fn read_http(
    input: &mut impl Read,
    buf: &mut Vec<u8>,
    api_key: &str,
) -> Result<Option<HttpRequest>, Unanswerable> {
    let mut chunk = [0u8; 4096];
    let (head_len, command, length, close) = loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) => {
                if req.method != Some("POST") {
                    return Err(bad(format!("method {:?}", req.method)));
                }
                let command = command_of(req.path.unwrap_or(""))?;
                let mut length = None;
                let mut key_ok = api_key.is_empty();
                let mut close = req.version == Some(0);
                for h in req.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        let v = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.parse::<usize>().ok());
                        if length.is_some() || v.is_none() {
                            return Err(bad("Content-Length"));
                        }
                        length = v;
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        return Err(bad("Transfer-Encoding"));
                    } else if h.name.eq_ignore_ascii_case("x-api-key") {
                        key_ok = !api_key.is_empty() && same(h.value, api_key.as_bytes());
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        close = h.value.eq_ignore_ascii_case(b"close");
                    }
                }
                if !key_ok {
                    return Err(Unanswerable::Forbidden);
                }
                let length = length.ok_or_else(|| bad("no Content-Length"))?;
                if length > MAX_BODY {
                    return Err(bad(format!("a body of {length} bytes")));
                }
                break (n, command, length, close);
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() >= MAX_HEAD {
                    return Err(bad(format!("a request head over {MAX_HEAD} bytes")));
                }
            }
            Err(e) => return Err(bad(format!("HTTP: {e}"))),
        }
        let n = input.read(&mut chunk).map_err(Unanswerable::Io)?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(bad("the connection ended inside a request"))
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    while buf.len() < head_len + length {
        let n = input.read(&mut chunk).map_err(Unanswerable::Io)?;
        if n == 0 {
            return Err(bad("the connection ended inside a body"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_len..head_len + length].to_vec();
    buf.drain(..head_len + length);
    Ok(Some(HttpRequest {
        command,
        body,
        close,
    }))
}

/// `command=allow` or `command=report` in the query, exactly once.
fn command_of(path: &str) -> Result<Command, Unanswerable> {
    let query = path.split_once('?').map_or("", |(_, q)| q);
    let mut found = None;
    for pair in query.split('&') {
        if let Some(v) = pair.strip_prefix("command=") {
            let c = match v {
                "allow" => Command::Allow,
                "report" => Command::Report,
                _ => return Err(bad(format!("command={v:?}"))),
            };
            if found.replace(c).is_some() {
                return Err(bad("command twice"));
            }
        }
    }
    found.ok_or_else(|| bad("no command in the URL"))
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn respond(out: &mut impl Write, code: &str, body: &str, close: bool) -> std::io::Result<()> {
    let connection = if close { "close" } else { "keep-alive" };
    write!(
        out,
        "HTTP/1.1 {code}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}

impl Service {
    /// Serves one Dovecot connection (kept alive for many requests) until it ends.
    pub fn serve_dovecot(&self, mut stream: impl Read + Write) -> Result<(), Unanswerable> {
        let mut buf = Vec::new();
        loop {
            let request = match read_http(&mut stream, &mut buf, &self.cfg.policy.dovecot_api_key) {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(()),
                Err(Unanswerable::Forbidden) => {
                    let _ = respond(&mut stream, "403 Forbidden", "{}", true);
                    return Err(Unanswerable::Forbidden);
                }
                Err(Unanswerable::Bad(why)) => {
                    let _ = respond(&mut stream, "400 Bad Request", "{}", true);
                    return Err(Unanswerable::Bad(why));
                }
                Err(e) => return Err(e),
            };
            let body: Body = serde_json::from_slice(&request.body)
                .map_err(|e| bad(format!("the JSON body: {e}")))?;
            let answer = self.dovecot_answer(request.command, &body);
            let json = match answer {
                LoginAnswer::Allow => r#"{"status":0,"msg":""}"#.to_owned(),
                LoginAnswer::Refuse(msg) => {
                    serde_json::json!({"status": -1, "msg": msg}).to_string()
                }
            };
            respond(&mut stream, "200 OK", &json, request.close).map_err(Unanswerable::Io)?;
            self.stats.dovecot_answers.inc();
            if request.close {
                return Ok(());
            }
        }
    }

    fn dovecot_answer(&self, command: Command, body: &Body) -> LoginAnswer {
        // A name or address our store refuses cannot be an account's login here.
        let (Ok(user), Ok(addr)) = (
            SaslUser::parse(&body.login),
            ClientAddr::parse(&body.remote),
        ) else {
            if command == Command::Report && body.success == Some(true) {
                self.stats.invalid.inc();
            }
            return LoginAnswer::Allow;
        };
        let source = source_of(&body.protocol);
        let record = |svc: &Self| {
            let source = source?;
            let fid = Label::fid(&body.session_id)
                .ok()
                .filter(|f| !f.as_str().is_empty());
            svc.send(&user, |time| LoginEvent {
                time,
                source,
                user: user.clone(),
                addr,
                jail: svc.jail_dovecot.clone(),
                fid,
                count: MessageCount::ONE,
            })
        };
        match command {
            Command::Report => {
                let recorded = self.sessions.report(&body.session_id);
                if body.success == Some(true) && !recorded {
                    record(self);
                }
                LoginAnswer::Allow
            }
            Command::Allow => {
                if self.sessions.allow(&body.session_id) == Phase::AfterAuth {
                    if let Some(ticket) = record(self) {
                        let limit =
                            Duration::from_millis(u64::from(self.cfg.policy.answer_within_ms));
                        if !self.state.wait_for(&user, ticket, limit) {
                            self.stats.late.inc();
                        }
                    }
                }
                let known = self.state.known(&user).unwrap_or_default();
                let place = known.knows(addr, self.cfg.detection.prefixes, &self.owners);
                let (level, enforced) = effective(&self.cfg, &known.account, Timestamp::now());
                login_answer(level, enforced, place)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(raw: &str, key: &str) -> Result<Option<HttpRequest>, Unanswerable> {
        let mut input = std::io::Cursor::new(raw.as_bytes().to_vec());
        read_http(&mut input, &mut Vec::new(), key)
    }

    const BODY: &str =
        r#"{"login":"a@b","remote":"192.0.2.1","protocol":"imap","session_id":"x","tls":false}"#;

    fn post(path: &str, extra: &str) -> String {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nX-API-Key: k\r\n{extra}Content-Length: {}\r\n\r\n{BODY}",
            BODY.len()
        )
    }

    #[test]
    fn requests_parse_strictly() {
        let r = one(&post("/policy?command=allow", ""), "k")
            .unwrap()
            .unwrap();
        assert_eq!(r.command, Command::Allow);
        assert_eq!(r.body, BODY.as_bytes());
        assert!(!r.close);
        let r = one(&post("/p?a=1&command=report", "Connection: close\r\n"), "k")
            .unwrap()
            .unwrap();
        assert_eq!(r.command, Command::Report);
        assert!(r.close);
        assert!(matches!(
            one(&post("/p?command=allow", ""), "other"),
            Err(Unanswerable::Forbidden)
        ));
        for bad in [
            post("/p", ""),
            post("/p?command=kill", ""),
            post("/p?command=allow&command=report", ""),
            post("/p?command=allow", "Transfer-Encoding: chunked\r\n"),
            post("/p?command=allow", "Content-Length: 3\r\n"),
            post("/p?command=allow", "").replace("POST", "GET"),
            format!(
                "POST /p?command=allow HTTP/1.1\r\nX-API-Key: k\r\nContent-Length: {}\r\n\r\n",
                MAX_BODY + 1
            ),
            format!(
                "POST /p?command=allow HTTP/1.1\r\nX-API-Key: k\r\nX: {}\r\n\r\n",
                "y".repeat(MAX_HEAD)
            ),
        ] {
            assert!(
                matches!(one(&bad, "k"), Err(Unanswerable::Bad(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn two_requests_on_one_connection() {
        let two = post("/p?command=allow", "") + &post("/p?command=report", "");
        let mut input = std::io::Cursor::new(two.into_bytes());
        let mut buf = Vec::new();
        let a = read_http(&mut input, &mut buf, "k").unwrap().unwrap();
        let b = read_http(&mut input, &mut buf, "k").unwrap().unwrap();
        assert_eq!((a.command, b.command), (Command::Allow, Command::Report));
        assert!(read_http(&mut input, &mut buf, "k").unwrap().is_none());
    }

    #[test]
    fn the_second_allow_of_a_session_is_after_the_password_check() {
        let s = Sessions::new();
        assert_eq!(s.allow("abc"), Phase::BeforeAuth);
        assert_eq!(s.allow("abc"), Phase::AfterAuth);
        assert!(s.report("abc"));
        // A failed login: one allow, then the report.
        assert_eq!(s.allow("def"), Phase::BeforeAuth);
        assert!(!s.report("def"));
        // Without a session id every allow is taken as before the check.
        assert_eq!(s.allow(""), Phase::BeforeAuth);
        assert_eq!(s.allow(""), Phase::BeforeAuth);
    }
}
