//! Honest accounts that are not one person's devices: a mail provider fetching and
//! sending "as" its user, and newsletters sent from the office.

use super::activity::{outcome_for, Gen, Msg};
use super::rng::Rng;
use super::world::random_in_64;
use super::{DAY, HOUR, MIN, SEC};

impl Gen {
    /// `big`: the provider with the wide send pool, else one of the small ones.
    pub fn provider(&mut self, rng: &mut Rng, user: &str, big: bool) {
        let which = if big { 0 } else { rng.range(1, 2) as usize };
        let pop3 = rng.chance(0.7);
        let contacts: Vec<String> = (0..rng.range(5, 15))
            .map(|_| self.world.remote_rcpt(rng))
            .collect();
        // The provider fetches around the clock, from any address of its fetch pool.
        let mut t = self.world.start + rng.span(0, 30 * MIN);
        while t < self.world.end {
            let p = &self.world.providers[which];
            let addr = self.world.host(*rng.pick(&p.fetch), rng);
            self.login(t, user, addr, pop3, rng);
            t += rng.span(5 * MIN, 30 * MIN);
        }
        // Sending "as" this address through our server: each message is its own
        // connection from one of the provider's many outbound addresses.
        let mut day = self.world.start;
        while day < self.world.end {
            for _ in 0..rng.range(1, 5) {
                let mut t = day + rng.span(7 * HOUR, 23 * HOUR);
                let n = 1 + rng.exp(2500) / 1000;
                for _ in 0..n.min(12) {
                    let p = &self.world.providers[which];
                    let addr = if p.send.is_empty() {
                        random_in_64(*rng.pick(&p.send6), rng)
                    } else {
                        self.world.host(*rng.pick(&p.send), rng)
                    };
                    let r = rng.pick(&contacts).clone();
                    let msg = Msg {
                        t,
                        from: user.to_owned(),
                        rcpts: vec![outcome_for(r, rng, 0.01, 0.01)],
                        size: rng.range(2000, 80_000) as u32,
                        spam: false,
                    };
                    self.submit(rng, user, addr, "submission", vec![msg]);
                    t += rng.span(30 * SEC, 8 * MIN);
                }
            }
            day += DAY;
        }
    }

    /// The office's newsletter server (or its IPv6 twin) sends a campaign every day.
    pub fn newsletter(&mut self, rng: &mut Rng, user: &str) {
        let mut servers = vec![self.world.office_servers[0]];
        if rng.chance(0.5) {
            servers.push(self.world.office_servers[1]);
        }
        self.newsletter_from(rng, user, servers);
    }

    /// The same campaign sent by a desktop tool through the office NAT, which the
    /// admin whitelisted.
    pub fn newsletter_office(&mut self, rng: &mut Rng, user: &str) {
        let servers = vec![self.world.office_nat];
        self.newsletter_from(rng, user, servers);
    }

    fn newsletter_from(&mut self, rng: &mut Rng, user: &str, servers: Vec<std::net::IpAddr>) {
        let hour = rng.span(8 * HOUR, 17 * HOUR);
        let mut day = self.world.start;
        while day < self.world.end {
            // Transactional mail through the day.
            for _ in 0..rng.range(5, 20) {
                let t = day + rng.span(0, DAY - 1);
                let r = self.world.remote_rcpt(rng);
                let msg = Msg {
                    t,
                    from: user.to_owned(),
                    rcpts: vec![outcome_for(r, rng, 0.02, 0.01)],
                    size: rng.range(3000, 30_000) as u32,
                    spam: false,
                };
                let addr = *rng.pick(&servers);
                self.submit(rng, user, addr, "submission", vec![msg]);
            }
            // The campaign: thousands of personal copies within the hour.
            let total = rng.range(1000, 3000);
            let begin = day + hour + rng.span(0, 30 * MIN);
            let length = rng.span(40 * MIN, 60 * MIN);
            let bounce = rng.uniform(0.02, 0.05);
            let mut sent = 0;
            while sent < total {
                let batch = rng.range(50, 200).min(total - sent);
                let addr = *rng.pick(&servers);
                let msgs = (0..batch)
                    .map(|k| {
                        let t = begin + (sent + k) * length / total;
                        let r = self.world.remote_rcpt(rng);
                        Msg {
                            t,
                            from: user.to_owned(),
                            rcpts: vec![outcome_for(r, rng, bounce, 0.015)],
                            size: rng.range(25_000, 60_000) as u32,
                            spam: false,
                        }
                    })
                    .collect();
                self.submit(rng, user, addr, "submission", msgs);
                sent += batch;
            }
            day += DAY;
        }
    }
}
