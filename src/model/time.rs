//! Times and lengths of time: milliseconds, so "the same event twice" is an exact
//! comparison.

use std::fmt;
use std::time::{Duration, Instant};

use crate::error::Invalid;

/// A point in time, in milliseconds since the epoch: a log line's time (what detection
/// counts in) or the clock's (when an action ran or is due); the names of the fields
/// that hold one say which. Millisecond integers keep "the same event twice" an exact
/// comparison, unlike floats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Accepts what Fail2ban's `<time>` gives (`1795418066.0`) and plain integers.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, Invalid> {
        let secs: f64 = raw.trim().parse().map_err(|_| {
            Invalid::new(
                field,
                format!("{raw:?} is not a number of seconds since 1970"),
            )
        })?;
        // Before 1970 or beyond year 9999 is a broken clock or a forged value, not a login.
        if !secs.is_finite() || !(0.0..=253_402_300_799.0).contains(&secs) {
            return Err(Invalid::new(
                field,
                format!("{raw:?} is not a time between 1970 and 9999"),
            ));
        }
        Ok(Self((secs * 1000.0).round() as i64))
    }

    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self(d.as_millis() as i64)
    }

    pub fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    pub fn plus(self, span: Span) -> Self {
        Self(self.0.saturating_add(span.millis()))
    }

    pub fn minus(self, span: Span) -> Self {
        Self(self.0.saturating_sub(span.millis()))
    }

    /// RFC 3339 in UTC, for humans and mail; the milliseconds as they are for a time
    /// beyond year 9999 or before year 0 (a damaged value: parse refuses them).
    pub fn rfc3339(self) -> String {
        let secs = self.0.div_euclid(1000);
        let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        if !(0..=9999).contains(&y) {
            return self.0.to_string();
        }
        let (h, min, s) = (of_day / 3600, of_day / 60 % 60, of_day % 60);
        format!("{y:04}-{m:02}-{d:02} {h:02}:{min:02}:{s:02} UTC")
    }
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`: 400-year eras of 146,097 days, years starting in March so the
/// leap day ends them).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // 0..=365, from March 1st
    let mp = (5 * doy + 2) / 153; // 0..=11, March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A length of time written as `250ms`, `90s`, `15m`, `1h`, `30d` (or combinations like
/// `1h30m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(i64);

impl Span {
    pub const fn secs(s: i64) -> Self {
        Self(s * 1000)
    }

    pub const fn millis_of(ms: i64) -> Self {
        Self(ms)
    }

    pub fn parse(field: &'static str, raw: &str) -> Result<Self, Invalid> {
        let bad = || {
            Invalid::new(
                field,
                format!("{raw:?} is not a duration such as 250ms, 90s, 15m, 1h or 30d"),
            )
        };
        // In milliseconds.
        let mut total: i64 = 0;
        let mut digits = String::new();
        let mut any = false;
        let mut chars = raw.trim().chars().peekable();
        while let Some(c) = chars.next() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit = match c {
                'm' if chars.next_if_eq(&'s').is_some() => 1,
                's' => 1000,
                'm' => 60_000,
                'h' => 3_600_000,
                'd' => 86_400_000,
                'w' => 604_800_000,
                _ => return Err(bad()),
            };
            let n: i64 = digits.parse().map_err(|_| bad())?;
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(bad)?;
            digits.clear();
            any = true;
        }
        if !digits.is_empty() || !any {
            return Err(bad());
        }
        if total == 0 {
            return Err(Invalid::new(field, "must be longer than 0s"));
        }
        // Ten years is far beyond any sensible window and keeps millisecond maths in range.
        if total > 10 * 365 * 86_400_000 {
            return Err(Invalid::new(
                field,
                format!("{raw:?} is longer than ten years"),
            ));
        }
        Ok(Self(total))
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn as_secs(self) -> i64 {
        self.0 / 1000
    }
}

/// When work that may wait (a drain of the spool, a lock) must stop trying, on the
/// monotonic clock; `Deadline::NONE`: never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    pub const NONE: Self = Self(None);

    /// `span` from now (a span below zero: now).
    pub fn after(span: Span) -> Self {
        let span = Duration::from_millis(span.millis().max(0) as u64);
        Self(Some(Instant::now() + span))
    }

    pub fn passed(self) -> bool {
        self.0.is_some_and(|t| Instant::now() >= t)
    }

    /// `wait`, or what is left when that is less; None once the deadline has passed.
    pub fn cap(self, wait: Duration) -> Option<Duration> {
        let Some(t) = self.0 else {
            return Some(wait);
        };
        let now = Instant::now();
        (now < t).then(|| wait.min(t - now))
    }
}

impl fmt::Display for Span {
    /// The shortest exact form: `1h`, `30d`, `90m`, `250ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 % 1000 != 0 {
            return write!(f, "{}ms", self.0);
        }
        let s = self.as_secs();
        for (unit, len) in [("w", 604_800), ("d", 86_400), ("h", 3600), ("m", 60)] {
            if s % len == 0 {
                return write!(f, "{}{unit}", s / len);
            }
        }
        write!(f, "{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checked against chrono 0.4 (which it replaces) over years 0 to 9999 when written.
    #[test]
    fn rfc3339_in_utc_across_leap_days_and_centuries() {
        for (ms, want) in [
            (0, "1970-01-01 00:00:00 UTC"),
            (-1, "1969-12-31 23:59:59 UTC"),
            (1_999, "1970-01-01 00:00:01 UTC"),
            (1_795_417_200_000, "2026-11-23 07:00:00 UTC"),
            (951_782_400_000, "2000-02-29 00:00:00 UTC"),
            (4_107_456_000_000, "2100-02-28 00:00:00 UTC"),
            (4_107_542_399_999, "2100-02-28 23:59:59 UTC"),
            (4_107_542_400_000, "2100-03-01 00:00:00 UTC"),
            (-2_203_891_200_000, "1900-03-01 00:00:00 UTC"),
            (-62_167_219_200_000, "0000-01-01 00:00:00 UTC"),
            (253_402_300_799_999, "9999-12-31 23:59:59 UTC"),
            (253_402_300_800_000, "253402300800000"),
            (-62_167_219_200_001, "-62167219200001"),
            (i64::MIN, "-9223372036854775808"),
            (i64::MAX, "9223372036854775807"),
        ] {
            assert_eq!(Timestamp::from_millis(ms).rfc3339(), want, "{ms}");
        }
    }

    #[test]
    fn spans() {
        assert_eq!(Span::parse("w", "1h").unwrap().as_secs(), 3600);
        assert_eq!(Span::parse("w", "1h30m").unwrap().as_secs(), 5400);
        assert_eq!(Span::parse("w", "30d").unwrap().to_string(), "30d");
        assert_eq!(Span::parse("w", "250ms").unwrap().millis(), 250);
        assert_eq!(Span::parse("w", "250ms").unwrap().to_string(), "250ms");
        assert_eq!(Span::parse("w", "1s500ms").unwrap().to_string(), "1500ms");
        assert_eq!(Span::parse("w", "2m").unwrap().to_string(), "2m");
        assert!(Span::parse("w", "5mss").is_err());
        assert!(Span::parse("w", "1x").is_err());
        assert!(Span::parse("w", "10").is_err());
        assert!(Span::parse("w", "0s").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(
            Timestamp::parse("time", "1795418066.0").unwrap().millis(),
            1_795_418_066_000
        );
        assert!(Timestamp::parse("time", "nan").is_err());
        assert!(Timestamp::parse("time", "inf").is_err());
        assert!(Timestamp::parse("time", "-1").is_err());
    }
}
