//! `[ownership]`: the MaxMind-format databases that say who owns a network. Both are
//! optional; without them networks are counted as before, without owners.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::value::opt_abs_path;

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OwnershipConfig {
    /// AS number and organisation (GeoLite2-ASN, DB-IP IP-to-ASN Lite, IPinfo Lite).
    #[serde(with = "opt_abs_path")]
    pub asn_database: Option<PathBuf>,
    /// Country (GeoLite2-Country, DB-IP IP-to-Country Lite); IPinfo Lite as the ASN
    /// database carries countries too.
    #[serde(with = "opt_abs_path")]
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
