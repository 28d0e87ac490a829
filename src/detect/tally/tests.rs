//! The tally's unit tests.

use super::*;
use crate::config::Config;
use crate::detect::tests::Rng;
use crate::model::{ClientAddr, SaslUser};

/// Evidence of every kind: sources, IPv4 and IPv6, whitelisted (10/8) or not,
/// networks shared within a /24 or /48, times in and out of each window.
fn evidence(rng: &mut Rng, d: &Detection, wl: &Whitelist) -> Counted {
    let sources: Vec<Source> = Source::ALL
        .into_iter()
        .filter(|s| s.is_recorded())
        .collect();
    let source = sources[rng.below(sources.len() as u64) as usize];
    let addr = match rng.below(3) {
        0 => format!("198.51.{}.{}", rng.below(4), rng.below(6)),
        1 => format!(
            "2001:db8:{}:{}::{}",
            rng.below(3),
            rng.below(4),
            rng.below(9)
        ),
        _ => format!("10.0.0.{}", rng.below(3)),
    };
    let seen = Seen {
        source,
        addr: ClientAddr::parse(&addr).unwrap(),
        time: Timestamp::from_millis(rng.below(2 * 86_400_000) as i64),
        count: 1 + rng.below(50) as u32,
        events: 1,
        message: None,
    };
    // Bounces of a few messages, some without a readable ticket id.
    let fid = format!("('Q{:08}', 'r')", rng.below(6));
    let message = crate::detect::message_of(source, Some(&fid)).filter(|_| rng.below(4) > 0);
    Counted::new(
        d,
        wl,
        &crate::ownership::Ownership::none(),
        &Known::none(),
        Seen { message, ..seen },
    )
}

fn setup() -> (Config, Whitelist) {
    let cfg = Config::default();
    let user = SaslUser::parse("a@example.com").unwrap();
    let wl = Whitelist::new(&cfg, &user, &[]);
    (cfg, wl)
}

#[test]
fn remove_undoes_add() {
    let (cfg, wl) = setup();
    let d = &cfg.detection;
    let mut rng = Rng(0x5eed);
    let mut tally = Tally::default();
    let all: Vec<Counted> = (0..500).map(|_| evidence(&mut rng, d, &wl)).collect();
    for c in &all {
        tally.add(c);
    }
    assert_ne!(tally, Tally::default());
    for c in all.iter().rev() {
        tally.remove(c);
    }
    assert_eq!(tally, Tally::default());
}

#[test]
fn running_totals_equal_a_count_from_scratch() {
    let (cfg, wl) = setup();
    let d = &cfg.detection;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut held: Vec<Counted> = Vec::new();
    let mut tally = Tally::default();
    for step in 0..5000 {
        if held.is_empty() || rng.below(3) > 0 {
            let c = evidence(&mut rng, d, &wl);
            tally.add(&c);
            held.push(c);
        } else {
            let c = held.swap_remove(rng.below(held.len() as u64) as usize);
            tally.remove(&c);
        }
        if step % 97 == 0 {
            // A window as wide as all time: everything held counts in both.
            let wide = Detection {
                window: crate::model::Span::secs(10 * 86_400),
                spread_window: crate::model::Span::secs(10 * 86_400),
                ..d.clone()
            };
            let at = Timestamp::from_millis(2 * 86_400_000);
            assert_eq!(
                tally,
                Tally::at(&wide, at, held.iter().copied()),
                "step {step}"
            );
        }
    }
}

/// Logins Postfix refused after the block are smtp logins once they count (the
/// account blocked in enforce mode), so 11 accepted networks and 10 refused ones
/// are 21 smtp networks: lock. Otherwise they are left out: 11 networks, block.
#[test]
fn refused_logins_count_as_smtp_networks_and_spread_only_when_they_count() {
    let (cfg, wl) = setup();
    let d = &cfg.detection;
    let login = |source, i: i64| {
        let seen = Seen {
            source,
            addr: ClientAddr::parse(&format!("198.{}.51.7", 18 + i)).unwrap(),
            time: Timestamp::from_millis(1000 * i),
            count: 1,
            events: 1,
            message: None,
        };
        Counted::new(
            d,
            &wl,
            &crate::ownership::Ownership::none(),
            &Known::none(),
            seen,
        )
    };
    let evidence = (0..11)
        .map(|i| login(Source::Smtp, i))
        .chain((11..21).map(|i| login(Source::SmtpRefused, i)));
    let tally = Tally::at(d, Timestamp::from_millis(100_000), evidence);
    assert_eq!(tally.refused(), (10, 10));
    let counted = tally.counted(true);
    assert_eq!(counted.source(Source::Smtp).networks.len(), 21);
    assert_eq!(counted.spread(), 21);
    assert_eq!(counted.sources().count(), 1, "one source, smtp");
    let left_out = tally.counted(false);
    assert_eq!(left_out.source(Source::Smtp).networks.len(), 11);
    assert_eq!(left_out.spread(), 11);
    assert_eq!(left_out.networks().len(), 11);
    let user = SaslUser::parse("a@example.com").unwrap();
    let facts = crate::detect::tests::facts(&tally);
    let e = crate::detect::evaluate(&cfg, &user, &facts);
    assert_eq!(e.level, crate::model::Level::Lock);
    assert_eq!(
        e.reason(),
        "smtp: 21 networks/1h > 20; spread: 21 networks/1d > 20"
    );
    let not = crate::detect::Facts {
        refused: false,
        ..facts
    };
    let e = crate::detect::evaluate(&cfg, &user, &not);
    assert_eq!(e.level, crate::model::Level::Block);
    assert_eq!(e.reason(), "smtp: 11 networks/1h > 10");
}

#[test]
fn windows_slide_separately() {
    let (cfg, wl) = setup();
    let d = &cfg.detection;
    let mut rng = Rng(7);
    let mut all: Vec<Counted> = (0..2000).map(|_| evidence(&mut rng, d, &wl)).collect();
    all.sort_by_key(|c| c.seen.time);
    let at = Timestamp::from_millis(2 * 86_400_000);
    // Everything added, then what fell out of each window removed from that one.
    let mut tally = Tally::default();
    for c in &all {
        tally.add(c);
        if c.seen.time <= at.minus(d.window) {
            tally.change_window(c, Change::Remove);
        }
        if c.seen.time <= at.minus(d.spread_window) {
            tally.change_spread(c, Change::Remove);
        }
    }
    assert_eq!(tally, Tally::at(d, at, all.iter().copied()));
    assert!(tally.spread() > 0 && !tally.networks().is_empty());
}
