//! The labelled detection-quality corpus: a seeded, fully deterministic mail log of
//! honest and compromised accounts, in the syslog format Postfix and Dovecot write on
//! Debian, and the label of every account.
//!
//! Used by `examples/scenario` (the command) and `tests/quality.rs` (through
//! `#[path]`), so the test needs no nested cargo. Only `std`, `chrono` and `serde`.
//!
//! Everything is drawn from one SplitMix64 stream per account (forked from the seed),
//! so the same `Params` always give the same bytes. Log times start a fixed number of
//! days before END, a constant, never the clock.
#![allow(dead_code)]

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// 2026-11-22 00:00:00 UTC. The corpus covers the `days` before it: a past stretch of
/// year-less syslog time, which Fail2ban reads as this year.
pub const END: i64 = 1_795_305_600;

const SEC: i64 = 1000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// The mail server itself.
const HOST: &str = "mail";
const MX_NAME: &str = "mail.example.com";
const LIP4: &str = "192.0.2.25";
const LIP6: &str = "2001:db8::25";
/// Office NAT: every office user's desktop and the office Wi-Fi leave through it.
const OFFICE_NAT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

pub const DOMAINS: &[&str] = &["example.com", "example.org", "example.net"];

#[derive(Debug, Clone)]
pub struct Params {
    pub seed: u64,
    pub days: u32,
    pub users: usize,
}

// ---------------------------------------------------------------------------------
// PRNG

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough for a corpus.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A new independent stream, for one account or one part of the corpus.
    pub fn fork(&mut self, tag: u64) -> Rng {
        Rng::new(self.next_u64() ^ tag.wrapping_mul(0xD1B5_4A32_D192_ED03))
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in [lo, hi] (inclusive).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }

    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    /// Uniform duration in milliseconds between `lo` and `hi` milliseconds.
    pub fn span(&mut self, lo: i64, hi: i64) -> i64 {
        self.range(lo, hi)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.range(0, xs.len() as i64 - 1) as usize]
    }

    /// Exponential with the given mean (milliseconds): gaps of a Poisson process.
    pub fn exp(&mut self, mean: i64) -> i64 {
        (-(mean as f64) * (1.0 - self.f64()).ln()) as i64
    }

    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.range(0, i as i64) as usize;
            xs.swap(i, j);
        }
    }
}

// ---------------------------------------------------------------------------------
// Addresses

/// First octets of ordinary unicast space: no 0, 10, 100 (CGNAT), 127, 169 (link-local),
/// 172 (RFC 1918), 192, 198 (benchmark) or 203 (documentation lives there, used on purpose
/// elsewhere), nothing from 224 on.
const FIRST_OCTETS: &[u8] = &[
    2, 5, 8, 12, 23, 24, 31, 37, 41, 45, 46, 50, 62, 64, 66, 68, 71, 73, 77, 78, 79, 80, 81, 82,
    83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 98, 99, 103, 104, 105, 107, 109, 110,
    112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 128, 130, 134, 138, 141,
    145, 146, 147, 151, 154, 156, 158, 159, 162, 165, 176, 177, 178, 179, 180, 181, 182, 183, 185,
    186, 187, 188, 189, 190, 191, 193, 194, 195, 196, 197, 200, 201, 202, 210, 211, 212, 213, 217,
    218, 219, 220, 221, 222,
];

/// A /24 of ordinary public IPv4 space.
fn public_24(rng: &mut Rng) -> [u8; 3] {
    [
        *rng.pick(FIRST_OCTETS),
        rng.range(0, 255) as u8,
        rng.range(0, 255) as u8,
    ]
}

fn host_in(net: [u8; 3], rng: &mut Rng) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        net[0],
        net[1],
        net[2],
        rng.range(1, 254) as u8,
    ))
}

fn public_v4(rng: &mut Rng) -> IpAddr {
    let net = public_24(rng);
    host_in(net, rng)
}

/// Global IPv6 allocations of a few RIRs (documentation prefix included).
const V6_TOP: &[u16] = &[
    0x2001, 0x2003, 0x2a00, 0x2a01, 0x2a02, 0x2a03, 0x2a05, 0x2600, 0x2601, 0x2603, 0x2804, 0x2405,
    0x2409, 0x240e, 0x2c0f,
];

/// A random /64 in public IPv6 space.
fn public_64(rng: &mut Rng) -> [u16; 4] {
    let top = *rng.pick(V6_TOP);
    let second = if top == 0x2001 {
        0x0db8
    } else {
        rng.range(0, 0xffff) as u16
    };
    [
        top,
        second,
        rng.range(0, 0xffff) as u16,
        rng.range(0, 0xffff) as u16,
    ]
}

fn in_64(p: [u16; 4], iid: u64) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        p[0],
        p[1],
        p[2],
        p[3],
        (iid >> 48) as u16,
        (iid >> 32) as u16,
        (iid >> 16) as u16,
        iid as u16,
    ))
}

fn random_in_64(p: [u16; 4], rng: &mut Rng) -> IpAddr {
    in_64(p, rng.next_u64() | 0x0200_0000_0000_0000)
}

// ---------------------------------------------------------------------------------
// Labels

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// Home, phone on carrier NAT, IPv6 privacy addresses, laptop in a café.
    MultiDevice,
    /// Submits from the office NAT (one address for many users) on weekdays.
    OfficeNat,
    /// A few hotel, airport and conference networks a day, phone roaming.
    Traveller,
    /// Their mail provider fetches (POP3/IMAP) and sends on their behalf from its ranges.
    Provider,
    /// Thousands of messages in an hour from one or two addresses.
    Newsletter,
    /// Dozens of client networks within minutes, lots of mail, many bounces.
    BotnetBurst,
    /// A new address every 10-20 minutes for a day, modest sending.
    SlowDrip,
    /// One address, several hundred messages an hour, many bounces.
    SingleIpSpammer,
}

impl Class {
    pub const ALL: [Class; 8] = [
        Class::BotnetBurst,
        Class::SlowDrip,
        Class::SingleIpSpammer,
        Class::MultiDevice,
        Class::OfficeNat,
        Class::Traveller,
        Class::Provider,
        Class::Newsletter,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Class::MultiDevice => "multi_device",
            Class::OfficeNat => "office_nat",
            Class::Traveller => "traveller",
            Class::Provider => "provider",
            Class::Newsletter => "newsletter",
            Class::BotnetBurst => "botnet_burst",
            Class::SlowDrip => "slow_drip",
            Class::SingleIpSpammer => "single_ip_spammer",
        }
    }

    pub fn compromised(self) -> bool {
        matches!(
            self,
            Class::BotnetBurst | Class::SlowDrip | Class::SingleIpSpammer
        )
    }
}

/// One line of labels.jsonl.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Label {
    pub user: String,
    pub class: String,
    pub compromised: bool,
    /// Log time (seconds since 1970) of the attacker's first login, if compromised.
    pub compromise_start: Option<i64>,
}

/// What the shipped filters must find in the log: every successful SASL submission,
/// IMAP and POP3 login, and every bounced recipient of a SASL-submitted message.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Expected {
    pub smtp: u64,
    pub imap: u64,
    pub pop3: u64,
    pub bounces: u64,
}

/// scenario.json: how the corpus was made, and the ground truth counts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub seed: u64,
    pub days: u32,
    pub users: usize,
    pub start: i64,
    pub end: i64,
    /// Log time of the first successful SASL submission, to check how Fail2ban read the
    /// year-less timestamps.
    pub first_login: i64,
    pub lines: usize,
    pub expected: Expected,
}

pub struct Corpus {
    /// Log lines in time order, without newlines.
    pub log: Vec<String>,
    pub labels: Vec<Label>,
    pub meta: Meta,
}

impl Corpus {
    /// Writes DIR/mail.log, DIR/labels.jsonl and DIR/scenario.json.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(dir)?;
        let mut w = std::io::BufWriter::new(std::fs::File::create(dir.join("mail.log"))?);
        for l in &self.log {
            w.write_all(l.as_bytes())?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
        let mut labels = String::new();
        for l in &self.labels {
            labels.push_str(&serde_json::to_string(l).expect("label"));
            labels.push('\n');
        }
        std::fs::write(dir.join("labels.jsonl"), labels)?;
        std::fs::write(
            dir.join("scenario.json"),
            serde_json::to_string_pretty(&self.meta).expect("meta") + "\n",
        )
    }
}

// ---------------------------------------------------------------------------------
// Activity, before it is rendered as log lines

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    /// Delivered remotely (postfix/smtp).
    Sent,
    /// 550 5.1.1 from the remote server.
    Bounced,
    /// 4xx or unreachable: stays in the queue.
    Deferred,
    /// Local mailbox (postfix/lmtp to Dovecot).
    Local,
}

#[derive(Debug, Clone)]
struct Msg {
    t: i64,
    from: String,
    rcpts: Vec<(String, Outcome)>,
    size: u32,
    spam: bool,
}

#[derive(Debug, Clone)]
enum Act {
    /// One authenticated SMTP connection carrying one or more messages.
    Submit {
        t: i64,
        user: String,
        addr: IpAddr,
        name: String,
        service: &'static str,
        method: &'static str,
        msgs: Vec<Msg>,
    },
    /// A successful Dovecot login and its logout.
    Login {
        t: i64,
        user: String,
        addr: IpAddr,
        pop3: bool,
        secs: i64,
    },
    /// Noise: wrong password over SMTP AUTH.
    SmtpAuthFail { t: i64, user: String, addr: IpAddr },
    /// Noise: wrong password over IMAP/POP3.
    LoginFail {
        t: i64,
        user: String,
        addr: IpAddr,
        pop3: bool,
    },
    /// Noise: inbound mail from another server, no SASL.
    Inbound {
        t: i64,
        addr: IpAddr,
        name: String,
        from: String,
        to: String,
    },
}

impl Act {
    fn time(&self) -> i64 {
        match self {
            Act::Submit { t, .. }
            | Act::Login { t, .. }
            | Act::SmtpAuthFail { t, .. }
            | Act::LoginFail { t, .. }
            | Act::Inbound { t, .. } => *t,
        }
    }
}

// ---------------------------------------------------------------------------------
// Shared networks of the simulated Internet

struct World {
    start: i64,
    end: i64,
    /// Residential ISPs: /16s that home routers get addresses from.
    isps: Vec<Vec<[u8; 2]>>,
    /// IPv6 /48 per ISP (documentation space), homes get a /64 inside.
    isp6: Vec<[u16; 3]>,
    /// Mobile carriers: the /24s of their carrier-grade NAT pools (public addresses).
    carriers: Vec<Vec<[u8; 3]>>,
    /// Foreign carriers, for roaming travellers.
    roaming: Vec<Vec<[u8; 3]>>,
    /// Provider A sends from these /24s, fetches from those.
    prov_a_send: Vec<[u8; 3]>,
    prov_a_fetch: Vec<[u8; 3]>,
    /// Provider B sends over IPv6 from a few /64s, fetches over IPv4.
    prov_b_send: Vec<[u16; 4]>,
    prov_b_fetch: Vec<[u8; 3]>,
    /// Remote domains and their MX (name, address).
    remote: Vec<(String, String, IpAddr)>,
    /// All account addresses, for local recipients.
    users: Vec<String>,
}

const REMOTE_NAMES: &[&str] = &[
    "northwind",
    "contoso",
    "fabrikam",
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "vandelay",
    "tyrell",
    "cyberdyne",
    "soylent",
    "wonka",
    "oscorp",
    "aperture",
    "blackmesa",
    "dunder",
    "piedpiper",
    "sterling",
    "bluth",
    "monarch",
    "nakatomi",
    "weyland",
    "duff",
    "freemail",
    "webpost",
    "inbox",
    "postbox",
    "mailhub",
    "netmail",
    "kabelnet",
    "fibrelink",
    "citymail",
    "unimail",
    "homebox",
    "letterbox",
];

const FIRST: &[&str] = &[
    "anna", "ben", "carla", "david", "eva", "felix", "greta", "hugo", "ines", "jonas", "karin",
    "lars", "mia", "noah", "olga", "paul", "quentin", "rosa", "sven", "tina", "uwe", "vera",
    "walter", "xenia", "yusuf", "zoe", "amir", "bianca", "chen", "dana", "emil", "fatima", "georg",
    "hanna", "ivan", "julia", "kemal", "lena", "marco", "nina",
];

const LAST: &[&str] = &[
    "schmidt", "meyer", "weber", "wagner", "becker", "hoffmann", "koch", "richter", "klein",
    "wolf", "neumann", "braun", "zimmer", "krause", "hartmann", "lange", "werner", "lehmann",
    "kaiser", "fuchs", "peters", "scholz", "moeller", "jung", "hahn", "vogel", "roth", "baumann",
    "frank", "berger", "martin", "garcia", "rossi", "novak", "jansen", "silva", "olsen",
    "kowalski", "dubois", "costa",
];

const BULK_NAMES: &[&str] = &[
    "newsletter",
    "news",
    "info",
    "marketing",
    "updates",
    "events",
    "shop",
    "members",
];

impl World {
    fn new(rng: &mut Rng, start: i64, end: i64) -> Self {
        let isps = (0..5)
            .map(|_| {
                (0..3)
                    .map(|_| {
                        let n = public_24(rng);
                        [n[0], n[1]]
                    })
                    .collect()
            })
            .collect();
        let isp6 = (0..5)
            .map(|_| [0x2001, 0x0db8, rng.range(0x1000, 0x7fff) as u16])
            .collect();
        let pools = |rng: &mut Rng, n: usize, k: usize| -> Vec<Vec<[u8; 3]>> {
            (0..n)
                .map(|_| (0..k).map(|_| public_24(rng)).collect())
                .collect()
        };
        let carriers = pools(rng, 3, 4);
        let roaming = pools(rng, 3, 3);
        let mut prov_a_send = vec![[198, 51, 100]];
        prov_a_send.extend((0..2).map(|_| public_24(rng)));
        let prov_a_fetch = (0..3).map(|_| public_24(rng)).collect();
        let prov_b_send = (0..4)
            .map(|i| [0x2001, 0x0db8, 0x4860, 0x4000 + i])
            .collect();
        let prov_b_fetch = vec![[203, 0, 113], public_24(rng)];
        let remote = REMOTE_NAMES
            .iter()
            .map(|n| {
                let domain = format!("{n}.example");
                let mx = format!("mx{}.{domain}", rng.range(1, 3));
                (domain, mx, public_v4(rng))
            })
            .collect();
        Self {
            start,
            end,
            isps,
            isp6,
            carriers,
            roaming,
            prov_a_send,
            prov_a_fetch,
            prov_b_send,
            prov_b_fetch,
            remote,
            users: Vec::new(),
        }
    }

    fn remote_rcpt(&self, rng: &mut Rng) -> String {
        let (domain, _, _) = rng.pick(&self.remote);
        if rng.chance(0.5) {
            format!("{}.{}@{domain}", rng.pick(FIRST), rng.pick(LAST))
        } else {
            format!("{}{}@{domain}", rng.pick(FIRST), rng.range(1, 999))
        }
    }

    /// A harvested address, as spam goes to: often dead.
    fn spam_rcpt(&self, rng: &mut Rng) -> String {
        let (domain, _, _) = rng.pick(&self.remote);
        let mut local = String::new();
        for _ in 0..rng.range(5, 10) {
            local.push((b'a' + rng.range(0, 25) as u8) as char);
        }
        if rng.chance(0.3) {
            local.push_str(&rng.range(1, 99).to_string());
        }
        format!("{local}@{domain}")
    }

    fn mx_of(&self, rcpt: &str) -> (&str, IpAddr) {
        let domain = rcpt.rsplit('@').next().unwrap_or("");
        self.remote
            .iter()
            .find(|(d, _, _)| d == domain)
            .map(|(_, mx, a)| (mx.as_str(), *a))
            .unwrap_or(("mx.example.net", IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99))))
    }

    fn is_local(rcpt: &str) -> bool {
        let domain = rcpt.rsplit('@').next().unwrap_or("");
        DOMAINS.contains(&domain)
    }
}

// ---------------------------------------------------------------------------------
// People: where they are, which address each device has

#[derive(Debug, Clone, Copy, PartialEq)]
enum Loc {
    Home,
    Mobile,
    Office,
    Venue(IpAddr),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Home,
    Office,
    Travel,
}

struct Person {
    user: String,
    /// Home IPv4 over time (some ISPs force a new address every day).
    home_v4: Vec<(i64, IpAddr)>,
    /// Home /64 and the seed of the privacy addresses in it, if the home has IPv6.
    home_v6: Option<([u16; 4], u64)>,
    /// The phone's mobile address over time (carrier NAT, changes often).
    mobile: Vec<(i64, IpAddr)>,
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

impl Person {
    fn new(w: &World, rng: &mut Rng, user: &str, kind: Kind) -> Self {
        let isp = rng.range(0, w.isps.len() as i64 - 1) as usize;
        let home16 = *rng.pick(&w.isps[isp]);
        let home = |rng: &mut Rng| {
            IpAddr::V4(Ipv4Addr::new(
                home16[0],
                home16[1],
                rng.range(0, 255) as u8,
                rng.range(1, 254) as u8,
            ))
        };
        let mut home_v4 = vec![(w.start - DAY, home(rng))];
        if rng.chance(0.3) {
            // A forced reconnect every night.
            let hour = rng.span(2 * HOUR, 5 * HOUR);
            let mut d = w.start;
            while d < w.end {
                home_v4.push((d + hour, home(rng)));
                d += DAY;
            }
        }
        let home_v6 = rng.chance(0.6).then(|| {
            let p = w.isp6[isp];
            (
                [p[0], p[1], p[2], rng.range(0, 0xffff) as u16],
                rng.next_u64(),
            )
        });
        let pool = if kind == Kind::Travel {
            rng.pick(&w.roaming).clone()
        } else {
            rng.pick(&w.carriers).clone()
        };
        let mut mobile = Vec::new();
        let mut t = w.start - HOUR;
        while t < w.end {
            mobile.push((t, host_in(*rng.pick(&pool), rng)));
            t += MIN + rng.exp(40 * MIN);
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
        };
        let mut p = Self {
            user: user.to_owned(),
            home_v4,
            home_v6,
            mobile,
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
        let mut day = w.start;
        while day < w.end {
            p.plan_day(w, rng, day, kind);
            day += DAY;
        }
        p
    }

    fn plan_day(&mut self, w: &World, rng: &mut Rng, day: i64, kind: Kind) {
        let wake = day + rng.span(6 * HOUR, 8 * HOUR + 30 * MIN);
        let sleep = (day + rng.span(22 * HOUR, 24 * HOUR)).min(w.end);
        if sleep <= wake {
            return;
        }
        let weekday = chrono::DateTime::from_timestamp(day / 1000, 0)
            .map(|d| chrono::Datelike::weekday(&d).number_from_monday() <= 5)
            .unwrap_or(true);
        let mut segs = Vec::new();
        match kind {
            Kind::Office if weekday => {
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
            Kind::Travel => {
                let venues = rng.range(2, 4);
                let slot = (sleep - wake) / venues;
                for v in 0..venues {
                    let from = wake + v * slot;
                    let transit = rng.span(30 * MIN, 2 * HOUR).min(slot / 2);
                    let venue = public_v4(rng);
                    if v == 0 {
                        segs.push((from, from + slot - transit, Loc::Venue(venue)));
                        segs.push((from + slot - transit, from + slot, Loc::Mobile));
                    } else {
                        segs.push((from, from + transit, Loc::Mobile));
                        segs.push((from + transit, from + slot, Loc::Venue(venue)));
                    }
                }
            }
            _ => {
                if rng.chance(0.75) {
                    let leave = (wake + rng.span(30 * MIN, 5 * HOUR)).min(day + 13 * HOUR);
                    let back = (leave + rng.span(2 * HOUR, 7 * HOUR)).min(sleep - 30 * MIN);
                    segs.push((wake, leave, Loc::Home));
                    if back > leave && rng.chance(0.2) {
                        // An hour or two with the laptop in a café or a client's office.
                        let v_from = leave + rng.span(0, (back - leave) / 2);
                        let v_to = (v_from + rng.span(45 * MIN, 2 * HOUR)).min(back);
                        segs.push((leave, v_from, Loc::Mobile));
                        segs.push((v_from, v_to, Loc::Venue(public_v4(rng))));
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

    fn loc(&self, t: i64) -> Option<Loc> {
        self.segs
            .iter()
            .find(|(a, b, _)| *a <= t && t < *b)
            .map(|(_, _, l)| *l)
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

    /// The address a device shows at `t`, if the person is awake.
    fn addr(&self, rng: &mut Rng, t: i64, phone: bool) -> Option<IpAddr> {
        Some(match self.loc(t)? {
            Loc::Home => self.home_addr(rng, t, phone as u64),
            Loc::Mobile => at(&self.mobile, t),
            Loc::Office => IpAddr::V4(OFFICE_NAT),
            Loc::Venue(a) => {
                if phone && rng.chance(0.4) {
                    at(&self.mobile, t)
                } else {
                    a
                }
            }
        })
    }
}

/// The PTR name Postfix logs: a third of IPv4 clients have a forward-confirmed one,
/// always the same for one address.
fn client_name(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            if Rng::new(u32::from(a) as u64).next_u64().is_multiple_of(3) {
                format!("{}-{}-{}-{}.dyn.isp.example", o[0], o[1], o[2], o[3])
            } else {
                "unknown".to_owned()
            }
        }
        IpAddr::V6(_) => "unknown".to_owned(),
    }
}

// ---------------------------------------------------------------------------------
// The generator

struct Gen {
    world: World,
    acts: Vec<Act>,
}

impl Gen {
    fn submit(
        &mut self,
        rng: &mut Rng,
        user: &str,
        addr: IpAddr,
        service: &'static str,
        msgs: Vec<Msg>,
    ) {
        self.submit_as(rng, user, addr, service, "PLAIN", msgs);
    }

    fn submit_as(
        &mut self,
        rng: &mut Rng,
        user: &str,
        addr: IpAddr,
        service: &'static str,
        method: &'static str,
        msgs: Vec<Msg>,
    ) {
        let Some(first) = msgs.first() else { return };
        if first.t >= self.world.end || first.t < self.world.start {
            return;
        }
        let t = first.t - rng.span(300, 3 * SEC);
        let name = client_name(addr);
        self.acts.push(Act::Submit {
            t,
            user: user.to_owned(),
            addr,
            name,
            service,
            method,
            msgs,
        });
    }

    fn login(&mut self, t: i64, user: &str, addr: IpAddr, pop3: bool, rng: &mut Rng) {
        if t < self.world.start || t >= self.world.end {
            return;
        }
        let secs = if pop3 {
            rng.range(1, 8)
        } else {
            rng.range(2, 1800)
        };
        self.acts.push(Act::Login {
            t,
            user: user.to_owned(),
            addr,
            pop3,
            secs,
        });
    }

    /// One honest message: mostly to contacts, rarely bouncing.
    fn honest_msg(&self, rng: &mut Rng, p: &Person, t: i64) -> Msg {
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
    fn live(&mut self, rng: &mut Rng, p: &Person) {
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
                    let phone = p.loc(t) == Some(Loc::Mobile) || rng.chance(0.3);
                    if let Some(addr) = p.addr(rng, t, phone) {
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
                // Phone: IMAP every 10-30 minutes while awake.
                let mut t = wake + rng.span(0, 10 * MIN);
                while t < sleep {
                    if let Some(addr) = p.addr(rng, t, true) {
                        self.login(t, &p.user, addr, false, rng);
                    }
                    t += rng.span(10 * MIN, 30 * MIN);
                }
                // Desktop or laptop: when at home, at the office or at a venue.
                let mut t = wake + rng.span(0, 20 * MIN);
                while t < sleep {
                    match p.loc(t) {
                        Some(Loc::Mobile) | None => {}
                        Some(_) => {
                            if let Some(addr) = p.addr(rng, t, false) {
                                self.login(t, &p.user, addr, p.desktop_pop3, rng);
                            }
                        }
                    }
                    t += rng.span(15 * MIN, 40 * MIN);
                }
                // A mistyped password now and then.
                if rng.chance(0.05) {
                    let t = rng.span(wake, sleep - 1);
                    if let Some(addr) = p.addr(rng, t, true) {
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

    fn provider(&mut self, rng: &mut Rng, user: &str) {
        let b = rng.chance(0.4);
        let pop3 = rng.chance(0.7);
        let contacts: Vec<String> = (0..rng.range(5, 15))
            .map(|_| self.world.remote_rcpt(rng))
            .collect();
        // The provider fetches around the clock.
        let mut t = self.world.start + rng.span(0, 30 * MIN);
        while t < self.world.end {
            let pool = if b {
                &self.world.prov_b_fetch
            } else {
                &self.world.prov_a_fetch
            };
            let addr = host_in(*rng.pick(pool), rng);
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
                    let addr = if b {
                        random_in_64(*rng.pick(&self.world.prov_b_send), rng)
                    } else {
                        host_in(*rng.pick(&self.world.prov_a_send), rng)
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

    fn newsletter(&mut self, rng: &mut Rng, user: &str) {
        let mut servers = vec![public_v4(rng)];
        if rng.chance(0.5) {
            servers.push(random_in_64(public_64(rng), rng));
        }
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

    fn spam_conn(&mut self, rng: &mut Rng, user: &str, addr: IpAddr, t: i64, k: i64, bounce: f64) {
        let mut msgs = Vec::new();
        let mut m = t;
        for _ in 0..k {
            msgs.push(self.spam_msg(rng, user, m, (5, 25), bounce));
            m += rng.span(2 * SEC, 10 * SEC);
        }
        self.submit(rng, user, addr, "submission", msgs);
    }

    fn botnet_addr(rng: &mut Rng, used: &[IpAddr]) -> IpAddr {
        if rng.chance(0.15) {
            return random_in_64(public_64(rng), rng);
        }
        // Some bots share a hosting block with an earlier one.
        if let Some(IpAddr::V4(prev)) = used
            .iter()
            .rev()
            .find(|a| a.is_ipv4())
            .copied()
            .filter(|_| rng.chance(0.2))
        {
            let o = prev.octets();
            return host_in([o[0], o[1], o[2]], rng);
        }
        public_v4(rng)
    }

    fn botnet(&mut self, rng: &mut Rng, user: &str, start: i64) {
        let n = rng.range(24, 72);
        let burst = rng.span(3 * MIN, 15 * MIN);
        let bounce = rng.uniform(0.3, 0.6);
        let mut arrivals: Vec<i64> = (1..n).map(|_| start + rng.span(0, burst)).collect();
        arrivals.push(start);
        arrivals.sort_unstable();
        let mut used = Vec::new();
        for t in arrivals {
            let addr = Self::botnet_addr(rng, &used);
            used.push(addr);
            let k = rng.range(1, 5);
            self.spam_conn(rng, user, addr, t, k, bounce);
        }
        // It goes on at a lower pace until someone stops it.
        let stop = start + burst + rng.span(HOUR, 3 * HOUR);
        let mut t = start + burst + rng.exp(3 * MIN);
        while t < stop {
            let addr = if rng.chance(0.2) {
                let a = Self::botnet_addr(rng, &used);
                used.push(a);
                a
            } else {
                *rng.pick(&used)
            };
            let k = rng.range(1, 5);
            self.spam_conn(rng, user, addr, t, k, bounce);
            t += SEC + rng.exp(3 * MIN);
        }
    }

    fn drip(&mut self, rng: &mut Rng, user: &str, start: i64) {
        let stop = (start + DAY).min(self.world.end);
        let bounce = rng.uniform(0.1, 0.3);
        let mut t = start;
        while t < stop {
            let addr = if rng.chance(0.2) {
                random_in_64(public_64(rng), rng)
            } else {
                public_v4(rng)
            };
            let mut msgs = Vec::new();
            let mut m = t;
            for _ in 0..rng.range(1, 3) {
                msgs.push(self.spam_msg(rng, user, m, (1, 5), bounce));
                m += rng.span(5 * SEC, 40 * SEC);
            }
            self.submit(rng, user, addr, "submission", msgs);
            t += rng.span(10 * MIN, 20 * MIN);
        }
    }

    fn spammer(&mut self, rng: &mut Rng, user: &str, start: i64) {
        let addr = public_v4(rng);
        let hours = rng.uniform(1.0, 3.0);
        let stop = (start + (hours * HOUR as f64) as i64).min(self.world.end);
        let per_hour = rng.range(300, 700);
        let gap = HOUR / per_hour;
        let bounce = rng.uniform(0.4, 0.7);
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
            t = m + rng.span(SEC, 5 * SEC);
        }
    }

    /// Noise: password guessing, inbound mail.
    fn noise(&mut self, rng: &mut Rng) {
        let mut day = self.world.start;
        while day < self.world.end {
            for _ in 0..rng.range(3, 8) {
                let addr = public_v4(rng);
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

fn outcome_for(r: String, rng: &mut Rng, bounce: f64, defer: f64) -> (String, Outcome) {
    if World::is_local(&r) {
        return (r, Outcome::Local);
    }
    let x = rng.f64();
    let o = if x < bounce {
        Outcome::Bounced
    } else if x < bounce + defer {
        Outcome::Deferred
    } else {
        Outcome::Sent
    };
    (r, o)
}

/// How many accounts of each class for `users` accounts (at least 20).
pub fn plan(users: usize) -> Vec<(Class, usize)> {
    let n = users.max(20);
    let mut v = vec![
        (Class::BotnetBurst, (n / 30).max(1)),
        (Class::SlowDrip, (n / 30).max(1)),
        (Class::SingleIpSpammer, (n / 40).max(1)),
        (Class::OfficeNat, n / 6),
        (Class::Traveller, n / 15),
        (Class::Provider, n / 15),
        (Class::Newsletter, (n / 100).max(1)),
    ];
    let rest = n - v.iter().map(|(_, k)| k).sum::<usize>();
    v.insert(3, (Class::MultiDevice, rest));
    v
}

pub fn generate(params: &Params) -> Corpus {
    let days = params.days.clamp(1, 60) as i64;
    let start = END * 1000 - days * DAY;
    let end = END * 1000;
    let mut root = Rng::new(params.seed);
    let mut world_rng = root.fork(1);
    let mut world = World::new(&mut world_rng, start, end);

    // Accounts: classes in random order, so names say nothing about the class.
    let mut classes: Vec<Class> = plan(params.users)
        .into_iter()
        .flat_map(|(c, k)| std::iter::repeat_n(c, k))
        .collect();
    let mut order = root.fork(2);
    order.shuffle(&mut classes);
    let mut people: Vec<(String, usize)> = Vec::new();
    let mut combos: Vec<(usize, usize)> = (0..FIRST.len())
        .flat_map(|f| (0..LAST.len()).map(move |l| (f, l)))
        .collect();
    order.shuffle(&mut combos);
    let mut taken = HashSet::new();
    let mut bulk = 0;
    for (i, c) in classes.iter().enumerate() {
        let domain = order.pick(DOMAINS);
        let local = if *c == Class::Newsletter {
            bulk += 1;
            let base = BULK_NAMES[(bulk - 1) % BULK_NAMES.len()];
            if bulk > BULK_NAMES.len() {
                format!("{base}{bulk}")
            } else {
                base.to_owned()
            }
        } else {
            let (f, l) = combos[i % combos.len()];
            if i >= combos.len() {
                format!("{}.{}{}", FIRST[f], LAST[l], i / combos.len())
            } else {
                format!("{}.{}", FIRST[f], LAST[l])
            }
        };
        let mut user = format!("{local}@{domain}");
        while !taken.insert(user.clone()) {
            user = format!("{local}{}@{domain}", order.range(2, 99));
        }
        people.push((user, i));
    }
    world.users = people.iter().map(|(u, _)| u.clone()).collect();

    let mut g = Gen {
        world,
        acts: Vec::new(),
    };
    let mut labels = Vec::new();
    for ((user, i), class) in people.iter().zip(&classes) {
        let mut rng = root.fork(1000 + *i as u64);
        let mut compromise_start = None;
        match class {
            Class::Provider => g.provider(&mut rng, user),
            Class::Newsletter => g.newsletter(&mut rng, user),
            _ => {
                let kind = match class {
                    Class::OfficeNat => Kind::Office,
                    Class::Traveller => Kind::Travel,
                    _ => Kind::Home,
                };
                let p = Person::new(&g.world, &mut rng, user, kind);
                g.live(&mut rng, &p);
                // The attack, after hours of honest use; the user goes on as before.
                let (lo, hi) = match class {
                    Class::SlowDrip => (start + 4 * HOUR, end - DAY),
                    _ => (start + 6 * HOUR, end - 4 * HOUR),
                };
                let t0 = rng.span(lo, hi.max(lo + HOUR)) / 1000 * 1000;
                match class {
                    Class::BotnetBurst => g.botnet(&mut rng, user, t0),
                    Class::SlowDrip => g.drip(&mut rng, user, t0),
                    Class::SingleIpSpammer => g.spammer(&mut rng, user, t0),
                    _ => {}
                }
                if class.compromised() {
                    compromise_start = Some(t0 / 1000);
                }
            }
        }
        labels.push(Label {
            user: user.clone(),
            class: class.name().to_owned(),
            compromised: class.compromised(),
            compromise_start,
        });
    }
    let mut noise = root.fork(3);
    g.noise(&mut noise);
    labels.sort_by(|a, b| a.user.cmp(&b.user));

    let mut render = Render::new(root.fork(4));
    let mut acts = std::mem::take(&mut g.acts);
    acts.sort_by_key(Act::time);
    for a in &acts {
        render.act(&g.world, a);
    }
    let Render {
        mut lines,
        expected,
        first_login,
        ..
    } = render;
    lines.sort_by_key(|(t, seq, _)| (*t, *seq));
    let log: Vec<String> = lines.into_iter().map(|(_, _, l)| l).collect();
    Corpus {
        meta: Meta {
            seed: params.seed,
            days: days as u32,
            users: labels.len(),
            start: start / 1000,
            end: end / 1000,
            first_login: first_login.unwrap_or(start) / 1000,
            lines: log.len(),
            expected,
        },
        log,
        labels,
    }
}

// ---------------------------------------------------------------------------------
// Rendering: Postfix and Dovecot lines as syslog writes them on Debian

struct Render {
    rng: Rng,
    lines: Vec<(i64, u64, String)>,
    seq: u64,
    qids: HashSet<String>,
    expected: Expected,
    first_login: Option<i64>,
    qmgr: u32,
    cleanup: Vec<u32>,
    smtp: Vec<u32>,
    lmtp: Vec<u32>,
}

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

impl Render {
    fn new(mut rng: Rng) -> Self {
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

    fn act(&mut self, w: &World, a: &Act) {
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

/// Small helper for callers printing a summary.
pub fn summary(c: &Corpus) -> String {
    let mut s = String::new();
    for class in Class::ALL {
        let n = c.labels.iter().filter(|l| l.class == class.name()).count();
        let _ = write!(s, "{}={n} ", class.name());
    }
    let _ = write!(
        s,
        "| {} lines; expected smtp={} imap={} pop3={} bounces={}",
        c.meta.lines,
        c.meta.expected.smtp,
        c.meta.expected.imap,
        c.meta.expected.pop3,
        c.meta.expected.bounces
    );
    s
}
