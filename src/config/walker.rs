//! Walks one TOML table by hand, so every error names the file, the full key path
//! (`thresholds.smtp.block`) and the reason on one line.

use crate::error::{Error, Invalid, Result};
use crate::model::{Cidr, Span};

use super::PartialThresholds;

/// A TOML basic string. JSON's string escapes are a subset of TOML's.
pub(super) fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Walks one TOML table, removing keys as they are read so leftovers can be reported.
pub(super) struct Walker {
    file: String,
    prefix: String,
    table: toml::Table,
}

impl Walker {
    pub(super) fn new(file: &str, prefix: &str, table: toml::Table) -> Self {
        Self {
            file: file.to_owned(),
            prefix: prefix.to_owned(),
            table,
        }
    }

    pub(super) fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else if key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            format!("{}.{key}", self.prefix)
        } else {
            format!("{}.{}", self.prefix, quote(key))
        }
    }

    pub(super) fn bad(&self, key: &str, reason: impl Into<String>) -> Error {
        Error::Config {
            file: self.file.clone(),
            key: self.path(key),
            reason: reason.into(),
        }
    }

    pub(super) fn bad_here(&self, reason: impl Into<String>) -> Error {
        Error::Config {
            file: self.file.clone(),
            key: self.prefix.clone(),
            reason: reason.into(),
        }
    }

    pub(super) fn keys(&self) -> Vec<String> {
        self.table.keys().cloned().collect()
    }

    pub(super) fn take(&mut self, key: &str, want: &str) -> Result<Option<toml::Value>> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(v) if v.type_str() == want => Ok(Some(v)),
            Some(v) => Err(self.bad(key, format!("must be {}, not {}", a(want), a(v.type_str())))),
        }
    }

    pub(super) fn string(&mut self, key: &str) -> Result<Option<String>> {
        Ok(self
            .take(key, "string")?
            .and_then(|v| v.as_str().map(str::to_owned)))
    }

    pub(super) fn boolean(&mut self, key: &str) -> Result<Option<bool>> {
        Ok(self.take(key, "boolean")?.and_then(|v| v.as_bool()))
    }

    pub(super) fn int(&mut self, key: &str, min: i64, max: i64) -> Result<Option<i64>> {
        let Some(v) = self.take(key, "integer")?.and_then(|v| v.as_integer()) else {
            return Ok(None);
        };
        if !(min..=max).contains(&v) {
            return Err(self.bad(key, format!("{v} is outside {min}..={max}")));
        }
        Ok(Some(v))
    }

    pub(super) fn span(&mut self, key: &str) -> Result<Option<Span>> {
        let Some(v) = self.string(key)? else {
            return Ok(None);
        };
        Span::parse("", &v)
            .map(Some)
            .map_err(|e| self.bad(key, e.reason))
    }

    pub(super) fn cidrs(&mut self, key: &str) -> Result<Option<Vec<Cidr>>> {
        self.list(key, |s| Cidr::parse("", s).map_err(|e: Invalid| e.reason))
    }

    /// A list of strings, each checked by `parse`.
    pub(super) fn list<T>(
        &mut self,
        key: &str,
        parse: impl Fn(&str) -> std::result::Result<T, String>,
    ) -> Result<Option<Vec<T>>> {
        let Some(v) = self.take(key, "array")? else {
            return Ok(None);
        };
        let items = v.as_array().cloned().unwrap_or_default();
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let s = item
                .as_str()
                .ok_or_else(|| self.bad(key, "must list strings"))?;
            out.push(parse(s).map_err(|r| self.bad(key, r))?);
        }
        Ok(Some(out))
    }

    pub(super) fn threshold(&mut self, key: &str) -> Result<Option<Option<u32>>> {
        let v = self.int(key, 0, 1_000_000)?;
        Ok(v.map(|n| if n == 0 { None } else { Some(n as u32) }))
    }

    pub(super) fn thresholds(&mut self) -> Result<PartialThresholds> {
        Ok(PartialThresholds {
            notify: self.threshold("notify")?,
            block: self.threshold("block")?,
            lock: self.threshold("lock")?,
        })
    }

    pub(super) fn table(&mut self, key: &str) -> Result<Option<Walker>> {
        let path = self.path(key);
        Ok(self.take(key, "table")?.and_then(|v| match v {
            toml::Value::Table(t) => Some(Walker {
                file: self.file.clone(),
                prefix: path,
                table: t,
            }),
            _ => None,
        }))
    }

    pub(super) fn finish(self) -> Result<()> {
        match self.table.keys().next() {
            Some(k) => Err(self.bad(k, "unknown key")),
            None => Ok(()),
        }
    }
}

/// A TOML type name with its article: "a string", "an array".
fn a(kind: &str) -> String {
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {kind}")
}

/// `LINE:COLUMN` (from 1, the column in characters) of byte `offset`, as editors
/// and compilers point at a place in a file.
pub(super) fn line_column(text: &str, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("{line}:{column}")
}
