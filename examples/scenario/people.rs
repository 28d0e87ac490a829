//! People: where they are during the day, which address each device shows there, and
//! the honest mail they send and fetch.

use std::net::IpAddr;

use super::activity::{outcome_for, Act, Gen, Msg};
use super::rng::Rng;
use super::world::{in_64, World};
use super::{DAY, HOUR, MIN};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loc {
    Home,
    /// On the home carrier.
    Mobile,
    Office,
    /// A café or a client's office at home (the address of its network).
    Venue(IpAddr),
    /// A hotel, airport or conference network abroad: (country, address).
    Abroad(usize, IpAddr),
    /// Between venues abroad: the phone roams.
    Roaming(usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Home,
    Office,
    Travel,
    /// A phone is their only device: carrier NAT and IPv6 all day.
    Phone,
}

pub struct Person {
    pub user: String,
    pub kind: Kind,
    /// Home IPv4 over time (some ISPs force a new address every night).
    home_v4: Vec<(i64, IpAddr)>,
    /// Home /64 and the seed of the privacy addresses in it, if the home has IPv6.
    home_v6: Option<([u16; 4], u64)>,
    carrier: usize,
    /// The phone's carrier-NAT address over time.
    mobile: Vec<(i64, IpAddr)>,
    /// The phone's /64 over time (a new one at each re-attach); empty without IPv6.
    mobile6: Vec<(i64, [u16; 4])>,
    /// The carrier NAT maps each connection to any address of its pool.
    per_flow_nat: bool,
    /// Abroad, the phone's traffic still leaves through the home carrier.
    home_routed: bool,
    /// Where the person is while awake: (from, to, where).
    segs: Vec<(i64, i64, Loc)>,
    desktop_pop3: bool,
    service: &'static str,
    method: &'static str,
    contacts: Vec<String>,
    /// Messages sent per day (awake days).
    sends: (i64, i64),
}

fn at<T: Copy>(v: &[(i64, T)], t: i64) -> T {
    let i = v.partition_point(|(from, _)| *from <= t);
    v[i.saturating_sub(1)].1
}

fn weekday(day: i64) -> bool {
    chrono::DateTime::from_timestamp(day / 1000, 0)
        .map(|d| chrono::Datelike::weekday(&d).number_from_monday() <= 5)
        .unwrap_or(true)
}

impl Person {
    pub fn new(w: &World, rng: &mut Rng, user: &str, kind: Kind) -> Self {
        let isp = *rng.pick(&w.home_isps);
        let mut home_v4 = vec![(w.start - DAY, w.v4(isp, rng))];
        if rng.chance(0.3) {
            // A forced reconnect every night, anywhere in the ISP's space.
            let hour = rng.span(2 * HOUR, 5 * HOUR);
            let mut d = w.start;
            while d < w.end {
                home_v4.push((d + hour, w.v4(isp, rng)));
                d += DAY;
            }
        }
        let home_v6 = rng.chance(0.6).then(|| (w.net64(isp, rng), rng.next_u64()));
        let carrier = rng.range(0, w.carriers.len() as i64 - 1) as usize;
        let phone = kind == Kind::Phone;
        let cgnat = &w.carriers[carrier].cgnat;
        let mut mobile = Vec::new();
        let mut t = w.start - HOUR;
        let mean = if phone { 20 * MIN } else { 40 * MIN };
        while t < w.end {
            mobile.push((t, w.host(*rng.pick(cgnat), rng)));
            t += MIN + rng.exp(mean);
        }
        let mut mobile6 = Vec::new();
        if phone || rng.chance(0.4) {
            let owner = w.carriers[carrier].owner;
            let mean = if phone { 15 * MIN } else { 30 * MIN };
            let mut t = w.start - HOUR;
            while t < w.end {
                mobile6.push((t, w.net64(owner, rng)));
                t += MIN + rng.exp(mean);
            }
        }
        let mut contacts: Vec<String> = (0..rng.range(4, 16))
            .map(|_| {
                if rng.chance(0.35) && !w.users.is_empty() {
                    rng.pick(&w.users).clone()
                } else {
                    w.remote_rcpt(rng)
                }
            })
            .collect();
        contacts.dedup();
        let sends = match kind {
            Kind::Home => (1, 12),
            Kind::Office => (6, 30),
            Kind::Travel => (3, 20),
            Kind::Phone => (2, 15),
        };
        let mut p = Self {
            user: user.to_owned(),
            kind,
            home_v4,
            home_v6,
            carrier,
            mobile,
            mobile6,
            per_flow_nat: phone && rng.chance(0.5),
            home_routed: rng.chance(0.5),
            segs: Vec::new(),
            desktop_pop3: rng.chance(0.15),
            service: if rng.chance(0.7) {
                "submission"
            } else {
                "smtps"
            },
            method: if rng.chance(0.8) { "PLAIN" } else { "LOGIN" },
            contacts,
            sends,
        };
        // Travellers alternate stays abroad (2-5 days, one hotel) with days at home.
        let mut stay: Option<(usize, IpAddr)> = None;
        let mut left = 0;
        let mut day = w.start;
        while day < w.end {
            if kind == Kind::Travel && left == 0 {
                stay = if stay.is_none() && rng.chance(0.8) {
                    let c = rng.range(0, w.abroad.len() as i64 - 1) as usize;
                    let hotel = *rng.pick(&w.abroad[c].hotels);
                    left = rng.range(2, 5);
                    Some((c, w.v4(hotel, rng)))
                } else {
                    left = rng.range(1, 3);
                    None
                };
            }
            left -= 1;
            p.plan_day(w, rng, day, stay);
            day += DAY;
        }
        p
    }

    fn plan_day(&mut self, w: &World, rng: &mut Rng, day: i64, stay: Option<(usize, IpAddr)>) {
        let wake = day + rng.span(6 * HOUR, 8 * HOUR + 30 * MIN);
        let sleep = (day + rng.span(22 * HOUR, 24 * HOUR)).min(w.end);
        if sleep <= wake {
            return;
        }
        let mut segs = Vec::new();
        match (self.kind, stay) {
            (Kind::Office, _) if weekday(day) => {
                let leave = wake + rng.span(30 * MIN, 90 * MIN);
                let arrive = leave + rng.span(20 * MIN, 60 * MIN);
                let off = (day + rng.span(16 * HOUR + 30 * MIN, 18 * HOUR + 30 * MIN)).max(arrive);
                let back = off + rng.span(20 * MIN, 60 * MIN);
                segs.push((wake, leave, Loc::Home));
                segs.push((leave, arrive, Loc::Mobile));
                segs.push((arrive, off, Loc::Office));
                segs.push((off, back, Loc::Mobile));
                segs.push((back, sleep, Loc::Home));
            }
            (Kind::Travel, Some((c, hotel))) => {
                let venues = rng.range(2, 4);
                let slot = (sleep - wake) / venues;
                let country = &w.abroad[c];
                for v in 0..venues {
                    let from = wake + v * slot;
                    let transit = rng.span(30 * MIN, 2 * HOUR).min(slot / 2);
                    let venue = match v {
                        0 => hotel,
                        _ if rng.chance(0.3) => w.v4(country.airport, rng),
                        _ => w.v4(*rng.pick(&country.venues), rng),
                    };
                    if v == 0 {
                        segs.push((from, from + slot - transit, Loc::Abroad(c, venue)));
                        segs.push((from + slot - transit, from + slot, Loc::Roaming(c)));
                    } else {
                        segs.push((from, from + transit, Loc::Roaming(c)));
                        segs.push((from + transit, from + slot, Loc::Abroad(c, venue)));
                    }
                }
            }
            _ => {
                let out = if self.kind == Kind::Phone { 0.9 } else { 0.75 };
                if rng.chance(out) {
                    let leave = (wake + rng.span(30 * MIN, 5 * HOUR)).min(day + 13 * HOUR);
                    let back = (leave + rng.span(2 * HOUR, 9 * HOUR)).min(sleep - 30 * MIN);
                    segs.push((wake, leave, Loc::Home));
                    if back > leave && rng.chance(0.2) {
                        // An hour or two in a café or a client's office; now and then
                        // on a network too new to be in any database.
                        let v_from = leave + rng.span(0, (back - leave) / 2);
                        let v_to = (v_from + rng.span(45 * MIN, 2 * HOUR)).min(back);
                        let venue = if rng.chance(0.05) {
                            w.unrouted(rng)
                        } else {
                            w.v4(*rng.pick(&w.home_isps), rng)
                        };
                        segs.push((leave, v_from, Loc::Mobile));
                        segs.push((v_from, v_to, Loc::Venue(venue)));
                        segs.push((v_to, back, Loc::Mobile));
                    } else {
                        segs.push((leave, back.max(leave), Loc::Mobile));
                    }
                    segs.push((back.max(leave), sleep, Loc::Home));
                } else {
                    segs.push((wake, sleep, Loc::Home));
                }
            }
        }
        self.segs.extend(segs.into_iter().filter(|(a, b, _)| b > a));
    }

    pub fn loc(&self, t: i64) -> Option<Loc> {
        let i = self.segs.partition_point(|(a, _, _)| *a <= t);
        let (a, b, l) = *self.segs.get(i.checked_sub(1)?)?;
        (a <= t && t < b).then_some(l)
    }

    fn home_addr(&self, rng: &mut Rng, t: i64, device: u64) -> IpAddr {
        match self.home_v6 {
            // Privacy addresses: a new one per device every day, all in the home /64.
            Some((p, seed)) if rng.chance(0.7) => {
                let day = (t / DAY) as u64;
                let mut h = Rng::new(seed ^ day.wrapping_mul(0x9E37) ^ device);
                in_64(p, h.next_u64() | 0x0200_0000_0000_0000)
            }
            _ => at(&self.home_v4, t),
        }
    }

    /// The phone on its home carrier: a privacy address in its current /64 (one per
    /// /64), or the carrier NAT's address.
    fn mobile_addr(&self, w: &World, rng: &mut Rng, t: i64) -> IpAddr {
        if !self.mobile6.is_empty() && rng.chance(0.7) {
            let p = at(&self.mobile6, t);
            let seed = (p[2] as u64) << 16 | p[3] as u64;
            return in_64(p, Rng::new(seed).next_u64() | 0x0200_0000_0000_0000);
        }
        if self.per_flow_nat {
            w.host(*rng.pick(&w.carriers[self.carrier].cgnat), rng)
        } else {
            at(&self.mobile, t)
        }
    }

    fn roaming_addr(&self, w: &World, rng: &mut Rng, t: i64, c: usize) -> IpAddr {
        if self.home_routed {
            self.mobile_addr(w, rng, t)
        } else {
            w.host(*rng.pick(&w.abroad[c].carrier.cgnat), rng)
        }
    }

    /// The address a device shows at `t`, if the person is awake.
    pub fn addr(&self, w: &World, rng: &mut Rng, t: i64, phone: bool) -> Option<IpAddr> {
        let on_phone = phone && rng.chance(0.4);
        Some(match self.loc(t)? {
            Loc::Home => self.home_addr(rng, t, phone as u64),
            Loc::Mobile => self.mobile_addr(w, rng, t),
            Loc::Office => w.office_nat,
            Loc::Venue(_) if on_phone => self.mobile_addr(w, rng, t),
            Loc::Venue(a) | Loc::Abroad(_, a) if !on_phone => a,
            Loc::Abroad(c, _) | Loc::Roaming(c) => self.roaming_addr(w, rng, t, c),
            Loc::Venue(a) => a,
        })
    }

    fn on_the_move(&self, t: i64) -> bool {
        matches!(self.loc(t), Some(Loc::Mobile | Loc::Roaming(_)))
    }
}

impl Gen {
    /// One honest message: mostly to contacts, rarely bouncing.
    pub fn honest_msg(&self, rng: &mut Rng, p: &Person, t: i64) -> Msg {
        let n = match rng.f64() {
            x if x < 0.7 => 1,
            x if x < 0.95 => rng.range(2, 3),
            _ => rng.range(4, 8),
        };
        let mut rcpts = Vec::new();
        for _ in 0..n {
            let r = if rng.chance(0.8) && !p.contacts.is_empty() {
                rng.pick(&p.contacts).clone()
            } else {
                self.world.remote_rcpt(rng)
            };
            rcpts.push(outcome_for(r, rng, 0.015, 0.01));
        }
        Msg {
            t,
            from: p.user.clone(),
            rcpts,
            size: rng.range(900, 350_000) as u32,
            spam: false,
        }
    }

    /// The honest life of a person: sends, phone and desktop mail checks, typos.
    pub fn live(&mut self, rng: &mut Rng, p: &Person) {
        let phone_only = p.kind == Kind::Phone;
        let mut day = self.world.start;
        while day < self.world.end {
            let awake: Vec<_> = p
                .segs
                .iter()
                .filter(|(a, _, _)| *a >= day && *a < day + DAY)
                .copied()
                .collect();
            if let (Some(first), Some(last)) = (awake.first(), awake.last()) {
                let (wake, sleep) = (first.0, last.1);
                // Sends: spread over the day, some answered in a row.
                let n = rng.range(p.sends.0, p.sends.1);
                let mut times: Vec<i64> = (0..n).map(|_| rng.span(wake, sleep - 1)).collect();
                times.sort_unstable();
                let mut i = 0;
                while i < times.len() {
                    let t = times[i];
                    let phone = phone_only || p.on_the_move(t) || rng.chance(0.3);
                    if let Some(addr) = p.addr(&self.world, rng, t, phone) {
                        let mut msgs = vec![self.honest_msg(rng, p, t)];
                        // A reply written right after: same connection.
                        while i + 1 < times.len() && times[i + 1] - t < 2 * MIN {
                            i += 1;
                            msgs.push(self.honest_msg(rng, p, times[i]));
                        }
                        self.submit_as(rng, &p.user, addr, p.service, p.method, msgs);
                    }
                    i += 1;
                }
                // Phone: IMAP every 10-30 minutes while awake (5-15 when it is all
                // they have: push reconnects).
                let gap = if phone_only { (5, 15) } else { (10, 30) };
                let mut t = wake + rng.span(0, 10 * MIN);
                while t < sleep {
                    if let Some(addr) = p.addr(&self.world, rng, t, true) {
                        self.login(t, &p.user, addr, false, rng);
                    }
                    t += rng.span(gap.0 * MIN, gap.1 * MIN);
                }
                // Desktop or laptop: when at home, at the office or at a venue.
                let mut t = wake + rng.span(0, 20 * MIN);
                while t < sleep && !phone_only {
                    if !p.on_the_move(t) {
                        if let Some(addr) = p.addr(&self.world, rng, t, false) {
                            self.login(t, &p.user, addr, p.desktop_pop3, rng);
                        }
                    }
                    t += rng.span(15 * MIN, 40 * MIN);
                }
                // A mistyped password now and then.
                if rng.chance(0.05) {
                    let t = rng.span(wake, sleep - 1);
                    if let Some(addr) = p.addr(&self.world, rng, t, true) {
                        self.acts.push(Act::LoginFail {
                            t,
                            user: p.user.clone(),
                            addr,
                            pop3: false,
                        });
                    }
                }
            }
            day += DAY;
        }
    }
}
