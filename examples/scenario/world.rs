//! The simulated Internet: network owners (AS number, organisation, country) with their
//! IPv4 and IPv6 ranges, and where each kind of client takes its addresses from.
//!
//! All of it is synthetic: the AS numbers lie in the public ranges (never the private
//! or documentation ones), so some equal real networks' numbers, but the names, the
//! countries and the ranges are drawn from the seed and belong to nobody real.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::rng::Rng;

/// The mail server's own country: home users, the office, the home carriers.
pub const HOME: &str = "DE";
/// Where travellers go.
const ABROAD: &[&str] = &["FR", "ES", "IT", "GB", "NL", "AT", "CH", "US", "JP", "PT"];
/// Where botnets' hosts sit: many countries, many ISPs.
const BOT_COUNTRIES: &[&str] = &[
    "BR", "VN", "IN", "CN", "RU", "US", "ID", "TR", "UA", "MX", "AR", "CO", "EG", "TH", "PH", "PK",
    "IR", "NG", "ZA", "KR", "PL", "RO", "DZ", "MA", "BD",
];

/// First octets of ordinary unicast space: no 0, 10, 100 (shared CGNAT space), 127,
/// 169, 172, 192, 198, 203 (private, benchmark and documentation ranges), nothing
/// from 224 on.
const FIRST_OCTETS: &[u8] = &[
    2, 5, 8, 12, 23, 24, 31, 37, 41, 45, 46, 50, 62, 64, 66, 68, 71, 73, 77, 78, 79, 80, 81, 82,
    83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 98, 99, 103, 104, 105, 107, 109, 110,
    112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 128, 130, 134, 138, 141,
    145, 146, 147, 151, 154, 156, 158, 159, 162, 165, 176, 177, 178, 179, 180, 181, 182, 183, 185,
    186, 187, 188, 189, 190, 191, 193, 194, 195, 196, 197, 200, 201, 202, 210, 211, 212, 213, 217,
    218, 219, 220, 221, 222,
];

/// Global IPv6 space of several RIRs. Not 2001::/32 or 2002::/16: an mmdb that aliases
/// IPv4 into IPv6 (as the vendors' do) cannot hold networks there.
const V6_TOP: &[u16] = &[
    0x2003, 0x2a00, 0x2a01, 0x2a02, 0x2a03, 0x2a05, 0x2600, 0x2601, 0x2603, 0x2804, 0x2405, 0x2409,
    0x240e, 0x2c0f,
];

const STEMS: &[&str] = &[
    "Rhein", "Nord", "Alpen", "Elb", "Main", "Weser", "Isar", "Spree", "Oder", "Mosel", "Lumen",
    "Vela", "Orion", "Atlas", "Nova", "Terra", "Aqua", "Solis", "Borea", "Zephyr", "Iber", "Tago",
    "Loire", "Rhone", "Arno", "Tiber", "Sakura", "Fuji", "Andes", "Pampa", "Sahel", "Nilo",
    "Ganga", "Mekong", "Volga", "Ural", "Baltic", "Adria", "Karpat", "Balkan", "Polar", "Kite",
];

/// What an owner is in the corpus's story.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    HomeIsp,
    Carrier,
    Business,
    MailProvider,
    Hotel,
    Airport,
    Venue,
    Hosting,
    Cloud,
    BotIsp,
}

pub struct Owner {
    pub asn: u32,
    pub org: String,
    pub country: &'static str,
    pub role: Role,
    /// IPv4 /20 blocks, as the address's top 20 bits.
    pub v4: Vec<u32>,
    /// The IPv6 /32, as the address's top 32 bits.
    pub v6: u32,
}

/// A mobile carrier: its carrier-grade NAT's public /24s, all of one owner.
pub struct Carrier {
    pub owner: usize,
    pub cgnat: Vec<u32>,
}

/// A mail provider that fetches (POP3/IMAP) and sends "as" its users from its pools.
pub struct Provider {
    pub owner: usize,
    pub fetch: Vec<u32>,
    /// IPv4 send pool (/24s); empty when it sends over IPv6 from `send6`.
    pub send: Vec<u32>,
    pub send6: Vec<[u16; 4]>,
}

/// Networks of a country travellers visit.
pub struct Country {
    pub code: &'static str,
    pub hotels: Vec<usize>,
    pub airport: usize,
    pub venues: Vec<usize>,
    pub carrier: Carrier,
}

pub struct World {
    pub start: i64,
    pub end: i64,
    pub owners: Vec<Owner>,
    pub home_isps: Vec<usize>,
    pub carriers: Vec<Carrier>,
    /// The office's ISP, its NAT address (every office user) and the newsletter servers.
    pub business: usize,
    pub office_nat: IpAddr,
    pub office_servers: Vec<IpAddr>,
    pub providers: Vec<Provider>,
    pub abroad: Vec<Country>,
    pub bot_isps: Vec<usize>,
    pub hosting: Vec<usize>,
    pub cloud: usize,
    /// Outlook.com's fetch pool: many /24s of one owner, over many wider networks.
    pub fetcher: Vec<u32>,
    /// /24s (top 24 bits) that no owner announces: addresses without an owner, on purpose.
    pub unrouted: Vec<u32>,
    /// Remote domains and their MX (name, address).
    pub remote: Vec<(String, String, IpAddr)>,
    /// All account addresses, for local recipients.
    pub users: Vec<String>,
    pub by20: HashMap<u32, usize>,
    pub by32: HashMap<u32, usize>,
}

fn suffix(country: &str) -> &'static str {
    match country {
        "DE" | "AT" => "GmbH",
        "CH" => "AG",
        "FR" => "SAS",
        "US" => "Inc.",
        "NL" => "B.V.",
        "ES" => "S.L.",
        "IT" => "S.p.A.",
        "JP" => "K.K.",
        "BR" | "PT" => "Ltda",
        _ => "Ltd",
    }
}

fn host(key24: u32, rng: &mut Rng) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(key24 << 8 | rng.range(1, 254) as u32))
}

pub fn in_64(p: [u16; 4], iid: u64) -> IpAddr {
    let a = (p[0] as u128) << 112 | (p[1] as u128) << 96 | (p[2] as u128) << 80;
    IpAddr::V6(Ipv6Addr::from(a | (p[3] as u128) << 64 | iid as u128))
}

/// A privacy (random interface identifier) address in a /64.
pub fn random_in_64(p: [u16; 4], rng: &mut Rng) -> IpAddr {
    in_64(p, rng.next_u64() | 0x0200_0000_0000_0000)
}

struct Alloc<'a> {
    rng: &'a mut Rng,
    owners: Vec<Owner>,
    used20: HashSet<u32>,
    used32: HashSet<u32>,
    asns: HashSet<u32>,
    names: HashSet<String>,
}

impl Alloc<'_> {
    fn block20(&mut self) -> u32 {
        loop {
            let o1 = *self.rng.pick(FIRST_OCTETS) as u32;
            let b = o1 << 12 | (self.rng.range(0, 255) as u32) << 4 | self.rng.range(0, 15) as u32;
            if self.used20.insert(b) {
                return b;
            }
        }
    }

    fn owner(&mut self, role: Role, country: &'static str, blocks: usize) -> usize {
        let asn = loop {
            // Public 16-bit and 32-bit numbers; never 64496-65551 or 4200000000 up.
            let n = if self.rng.chance(0.7) {
                self.rng.range(1000, 63_999)
            } else {
                self.rng.range(131_072, 399_999)
            } as u32;
            if self.asns.insert(n) {
                break n;
            }
        };
        let what = match role {
            Role::HomeIsp => "net Breitband",
            Role::Carrier => " Mobile",
            Role::Business => " Business Networks",
            Role::MailProvider => " Mail",
            Role::Hotel => " Hotel Wi-Fi",
            Role::Airport => " Airport Networks",
            Role::Venue => " Connect",
            Role::Hosting => " Hosting",
            Role::Cloud => " Cloud Compute",
            Role::BotIsp => " Telecom",
        };
        let org = loop {
            let a = *self.rng.pick(STEMS);
            let b = self.rng.pick(STEMS).to_lowercase();
            let name = format!("{a}{b}{what} {}", suffix(country));
            if self.names.insert(name.clone()) {
                break name;
            }
        };
        let v4 = (0..blocks).map(|_| self.block20()).collect();
        let v6 = loop {
            let v = (*self.rng.pick(V6_TOP) as u32) << 16 | self.rng.range(0, 0xffff) as u32;
            if self.used32.insert(v) {
                break v;
            }
        };
        self.owners.push(Owner {
            asn,
            org,
            country,
            role,
            v4,
            v6,
        });
        self.owners.len() - 1
    }

    /// `n` distinct /24s of an owner.
    fn pool(&mut self, owner: usize, n: usize) -> Vec<u32> {
        let mut out = BTreeSet::new();
        while out.len() < n {
            let b = *self.rng.pick(&self.owners[owner].v4);
            out.insert(b << 4 | self.rng.range(0, 15) as u32);
        }
        let mut v: Vec<u32> = out.into_iter().collect();
        self.rng.shuffle(&mut v);
        v
    }

    fn carrier(&mut self, country: &'static str) -> Carrier {
        let blocks = self.rng.range(6, 12) as usize;
        let owner = self.owner(Role::Carrier, country, blocks);
        let n = self.rng.range(24, 40) as usize;
        Carrier {
            owner,
            cgnat: self.pool(owner, n),
        }
    }
}

impl World {
    pub fn new(rng: &mut Rng, start: i64, end: i64) -> Self {
        let mut a = Alloc {
            rng,
            owners: Vec::new(),
            used20: HashSet::new(),
            used32: HashSet::new(),
            asns: HashSet::new(),
            names: HashSet::new(),
        };
        let home_isps = (0..6).map(|_| a.owner(Role::HomeIsp, HOME, 8)).collect();
        let carriers = (0..3).map(|_| a.carrier(HOME)).collect();
        let business = a.owner(Role::Business, HOME, 2);
        let office24 = a.pool(business, 1)[0];
        let office_nat = IpAddr::V4(Ipv4Addr::from(office24 << 8 | 10));
        let office6 = a.owners[business].v6;
        let office_servers = vec![
            IpAddr::V4(Ipv4Addr::from(office24 << 8 | 25)),
            in_64(
                [(office6 >> 16) as u16, office6 as u16, 0x0a10, 0x0025],
                0x25,
            ),
        ];
        // A big provider's pool spans many /24s (the "send mail as" case),
        // a small one's two; one sends over IPv6 from a few /64s.
        let mut providers = Vec::new();
        for (country, send24, v6) in [("US", 16, false), (HOME, 0, true), (HOME, 2, false)] {
            let owner = a.owner(Role::MailProvider, country, if send24 > 2 { 8 } else { 2 });
            let fetch = a.pool(owner, if send24 > 2 { 6 } else { 3 });
            let (send, send6) = if v6 {
                let p = a.owners[owner].v6;
                let nets = (0..6)
                    .map(|i| [(p >> 16) as u16, p as u16, 0x4000, i])
                    .collect();
                (Vec::new(), nets)
            } else {
                (a.pool(owner, send24), Vec::new())
            };
            providers.push(Provider {
                owner,
                fetch,
                send,
                send6,
            });
        }
        let abroad = ABROAD
            .iter()
            .map(|&code| Country {
                code,
                hotels: (0..3).map(|_| a.owner(Role::Hotel, code, 1)).collect(),
                airport: a.owner(Role::Airport, code, 1),
                venues: (0..3).map(|_| a.owner(Role::Venue, code, 2)).collect(),
                carrier: a.carrier(code),
            })
            .collect();
        let bot_isps = (0..90)
            .map(|i| {
                let c = BOT_COUNTRIES[i % BOT_COUNTRIES.len()];
                let n = a.rng.range(1, 4) as usize;
                a.owner(Role::BotIsp, c, n)
            })
            .collect();
        let hosting = (0..14)
            .map(|i| {
                a.owner(
                    Role::Hosting,
                    ["US", "NL", "DE", "FR", "RU", "SG"][i % 6],
                    2,
                )
            })
            .collect();
        let cloud = a.owner(Role::Cloud, "US", 48);
        let fetch_owner = a.owner(Role::MailProvider, "US", 12);
        let fetcher = a.pool(fetch_owner, 24);
        // Unannounced space: /20s that no owner holds.
        let unrouted = (0..4).map(|_| a.block20() << 4 | 7).collect();

        let Alloc { owners, rng, .. } = a;
        let mut by20 = HashMap::new();
        let mut by32 = HashMap::new();
        for (i, o) in owners.iter().enumerate() {
            for b in &o.v4 {
                by20.insert(*b, i);
            }
            by32.insert(o.v6, i);
        }
        let mut w = Self {
            start,
            end,
            owners,
            home_isps,
            carriers,
            business,
            office_nat,
            office_servers,
            providers,
            abroad,
            bot_isps,
            hosting,
            cloud,
            fetcher,
            unrouted,
            remote: Vec::new(),
            users: Vec::new(),
            by20,
            by32,
        };
        w.remote = super::names::REMOTE_NAMES
            .iter()
            .map(|n| {
                let domain = format!("{n}.example");
                let mx = format!("mx{}.{domain}", rng.range(1, 3));
                let owner = *rng.pick(&w.hosting);
                (domain, mx, w.v4(owner, rng))
            })
            .collect();
        w
    }

    /// A random /24 of an owner.
    pub fn net24(&self, owner: usize, rng: &mut Rng) -> u32 {
        *rng.pick(&self.owners[owner].v4) << 4 | rng.range(0, 15) as u32
    }

    pub fn host(&self, key24: u32, rng: &mut Rng) -> IpAddr {
        host(key24, rng)
    }

    pub fn v4(&self, owner: usize, rng: &mut Rng) -> IpAddr {
        host(self.net24(owner, rng), rng)
    }

    /// A random /64 of an owner's /32.
    pub fn net64(&self, owner: usize, rng: &mut Rng) -> [u16; 4] {
        let p = self.owners[owner].v6;
        [
            (p >> 16) as u16,
            p as u16,
            rng.range(0, 0xffff) as u16,
            rng.range(0, 0xffff) as u16,
        ]
    }

    pub fn v6(&self, owner: usize, rng: &mut Rng) -> IpAddr {
        random_in_64(self.net64(owner, rng), rng)
    }

    pub fn unrouted(&self, rng: &mut Rng) -> IpAddr {
        host(*rng.pick(&self.unrouted), rng)
    }

    /// A botnet host: a home or office machine at one of many ISPs in many countries.
    /// Some share a block with an earlier one, a few sit in unannounced space.
    pub fn bot(&self, rng: &mut Rng, used: &[IpAddr]) -> IpAddr {
        if rng.chance(0.03) {
            return self.unrouted(rng);
        }
        let owner = *rng.pick(&self.bot_isps);
        if rng.chance(0.15) {
            return self.v6(owner, rng);
        }
        if let Some(IpAddr::V4(prev)) = used
            .iter()
            .rev()
            .find(|a| a.is_ipv4())
            .copied()
            .filter(|_| rng.chance(0.2))
        {
            return host(u32::from(prev) >> 8, rng);
        }
        self.v4(owner, rng)
    }
}
