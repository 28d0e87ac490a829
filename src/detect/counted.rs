//! Each piece of evidence as counting sees it: its party (owner, else a wider
//! network), whether that party is new to the account, whether the admin vouched for
//! its network. Worked out once per piece, so that removing it from a window takes
//! away exactly what adding it counted.

use super::{Known, Seen, Whitelist};
use crate::config::Detection;
use crate::model::{Asn, ClientAddr, ClientNet};
use crate::ownership::Ownership;

/// Who a network belongs to, as far as we can tell: its AS when an ASN database knows
/// it, else a wider network, the stand-in without one: the spread prefixes where a
/// network count is held at notify, the party prefixes for what is new to an account.
/// A carrier's NAT or a provider's pool is one owner over many /24s; a botnet, many.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OwnerKey {
    As(Asn),
    Net(ClientNet),
}

impl OwnerKey {
    /// The owner of `addr`, whose wider network is `wide`.
    pub fn of(addr: ClientAddr, wide: ClientNet, owners: &Ownership) -> Self {
        owners.asn(addr).map_or(OwnerKey::Net(wide), OwnerKey::As)
    }

    /// `addr`'s party under `d`: its owner, else its network of the party prefixes.
    pub fn party(d: &Detection, owners: &Ownership, addr: ClientAddr) -> Self {
        Self::of(addr, addr.net(d.party_prefixes), owners)
    }

    /// As stored: `AS15169`, or the network `198.51.0.0/16`.
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.starts_with("AS") {
            return Asn::parse(raw).map(OwnerKey::As);
        }
        ClientNet::parse(raw).map(OwnerKey::Net)
    }
}

impl std::fmt::Display for OwnerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OwnerKey::As(a) => a.fmt(f),
            OwnerKey::Net(n) => n.fmt(f),
        }
    }
}

/// One piece of evidence with the whitelist, the prefixes and its owner applied once,
/// so that removing it takes away exactly what adding it counted.
#[derive(Debug, Clone, Copy)]
pub struct Counted {
    pub seen: Seen,
    /// For a login from outside the whitelist: its network, wider network and owner
    /// (else its wider network: a pool's few /24s hold a network count at notify).
    pub(super) nets: Option<(ClientNet, ClientNet, OwnerKey)>,
    /// Its party (see `Known`): the owner, else the network of the party prefixes.
    pub(super) party: Option<OwnerKey>,
    /// From a party new to the account (see `Known`); never when whitelisted.
    pub(super) new: bool,
    /// From a party first seen within the window before it (see `Known::is_fresh`).
    pub(super) fresh: bool,
    /// From a network the admin whitelisted: its messages and bounces do not count.
    pub(super) vouched: bool,
}

/// Where a piece of evidence came from, as counting needs it.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    /// Its party (see `Known`), unless whitelisted.
    pub party: Option<OwnerKey>,
    pub vouched: bool,
}

impl Counted {
    pub fn new(
        d: &Detection,
        whitelist: &Whitelist,
        owners: &Ownership,
        known: &Known,
        seen: Seen,
    ) -> Self {
        let origin = Self::origin(whitelist, owners, d, seen.addr);
        Self::of(d, known, seen, origin)
    }

    /// The party of `addr`, unless it is whitelisted.
    pub fn origin(
        whitelist: &Whitelist,
        owners: &Ownership,
        d: &Detection,
        addr: ClientAddr,
    ) -> Origin {
        if whitelist.covers(addr) {
            return Origin {
                party: None,
                vouched: whitelist.vouches(addr),
            };
        }
        Origin {
            party: Some(OwnerKey::party(d, owners, addr)),
            vouched: false,
        }
    }

    /// As `new`, with the `origin` of `seen`.
    pub fn of(d: &Detection, known: &Known, seen: Seen, origin: Origin) -> Self {
        let login = seen.source.is_login();
        let party = origin.party;
        Self {
            vouched: origin.vouched,
            seen,
            nets: party.filter(|_| login).map(|party| {
                let wide = seen.addr.net(d.spread_prefixes);
                let owner = match party {
                    OwnerKey::As(_) => party,
                    OwnerKey::Net(_) => OwnerKey::Net(wide),
                };
                (seen.addr.net(d.prefixes), wide, owner)
            }),
            party: party.filter(|_| login),
            new: party.is_some_and(|p| known.is_new(p, seen.time)),
            fresh: party.is_some_and(|p| known.is_fresh(p, seen.time)),
        }
    }
}
