//! A client on port 25, with no password, tries to lock an account through the
//! mailguard-smtp-refused jail: Postfix cuts a log message at a fixed length and quotes
//! a refused RCPT TO without its quotes, so a RCPT TO holding
//! `"victim>: SASL login name rejected: …; from=<a> to=<b> proto=ESMTP helo=<c"@x`,
//! padded so that the cut falls right after its fake `helo=<c@x>`, makes the relay
//! refusal end like the refusal of a blocked account. Driven through a real, private
//! Postfix (XCLIENT stands in for 21 remote clients in 4 /24s), read with the shipped
//! filter by `fail2ban-regex`, each match handed to `record` as the jail's action does.

use crate::support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::fail2ban::{filter_dir, regex};
use support::mailstack::Postfix;
use support::{now, Sandbox};

const VICTIM: &str = "victim@example.test";
/// Not a domain the private Postfix relays for: every RCPT TO to it is refused.
const ELSEWHERE: &str = "elsewhere.example";

/// One port-25 session from `client` (XCLIENT) up to RCPT TO; Postfix's reply to it.
fn rcpt(port: u16, client: &str, rcpt_to: &str) -> String {
    let conn = TcpStream::connect(("127.0.0.1", port)).expect("connect to port 25's stand-in");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut out = conn.try_clone().expect("clone");
    let mut input = BufReader::new(conn);
    let mut reply = || {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = input.read_line(&mut line).expect("read reply");
            assert!(n > 0, "connection closed after {all:?}");
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    };
    let mut say = |cmd: &str| {
        out.write_all(format!("{cmd}\r\n").as_bytes())
            .expect("send");
    };
    reply();
    for cmd in [
        "EHLO client.example.net".to_owned(),
        format!("XCLIENT ADDR={client} NAME=[UNAVAILABLE]"),
        "EHLO client.example.net".to_owned(),
        "MAIL FROM:<a@client.example.net>".to_owned(),
    ] {
        say(&cmd);
        let r = reply();
        assert!(r.starts_with('2'), "{cmd}: {r}");
    }
    say(&format!("RCPT TO:<{rcpt_to}>"));
    let r = reply();
    say("QUIT");
    r
}

/// Postfix's messages (after "TAG[PID]: ") holding `needle`, from its log.
fn messages(pf: &Postfix, needle: &str) -> Vec<String> {
    pf.log()
        .lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| l.split_once("]: ").map(|(_, m)| m.to_owned()))
        .collect()
}

/// The crafted RCPT TO for `client`: Postfix's refusal of it, cut at `cut`, ends with
/// the fake `helo=<c@elsewhere.example>`.
fn crafted(client: &str, cut: usize) -> String {
    let head = format!(
        "NOQUEUE: reject: RCPT from unknown[{client}]: 554 5.7.1 <{VICTIM}>: SASL login name rejected: "
    );
    let tail = format!("; from=<a> to=<b> proto=ESMTP helo=<c@{ELSEWHERE}>");
    let pad = cut
        .checked_sub(head.len() + tail.len())
        .expect("the cut leaves room for the padding");
    format!(
        "\"{VICTIM}>: SASL login name rejected: {}; from=<a> to=<b> proto=ESMTP helo=<c\"@{ELSEWHERE}",
        "P".repeat(pad)
    )
}

#[test]
fn a_port_25_client_cannot_shape_a_refused_login_by_truncation() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Outbound mail is never sent: every relay attempt here is refused anyway.
    let pf = Postfix::relaying(dir.path(), support::smtp_sink::free_port(), true);
    let port = pf.mx_port;

    // Where Postfix cuts: a refusal far longer than any cut, measured in its log.
    let probe = format!("\"{}\"@{ELSEWHERE}", "Q".repeat(1900));
    let r = rcpt(port, "192.0.2.1", &probe);
    assert!(r.starts_with("554"), "the probe is refused: {r}");
    let mut cut = 0;
    support::wait_until(
        "the probe's refusal in Postfix's log",
        Duration::from_secs(60),
        || {
            cut = messages(&pf, "QQQQ").first().map_or(0, String::len);
            cut > 0
        },
    );
    assert!(
        (1000..=2000).contains(&cut),
        "Postfix cut the message at {cut} characters"
    );

    eprintln!("Postfix cut its message at {cut} characters");
    // 21 clients in 4 /24s, each refused; each refusal cut right after the fake HELO.
    let clients: Vec<String> = (0..21)
        .map(|i| format!("203.0.{}.{}", 100 + i % 4, 10 + i))
        .collect();
    for c in &clients {
        let r = rcpt(port, c, &crafted(c, cut));
        assert!(r.starts_with("554"), "relay refused: {r}");
    }
    let shaped = format!("helo=<c@{ELSEWHERE}>");
    support::wait_until(
        "the 21 refusals in Postfix's log",
        Duration::from_secs(60),
        || messages(&pf, &shaped).len() == clients.len(),
    );
    for m in messages(&pf, &shaped) {
        assert!(
            m.ends_with(&shaped) && m.contains(&format!("<{VICTIM}>: SASL login name rejected: ")),
            "the attack shapes Postfix's line as intended: {m}"
        );
    }

    // The shipped filter over Postfix's log, and `record` for each match, as the jail
    // and its action do.
    let fd = filter_dir(&dir.path().join("f2b"));
    let log = pf.root.join("postfix.log");
    let matched = regex(
        log.to_str().expect("utf-8 path"),
        "mailguard-postfix-refused",
        &fd,
        Some("<time> <ip> <F-USER>"),
    );
    let s = Sandbox::new("mode = \"enforce\"\n");
    for line in matched.lines() {
        let mut f = line.split_whitespace();
        let (Some(time), Some(ip), Some(user)) = (f.next(), f.next(), f.next()) else {
            panic!("fail2ban-regex printed {line:?}");
        };
        let out = s.run(&[
            "record",
            "--source=smtp-refused",
            "--jail=mailguard-smtp-refused",
            &format!("--user={user}"),
            &format!("--ip={ip}"),
            &format!("--time={time}"),
            &format!("--fid=('{user}', '{ip}')"),
        ]);
        support::assert_success("record", &out);
    }
    // An account never recorded is ok (status has no row for it).
    let out = s.run(&["status", "--json", &format!("--at={}", now()), "--", VICTIM]);
    let level = serde_json::from_slice::<serde_json::Value>(&out.stdout).map_or_else(
        |_| "ok".to_owned(),
        |st| st["level"].to_string().replace('"', ""),
    );
    assert_eq!(
        level,
        "ok",
        "the victim moved; the filter yielded:\n{matched}\nstatus: {}",
        support::described(&out)
    );
    assert!(
        matched.trim().is_empty(),
        "the filter yields no login from a shaped line:\n{matched}"
    );
}
