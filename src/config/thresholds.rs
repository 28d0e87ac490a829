//! Thresholds per source (`[thresholds.SOURCE]`) and per account (`[users."NAME"]`,
//! whose table holds its own `exempt`, `whitelist` and `[users."NAME".SOURCE]`).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use super::value::{parsed, unknown_key, Range};
use crate::model::{Cidr, Source};

/// Network-count thresholds per level: the level is reached when the count is *above*
/// the threshold. `None` (written `0`) switches that level off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Thresholds {
    pub notify: Option<u32>,
    pub block: Option<u32>,
    pub lock: Option<u32>,
}

impl Thresholds {
    pub(super) const fn new(notify: u32, block: u32, lock: u32) -> Self {
        Self {
            notify: Some(notify),
            block: Some(block),
            lock: Some(lock),
        }
    }

    pub(super) const fn notify_only(notify: u32) -> Self {
        Self {
            notify: Some(notify),
            block: None,
            lock: None,
        }
    }

    pub(super) fn overlay(self, over: &PartialThresholds) -> Self {
        Self {
            notify: over.notify.unwrap_or(self.notify),
            block: over.block.unwrap_or(self.block),
            lock: over.lock.unwrap_or(self.lock),
        }
    }

    pub(super) fn check_order(&self) -> Result<(), String> {
        let set: Vec<(&str, u32)> = [
            ("notify", self.notify),
            ("block", self.block),
            ("lock", self.lock),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.map(|v| (n, v)))
        .collect();
        for pair in set.windows(2) {
            if pair[0].1 >= pair[1].1 {
                return Err(format!(
                    "{} ({}) must be below {} ({})",
                    pair[0].0, pair[0].1, pair[1].0, pair[1].1
                ));
            }
        }
        Ok(())
    }
}

/// A per-user override: only the levels given replace the global ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PartialThresholds {
    #[serde(default, with = "level", skip_serializing_if = "Option::is_none")]
    pub notify: Option<Option<u32>>,
    #[serde(default, with = "level", skip_serializing_if = "Option::is_none")]
    pub block: Option<Option<u32>>,
    #[serde(default, with = "level", skip_serializing_if = "Option::is_none")]
    pub lock: Option<Option<u32>>,
}

impl From<Thresholds> for PartialThresholds {
    fn from(t: Thresholds) -> Self {
        Self {
            notify: Some(t.notify),
            block: Some(t.block),
            lock: Some(t.lock),
        }
    }
}

/// One level's threshold as written: `0` is off.
mod level {
    use super::*;

    type Level = Range<0, 1_000_000>;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
        let n: u32 = Level::deserialize(d)?;
        Ok(Some((n != 0).then_some(n)))
    }

    pub fn serialize<S: Serializer>(v: &Option<Option<u32>>, s: S) -> Result<S::Ok, S::Error> {
        Level::serialize(&v.flatten().unwrap_or(0), s)
    }
}

/// The sources with thresholds of their own, as table names.
fn threshold_sources() -> impl Iterator<Item = Source> {
    Source::ALL.into_iter().filter(|s| s.has_thresholds())
}

/// `[thresholds.SOURCE]`: only sources with thresholds of their own.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct ThresholdSource(Source);

impl<'de> Deserialize<'de> for ThresholdSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parsed(d, |key| {
            threshold_sources()
                .find(|s| s.as_str() == key)
                .map(ThresholdSource)
                .ok_or_else(|| unknown_key(threshold_sources().map(Source::as_str)))
        })
    }
}

/// `[thresholds]`: a table per source.
pub(super) mod by_source {
    use super::*;

    type Map = BTreeMap<Source, PartialThresholds>;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Map, D::Error> {
        let map = BTreeMap::<ThresholdSource, PartialThresholds>::deserialize(d)?;
        Ok(map.into_iter().map(|(s, t)| (s.0, t)).collect())
    }

    pub fn serialize<S: Serializer>(m: &Map, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(m.iter().map(|(k, v)| (k.as_str(), v)))
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserPolicy {
    /// Newsletter and shared accounts: recorded, never flagged.
    pub exempt: bool,
    pub whitelist: Vec<Cidr>,
    pub thresholds: BTreeMap<Source, PartialThresholds>,
}

/// A key of `[users."NAME"]`: its own settings or a source's thresholds beside them.
enum UserKey {
    Exempt,
    Whitelist,
    Thresholds(Source),
}

impl<'de> Deserialize<'de> for UserKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parsed(d, |key| match key {
            "exempt" => Ok(UserKey::Exempt),
            "whitelist" => Ok(UserKey::Whitelist),
            _ => threshold_sources()
                .find(|s| s.as_str() == key)
                .map(UserKey::Thresholds)
                .ok_or_else(|| {
                    let sources = threshold_sources().map(Source::as_str);
                    unknown_key(["exempt", "whitelist"].into_iter().chain(sources))
                }),
        })
    }
}

impl<'de> Deserialize<'de> for UserPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Table;
        impl<'de> Visitor<'de> for Table {
            type Value = UserPolicy;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UserPolicy, A::Error> {
                let mut policy = UserPolicy::default();
                while let Some(key) = map.next_key::<UserKey>()? {
                    match key {
                        UserKey::Exempt => policy.exempt = map.next_value()?,
                        UserKey::Whitelist => policy.whitelist = map.next_value()?,
                        UserKey::Thresholds(source) => {
                            policy.thresholds.insert(source, map.next_value()?);
                        }
                    }
                }
                Ok(policy)
            }
        }
        d.deserialize_map(Table)
    }
}

impl Serialize for UserPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2 + self.thresholds.len()))?;
        map.serialize_entry("exempt", &self.exempt)?;
        map.serialize_entry("whitelist", &self.whitelist)?;
        for (source, t) in &self.thresholds {
            map.serialize_entry(source.as_str(), t)?;
        }
        map.end()
    }
}
