//! owners.csv: which owner holds each address the corpus uses.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::world::World;

impl World {
    /// Which owner holds an address: `Some(None)` for unannounced space on purpose,
    /// `None` for an address the world never handed out (a bug of the generator).
    pub fn owner_of(&self, addr: IpAddr) -> Option<Option<usize>> {
        match addr {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                if let Some(&o) = self.by20.get(&(a >> 12)) {
                    Some(Some(o))
                } else {
                    self.unrouted.contains(&(a >> 8)).then_some(None)
                }
            }
            IpAddr::V6(a) => {
                let top = (u128::from(a) >> 96) as u32;
                self.by32.get(&top).map(|&o| Some(o))
            }
        }
    }

    /// owners.csv: `first,last,asn,org,country`, one row per range holding an address
    /// of the corpus (owners' /20s and /32s), then the unannounced /24s in use with the
    /// last three fields empty. Also the number of owners and of owned ranges written.
    /// Panics on an address nobody holds: every address must have its story's owner.
    pub fn owners_csv(&self, addrs: impl Iterator<Item = IpAddr>) -> (String, usize, usize) {
        let mut v4: BTreeMap<u32, Option<usize>> = BTreeMap::new();
        let mut v6: BTreeMap<u32, usize> = BTreeMap::new();
        for addr in addrs {
            let owner = self
                .owner_of(addr)
                .unwrap_or_else(|| panic!("{addr} belongs to no owner of the world"));
            match (addr, owner) {
                (IpAddr::V4(a), Some(o)) => {
                    v4.insert(u32::from(a) >> 12 << 12, Some(o));
                }
                (IpAddr::V4(a), None) => {
                    v4.insert(u32::from(a) >> 8 << 8, None);
                }
                (IpAddr::V6(a), Some(o)) => {
                    v6.insert((u128::from(a) >> 96) as u32, o);
                }
                (IpAddr::V6(_), None) => unreachable!("unannounced space is IPv4"),
            }
        }
        let mut s = String::from("first,last,asn,org,country\n");
        let mut used = HashSet::new();
        let mut row = |first: IpAddr, last: IpAddr, owner: Option<usize>| match owner {
            Some(o) => {
                let o = &self.owners[o];
                let _ = writeln!(s, "{first},{last},{},\"{}\",{}", o.asn, o.org, o.country);
            }
            None => {
                let _ = writeln!(s, "{first},{last},,,");
            }
        };
        let mut ranges = 0;
        for (&net, &owner) in &v4 {
            let size = if owner.is_some() { 1 << 12 } else { 1 << 8 };
            let last = Ipv4Addr::from(net + (size - 1));
            row(IpAddr::V4(Ipv4Addr::from(net)), IpAddr::V4(last), owner);
            if let Some(o) = owner {
                used.insert(o);
                ranges += 1;
            }
        }
        for (&top, &o) in &v6 {
            let first = (top as u128) << 96;
            let last = first | (u128::MAX >> 32);
            row(
                IpAddr::V6(Ipv6Addr::from(first)),
                IpAddr::V6(Ipv6Addr::from(last)),
                Some(o),
            );
            used.insert(o);
            ranges += 1;
        }
        (s, used.len(), ranges)
    }
}
