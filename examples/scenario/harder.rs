//! The harder classes: honest accounts whose addresses look like an attack (VPN
//! exits, a provider's fetch pool, a shared mailbox, a CRM in a cloud, newsletters
//! from a whitelisted office NAT) and quiet attacks (a small botnet inside one
//! hosting provider, residential proxies, a steady trickle from one rented server,
//! IMAP-only theft, a two-day drip).

use std::net::IpAddr;

use super::activity::{outcome_for, Gen, Msg};
use super::people::{Kind, Person};
use super::rng::Rng;
use super::{DAY, HOUR, MIN, SEC};

impl Gen {
    /// One message to `n` recipients drawn by `rcpt`, `bounce` of them dead.
    fn msg_to(
        &self,
        rng: &mut Rng,
        user: &str,
        t: i64,
        n: (i64, i64),
        bounce: f64,
        spam: bool,
    ) -> Msg {
        let rcpts = (0..rng.range(n.0, n.1))
            .map(|_| {
                let r = if spam {
                    self.world.spam_rcpt(rng)
                } else {
                    self.world.remote_rcpt(rng)
                };
                outcome_for(r, rng, bounce, 0.01)
            })
            .collect();
        Msg {
            t,
            from: user.to_owned(),
            rcpts,
            size: rng.range(1500, 40_000) as u32,
            spam,
        }
    }

    /// Everything through a commercial VPN: 3-5 of its exits a day (a handful of
    /// hosting providers' addresses), IMAP all day, a few messages.
    pub fn vpn_user(&mut self, rng: &mut Rng, user: &str) {
        let w = &self.world;
        let providers: Vec<usize> = (0..rng.range(2, 4))
            .map(|_| *rng.pick(&w.hosting))
            .collect();
        let exits: Vec<IpAddr> = (0..rng.range(6, 12))
            .map(|_| w.v4(*rng.pick(&providers), rng))
            .collect();
        let mut day = self.world.start;
        while day < self.world.end {
            let wake = day + rng.span(7 * HOUR, 9 * HOUR);
            let sleep = day + rng.span(21 * HOUR, 23 * HOUR);
            let hops = rng.range(3, 5);
            let mut t = wake;
            for h in 0..hops {
                let until = wake + (sleep - wake) * (h + 1) / hops;
                let exit = *rng.pick(&exits);
                while t < until {
                    self.login(t, user, exit, false, rng);
                    if rng.chance(0.25) {
                        let at = t + rng.span(SEC, 5 * MIN);
                        let m = self.msg_to(rng, user, at, (1, 3), 0.01, false);
                        self.submit(rng, user, exit, "submission", vec![m]);
                    }
                    t += rng.span(10 * MIN, 30 * MIN);
                }
            }
            day += DAY;
        }
    }

    /// Outlook.com fetching the mailbox by POP3 every few minutes from any address of
    /// Microsoft's big fetch pool; the person sends from home.
    pub fn outlook_fetch(&mut self, rng: &mut Rng, user: &str) {
        let p = Person::new(&self.world, rng, user, Kind::Home);
        self.live(rng, &p);
        let mut t = self.world.start + rng.span(0, 10 * MIN);
        while t < self.world.end {
            let addr = {
                let f = &self.world.fetcher;
                self.world.host(*rng.pick(f), rng)
            };
            self.login(t, user, addr, true, rng);
            t += rng.span(3 * MIN, 12 * MIN);
        }
    }

    /// A role mailbox (info@, office@) five staff use from home, each with their own
    /// ISP, phone and habits.
    pub fn shared_mailbox(&mut self, rng: &mut Rng, user: &str) {
        for _ in 0..5 {
            let p = Person::new(&self.world, rng, user, Kind::Home);
            self.live(rng, &p);
        }
    }

    /// A CRM in a cloud sending 100-300 messages a day "as" the account from two
    /// fixed addresses during business hours.
    pub fn crm(&mut self, rng: &mut Rng, user: &str) {
        let w = &self.world;
        let addrs = [w.v4(w.cloud, rng), w.v4(w.cloud, rng)];
        let mut day = self.world.start;
        while day < self.world.end {
            let n = rng.range(100, 300);
            let mut times: Vec<i64> = (0..n)
                .map(|_| day + rng.span(8 * HOUR, 20 * HOUR))
                .collect();
            times.sort_unstable();
            for t in times {
                let m = self.msg_to(rng, user, t, (1, 1), 0.02, false);
                let addr = *rng.pick(&addrs);
                self.submit(rng, user, addr, "submission", vec![m]);
            }
            day += DAY;
        }
    }

    /// Twelve addresses in twelve /24s of one hosting provider, spamming at once.
    pub fn hosting_botnet(&mut self, rng: &mut Rng, user: &str, start: i64) -> i64 {
        let w = &self.world;
        let owner = *rng.pick(&w.hosting);
        let mut nets = Vec::new();
        while nets.len() < 12 {
            let n = w.net24(owner, rng);
            if !nets.contains(&n) {
                nets.push(n);
            }
        }
        let hosts: Vec<IpAddr> = nets.iter().map(|n| w.host(*n, rng)).collect();
        let bounce = rng.uniform(0.3, 0.5);
        let stop = start + rng.span(HOUR, 3 * HOUR);
        let mut t = start;
        let mut i = 0;
        while t < stop {
            let addr = hosts[i % hosts.len()];
            i += 1;
            let msgs = (0..rng.range(1, 4))
                .map(|k| self.msg_to(rng, user, t + k * 3 * SEC, (3, 15), bounce, true))
                .collect();
            self.submit(rng, user, addr, "submission", msgs);
            t += if i < 12 {
                rng.span(10 * SEC, 50 * SEC)
            } else {
                rng.span(30 * SEC, 3 * MIN)
            };
        }
        start
    }

    /// Residential proxies: a new home address (the home country's ISPs and others)
    /// for each connection, a message or two each, for hours.
    pub fn residential_proxy(&mut self, rng: &mut Rng, user: &str, start: i64) -> i64 {
        let bounce = rng.uniform(0.15, 0.35);
        let stop = start + rng.span(2 * HOUR, 4 * HOUR);
        let mut t = start;
        while t < stop {
            let w = &self.world;
            let addr = if rng.chance(0.5) {
                w.v4(*rng.pick(&w.home_isps), rng)
            } else {
                w.bot(rng, &[])
            };
            let msgs = (0..rng.range(1, 2))
                .map(|k| self.msg_to(rng, user, t + k * 5 * SEC, (2, 8), bounce, true))
                .collect();
            self.submit(rng, user, addr, "submission", msgs);
            t += rng.span(MIN, 3 * MIN);
        }
        start
    }

    /// One rented server sending about 40 messages an hour for ten hours; `bounce`:
    /// 0.02 for a clean (bought, verified) list, 0.3 for a harvested one.
    pub fn quiet_sender(&mut self, rng: &mut Rng, user: &str, start: i64, bounce: f64) -> i64 {
        let w = &self.world;
        let addr = w.v4(*rng.pick(&w.hosting), rng);
        let stop = start + 10 * HOUR;
        let mut t = start;
        while t < stop {
            let m = self.msg_to(rng, user, t, (1, 3), bounce, true);
            self.submit(rng, user, addr, "submission", vec![m]);
            t += rng.span(HOUR / 60, HOUR / 30);
        }
        start
    }

    /// IMAP-only theft: a mail downloader through a proxy list (a new owner at each
    /// login within half an hour), then hours of re-downloads from a few of them.
    /// Never sends.
    pub fn imap_theft(&mut self, rng: &mut Rng, user: &str, start: i64) -> i64 {
        let w = &self.world;
        let mut owners: Vec<usize> = w.bot_isps.iter().chain(&w.hosting).copied().collect();
        rng.shuffle(&mut owners);
        let n = rng.range(12, 20) as usize;
        let addrs: Vec<IpAddr> = owners[..n].iter().map(|&o| w.v4(o, rng)).collect();
        let mut t = start;
        for &a in &addrs {
            self.login(t, user, a, false, rng);
            t += rng.span(30 * SEC, 2 * MIN);
        }
        let stop = t + rng.span(2 * HOUR, 4 * HOUR);
        while t < stop {
            let a = addrs[rng.range(0, 2) as usize];
            self.login(t, user, a, false, rng);
            t += rng.span(5 * MIN, 10 * MIN);
        }
        start
    }

    /// A new address every 15-30 minutes for two days, a message or two each, to a
    /// clean list.
    pub fn drip_two_days(&mut self, rng: &mut Rng, user: &str, start: i64) -> i64 {
        let stop = (start + 2 * DAY).min(self.world.end);
        let mut t = start;
        while t < stop {
            let addr = self.world.bot(rng, &[]);
            let msgs = (0..rng.range(1, 2))
                .map(|k| self.msg_to(rng, user, t + k * 20 * SEC, (1, 3), 0.02, true))
                .collect();
            self.submit(rng, user, addr, "submission", msgs);
            t += rng.span(15 * MIN, 30 * MIN);
        }
        start
    }
}
