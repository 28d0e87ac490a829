//! Load generator for `f2b-mailguard serve` (bench/policy.sh): speaks Postfix's policy
//! protocol and Dovecot's auth policy HTTP on loopback at a fixed request rate, over
//! many kept-alive connections as the daemons keep them, and prints the answer time of
//! each kind of request (p50, p99, p99.9, max).
//!
//!   policy_load --postfix unix:/path | inet:127.0.0.1:PORT --dovecot 127.0.0.1:PORT \
//!       --key KEY --rate 1000 --seconds 20 [--accounts 1000] [--dovecot-share 30]
//!
//! Postfix requests are END-OF-MESSAGE of an authenticated message (each is counted);
//! a Dovecot login is its three requests in order on one connection: allow, allow
//! after the password check (recorded), report.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Args {
    postfix: String,
    dovecot: String,
    key: String,
    rate: u64,
    seconds: u64,
    accounts: u64,
    dovecot_share: u64,
    connections: u64,
}

fn args() -> Args {
    let mut a = Args {
        postfix: String::new(),
        dovecot: String::new(),
        key: String::new(),
        rate: 1000,
        seconds: 20,
        accounts: 1000,
        dovecot_share: 30,
        connections: 32,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let n = || {
            v.parse::<u64>()
                .unwrap_or_else(|_| panic!("{flag} {v}: not a number"))
        };
        match flag.as_str() {
            "--postfix" => a.postfix = v.clone(),
            "--dovecot" => a.dovecot = v.clone(),
            "--key" => a.key = v.clone(),
            "--rate" => a.rate = n(),
            "--seconds" => a.seconds = n(),
            "--accounts" => a.accounts = n(),
            "--dovecot-share" => a.dovecot_share = n(),
            "--connections" => a.connections = n(),
            _ => panic!("unknown option {flag}"),
        }
    }
    a
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

fn postfix_conn(spec: &str) -> Box<dyn Stream> {
    if let Some(p) = spec.strip_prefix("unix:") {
        Box::new(UnixStream::connect(p).expect("postfix socket"))
    } else {
        let s = TcpStream::connect(spec.trim_start_matches("inet:")).expect("postfix port");
        s.set_nodelay(true).expect("nodelay");
        Box::new(s)
    }
}

/// (kind, microseconds) for each answer.
type Sample = (&'static str, u64);

fn account(i: u64, accounts: u64) -> (String, String) {
    let a = i % accounts;
    // Two networks per account, so accounts stay quiet as most are.
    let net = (i / accounts) % 2;
    (
        format!("user{a}@example.org"),
        format!("198.51.{}.{}", (a / 250) % 250 + net, a % 250 + 1),
    )
}

fn postfix_request(i: u64, user: &str, addr: &str) -> String {
    format!(
        "request=smtpd_access_policy\nprotocol_state=END-OF-MESSAGE\nprotocol_name=ESMTP\nqueue_id=B{i:09X}\nsender={user}\nrecipient=x@example.net\nrecipient_count=1\nclient_address={addr}\nclient_name=unknown\nsasl_method=PLAIN\nsasl_username={user}\nsize=2048\ninstance=bench.{i}\n\n"
    )
}

fn http(key: &str, command: &str, body: &str) -> String {
    format!(
        "POST /?command={command} HTTP/1.1\r\nHost: bench\r\nX-API-Key: {key}\r\nContent-Type: application/json\r\nConnection: Keep-Alive\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Reads one HTTP response (head and its Content-Length body).
fn read_http(r: &mut BufReader<TcpStream>) {
    let mut length = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            r.read_line(&mut line).expect("http answer") > 0,
            "connection closed"
        );
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().expect("length");
        }
        assert!(
            !line.starts_with("HTTP/1.1 ") || line.starts_with("HTTP/1.1 200"),
            "{line}"
        );
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).expect("body");
}

fn main() {
    let a = args();
    let total = a.rate * a.seconds;
    let interval = Duration::from_nanos(1_000_000_000 / a.rate);
    let (tx, rx) = mpsc::channel::<Sample>();
    let start = Instant::now() + Duration::from_millis(200);
    let mut workers = Vec::new();
    for w in 0..a.connections {
        let tx = tx.clone();
        let (pf, dv, key) = (a.postfix.clone(), a.dovecot.clone(), a.key.clone());
        let (conns, accounts, share) = (a.connections, a.accounts, a.dovecot_share);
        workers.push(std::thread::spawn(move || {
            let mut p = (!pf.is_empty()).then(|| {
                let s = postfix_conn(&pf);
                (BufReader::new(s), Vec::<u8>::new())
            });
            let mut d = (!dv.is_empty()).then(|| {
                let s = TcpStream::connect(&dv).expect("dovecot port");
                s.set_nodelay(true).expect("nodelay");
                (s.try_clone().expect("clone"), BufReader::new(s))
            });
            let mut i = w;
            while i < total {
                let due = start + interval * u32::try_from(i).expect("count");
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                let (user, addr) = account(i, accounts);
                let dovecot = d.is_some() && (p.is_none() || (i * 7919) % 100 < share);
                if dovecot {
                    let (out, input) = d.as_mut().expect("dovecot");
                    let body = format!(
                        r#"{{"device_id":"","login":"{user}","protocol":"imap","pwhash":"0a1b","remote":"{addr}","session_id":"bench{i}","tls":true}}"#
                    );
                    let report = body.replacen(r#","tls":true"#, r#","success":true,"policy_reject":false,"tls":true"#, 1);
                    for (kind, command, b) in [
                        ("dovecot allow (before auth)", "allow", &body),
                        ("dovecot allow (after auth, records)", "allow", &body),
                        ("dovecot report", "report", &report),
                    ] {
                        let t = Instant::now();
                        out.write_all(http(&key, command, b).as_bytes()).expect("send");
                        read_http(input);
                        let _ = tx.send((kind, t.elapsed().as_micros() as u64));
                    }
                } else if let Some((conn, line)) = p.as_mut() {
                    let t = Instant::now();
                    conn.get_mut()
                        .write_all(postfix_request(i, &user, &addr).as_bytes())
                        .expect("send");
                    line.clear();
                    conn.read_until(b'\n', line).expect("answer");
                    assert!(line.starts_with(b"action="), "{}", String::from_utf8_lossy(line));
                    line.clear();
                    conn.read_until(b'\n', line).expect("empty line");
                    let _ = tx.send(("postfix END-OF-MESSAGE (records)", t.elapsed().as_micros() as u64));
                }
                i += conns;
            }
        }));
    }
    drop(tx);
    let mut by_kind: std::collections::BTreeMap<&str, Vec<u64>> = Default::default();
    for (kind, us) in rx {
        by_kind.entry(kind).or_default().push(us);
    }
    for w in workers {
        w.join().expect("worker");
    }
    let took = start.elapsed().as_secs_f64();
    let answers: usize = by_kind.values().map(Vec::len).sum();
    println!(
        "{answers} answers in {took:.1} s ({:.0}/s; scheduled {} requests/s, a Dovecot login counting 3)",
        answers as f64 / took,
        a.rate
    );
    println!(
        "{:<40} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "request", "n", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for (kind, mut v) in by_kind {
        v.sort_unstable();
        let q = |p: f64| {
            v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1] as f64 / 1000.0
        };
        println!(
            "{kind:<40} {:>8} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
            v.len(),
            q(0.50),
            q(0.99),
            q(0.999),
            q(1.0)
        );
    }
}
