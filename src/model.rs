//! Validated types for everything that comes from outside (Fail2ban tags, CLI, config).
//! Once a value has one of these types, later code does not need to check it again.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::Serialize;

use crate::error::Invalid;

mod action;
pub mod display;
mod net;
mod owner;
mod time;

pub use action::ActionKind;
pub use owner::{Asn, CountryCode};
pub use time::{LogTime, Span};

/// A network on the database's whitelist, for every account or for one.
#[derive(Debug, Clone)]
pub struct WhitelistEntry {
    pub cidr: Cidr,
    pub user: Option<SaslUser>,
    pub note: Option<String>,
    pub added: LogTime,
}

/// Longest accepted SASL user name: RFC 5321 address limit (64 + 1 + 255).
pub const MAX_USER_BYTES: usize = 320;
const MAX_LABEL_BYTES: usize = 256;
/// Longest accepted Fail2ban ticket id: Python's repr of a tuple of a user, an address
/// and a queue id or a recipient (which Postfix's 2048-byte line limit bounds); repr
/// stretches a value at most 2.5-fold (escapes such as `\\` or `\U000e0001`).
pub const MAX_FID_BYTES: usize = 8192;

fn check_printable(field: &'static str, value: &str) -> Result<(), Invalid> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(Invalid::new(
            field,
            format!("contains a control character (U+{:04X})", c as u32),
        ));
    }
    Ok(())
}

/// A SASL login name, folded to lower case. One account, one spelling: Postfix's map
/// lookups fold case (so `Mallory@` and `mallory@` are one key there), Dovecot's
/// default `auth_username_format = %Lu` folds it, and the queue's records are compared
/// with it; an account that two spellings could split would escape its own block.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SaslUser(String);

impl SaslUser {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.is_empty() {
            return Err(Invalid::new("user", "is empty"));
        }
        if raw.len() > MAX_USER_BYTES {
            return Err(Invalid::new(
                "user",
                format!("is {} bytes long (at most {MAX_USER_BYTES})", raw.len()),
            ));
        }
        check_printable("user", raw)?;
        if raw.chars().any(char::is_whitespace) {
            return Err(Invalid::new("user", "contains whitespace"));
        }
        let folded = fold_case(raw);
        if folded.len() > MAX_USER_BYTES {
            // A few characters grow when lower-cased (U+0130 İ).
            return Err(Invalid::new(
                "user",
                format!(
                    "is {} bytes long in lower case (at most {MAX_USER_BYTES})",
                    folded.len()
                ),
            ));
        }
        Ok(Self(folded))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The one case rule for account names (Unicode lower case; for ASCII names exactly
/// Dovecot's `%Lu` and Postfix's lookup folding). The schema migration that merged
/// accounts differing only in case uses it too.
pub fn fold_case(name: &str) -> String {
    if name
        .bytes()
        .any(|b| b.is_ascii_uppercase() || !b.is_ascii())
    {
        name.to_lowercase()
    } else {
        name.to_owned()
    }
}

impl fmt::Display for SaslUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

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

/// Where a piece of evidence came from: a successful login (smtp, imap, pop3, webmail,
/// smtp-refused), counted as distinct client networks, or a count of messages: accepted
/// submissions (`rate`), hard bounces (`bounces`), mail waiting in the deferred queue
/// (`queue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Smtp,
    Imap,
    Pop3,
    Webmail,
    Rate,
    Bounces,
    Queue,
    /// Not recorded: SMTP logins counted per wider network (/24, /48) over a day, which
    /// catches a slow drip of new addresses that never crowds one hour.
    Spread,
    /// An SMTP login with the right password that Postfix then refused because the
    /// account is in our check_sasl_access map: counted as smtp (see `counted_as`),
    /// stored apart so `status` can say which networks kept trying after the block.
    #[serde(rename = "smtp-refused")]
    SmtpRefused,
}

impl Source {
    pub const ALL: [Source; 9] = [
        Source::Smtp,
        Source::Imap,
        Source::Pop3,
        Source::Webmail,
        Source::Rate,
        Source::Bounces,
        Source::Queue,
        Source::Spread,
        Source::SmtpRefused,
    ];

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| {
                Invalid::new(
                    "source",
                    format!(
                        "{raw:?} is not one of smtp, imap, pop3, webmail, rate, bounces, queue, spread, smtp-refused"
                    ),
                )
            })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Smtp => "smtp",
            Source::Imap => "imap",
            Source::Pop3 => "pop3",
            Source::Webmail => "webmail",
            Source::Rate => "rate",
            Source::Bounces => "bounces",
            Source::Queue => "queue",
            Source::Spread => "spread",
            Source::SmtpRefused => "smtp-refused",
        }
    }

    /// Logins count distinct networks; the others count messages.
    pub fn is_login(self) -> bool {
        matches!(
            self,
            Source::Smtp | Source::Imap | Source::Pop3 | Source::Webmail | Source::SmtpRefused
        )
    }

    /// The source whose networks and thresholds this evidence counts toward. A refused
    /// submission proves the password as an accepted one does, so it counts as smtp:
    /// block → lock needs the same networks whether Postfix still accepted them or not.
    pub fn counted_as(self) -> Source {
        match self {
            Source::SmtpRefused => Source::Smtp,
            s => s,
        }
    }

    /// Whether `[thresholds.SOURCE]` exists for it (not for one counted as another).
    pub fn has_thresholds(self) -> bool {
        self.counted_as() == self
    }

    /// What `record` may be told; queue and spread are computed.
    pub fn is_recorded(self) -> bool {
        !matches!(self, Source::Queue | Source::Spread)
    }

    /// What a threshold of this source counts, for explanations: `14 networks/1h`.
    pub fn unit(self) -> &'static str {
        match self {
            Source::Smtp
            | Source::Imap
            | Source::Pop3
            | Source::Webmail
            | Source::Spread
            | Source::SmtpRefused => "networks",
            Source::Rate => "msgs",
            Source::Bounces => "bounces",
            Source::Queue => "deferred",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many messages one event stands for (Fail2ban's <failures> for rate and
/// bounces), from 1 to `MAX`; 1 for a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageCount(u32);

impl MessageCount {
    pub const MAX: u32 = 1_000_000;
    pub const ONE: Self = Self(1);

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match raw.parse::<u32>() {
            Ok(n) if (1..=Self::MAX).contains(&n) => Ok(Self(n)),
            _ => Err(Invalid::new(
                "count",
                format!("{raw:?} is not a whole number from 1 to {}", Self::MAX),
            )),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// How worried we are about an account. Ordered: `Ok < Notify < Block < Lock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Notify,
    Block,
    Lock,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Notify => "notify",
            Level::Block => "block",
            Level::Lock => "lock",
        }
    }

    pub fn from_db(raw: &str) -> Option<Self> {
        [Level::Ok, Level::Notify, Level::Block, Level::Lock]
            .into_iter()
            .find(|l| l.as_str() == raw)
    }

    /// Block and lock only take effect in enforce mode; notify is always "real".
    pub fn needs_enforcement(self) -> bool {
        self >= Level::Block
    }

    /// What an admin reads: `block`, or `would block` when only warned.
    pub fn describe(self, enforced: bool) -> String {
        if self.needs_enforcement() && !enforced {
            format!("would {}", self.as_str())
        } else {
            self.as_str().to_owned()
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `warn` computes every level but only reports block/lock; `enforce` acts on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Warn,
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Warn => "warn",
            Mode::Enforce => "enforce",
        }
    }
}

/// A short free-text label (jail name, Fail2ban ticket id, whitelist note):
/// stored and shown, never interpreted, so only control characters are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label(String);

impl Label {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, Invalid> {
        Self::parse_max(field, raw, MAX_LABEL_BYTES)
    }

    /// A Fail2ban ticket id (`<fid>`): whatever Fail2ban builds from a valid user and
    /// address must fit, or a real login would be refused.
    pub fn fid(raw: &str) -> Result<Self, Invalid> {
        Self::parse_max("fid", raw, MAX_FID_BYTES)
    }

    fn parse_max(field: &'static str, raw: &str, max: usize) -> Result<Self, Invalid> {
        if raw.len() > max {
            return Err(Invalid::new(
                field,
                format!("is {} bytes long (at most {max})", raw.len()),
            ));
        }
        check_printable(field, raw)?;
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
