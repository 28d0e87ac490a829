//! Addresses and networks from outside (Fail2ban tags, the CLI, the config): one set of
//! rules for all of them. Leading zeros are refused everywhere (`010` is octal 8 to
//! inet_aton and ten to others); IPv4-mapped IPv6 is IPv4, because that is how
//! addresses are counted; an address that cannot open a connection is never a client.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use crate::error::Invalid;

/// A client IP address; IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is stored as IPv4 so the
/// same client never counts twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientAddr(IpAddr);

/// Parsed in `net`, with the rules every address from outside follows.
impl ClientAddr {
    pub fn ip(self) -> IpAddr {
        self.0
    }

    /// The network this address is counted as, given the configured prefix lengths.
    pub fn net(self, prefixes: NetPrefixes) -> ClientNet {
        let len = match self.0 {
            IpAddr::V4(_) => prefixes.v4,
            IpAddr::V6(_) => prefixes.v6,
        };
        // Prefix lengths are validated in the config, so this cannot fail.
        let net = IpNet::new(self.0, len)
            .map(|n| n.trunc())
            .unwrap_or_else(|_| IpNet::from(self.0));
        ClientNet(net)
    }
}

impl From<IpAddr> for ClientAddr {
    fn from(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => Self(addr),
            },
            v4 => Self(v4),
        }
    }
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Prefix lengths that group client addresses into networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetPrefixes {
    pub v4: u8,
    pub v6: u8,
}

/// The unit of counting: one client network (by default one IPv4 address or one IPv6 /64,
/// since privacy extensions give a single device many addresses inside its /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientNet(IpNet);

impl ClientNet {
    /// The network's first address: enough to ask who owns it.
    pub fn first(&self) -> ClientAddr {
        ClientAddr::from(self.0.network())
    }

    /// As `Display` writes it (`198.51.0.0/16`); only what that wrote reads back.
    pub fn parse(raw: &str) -> Option<Self> {
        IpNet::from_str(raw)
            .ok()
            .filter(|n| n.trunc() == *n)
            .map(ClientNet)
    }
}

impl fmt::Display for ClientNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A whitelist CIDR, parsed in `net`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr(IpNet);

impl Cidr {
    pub fn contains(&self, addr: ClientAddr) -> bool {
        self.0.contains(&addr.ip())
    }

    /// The network address and prefix length.
    pub fn parts(&self) -> (IpAddr, u8) {
        (self.0.network(), self.0.prefix_len())
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Cidr {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        Self::parse("cidr", s)
    }
}

/// An address in standard notation, or why `raw` is not one. The standard library
/// already refuses leading zeros in IPv4 octets; this only says so.
fn address(raw: &str) -> Result<IpAddr, Option<&'static str>> {
    IpAddr::from_str(raw).map_err(|_| {
        has_leading_zero(raw)
            .then_some("has a leading zero (ambiguous: some tools read 010 as octal 8)")
    })
}

/// An IPv4 octet such as `01`, also inside `::ffff:01.2.3.4`.
fn has_leading_zero(raw: &str) -> bool {
    let dotted = raw.rsplit(':').next().unwrap_or(raw);
    dotted
        .split('.')
        .any(|o| o.len() > 1 && o.starts_with('0') && o.bytes().all(|b| b.is_ascii_digit()))
}

impl ClientAddr {
    /// A client address from a log or the CLI. Postfix logs IPv6 clients as
    /// `[2001:db8::1]`; Fail2ban hands us the bare address.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let addr = Self::parse_stored(raw)?;
        if let Some(why) = never_a_client(addr.ip()) {
            return Err(Invalid::new(
                "ip",
                format!("{raw:?} is {why}, never a client"),
            ));
        }
        Ok(addr)
    }

    /// An address stored by an earlier version, which may predate `never_a_client`:
    /// old rows stay readable until retention removes them.
    pub fn parse_stored(raw: &str) -> Result<Self, Invalid> {
        address(raw).map(Self::from).map_err(|why| {
            let why = why.unwrap_or("is not an IPv4 or IPv6 address");
            Invalid::new("ip", format!("{raw:?} {why}"))
        })
    }
}

/// Why `addr` cannot be the source of a TCP connection, if it cannot.
fn never_a_client(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(a) if a.is_unspecified() => Some("the unspecified address"),
        IpAddr::V4(a) if a.is_broadcast() => Some("the broadcast address"),
        IpAddr::V6(a) if a.is_unspecified() => Some("the unspecified address"),
        a if a.is_multicast() => Some("a multicast address"),
        _ => None,
    }
}

impl Cidr {
    /// A new whitelist entry (CLI, config). A bare address means a single host. Host
    /// bits must be zero, because `192.0.2.7/24` is almost always a typo; a /0 is
    /// refused, since it switches detection off without a word.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, Invalid> {
        let cidr = Self::parse_any(field, raw)?;
        if cidr.0.prefix_len() == 0 {
            return Err(Invalid::new(
                field,
                format!(
                    "{raw:?} covers every address, which would switch detection off; \
                     to stop counting one account, set exempt = true under its [users.\"NAME\"] in the config"
                ),
            ));
        }
        Ok(cidr)
    }

    /// Any well-formed network, the whole address space included: to name an entry for
    /// removal, or read one stored before /0 was refused.
    pub fn parse_any(field: &'static str, raw: &str) -> Result<Self, Invalid> {
        let raw = raw.trim();
        let (addr, len) = raw
            .split_once('/')
            .map_or((raw, None), |(a, l)| (a, Some(l)));
        let addr = address(addr).map_err(|why| {
            let why = why.unwrap_or("is not a CIDR such as 192.0.2.0/24 or 2001:db8::/48");
            Invalid::new(field, format!("{raw:?} {why}"))
        })?;
        let len = len.map(|l| prefix_len(field, raw, l)).transpose()?;
        let net = match len {
            Some(len) => IpNet::new(addr, len).map_err(|_| {
                Invalid::new(field, format!("{raw:?}: /{len} is too long for {addr}"))
            })?,
            None => IpNet::from(addr),
        };
        if net.trunc() != net {
            return Err(Invalid::new(
                field,
                format!("{raw:?} has host bits set; did you mean {}?", net.trunc()),
            ));
        }
        Ok(Self(ipv4_if_mapped(net)))
    }
}

/// Digits only, no sign, no leading zero.
fn prefix_len(field: &'static str, raw: &str, len: &str) -> Result<u8, Invalid> {
    if len.len() > 1 && len.starts_with('0') {
        return Err(Invalid::new(
            field,
            format!("{raw:?} has a leading zero in its prefix length"),
        ));
    }
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Invalid::new(
            field,
            format!("{raw:?}: the prefix length must be a number such as /24 or /48"),
        ));
    }
    len.parse()
        .map_err(|_| Invalid::new(field, format!("{raw:?}: the prefix length is too long")))
}

/// `::ffff:4.4.4.0/120` is 4.4.4.0/24: clients are counted as IPv4, so the mapped
/// form would never match one.
fn ipv4_if_mapped(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).unwrap_or(net),
            None => net,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_zeros() {
        for raw in ["01.2.3.4", "1.2.3.04", "010.0.0.0", "::ffff:01.2.3.4"] {
            assert!(has_leading_zero(raw), "{raw}");
        }
        for raw in [
            "1.2.3.4",
            "::ffff:1.2.3.0",
            "0.0.0.0",
            "fe80::0",
            "10.0.0.0",
        ] {
            assert!(!has_leading_zero(raw), "{raw}");
        }
    }

    #[test]
    fn mapped_networks_are_ipv4() {
        let c = Cidr::parse("cidr", "::ffff:4.4.4.0/120").unwrap();
        assert_eq!(c.to_string(), "4.4.4.0/24");
        assert_eq!(
            Cidr::parse("cidr", "::ffff:4.4.4.4").unwrap().to_string(),
            "4.4.4.4/32"
        );
        assert!(Cidr::parse("cidr", "::ffff:0.0.0.0/96").is_err());
        assert!(Cidr::parse_any("cidr", "::/0").is_ok());
    }

    #[test]
    fn prefix_lengths() {
        let bad = [
            "10.0.0.0/08",
            "10.0.0.0/+8",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
        ];
        for raw in bad {
            assert!(Cidr::parse("cidr", raw).is_err(), "{raw}");
        }
        assert!(Cidr::parse("cidr", "10.0.0.0/8").is_ok());
    }

    #[test]
    fn never_clients() {
        for raw in [
            "0.0.0.0",
            "255.255.255.255",
            "::",
            "::ffff:0.0.0.0",
            "224.0.0.1",
            "ff02::1",
        ] {
            assert!(ClientAddr::parse(raw).is_err(), "{raw}");
            assert!(ClientAddr::parse_stored(raw).is_ok(), "{raw}");
        }
    }

    #[test]
    fn mapped_v4_is_v4() {
        let a = ClientAddr::parse("::ffff:192.0.2.1").unwrap();
        assert_eq!(a.to_string(), "192.0.2.1");
    }

    #[test]
    fn v6_groups_by_64() {
        let p = NetPrefixes { v4: 32, v6: 64 };
        let a = ClientAddr::parse("2001:db8:1:2:aaaa::1").unwrap().net(p);
        let b = ClientAddr::parse("2001:db8:1:2:bbbb::9").unwrap().net(p);
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn cidr_host_bits() {
        assert!(Cidr::parse("cidr", "192.0.2.7/24").is_err());
        assert!(Cidr::parse("cidr", "192.0.2.0/24").is_ok());
        assert!(Cidr::parse("cidr", "192.0.2.7").is_ok());
    }
}
