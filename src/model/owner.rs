//! Who owns a network: its autonomous system and the country it is in, as ownership
//! databases (src/ownership/) give them. Both come from files the admin installs, so
//! they are validated here like any other outside input.

use std::fmt;

use serde::{Serialize, Serializer};

/// An autonomous system number, never 0: AS0 is reserved (RFC 7607) and some
/// databases write it for space that nobody announces, which is no owner at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Asn(u32);

impl Asn {
    pub fn new(number: u32) -> Option<Self> {
        (number != 0).then_some(Self(number))
    }

    /// `AS15169` (IPinfo writes it so), `as15169` or `15169`.
    pub fn parse(raw: &str) -> Option<Self> {
        let digits = raw
            .strip_prefix("AS")
            .or_else(|| raw.strip_prefix("as"))
            .unwrap_or(raw);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().and_then(Self::new)
    }

    pub fn number(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Asn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AS{}", self.0)
    }
}

/// An ISO 3166-1 alpha-2 country code, upper case: `DE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// Two ASCII letters, any case. `ZZ` ("unknown" in DB-IP's and others' data) and
    /// anything else is no country.
    pub fn parse(raw: &str) -> Option<Self> {
        let &[a, b] = raw.as_bytes() else {
            return None;
        };
        if !a.is_ascii_alphabetic() || !b.is_ascii_alphabetic() {
            return None;
        }
        let code = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
        (code != *b"ZZ").then_some(Self(code))
    }

    pub fn as_str(&self) -> &str {
        // Two ASCII letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

super::display_as_str!(CountryCode);

impl Serialize for CountryCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asn_forms() {
        assert_eq!(Asn::parse("AS15169").map(|a| a.number()), Some(15169));
        assert_eq!(Asn::parse("as3320").unwrap().to_string(), "AS3320");
        assert_eq!(Asn::parse("4200000000").unwrap().number(), 4_200_000_000);
        for bad in [
            "",
            "AS",
            "AS0",
            "0",
            "AS-1",
            "AS 1",
            "AS15169x",
            "4294967296",
        ] {
            assert_eq!(Asn::parse(bad), None, "{bad}");
        }
        assert_eq!(Asn::new(0), None);
    }

    #[test]
    fn country_codes() {
        assert_eq!(CountryCode::parse("de").unwrap().to_string(), "DE");
        assert_eq!(CountryCode::parse("US").unwrap().as_str(), "US");
        for bad in ["", "D", "DEU", "D1", "ZZ", "zz", "Ä", "United States"] {
            assert_eq!(CountryCode::parse(bad), None, "{bad}");
        }
        assert_eq!(
            serde_json::to_string(&CountryCode::parse("fr")).unwrap(),
            "\"FR\""
        );
    }
}
