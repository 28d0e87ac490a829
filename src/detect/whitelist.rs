//! Networks that never count: office NATs, the admin's own, and (by default)
//! addresses that cannot come from the Internet.

use std::net::IpAddr;
use std::str::FromStr;

use crate::config::Config;
use crate::model::WhitelistEntry;
use crate::model::{Cidr, ClientAddr, SaslUser};

/// Loopback, private, shared (CGNAT) and link-local ranges: a login from these passed
/// through a local proxy or webmail, so its address says nothing about the client.
pub const BUILTIN: &[&str] = &[
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
];

/// The whitelist in force for one account: config (global and per user), the
/// database (global and per user) and the built-in ranges.
#[derive(Debug, Clone)]
pub struct Whitelist {
    ranges: Vec<Range>,
    /// How many of `ranges`, from the front, the admin gave (config, database): the
    /// rest are the built-in ones.
    vouched: usize,
}

/// A network as masked address bits: every login is checked against every entry, a
/// backtest's millions of them too.
#[derive(Debug, Clone, Copy)]
enum Range {
    V4 { net: u32, mask: u32 },
    V6 { net: u128, mask: u128 },
}

impl From<Cidr> for Range {
    fn from(c: Cidr) -> Self {
        let (net, len) = c.parts();
        match net {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                Range::V4 {
                    net: u32::from(a) & mask,
                    mask,
                }
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                Range::V6 {
                    net: u128::from(a) & mask,
                    mask,
                }
            }
        }
    }
}

impl Whitelist {
    pub fn new(cfg: &Config, user: &SaslUser, from_db: &[Cidr]) -> Self {
        let mut cidrs: Vec<Cidr> = cfg.detection.whitelist.clone();
        if let Some(p) = cfg.users.get(user) {
            cidrs.extend(p.whitelist.iter().copied());
        }
        cidrs.extend(from_db.iter().copied());
        let vouched = cidrs.len();
        if cfg.detection.whitelist_builtin {
            cidrs.extend(builtin());
        }
        Self {
            ranges: cidrs.into_iter().map(Range::from).collect(),
            vouched,
        }
    }

    /// As `new`, from the database's entries: the global ones and `user`'s own.
    pub fn for_account(cfg: &Config, user: &SaslUser, entries: &[WhitelistEntry]) -> Self {
        let from_db: Vec<Cidr> = entries
            .iter()
            .filter(|e| e.user.as_ref().is_none_or(|u| u == user))
            .map(|e| e.cidr)
            .collect();
        Self::new(cfg, user, &from_db)
    }

    pub fn covers(&self, addr: ClientAddr) -> bool {
        in_ranges(&self.ranges, addr)
    }

    /// Whether the admin whitelisted `addr` (configuration or database), not only the
    /// built-in ranges: mail from there is the admin's to vouch for, while mail from
    /// loopback may be a webmail's, sent with a stolen password.
    pub fn vouches(&self, addr: ClientAddr) -> bool {
        in_ranges(&self.ranges[..self.vouched], addr)
    }
}

fn in_ranges(ranges: &[Range], addr: ClientAddr) -> bool {
    match addr.ip() {
        IpAddr::V4(a) => {
            let a = u32::from(a);
            ranges
                .iter()
                .any(|r| matches!(*r, Range::V4 { net, mask } if a & mask == net))
        }
        IpAddr::V6(a) => {
            let a = u128::from(a);
            ranges
                .iter()
                .any(|r| matches!(*r, Range::V6 { net, mask } if a & mask == net))
        }
    }
}

/// The built-in ranges, parsed once per process (backtests build a whitelist per login).
pub fn builtin() -> impl Iterator<Item = Cidr> {
    static PARSED: std::sync::OnceLock<Vec<Cidr>> = std::sync::OnceLock::new();
    PARSED
        .get_or_init(|| {
            BUILTIN
                .iter()
                .filter_map(|s| Cidr::from_str(s).ok())
                .collect()
        })
        .iter()
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ClientAddr;

    #[test]
    fn builtin_parses() {
        assert_eq!(builtin().count(), BUILTIN.len());
    }

    #[test]
    fn covers_as_the_cidrs_contain() {
        let cfg = Config::default();
        let user = SaslUser::parse("a@example.com").unwrap();
        let extra: Vec<Cidr> = [
            "0.0.0.0/0",
            "203.0.113.7/32",
            "2001:db8::/32",
            "198.51.100.0/25",
        ]
        .iter()
        // A /0 is refused as new input but still read from older databases.
        .map(|s| Cidr::parse_any("cidr", s).unwrap())
        .collect();
        for set in [&extra[..0], &extra[1..], &extra[..1]] {
            let wl = Whitelist::new(&cfg, &user, set);
            let cidrs: Vec<Cidr> = set.iter().copied().chain(builtin()).collect();
            for addr in [
                "203.0.113.7",
                "203.0.113.8",
                "198.51.100.127",
                "198.51.100.128",
                "10.1.2.3",
                "172.31.255.255",
                "172.32.0.0",
                "100.63.255.255",
                "100.64.0.1",
                "127.0.0.1",
                "::1",
                "::2",
                "fd00::1",
                "fe80::1",
                "2001:db8:ffff::1",
                "2001:db9::1",
                "::ffff:10.0.0.1",
            ] {
                let addr = ClientAddr::parse(addr).unwrap();
                assert_eq!(
                    wl.covers(addr),
                    cidrs.iter().any(|c| c.contains(addr)),
                    "{addr} in {set:?}"
                );
            }
        }
    }
}
