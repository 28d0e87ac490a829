//! Rendering: Postfix and Dovecot lines as syslog writes them on Debian.

use std::collections::HashSet;
use std::net::IpAddr;

use super::activity::{Act, Msg, Outcome};
use super::rng::Rng;
use super::world::World;
use super::{Expected, HOST, LIP4, LIP6, MX_NAME, SEC};

pub struct Render {
    pub rng: Rng,
    pub lines: Vec<(i64, u64, String)>,
    pub seq: u64,
    pub qids: HashSet<String>,
    pub expected: Expected,
    pub first_login: Option<i64>,
    pub qmgr: u32,
    pub cleanup: Vec<u32>,
    pub smtp: Vec<u32>,
    pub lmtp: Vec<u32>,
}

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

impl Render {
    pub fn new(mut rng: Rng) -> Self {
        let pool = |n: usize, rng: &mut Rng| -> Vec<u32> {
            (0..n).map(|_| rng.range(2000, 60000) as u32).collect()
        };
        let cleanup = pool(3, &mut rng);
        let smtp = pool(12, &mut rng);
        let lmtp = pool(4, &mut rng);
        Self {
            qmgr: rng.range(900, 1900) as u32,
            rng,
            lines: Vec::new(),
            seq: 0,
            qids: HashSet::new(),
            expected: Expected::default(),
            first_login: None,
            cleanup,
            smtp,
            lmtp,
        }
    }

    fn push(&mut self, t: i64, prog: &str, pid: u32, msg: &str) {
        let ts = chrono::DateTime::from_timestamp(t.div_euclid(1000), 0)
            .expect("time")
            .format("%b %e %H:%M:%S");
        let line = if prog == "dovecot" {
            format!("{ts} {HOST} dovecot: {msg}")
        } else {
            format!("{ts} {HOST} {prog}[{pid}]: {msg}")
        };
        self.seq += 1;
        self.lines.push((t, self.seq, line));
    }

    fn qid(&mut self) -> String {
        loop {
            let q = format!("{:010X}", self.rng.next_u64() & 0xFF_FFFF_FFFF);
            if self.qids.insert(q.clone()) {
                return q;
            }
        }
    }

    fn token(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| B64[self.rng.range(0, 63) as usize] as char)
            .collect()
    }

    fn pid(&mut self) -> u32 {
        self.rng.range(2000, 60000) as u32
    }

    fn lip(addr: IpAddr) -> &'static str {
        if addr.is_ipv6() {
            LIP6
        } else {
            LIP4
        }
    }

    pub fn act(&mut self, w: &World, a: &Act) {
        match a {
            Act::Submit {
                t,
                user,
                addr,
                name,
                service,
                method,
                msgs,
            } => self.submit(w, *t, user, *addr, name, service, method, msgs),
            Act::Login {
                t,
                user,
                addr,
                pop3,
                secs,
            } => {
                let svc = if *pop3 { "pop3" } else { "imap" };
                let mpid = self.pid();
                let session = self.token(16);
                self.push(
                    *t,
                    "dovecot",
                    0,
                    &format!(
                        "{svc}-login: Login: user=<{user}>, method=PLAIN, rip={addr}, lip={}, mpid={mpid}, TLS, session=<{session}>",
                        Self::lip(*addr)
                    ),
                );
                let tail = if *pop3 {
                    let n = self.rng.range(0, 6);
                    format!(
                        "top=0/0, retr={n}/{}, del={n}/{n}, size={}",
                        n * 12_000,
                        n * 12_000 + 300
                    )
                } else {
                    format!(
                        "in={} out={} deleted=0 expunged=0 trashed=0 hdr_count=0 hdr_bytes=0 body_count=0 body_bytes=0",
                        self.rng.range(50, 4000),
                        self.rng.range(800, 90_000)
                    )
                };
                self.push(
                    t + secs * SEC,
                    "dovecot",
                    0,
                    &format!("{svc}({user})<{mpid}><{session}>: Disconnected: Logged out {tail}"),
                );
                if *pop3 {
                    self.expected.pop3 += 1;
                } else {
                    self.expected.imap += 1;
                }
            }
            Act::LoginFail {
                t,
                user,
                addr,
                pop3,
            } => {
                let svc = if *pop3 { "pop3" } else { "imap" };
                let session = self.token(16);
                let wpid = self.pid();
                self.push(
                    *t,
                    "dovecot",
                    0,
                    &format!(
                        "auth-worker({wpid}): sql({user},{addr},<{session}>): Password mismatch"
                    ),
                );
                self.push(
                    t + 2 * SEC,
                    "dovecot",
                    0,
                    &format!(
                        "{svc}-login: Disconnected: Connection closed (auth failed, 1 attempts in 2 secs): user=<{user}>, method=PLAIN, rip={addr}, lip={}, TLS, session=<{session}>",
                        Self::lip(*addr)
                    ),
                );
            }
            Act::SmtpAuthFail { t, user, addr } => {
                let pid = self.pid();
                let prog = "postfix/submission/smtpd";
                self.push(*t, prog, pid, &format!("connect from unknown[{addr}]"));
                self.push(
                    t + 400,
                    prog,
                    pid,
                    &format!(
                        "warning: unknown[{addr}]: SASL LOGIN authentication failed: (reason unavailable), sasl_username={user}"
                    ),
                );
                let end = if self.rng.chance(0.5) {
                    format!("disconnect from unknown[{addr}] ehlo=1 auth=0/1 quit=1 commands=2/3")
                } else {
                    format!("lost connection after AUTH from unknown[{addr}]")
                };
                self.push(t + 600, prog, pid, &end);
            }
            Act::Inbound {
                t,
                addr,
                name,
                from,
                to,
            } => {
                let pid = self.pid();
                let prog = "postfix/smtpd";
                let q = self.qid();
                self.push(*t, prog, pid, &format!("connect from {name}[{addr}]"));
                self.push(t + 300, prog, pid, &format!("{q}: client={name}[{addr}]"));
                let size = self.rng.range(2000, 400_000) as u32;
                self.message_lines(
                    w,
                    t + 350,
                    &q,
                    from,
                    &[(to.clone(), Outcome::Local)],
                    size,
                    false,
                );
                self.push(
                    t + 900,
                    prog,
                    pid,
                    &format!("disconnect from {name}[{addr}] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5"),
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn submit(
        &mut self,
        w: &World,
        t: i64,
        user: &str,
        addr: IpAddr,
        name: &str,
        service: &str,
        method: &str,
        msgs: &[Msg],
    ) {
        let pid = self.pid();
        let prog = format!("postfix/{service}/smtpd");
        self.push(t, &prog, pid, &format!("connect from {name}[{addr}]"));
        let mut rcpt = 0;
        for m in msgs {
            let q = self.qid();
            self.push(
                m.t,
                &prog,
                pid,
                &format!("{q}: client={name}[{addr}], sasl_method={method}, sasl_username={user}"),
            );
            self.expected.smtp += 1;
            self.first_login = Some(self.first_login.map_or(m.t, |f| f.min(m.t)));
            self.expected.bounces += m
                .rcpts
                .iter()
                .filter(|(_, o)| *o == Outcome::Bounced)
                .count() as u64;
            rcpt += m.rcpts.len();
            self.message_lines(w, m.t + 40, &q, &m.from, &m.rcpts, m.size, m.spam);
        }
        let n = msgs.len();
        let end = msgs.last().map_or(t, |m| m.t) + self.rng.span(100, 900);
        self.push(
            end,
            &prog,
            pid,
            &format!(
                "disconnect from {name}[{addr}] ehlo=1 auth=1 mail={n} rcpt={rcpt} data={n} quit=1 commands={}",
                3 + n * 2 + rcpt
            ),
        );
    }

    /// cleanup, qmgr, one delivery line per recipient, the non-delivery notice if any
    /// recipient bounced, and `removed` unless a recipient was deferred.
    #[allow(clippy::too_many_arguments)]
    fn message_lines(
        &mut self,
        w: &World,
        t: i64,
        q: &str,
        from: &str,
        rcpts: &[(String, Outcome)],
        size: u32,
        spam: bool,
    ) {
        let cpid = *self.rng.pick(&self.cleanup);
        let mid = if spam {
            format!(
                "<{}@{}>",
                self.token(12).replace(['+', '/'], "x"),
                rcpts[0].0.rsplit('@').next().unwrap_or("x")
            )
        } else {
            let ts = chrono::DateTime::from_timestamp(t / 1000, 0)
                .expect("time")
                .format("%Y%m%d%H%M%S");
            format!(
                "<{ts}.{}@{}>",
                self.rng.range(10000, 99999),
                from.rsplit('@').next().unwrap_or(MX_NAME)
            )
        };
        self.push(
            t,
            "postfix/cleanup",
            cpid,
            &format!("{q}: message-id={mid}"),
        );
        let qmgr = self.qmgr;
        self.push(
            t + 20,
            "postfix/qmgr",
            qmgr,
            &format!(
                "{q}: from=<{from}>, size={size}, nrcpt={} (queue active)",
                rcpts.len()
            ),
        );
        let mut d = t + 60;
        let mut deferred = false;
        let mut bounced = false;
        for (r, o) in rcpts {
            d += self.rng.span(10, 1500);
            let total = (d - t) as f64 / 1000.0 + 0.05;
            let delays = format!(
                "delays=0.02/0.01/{:.2}/{:.2}",
                total * 0.4,
                total * 0.6 - 0.03
            );
            let line = match o {
                Outcome::Local => {
                    let lpid = *self.rng.pick(&self.lmtp);
                    let sid = self.token(22);
                    self.push(
                        d,
                        "postfix/lmtp",
                        lpid,
                        &format!(
                            "{q}: to=<{r}>, relay={MX_NAME}[private/dovecot-lmtp], delay={total:.2}, {delays}, dsn=2.0.0, status=sent (250 2.0.0 <{r}> {sid} Saved)"
                        ),
                    );
                    continue;
                }
                Outcome::Sent => {
                    let (mx, a) = w.mx_of(r);
                    let rid = self.token(10).replace(['+', '/'], "Q");
                    format!(
                        "{q}: to=<{r}>, relay={mx}[{a}]:25, delay={total:.2}, {delays}, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as {rid})"
                    )
                }
                Outcome::Bounced => {
                    bounced = true;
                    let (mx, a) = w.mx_of(r);
                    format!(
                        "{q}: to=<{r}>, relay={mx}[{a}]:25, delay={total:.2}, {delays}, dsn=5.1.1, status=bounced (host {mx}[{a}] said: 550 5.1.1 <{r}>: Recipient address rejected: User unknown in virtual mailbox table (in reply to RCPT TO command))"
                    )
                }
                Outcome::Deferred => {
                    deferred = true;
                    let (mx, a) = w.mx_of(r);
                    if self.rng.chance(0.5) {
                        format!(
                            "{q}: to=<{r}>, relay={mx}[{a}]:25, delay={total:.2}, {delays}, dsn=4.7.1, status=deferred (host {mx}[{a}] said: 451 4.7.1 <{r}>: Recipient address rejected: Greylisted, try again later (in reply to RCPT TO command))"
                        )
                    } else {
                        format!(
                            "{q}: to=<{r}>, relay=none, delay={:.0}, delays=0.02/0.01/30/0, dsn=4.4.1, status=deferred (connect to {mx}[{a}]:25: Connection timed out)",
                            total + 30.0
                        )
                    }
                }
            };
            let spid = *self.rng.pick(&self.smtp);
            self.push(d, "postfix/smtp", spid, &line);
        }
        d += 5;
        if bounced {
            // The non-delivery notice back to the (local) sender: a message without
            // a client, from=<>.
            let bpid = self.pid();
            let n = self.qid();
            self.push(
                d,
                "postfix/bounce",
                bpid,
                &format!("{q}: sender non-delivery notification: {n}"),
            );
            let ts = chrono::DateTime::from_timestamp(d / 1000, 0)
                .expect("time")
                .format("%Y%m%d%H%M%S");
            self.push(
                d + 1,
                "postfix/cleanup",
                cpid,
                &format!("{n}: message-id=<{ts}.{n}@{MX_NAME}>"),
            );
            self.push(
                d + 2,
                "postfix/qmgr",
                qmgr,
                &format!(
                    "{n}: from=<>, size={}, nrcpt=1 (queue active)",
                    size / 4 + 2400
                ),
            );
            if World::is_local(from) {
                let lpid = *self.rng.pick(&self.lmtp);
                let sid = self.token(22);
                self.push(
                    d + 30,
                    "postfix/lmtp",
                    lpid,
                    &format!(
                        "{n}: to=<{from}>, relay={MX_NAME}[private/dovecot-lmtp], delay=0.03, delays=0/0.01/0.01/0.01, dsn=2.0.0, status=sent (250 2.0.0 <{from}> {sid} Saved)"
                    ),
                );
            }
            self.push(d + 31, "postfix/qmgr", qmgr, &format!("{n}: removed"));
        }
        if !deferred {
            self.push(d + 1, "postfix/qmgr", qmgr, &format!("{q}: removed"));
        }
    }
}
