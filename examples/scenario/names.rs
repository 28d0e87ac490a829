//! Names: remote domains, people, bulk senders, and the recipients they write to.

use std::net::{IpAddr, Ipv4Addr};

use super::rng::Rng;
use super::world::World;
use super::DOMAINS;

impl World {
    pub fn remote_rcpt(&self, rng: &mut Rng) -> String {
        let (domain, _, _) = rng.pick(&self.remote);
        if rng.chance(0.5) {
            format!("{}.{}@{domain}", rng.pick(FIRST), rng.pick(LAST))
        } else {
            format!("{}{}@{domain}", rng.pick(FIRST), rng.range(1, 999))
        }
    }

    /// A harvested address, as spam goes to: often dead.
    pub fn spam_rcpt(&self, rng: &mut Rng) -> String {
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

    pub fn mx_of(&self, rcpt: &str) -> (&str, IpAddr) {
        let domain = rcpt.rsplit('@').next().unwrap_or("");
        self.remote
            .iter()
            .find(|(d, _, _)| d == domain)
            .map(|(_, mx, a)| (mx.as_str(), *a))
            .unwrap_or(("mx.example.net", IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99))))
    }

    pub fn is_local(rcpt: &str) -> bool {
        let domain = rcpt.rsplit('@').next().unwrap_or("");
        DOMAINS.contains(&domain)
    }
}

pub const REMOTE_NAMES: &[&str] = &[
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

pub const FIRST: &[&str] = &[
    "anna", "ben", "carla", "david", "eva", "felix", "greta", "hugo", "ines", "jonas", "karin",
    "lars", "mia", "noah", "olga", "paul", "quentin", "rosa", "sven", "tina", "uwe", "vera",
    "walter", "xenia", "yusuf", "zoe", "amir", "bianca", "chen", "dana", "emil", "fatima", "georg",
    "hanna", "ivan", "julia", "kemal", "lena", "marco", "nina",
];

pub const LAST: &[&str] = &[
    "schmidt", "meyer", "weber", "wagner", "becker", "hoffmann", "koch", "richter", "klein",
    "wolf", "neumann", "braun", "zimmer", "krause", "hartmann", "lange", "werner", "lehmann",
    "kaiser", "fuchs", "peters", "scholz", "moeller", "jung", "hahn", "vogel", "roth", "baumann",
    "frank", "berger", "martin", "garcia", "rossi", "novak", "jansen", "silva", "olsen",
    "kowalski", "dubois", "costa",
];

pub const BULK_NAMES: &[&str] = &[
    "newsletter",
    "news",
    "info",
    "marketing",
    "updates",
    "events",
    "shop",
    "members",
];
