//! `[ownership]`: the MaxMind-format databases that say who owns a network. Both are
//! optional; without them networks are counted as before, without owners.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::error::Result;

use super::walker::{quote, Walker};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnershipConfig {
    /// AS number and organisation (GeoLite2-ASN, DB-IP IP-to-ASN Lite, IPinfo Lite).
    pub asn_database: Option<PathBuf>,
    /// Country (GeoLite2-Country, DB-IP IP-to-Country Lite); IPinfo Lite as the ASN
    /// database carries countries too.
    pub country_database: Option<PathBuf>,
}

impl OwnershipConfig {
    /// Each configured database with its key, for messages that name both.
    pub fn databases(&self) -> impl Iterator<Item = (&'static str, &PathBuf)> {
        [
            ("ownership.asn_database", self.asn_database.as_ref()),
            ("ownership.country_database", self.country_database.as_ref()),
        ]
        .into_iter()
        .filter_map(|(key, path)| path.map(|p| (key, p)))
    }
}

pub(super) fn parse(root: &mut Walker, c: &mut OwnershipConfig) -> Result<()> {
    let Some(mut w) = root.table("ownership")? else {
        return Ok(());
    };
    for (key, slot) in [
        ("asn_database", &mut c.asn_database),
        ("country_database", &mut c.country_database),
    ] {
        match w.string(key)? {
            None => {}
            // "" is the rendered default: no database.
            Some(p) if p.is_empty() => *slot = None,
            Some(p) if !p.starts_with('/') => {
                return Err(w.bad(key, format!("{p:?} must be an absolute path")))
            }
            Some(p) => *slot = Some(PathBuf::from(p)),
        }
    }
    w.finish()
}

pub(super) fn render(out: &mut String, c: &OwnershipConfig) {
    let p = |p: &Option<PathBuf>| {
        quote(
            &p.as_ref()
                .map_or(String::new(), |p| p.display().to_string()),
        )
    };
    let _ = writeln!(out, "\n[ownership]");
    let _ = writeln!(out, "asn_database = {}", p(&c.asn_database));
    let _ = writeln!(out, "country_database = {}", p(&c.country_database));
}
