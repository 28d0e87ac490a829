//! Networks that never count: office NATs, the admin's own, and (by default)
//! addresses that cannot come from the Internet.

use std::str::FromStr;

use crate::config::Config;
use crate::model::{Cidr, ClientAddr, SaslUser};
use crate::store::WhitelistEntry;

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
    cidrs: Vec<Cidr>,
}

impl Whitelist {
    pub fn new(cfg: &Config, user: &SaslUser, from_db: &[Cidr]) -> Self {
        let mut cidrs: Vec<Cidr> = cfg.detection.whitelist.clone();
        if let Some(p) = cfg.users.get(user) {
            cidrs.extend(p.whitelist.iter().copied());
        }
        cidrs.extend(from_db.iter().copied());
        if cfg.detection.whitelist_builtin {
            cidrs.extend(builtin());
        }
        Self { cidrs }
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
        self.cidrs.iter().any(|c| c.contains(addr))
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

    #[test]
    fn builtin_parses() {
        assert_eq!(builtin().count(), BUILTIN.len());
    }
}
