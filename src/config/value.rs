//! How a TOML value becomes one of the model's validated types. Each reads the TOML
//! type it expects and parses it with the model's own rules, so the config refuses
//! what the command line and Fail2ban's tags refuse, for the same reasons; the reason
//! is the error's message (the parser adds the file, the place and the key).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::de::{Deserializer, Error as _, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::model::{ActionKind, Cidr, DatabaseLocation, Mode, SaslUser, Span};

/// A TOML string, checked by `parse`; its refusal is the reason. Refused inside the
/// deserializer, so the error points at this value (an item, not its whole list).
pub(super) fn parsed<'de, D: Deserializer<'de>, T>(
    d: D,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error> {
    d.deserialize_str(Parse(parse))
}

struct Parse<F>(F);

impl<'de, T, F: FnOnce(&str) -> Result<T, String>> Visitor<'de> for Parse<F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        (self.0)(v).map_err(E::custom)
    }
}

/// Model types written as text: parsed with the model's rules, printed as they display.
macro_rules! as_text {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                parsed(d, |s| <$t>::parse("", s).map_err(|e| e.reason))
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}

as_text!(Span, Cidr, DatabaseLocation);

impl<'de> Deserialize<'de> for ActionKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parsed(d, ActionKind::from_str)
    }
}

/// `[users."NAME"]` and `[user_mail.addresses]` keys: account names as `record` takes them.
impl<'de> Deserialize<'de> for SaslUser {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parsed(d, |s| SaslUser::parse(s).map_err(|e| e.reason))
    }
}

/// `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
fn either(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}

/// The message for a key a table does not have, listing those it has.
pub(super) fn unknown_key<'a>(known: impl IntoIterator<Item = &'a str>) -> String {
    let known: Vec<&str> = known.into_iter().collect();
    if known.is_empty() {
        return "unknown key".into();
    }
    format!("unknown key (known: {})", known.join(", "))
}

fn not_one_of(raw: &str, names: &[&str]) -> String {
    format!("{raw:?} is not {}", either(names))
}

/// `raw` if it is one of `names`.
pub(super) fn one_of(raw: &str, names: &[&'static str]) -> Result<&'static str, String> {
    names
        .iter()
        .find(|n| **n == raw)
        .copied()
        .ok_or_else(|| not_one_of(raw, names))
}

/// A setting that is one of a few words (`mode`, `mail.transport`...): with
/// `#[serde(with = "named")]`.
pub(super) trait Named: Copy + PartialEq + 'static {
    const NAMES: &'static [(&'static str, Self)];
}

/// A `Named` enum, each variant beside the word the file writes for it.
macro_rules! named_enum {
    ($(#[$m:meta])* $vis:vis enum $name:ident { $($variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name {
            $($variant),+
        }

        impl Named for $name {
            const NAMES: &'static [(&'static str, Self)] = &[$(($word, Self::$variant)),+];
        }
    };
}
pub(super) use named_enum;

/// `Default` for a table the file writes in another shape than the settings it
/// holds: from the settings in `Config::defaults()`, so the two cannot disagree.
macro_rules! default_from {
    ($table:ty, $settings:ident) => {
        impl Default for $table {
            fn default() -> Self {
                Self::from(&$crate::config::Config::defaults().$settings)
            }
        }
    };
}
pub(super) use default_from;

impl Named for Mode {
    const NAMES: &'static [(&'static str, Self)] =
        &[("warn", Mode::Warn), ("enforce", Mode::Enforce)];
}

pub(super) mod named {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>, T: Named>(d: D) -> Result<T, D::Error> {
        parsed(d, |raw| {
            T::NAMES
                .iter()
                .find(|(n, _)| *n == raw)
                .map(|(_, v)| *v)
                .ok_or_else(|| {
                    let names: Vec<&str> = T::NAMES.iter().map(|(n, _)| *n).collect();
                    not_one_of(raw, &names)
                })
        })
    }

    pub fn serialize<S: Serializer, T: Named>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        let name = T::NAMES.iter().find(|(_, x)| x == v).map_or("", |(n, _)| n);
        s.serialize_str(name)
    }
}

/// A whole number from MIN to MAX, held as `T`: `#[serde(with = "Range::<1, 32>")]`.
pub(super) struct Range<const MIN: i64, const MAX: i64>;

impl<const MIN: i64, const MAX: i64> Range<MIN, MAX> {
    pub fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<T, D::Error> {
        let v = i64::deserialize(d)?;
        if !(MIN..=MAX).contains(&v) {
            return Err(D::Error::custom(format!("{v} is outside {MIN}..={MAX}")));
        }
        T::try_from(v).map_err(|_| D::Error::custom(format!("{v} is too large")))
    }

    pub fn serialize<S: Serializer, T: Copy + Into<i64>>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64((*v).into())
    }
}

/// A path, written as the admin reads it (a `--db` given on the command line need
/// not be UTF-8).
pub(super) fn serialize_path<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&p.display())
}

/// A program or file the service uses: absolute, so no working directory or `PATH`
/// decides which one.
fn absolute(p: &str) -> Result<PathBuf, String> {
    if p.starts_with('/') {
        Ok(PathBuf::from(p))
    } else {
        Err(format!("{p:?} must be an absolute path"))
    }
}

pub(super) mod abs_path {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        parsed(d, absolute)
    }

    pub fn serialize<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        serialize_path(p, s)
    }

    /// One that may be absent: the key unset.
    pub fn some<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        deserialize(d).map(Some)
    }
}

/// An optional file, `""` for none (as the defaults are written).
pub(super) mod opt_abs_path {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        parsed(d, |p| (!p.is_empty()).then(|| absolute(p)).transpose())
    }

    pub fn serialize<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        serialize_path(p.as_deref().unwrap_or(Path::new("")), s)
    }
}

/// Text that goes into a mail header or an SMTP exchange.
pub(super) fn no_controls<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    parsed(d, |v| {
        if v.chars().any(char::is_control) {
            Err("contains a control character".to_owned())
        } else {
            Ok(v.to_owned())
        }
    })
}

/// A secret is never printed; the rendering says whether one is set.
pub(super) fn secret<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if v.is_empty() { "" } else { "(set)" })
}

fn mail_address(s: &str) -> Result<lettre::Address, String> {
    lettre::Address::from_str(s).map_err(|_| format!("{s:?} is not a mail address"))
}

/// A mail address as lettre takes it (lettre's own type has no such reason).
struct Address(lettre::Address);

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parsed(d, |s| mail_address(s).map(Address))
    }
}

pub(super) mod address {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<lettre::Address, D::Error> {
        Address::deserialize(d).map(|a| a.0)
    }

    pub fn serialize<S: Serializer>(a: &lettre::Address, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(a.as_ref())
    }
}

/// Recipients: at least one.
pub(super) mod addresses {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<lettre::Address>, D::Error> {
        let list = Vec::<Address>::deserialize(d)?;
        if list.is_empty() {
            return Err(D::Error::custom("needs at least one address"));
        }
        Ok(list.into_iter().map(|a| a.0).collect())
    }

    pub fn serialize<S: Serializer>(v: &[lettre::Address], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|a| a.as_ref() as &str))
    }
}

/// An optional address, `""` for none.
pub(super) mod opt_address {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<lettre::Address>, D::Error> {
        parsed(d, |s| (!s.is_empty()).then(|| mail_address(s)).transpose())
    }

    pub fn serialize<S: Serializer>(a: &Option<lettre::Address>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(a.as_ref().map_or("", |a| a.as_ref()))
    }
}

/// Accounts and their owners' addresses.
pub(super) mod address_map {
    use std::collections::BTreeMap;

    use super::*;

    type Map = BTreeMap<SaslUser, lettre::Address>;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Map, D::Error> {
        let map = BTreeMap::<SaslUser, Address>::deserialize(d)?;
        Ok(map.into_iter().map(|(u, a)| (u, a.0)).collect())
    }

    pub fn serialize<S: Serializer>(m: &Map, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(m.iter().map(|(u, a)| (u, a.as_ref() as &str)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_lists_names_as_a_sentence() {
        assert_eq!(either(&["a"]), "\"a\"");
        assert_eq!(either(&["a", "b"]), "\"a\" or \"b\"");
        assert_eq!(either(&["a", "b", "c"]), "\"a\", \"b\" or \"c\"");
        assert_eq!(
            one_of("x", &["lmdb", "hash"]).unwrap_err(),
            "\"x\" is not \"lmdb\" or \"hash\""
        );
    }
}
