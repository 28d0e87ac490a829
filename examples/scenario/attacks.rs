//! Compromised accounts (each function returns the log time of the attacker's first
//! message) and the noise every server sees.

use std::net::IpAddr;

use super::activity::{outcome_for, Act, Gen, Msg};
use super::rng::Rng;
use super::{DAY, DOMAINS, FIRST, HOUR, LAST, MIN, SEC};

impl Gen {
    /// Spam: many harvested recipients, a high share of them dead.
    fn spam_msg(&self, rng: &mut Rng, user: &str, t: i64, rcpts: (i64, i64), bounce: f64) -> Msg {
        let n = rng.range(rcpts.0, rcpts.1);
        Msg {
            t,
            from: user.to_owned(),
            rcpts: (0..n)
                .map(|_| {
                    let r = self.world.spam_rcpt(rng);
                    outcome_for(r, rng, bounce, 0.08)
                })
                .collect(),
            size: rng.range(1500, 9000) as u32,
            spam: true,
        }
    }

    /// `k` messages of 5-25 recipients in one connection.
    fn spam_conn(&mut self, rng: &mut Rng, user: &str, addr: IpAddr, t: i64, k: i64, bounce: f64) {
        self.spam_conn_of(rng, user, addr, (t, k, (5, 25)), bounce);
    }

    /// (time, messages, recipients per message)
    fn spam_conn_of(
        &mut self,
        rng: &mut Rng,
        user: &str,
        addr: IpAddr,
        (t, k, rcpts): (i64, i64, (i64, i64)),
        bounce: f64,
    ) {
        let mut msgs = Vec::new();
        let mut m = t;
        for _ in 0..k {
            msgs.push(self.spam_msg(rng, user, m, rcpts, bounce));
            m += rng.span(2 * SEC, 10 * SEC);
        }
        self.submit(rng, user, addr, "submission", msgs);
    }

    /// A host of the botnet rented inside one cloud provider: any of its /24s, some
    /// next to an earlier one, a few over IPv6.
    fn cloud_host(&self, rng: &mut Rng, used: &[IpAddr]) -> IpAddr {
        let w = &self.world;
        if rng.chance(0.1) {
            return w.v6(w.cloud, rng);
        }
        match used.iter().rev().find(|a| a.is_ipv4()) {
            Some(IpAddr::V4(prev)) if rng.chance(0.2) => w.host(u32::from(*prev) >> 8, rng),
            _ => w.v4(w.cloud, rng),
        }
    }

    fn bot_host(&self, rng: &mut Rng, used: &[IpAddr], cloud: bool) -> IpAddr {
        if cloud {
            self.cloud_host(rng, used)
        } else {
            self.world.bot(rng, used)
        }
    }

    /// Dozens of hosts within minutes, then reconnections at a lower pace. `cloud`: all
    /// of them in one cloud provider.
    pub fn botnet(&mut self, rng: &mut Rng, user: &str, start: i64, cloud: bool) -> i64 {
        let n = rng.range(24, 72);
        let burst = rng.span(3 * MIN, 15 * MIN);
        let bounce = rng.uniform(0.3, 0.6);
        let mut arrivals: Vec<i64> = (1..n).map(|_| start + rng.span(0, burst)).collect();
        arrivals.push(start);
        arrivals.sort_unstable();
        let mut used = Vec::new();
        for t in arrivals {
            let addr = self.bot_host(rng, &used, cloud);
            used.push(addr);
            let k = rng.range(1, 5);
            self.spam_conn(rng, user, addr, t, k, bounce);
        }
        // It goes on at a lower pace until someone stops it.
        let stop = start + burst + rng.span(HOUR, 3 * HOUR);
        let mut t = start + burst + rng.exp(3 * MIN);
        while t < stop {
            let addr = if rng.chance(0.2) {
                let a = self.bot_host(rng, &used, cloud);
                used.push(a);
                a
            } else {
                *rng.pick(&used)
            };
            let k = rng.range(1, 5);
            self.spam_conn(rng, user, addr, t, k, bounce);
            t += SEC + rng.exp(3 * MIN);
        }
        start
    }

    /// A credential checker: IMAP logins from ~40 owners within minutes at `start`,
    /// then, 30-90 minutes later, spam through SMTP from a few owners' hosts.
    pub fn imap_checker(&mut self, rng: &mut Rng, user: &str, start: i64) -> i64 {
        let w = &self.world;
        let mut owners: Vec<usize> = w.bot_isps.iter().chain(&w.hosting).copied().collect();
        rng.shuffle(&mut owners);
        let n = rng.range(30, 50) as usize;
        let span = rng.span(2 * MIN, 8 * MIN);
        let mut logins = Vec::new();
        for (i, &o) in owners.iter().take(n).enumerate() {
            let t = if i == 0 {
                start
            } else {
                start + rng.span(0, span)
            };
            let addr = if rng.chance(0.15) {
                w.v6(o, rng)
            } else {
                w.v4(o, rng)
            };
            logins.push((t, addr));
        }
        for (t, addr) in logins {
            if t < self.world.end {
                self.acts.push(Act::Login {
                    t,
                    user: user.to_owned(),
                    addr,
                    pop3: false,
                    secs: rng.range(1, 6),
                });
            }
        }
        let first = start + rng.span(30 * MIN, 90 * MIN);
        let w = &self.world;
        let senders: Vec<IpAddr> = (0..rng.range(6, 10))
            .map(|_| {
                let o = *rng.pick(&owners[n..]);
                w.v4(o, rng)
            })
            .collect();
        let bounce = rng.uniform(0.3, 0.6);
        let stop = first + rng.span(HOUR, 2 * HOUR);
        let mut t = first;
        while t < stop {
            let addr = *rng.pick(&senders);
            let k = rng.range(1, 4);
            self.spam_conn_of(rng, user, addr, (t, k, (2, 10)), bounce);
            t += rng.span(30 * SEC, 2 * MIN);
        }
        first
    }

    /// A new address every 10-20 minutes for a day, modest sending.
    pub fn drip(&mut self, rng: &mut Rng, user: &str, start: i64) -> i64 {
        let stop = (start + DAY).min(self.world.end);
        let bounce = rng.uniform(0.1, 0.3);
        let mut t = start;
        while t < stop {
            let addr = self.world.bot(rng, &[]);
            let mut msgs = Vec::new();
            let mut m = t;
            for _ in 0..rng.range(1, 3) {
                msgs.push(self.spam_msg(rng, user, m, (1, 5), bounce));
                m += rng.span(5 * SEC, 40 * SEC);
            }
            self.submit(rng, user, addr, "submission", msgs);
            t += rng.span(10 * MIN, 20 * MIN);
        }
        start
    }

    /// One rented server: about 1,500 messages an hour, a third of the recipients bounce.
    pub fn spammer(&mut self, rng: &mut Rng, user: &str, start: i64) -> i64 {
        let w = &self.world;
        let addr = w.v4(*rng.pick(&w.hosting), rng);
        let stop = (start + rng.span(30 * MIN, 90 * MIN)).min(self.world.end);
        let per_hour = rng.range(1200, 1800);
        let gap = HOUR / per_hour;
        let bounce = rng.uniform(0.25, 0.4);
        let mut t = start;
        while t < stop {
            let k = rng.range(10, 40);
            let mut msgs = Vec::new();
            let mut m = t;
            for _ in 0..k {
                if m >= stop {
                    break;
                }
                msgs.push(self.spam_msg(rng, user, m, (1, 5), bounce));
                m += gap / 2 + rng.span(0, gap);
            }
            self.submit(rng, user, addr, "submission", msgs);
            t = m + rng.span(SEC / 2, 2 * SEC);
        }
        start
    }

    /// Noise: password guessing, inbound mail.
    pub fn noise(&mut self, rng: &mut Rng) {
        let mut day = self.world.start;
        while day < self.world.end {
            for _ in 0..rng.range(3, 8) {
                let addr = self.world.bot(rng, &[]);
                let mut t = day + rng.span(0, DAY - 1);
                let imap = rng.chance(0.3);
                for _ in 0..rng.range(10, 60) {
                    let user = if rng.chance(0.7) {
                        rng.pick(&self.world.users).clone()
                    } else {
                        format!(
                            "{}@{}",
                            rng.pick(&["admin", "test", "info", "office", "sales", "root"]),
                            rng.pick(DOMAINS)
                        )
                    };
                    if t < self.world.end {
                        self.acts.push(if imap {
                            Act::LoginFail {
                                t,
                                user,
                                addr,
                                pop3: rng.chance(0.3),
                            }
                        } else {
                            Act::SmtpAuthFail { t, user, addr }
                        });
                    }
                    t += rng.span(2 * SEC, 20 * SEC);
                }
            }
            day += DAY;
        }
        // Inbound mail: from other servers, no SASL, must never count.
        let users = self.world.users.clone();
        for u in &users {
            let n = rng.range(2, 10) * ((self.world.end - self.world.start) / DAY).max(1);
            for _ in 0..n {
                let t = rng.span(self.world.start, self.world.end - 1);
                let (domain, mx, addr) = rng.pick(&self.world.remote).clone();
                let from = format!("{}.{}@{domain}", rng.pick(FIRST), rng.pick(LAST));
                self.acts.push(Act::Inbound {
                    t,
                    addr,
                    name: mx.replace("mx", "out"),
                    from,
                    to: u.clone(),
                });
            }
        }
    }
}
