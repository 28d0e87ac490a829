//! Reading the file: TOML into the config's types, every error on one line with the
//! file, the line and column, the key path (`thresholds.smtp.block`) and the reason.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::document::Document;
use super::value::unknown_key;
use super::Config;
use crate::error::{Error, Result};

/// A setting that every key's value allows but that the keys together do not (thresholds
/// out of order, a backend without what it needs): found after deserialising, at `key`.
#[derive(Debug)]
pub(super) struct Misfit {
    key: Vec<String>,
    reason: String,
}

impl Misfit {
    pub(super) fn new<K: Into<String>>(
        key: impl IntoIterator<Item = K>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            key: key.into_iter().map(Into::into).collect(),
            reason: reason.into(),
        }
    }
}

pub(super) fn parse(file: &str, text: &str) -> Result<Config> {
    let document = toml::de::Deserializer::parse(text).map_err(|e| {
        let reason = e.message().trim_end().replace('\n', " ");
        located(file, text, e.span(), "syntax error".into(), reason)
    })?;
    let document: Document = serde_path_to_error::deserialize(document).map_err(|e| {
        let key = key_path(e.path().iter().filter_map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Some(key.as_str()),
            // The place says which item of a list; the key is the list's.
            _ => None,
        }));
        let e = e.into_inner();
        located(file, text, e.span(), key, reword(e.message()))
    })?;
    document.into_config().map_err(|m| {
        let span = locate(text, &m.key);
        located(file, text, span, key_path(m.key.iter()), m.reason)
    })
}

fn located(
    file: &str,
    text: &str,
    span: Option<Range<usize>>,
    key: String,
    reason: String,
) -> Error {
    Error::Config {
        file: match span {
            Some(span) => format!("{file}:{}", line_column(text, span.start)),
            None => file.to_owned(),
        },
        key,
        reason,
    }
}

/// `detection.window`, `users."a b".smtp`: keys as TOML writes them.
pub(super) fn key_path<S: AsRef<str>>(keys: impl Iterator<Item = S>) -> String {
    let keys: Vec<String> = keys
        .map(|k| {
            let k = k.as_ref();
            let bare = !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if bare {
                k.to_owned()
            } else {
                // A TOML basic string: JSON's string escapes are a subset of TOML's.
                serde_json::to_string(k).unwrap_or_default()
            }
        })
        .collect();
    keys.join(".")
}

/// serde's wording (`invalid type: string "yes", expected a boolean`) in the words the
/// config's own checks use (`must be a boolean, not a string`), with TOML's type names.
fn reword(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        // "windo`, expected one of `window`, `whitelist`" or "..., there are no fields"
        let expected = rest.split_once("`, ").map_or("", |(_, e)| e);
        return unknown_key(expected.split('`').skip(1).step_by(2));
    }
    if let Some((found, expected)) = message
        .strip_prefix("invalid type: ")
        .and_then(|rest| rest.split_once(", expected "))
    {
        return format!("must be {}, not {}", toml_type(expected), toml_type(found));
    }
    message.to_owned()
}

/// A TOML type with its article, from serde's name for it (`a sequence`, `integer \`3\``,
/// `u32`, `struct MailConfig`).
fn toml_type(serde: &str) -> &str {
    let word = serde.trim_start_matches("a ").trim_start_matches("an ");
    match word.split([' ', '`']).next().unwrap_or("") {
        "string" | "str" | "char" => "a string",
        "integer" | "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" => "an integer",
        "floating" | "f32" | "f64" => "a float",
        "boolean" => "a boolean",
        "sequence" | "tuple" => "an array",
        "map" | "struct" | "table" => "a table",
        _ => serde,
    }
}

/// Where `key` is written (its deepest part that is), for a misfit found after reading.
fn locate(text: &str, key: &[String]) -> Option<Range<usize>> {
    let root = DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut span = None;
    for part in key {
        let Some((_, value)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == part) else {
            break;
        };
        span = Some(value.span());
        match value.get_ref() {
            DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    span
}

/// `LINE:COLUMN` (from 1, the column in characters) of byte `offset`, as editors
/// and compilers point at a place in a file.
fn line_column(text: &str, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("{line}:{column}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_place_key_and_reason() {
        for (text, expect) in [
            (
                "mode = \"x\"",
                "t.toml:1:8: mode: \"x\" is not \"warn\" or \"enforce\"",
            ),
            (
                "[detection]\nwindo = \"1h\"",
                "t.toml:2:1: detection.windo: unknown key (known: window, ipv4_prefix,",
            ),
            (
                "[thresholds.smtp]\nnotify = 12",
                "t.toml:1:1: thresholds.smtp: notify (12) must be below block (10)",
            ),
            (
                "[detection]\nwhitelist = [\"10.0.0.1/8\"]",
                "t.toml:2:14: detection.whitelist: \"10.0.0.1/8\" has host bits set",
            ),
            (
                "[users.bob]\ncolour = 1",
                "t.toml:2:1: users.bob.colour: unknown key (known: exempt, whitelist, smtp,",
            ),
            (
                "[users.\"b@x\".smtp]\nnotify = 30",
                "t.toml:1:1: users.\"b@x\".smtp: notify (30) must be below block (10)",
            ),
            (
                "[password]\nbackend = \"command\"",
                "t.toml:1:1: password.command: backend \"command\" needs command = [",
            ),
            (
                "[user_mail]\nbody = \"x\"\nbody_file = \"/x\"",
                "t.toml:3:13: user_mail.body_file: set body or body_file, not both",
            ),
            (
                "[mail]\nto = []",
                "t.toml:2:6: mail.to: needs at least one address",
            ),
            (
                "[mail]\nsmtp_port = \"25\"",
                "t.toml:2:13: mail.smtp_port: must be an integer, not a string",
            ),
            (
                "detection = 3",
                "t.toml:1:13: detection: must be a table, not an integer",
            ),
            (
                "[postfix]\nmap_type = \"btree\"",
                "t.toml:2:12: postfix.map_type: \"btree\" is not \"lmdb\", \"hash\" or \"cdb\"",
            ),
            (
                "[user_mail.addresses]\n\"bob\" = \"nope\"",
                "t.toml:2:9: user_mail.addresses.bob: \"nope\" is not a mail address",
            ),
            ("database = \"\"", "t.toml:1:12: database: is empty"),
        ] {
            let got = Config::parse("t.toml", text).unwrap_err().to_string();
            assert!(got.starts_with(expect), "{text:?}: {got}");
        }
    }

    #[test]
    fn rewords_serde_in_toml_terms() {
        assert_eq!(
            reword("invalid type: string \"yes\", expected a boolean"),
            "must be a boolean, not a string"
        );
        assert_eq!(
            reword("invalid type: integer `3`, expected a sequence"),
            "must be an array, not an integer"
        );
        assert_eq!(
            reword("invalid type: sequence, expected i64"),
            "must be an integer, not an array"
        );
        assert_eq!(
            reword("invalid type: boolean `true`, expected struct MailConfig"),
            "must be a table, not a boolean"
        );
        assert_eq!(
            reword("unknown field `windo`, expected `window` or `whitelist`"),
            "unknown key (known: window, whitelist)"
        );
        assert_eq!(
            reword("unknown field `x`, there are no fields"),
            "unknown key"
        );
        assert_eq!(reword("has host bits set"), "has host bits set");
    }

    #[test]
    fn key_paths_quote_what_is_not_bare() {
        assert_eq!(
            key_path(["users", "a b", "smtp"].iter()),
            "users.\"a b\".smtp"
        );
        assert_eq!(key_path(["users", "bob"].iter()), "users.bob");
        assert_eq!(key_path(["users", "bob@x"].iter()), "users.\"bob@x\"");
    }
}
