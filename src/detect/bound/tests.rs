use std::collections::HashMap;

use super::*;
use crate::config::{Detection, Thresholds};
use crate::detect::tests::Rng;
use crate::detect::OwnerKey;
use crate::detect::{evaluate, Facts};
use crate::model::{ClientAddr, Level, Span};

const AT: i64 = 10 * 86_400_000;

fn user() -> SaslUser {
    SaslUser::parse("a@example.com").unwrap()
}

/// An account's rows: `nets` networks (in `wide` /24s, some whitelisted) over the
/// spread window, from every recorded source, with message counts.
fn rows(rng: &mut Rng, n: usize, nets: u64, wide: u64) -> Vec<Seen> {
    let recorded: Vec<Source> = Source::ALL
        .into_iter()
        .filter(|s| s.is_recorded())
        .collect();
    (0..n)
        .map(|_| {
            let net = rng.below(nets);
            let addr = if rng.below(20) == 0 {
                format!("10.0.0.{}", net % 250)
            } else {
                format!(
                    "198.{}.{}.{}",
                    18 + net % wide,
                    net / wide % 250,
                    1 + net % 7
                )
            };
            Seen {
                source: recorded[rng.below(recorded.len() as u64) as usize],
                addr: ClientAddr::parse(&addr).unwrap(),
                time: Timestamp::from_millis(AT - rng.below(86_400_000) as i64),
                count: 1 + rng.below(30) as u32,
                events: 1,
                message: None,
            }
        })
        .collect()
}

/// Reads `rows` as `record` does: each source newest first until settled. Returns the
/// count and how many rows it read.
fn bounded<'a>(
    cfg: &'a Config,
    (none, wl, known): (&'a Ownership, &'a Whitelist, &'a Known),
    rows: &[Seen],
    usual: Option<Usual>,
) -> (Bounded<'a>, usize) {
    let mut b = Bounded::new(
        cfg,
        (none, wl, known),
        &user(),
        Timestamp::from_millis(AT),
        &AccountState::default(),
        usual,
    );
    let mut read = 0;
    for r in b.reads() {
        let mut mine: Vec<Seen> = rows
            .iter()
            .filter(|s| s.source == r.source && s.time > r.since)
            .copied()
            .collect();
        mine.sort_by_key(|s| std::cmp::Reverse(s.time));
        for s in mine {
            b.add(s);
            read += 1;
            if b.settled(r.source) {
                break;
            }
        }
    }
    (b, read)
}

/// Runs `cases` random accounts from `seed` through `judge`, each with a window of 10
/// minutes to 2 hours; `judge` checks one and returns the level it reached. Every
/// level must be reached, so every threshold was tried on both sides.
fn each_case(seed: u64, cases: usize, mut judge: impl FnMut(usize, &mut Rng, Config) -> Level) {
    let mut rng = Rng(seed);
    let mut levels = [0usize; 4];
    for case in 0..cases {
        let mut cfg = Config::default();
        cfg.detection.window = Span::secs(600 * (1 + rng.below(12) as i64));
        levels[judge(case, &mut rng, cfg) as usize] += 1;
    }
    assert!(levels.iter().all(|n| *n > 0), "{levels:?}");
}

/// The same thresholds for smtp and imap: notify at 1 up to `low`, block up to `gap`
/// above it, and two times in three lock `gap` above notify and up to `top` more.
fn login_thresholds(d: &mut Detection, rng: &mut Rng, (low, gap, top): (u64, u64, u64)) {
    let low = 1 + rng.below(low) as u32;
    let block = low + rng.below(gap) as u32;
    // On the first day a count rises only as far as its /16s do: a lock within the
    // reach of the rows' /16s in the window too.
    let t = Thresholds {
        notify: Some(low),
        block: Some(block),
        lock: (rng.below(3) > 0).then(|| block + 1 + rng.below(top) as u32),
    };
    d.thresholds.insert(Source::Smtp, t);
    d.thresholds.insert(Source::Imap, t);
}

/// Up to `most` rows of an account from a few networks (even cases) or up to
/// thousands (odd ones).
fn random_rows(rng: &mut Rng, case: usize, most: u64) -> Vec<Seen> {
    let nets = 1 + rng.below(if case.is_multiple_of(2) { 40 } else { 3000 });
    let wide = 1 + rng.below(nets.min(200));
    let n = 1 + rng.below(most) as usize;
    rows(rng, n, nets, wide)
}

fn level(cfg: &Config, tally: &Tally, usual: Option<Usual>) -> Level {
    level_warm(cfg, tally, usual, false)
}

fn level_warm(cfg: &Config, tally: &Tally, usual: Option<Usual>, warm: bool) -> Level {
    let facts = Facts {
        tally,
        covers_spread: true,
        // Counted, as for an account blocked in enforce mode: refused logins add to
        // smtp's networks, so the bounded reading must stop where their union says.
        refused: true,
        deferred: None,
        usual,
        warm,
    };
    evaluate(cfg, &user(), &facts).level
}

/// The levels the bounded count gives are the full count's, over accounts from a few
/// networks to thousands, with thresholds, windows and baselines varied.
#[test]
fn bounded_counts_judge_as_full_counts() {
    let none = Ownership::none();
    each_case(0x9e37_79b9_7f4a_7c15, 400, |case, rng, mut cfg| {
        let d = &mut cfg.detection;
        d.escalate_min_spread = rng.below(6) as u32;
        d.corroborate = rng.below(2) == 0;
        login_thresholds(d, rng, (30, 40, 60));
        d.thresholds.insert(
            Source::Spread,
            Thresholds {
                notify: Some(1 + rng.below(80) as u32),
                block: None,
                lock: None,
            },
        );
        let usual = (rng.below(2) == 0).then(|| Usual {
            messages: rng.below(200) as u32,
            networks: rng.below(40) as u32,
            days: 30,
        });
        let all = random_rows(rng, case, 4000);
        let wl = Whitelist::new(&cfg, &user(), &[]);
        let full = Tally::count(
            &cfg.detection,
            (&wl, &none, &Known::none()),
            Timestamp::from_millis(AT),
            &all,
        );
        let nothing = Known::none();
        let (b, _) = bounded(&cfg, (&none, &wl, &nothing), &all, usual);
        let want = level(&cfg, &full, usual);
        assert_eq!(level(&cfg, b.tally(), usual), want, "case {case}");
        want
    });
}

/// An account seen from 20,000 networks is read only as far as its counts cross the
/// highest threshold, a few rows per source; a quiet one whole. So is one with history
/// whose 20,000 networks are of a party it knows (a carrier's pool), none new to it:
/// it has no new count to complete.
#[test]
fn an_account_of_many_networks_is_read_only_past_the_thresholds() {
    let cfg = Config::default();
    let d = &cfg.detection;
    let none = Ownership::none();
    let wl = Whitelist::new(&cfg, &user(), &[]);
    let at = Timestamp::from_millis(AT);
    // 20,000 addresses in 80 /24s over the last 50 minutes: of as many /16s (a
    // botnet's), and of one /16, which on the first day is read until its count is
    // past what `party_capped` holds.
    let many = |addr: &dyn Fn(u32) -> String| -> Vec<Seen> {
        (0..20_000u32)
            .map(|i| Seen {
                source: Source::Smtp,
                addr: ClientAddr::parse(&addr(i)).unwrap(),
                time: at.minus(Span::secs(i64::from(i % 3000))),
                count: 1,
                events: 1,
                message: None,
            })
            .collect()
    };
    let spread = many(&|i| format!("198.{}.0.{}", 18 + i % 80, 1 + i / 80));
    let one = many(&|i| format!("198.18.{}.{}", i % 80, 1 + i / 80));
    let seen_for_days = || Known::stored(d, Some(at.minus(Span::secs(10 * 86_400))), []);
    for (known, warm, many, most) in [
        (Known::none(), false, &spread, 100),
        (seen_for_days(), true, &spread, 100),
        (Known::none(), false, &one, 200),
        (seen_for_days(), true, &one, 100),
    ] {
        assert_eq!(known.warm(at), warm);
        let (b, read) = bounded(&cfg, (&none, &wl, &known), many, None);
        assert!(read <= most, "read {read} of 20,000 rows");
        let full = Tally::count(d, (&wl, &none, &known), at, many);
        assert_eq!(
            level_warm(&cfg, b.tally(), None, warm),
            level_warm(&cfg, &full, None, warm)
        );
        assert!(
            b.tally().source(Source::Smtp).networks.len()
                < full.source(Source::Smtp).networks.len()
        );
    }
}

/// The parties of `rows` as the store holds them for an account seen for days: each
/// with the first log time of its rows, about half of them first seen long ago (so
/// not read: known), the rest within the rows' day.
fn history(cfg: &Config, rng: &mut Rng, rows: &[Seen], none: &Ownership) -> Known {
    let d = &cfg.detection;
    let wl = Whitelist::new(cfg, &user(), &[]);
    let mut first: HashMap<OwnerKey, Timestamp> = HashMap::new();
    for s in rows {
        if let Some(p) = Counted::origin(&wl, none, d, s.addr).party {
            let f = first.entry(p).or_insert(s.time);
            *f = (*f).min(s.time);
        }
    }
    let recent: Vec<(OwnerKey, Timestamp)> =
        first.into_iter().filter(|_| rng.below(2) == 0).collect();
    Known::stored(
        d,
        Some(Timestamp::from_millis(AT - 10 * 86_400_000)),
        recent,
    )
}

/// Once an account has history its login counts are of parties new to it: the
/// bounded reading, which stops past the earliest new party's first login, judges as
/// the full count, with new parties in the window and without any.
#[test]
fn bounded_counts_of_new_parties_judge_as_full_counts() {
    let none = Ownership::none();
    each_case(0x2545_f491_4f6c_dd1d, 300, |case, rng, mut cfg| {
        let d = &mut cfg.detection;
        d.new_for = Span::secs(3600 * (1 + rng.below(30) as i64));
        login_thresholds(d, rng, (12, 20, 20));
        // Within the last two hours: windows of up to two hours hold many.
        let all: Vec<Seen> = random_rows(rng, case, 3000)
            .into_iter()
            .map(|s| Seen {
                time: Timestamp::from_millis(AT - (AT - s.time.millis()) / 12),
                ..s
            })
            .collect();
        let known = history(&cfg, rng, &all, &none);
        let at = Timestamp::from_millis(AT);
        assert!(known.warm(at));
        let wl = Whitelist::new(&cfg, &user(), &[]);
        let full = Tally::count(&cfg.detection, (&wl, &none, &known), at, &all);
        let (b, _) = bounded(&cfg, (&none, &wl, &known), &all, None);
        let want = level_warm(&cfg, &full, None, true);
        assert_eq!(level_warm(&cfg, b.tally(), None, true), want, "case {case}");
        want
    });
}
