//! One database record, whichever schema wrote it. Read field by field rather than
//! into a fixed struct, because the free databases disagree on types:
//!
//! | schema | AS number | organisation | country |
//! |---|---|---|---|
//! | GeoLite2-ASN, DB-IP ASN Lite | `autonomous_system_number` (uint32) | `autonomous_system_organization` | - |
//! | GeoLite2-Country, DB-IP Country Lite | - | - | `country.iso_code`, else `registered_country.iso_code` |
//! | IPinfo Lite | `asn` ("AS15169") | `as_name` | `country_code` (`country` is the name) |
//! | IPinfo's older country_asn | `asn` ("AS15169") | `as_name` | `country` ("US") |
//!
//! Unknown keys are skipped without being decoded.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::model::{Asn, CountryCode};

/// What a record says about an address; borrowed from the mapped file.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Record<'a> {
    pub asn: Option<Asn>,
    pub org: Option<&'a str>,
    pub country: Option<CountryCode>,
    /// `registered_country.iso_code`: where the block is registered, used only when
    /// the record has no `country` (anycast and satellite ranges in GeoLite2).
    registered: Option<CountryCode>,
}

impl<'a> Record<'a> {
    pub fn country(&self) -> Option<CountryCode> {
        self.country.or(self.registered)
    }
}

impl<'de> Deserialize<'de> for Record<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(Record::default())
    }
}

/// An empty record fills itself in from the map.
impl<'de> Visitor<'de> for Record<'de> {
    type Value = Self;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self, A::Error> {
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "autonomous_system_number" | "asn" => {
                    self.asn = self.asn.or(map.next_value::<Loose>()?.asn());
                }
                "autonomous_system_organization" | "as_name" => {
                    self.org = self.org.or(map.next_value::<Loose>()?.text());
                }
                "country_code" => self.country = map.next_value::<Loose>()?.country(),
                // A map in GeoIP2 schemas; the code itself in IPinfo's older one (the
                // name in IPinfo Lite, which `country_code` then gives).
                "country" => {
                    let found = map.next_value::<Loose>()?.country();
                    self.country = self.country.or(found);
                }
                "registered_country" => self.registered = map.next_value::<Loose>()?.country(),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(self)
    }
}

/// A field's value, whatever its type: a number, a string, or a map with `iso_code`.
enum Loose<'a> {
    Number(u64),
    Text(&'a str),
    IsoCode(Option<&'a str>),
    Other,
}

impl<'a> Loose<'a> {
    fn asn(&self) -> Option<Asn> {
        match *self {
            Loose::Number(n) => u32::try_from(n).ok().and_then(Asn::new),
            Loose::Text(t) => Asn::parse(t.trim()),
            _ => None,
        }
    }

    fn text(&self) -> Option<&'a str> {
        match *self {
            Loose::Text(t) if !t.trim().is_empty() => Some(t.trim()),
            _ => None,
        }
    }

    fn country(&self) -> Option<CountryCode> {
        match *self {
            Loose::Text(t) | Loose::IsoCode(Some(t)) => CountryCode::parse(t),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Loose<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LooseVisitor)
    }
}

struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Loose<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Loose::Number(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(u64::try_from(v).map_or(Loose::Other, Loose::Number))
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Self::Value, E> {
        Ok(Loose::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Loose::Other)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Loose::Other)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Loose::Text(v))
    }

    // The reader hands out borrowed strings; anything else is not worth a copy.
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Loose::Other)
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Self::Value, E> {
        Ok(Loose::Other)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Loose::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut iso = None;
        while let Some(key) = map.next_key::<&'de str>()? {
            if key == "iso_code" {
                if let Loose::Text(t) = map.next_value::<Loose>()? {
                    iso = Some(t);
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Loose::IsoCode(iso))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(json: &str) -> Record<'_> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn every_schema() {
        let geolite = record(
            r#"{"autonomous_system_number": 15169, "autonomous_system_organization": "Google LLC"}"#,
        );
        assert_eq!(geolite.asn, Asn::new(15169));
        assert_eq!(geolite.org, Some("Google LLC"));
        assert_eq!(geolite.country(), None);

        let ipinfo = record(
            r#"{"asn": "AS3320", "as_name": "Deutsche Telekom AG", "as_domain": "telekom.com",
                "country": "Germany", "country_code": "DE", "continent": "Europe"}"#,
        );
        assert_eq!(ipinfo.asn, Asn::new(3320));
        assert_eq!(ipinfo.org, Some("Deutsche Telekom AG"));
        assert_eq!(ipinfo.country().map(|c| c.to_string()), Some("DE".into()));

        let older = record(r#"{"country": "JP", "asn": "AS2519", "as_name": "ARTERIA"}"#);
        assert_eq!(older.country().map(|c| c.to_string()), Some("JP".into()));

        let country = record(
            r#"{"continent": {"code": "EU"}, "country": {"geoname_id": 1, "iso_code": "FR",
                "names": {"en": "France"}}, "registered_country": {"iso_code": "DE"}}"#,
        );
        assert_eq!(country.country().map(|c| c.to_string()), Some("FR".into()));
        let anycast = record(r#"{"registered_country": {"iso_code": "US"}}"#);
        assert_eq!(anycast.country().map(|c| c.to_string()), Some("US".into()));
    }

    #[test]
    fn nonsense_is_no_owner() {
        for json in [
            r#"{}"#,
            r#"{"autonomous_system_number": 0}"#,
            r#"{"asn": "none", "as_name": "  "}"#,
            r#"{"asn": [1], "country": 7, "country_code": "ZZ"}"#,
            r#"{"autonomous_system_number": -5, "country": {"iso_code": 3}}"#,
        ] {
            let r = record(json);
            assert_eq!((r.asn, r.org, r.country()), (None, None, None), "{json}");
        }
    }
}
