//! Each account against its own history: "double its usual rate" in the admins' words.
//! Its usual sending is its busiest hour in the history, so a newsletter sent every
//! week or month is usual for its account; its usual spread is the median over the
//! days it was active, so one day on the road neither makes a baseline nor breaks it.

use std::collections::{BTreeMap, BTreeSet};

use super::{unit, Crossing, OwnerKey, Seen, Signal, Whitelist};
use crate::config::{Baseline, Config};
use crate::model::{Level, Source, Span, Timestamp};
use crate::ownership::Ownership;

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// An account's usual figures, computed once per (UTC) day from its history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usual {
    /// Messages in its busiest hour in the history.
    pub messages: u32,
    /// Wider networks (the spread prefixes) its SMTP logins came from in a day.
    pub networks: u32,
    /// Days with any activity: below `baseline.min_days` there is no baseline yet.
    pub days: u32,
}

/// The UTC day a log time falls on, as days since 1970: the baseline cache key.
pub fn day_of(t: Timestamp) -> i64 {
    t.millis().div_euclid(DAY_MS)
}

/// Where the history for the baseline of day `day` starts and ends: the configured
/// history before that day began (today's own activity is never its own baseline).
pub fn history_range(cfg: &Config, day: i64) -> (Timestamp, Timestamp) {
    let end = Timestamp::from_millis(day * DAY_MS);
    (end.minus(cfg.detection.baseline.history), end)
}

/// The usual figures from an account's evidence in `history_range`.
pub fn usual(cfg: &Config, history: &[Seen], whitelist: &Whitelist, owners: &Ownership) -> Usual {
    let d = &cfg.detection;
    let mut hours: BTreeMap<i64, u64> = BTreeMap::new();
    let mut nets: BTreeMap<i64, BTreeSet<_>> = BTreeMap::new();
    let mut active: BTreeSet<i64> = BTreeSet::new();
    for s in history {
        let day = s.time.millis().div_euclid(DAY_MS);
        active.insert(day);
        // Refused logins are a blocked account's botnet, never its usual use.
        match s.source {
            Source::Rate => {
                *hours
                    .entry(s.time.millis().div_euclid(HOUR_MS))
                    .or_default() += u64::from(s.count)
            }
            Source::Smtp if !whitelist.covers(s.addr) => {
                // Counted as the spread window counts them (see `Tally::spread`).
                nets.entry(day).or_default().insert(OwnerKey::of(
                    s.addr,
                    s.addr.net(d.spread_prefixes),
                    owners,
                ));
            }
            _ => {}
        }
    }
    let mut peak: BTreeMap<i64, u64> = active.iter().map(|d| (*d, 0)).collect();
    for (hour, n) in hours {
        let p = peak.entry(hour * HOUR_MS / DAY_MS).or_default();
        *p = (*p).max(n);
    }
    let per_day_nets: Vec<u64> = active
        .iter()
        .map(|d| nets.get(d).map_or(0, |s| s.len() as u64))
        .collect();
    Usual {
        messages: u32::try_from(peak.into_values().max().unwrap_or(0)).unwrap_or(u32::MAX),
        networks: median(per_day_nets),
        days: active.len() as u32,
    }
}

fn median(mut v: Vec<u64>) -> u32 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    u32::try_from(v[v.len() / 2]).unwrap_or(u32::MAX)
}

/// The baseline signals: sending in the window and spread over the spread window,
/// each above `factor` times the usual figure and above its floor. Notify only.
pub fn crossed(
    b: &Baseline,
    usual: Usual,
    messages: u64,
    spread: Option<usize>,
    window: Span,
    spread_window: Span,
) -> Vec<Signal> {
    if b.factor == 0 || usual.days < b.min_days {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut check = |source: Source, value: u64, usual: u32, floor: u32, window: Span| {
        let threshold = (u64::from(usual) * u64::from(b.factor)).max(floor.into());
        if Crossing::Above.crosses(value, threshold) {
            out.push(Signal {
                source,
                level: Level::Notify,
                value,
                unit: unit(source, Some(window)),
                threshold,
                crossing: Crossing::Above,
                usual: Some((usual, b.factor)),
                held: None,
                owners: None,
                corroborated: None,
            });
        }
    };
    check(
        Source::Rate,
        messages,
        usual.messages,
        b.min_messages,
        window,
    );
    if let Some(n) = spread {
        check(
            Source::Spread,
            n as u64,
            usual.networks,
            b.min_networks,
            spread_window,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClientAddr, SaslUser};

    #[test]
    fn busiest_hour_and_median_spread_over_active_days() {
        let cfg = Config::default();
        let user = SaslUser::parse("a@example.com").unwrap();
        let wl = Whitelist::new(&cfg, &user, &[]);
        let addr = ClientAddr::parse("198.51.100.7").unwrap();
        // Three active days: 10, 40 and 20 messages in their busiest hour; one network.
        let mut seen = Vec::new();
        for (day, n) in [(0, 10), (3, 40), (9, 20)] {
            seen.push(Seen {
                source: Source::Rate,
                addr,
                time: Timestamp::from_millis(day * DAY_MS + 5 * HOUR_MS),
                count: n,
                events: 1,
                message: None,
            });
            seen.push(Seen {
                source: Source::Smtp,
                addr,
                time: Timestamp::from_millis(day * DAY_MS + 5 * HOUR_MS),
                count: 1,
                events: 1,
                message: None,
            });
        }
        let u = usual(&cfg, &seen, &wl, &Ownership::none());
        assert_eq!(
            u,
            Usual {
                messages: 40,
                networks: 1,
                days: 3
            }
        );
    }
}
