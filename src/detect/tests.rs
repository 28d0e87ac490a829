//! The engine's rules, case by case.

use super::*;
use crate::ownership::Ownership;

fn seen(n: usize) -> Vec<Seen> {
    (0..n)
        .map(|i| Seen {
            source: Source::Smtp,
            addr: ClientAddr::parse(&format!("198.51.{}.7", 100 + i)).unwrap(),
            time: Timestamp::from_millis(1000 * i as i64),
            count: 1,
            events: 1,
        })
        .collect()
}

/// Everything counted, nothing else known.
pub(crate) fn facts(tally: &Tally) -> Facts<'_> {
    Facts {
        tally,
        covers_spread: true,
        refused: true,
        deferred: None,
        usual: None,
        warm: false,
    }
}

/// The level `seen` reaches at 100 s, and why.
fn judge(cfg: &Config, user: &SaslUser, seen: &[Seen]) -> (Level, String) {
    let wl = Whitelist::new(cfg, user, &[]);
    let at = Timestamp::from_millis(100_000);
    let tally = Tally::count(
        &cfg.detection,
        (&wl, &Ownership::none(), &Known::none()),
        at,
        seen,
    );
    let e = evaluate(cfg, user, &facts(&tally));
    (e.level, e.reason())
}

#[test]
fn levels_by_count() {
    let cfg = Config::default();
    let user = SaslUser::parse("a@example.com").unwrap();
    for (n, level) in [
        (5, Level::Ok),
        (6, Level::Notify),
        (11, Level::Block),
        (21, Level::Lock),
    ] {
        assert_eq!(judge(&cfg, &user, &seen(n)).0, level, "{n} networks");
    }
    assert_eq!(judge(&cfg, &user, &seen(11)).1, "smtp: 11 networks/1h > 10");
}

#[test]
fn message_signal_corroborates_a_widely_spread_network_count() {
    let mut cfg = Config::default();
    let user = SaslUser::parse("a@example.com").unwrap();
    let rate = |addr: &str| Seen {
        source: Source::Rate,
        addr: ClientAddr::parse(addr).unwrap(),
        time: Timestamp::from_millis(50_000),
        count: 150,
        events: 1,
    };
    // Six /24s and 150 messages: a botnet's first minutes.
    let mut botnet = seen(6);
    botnet.push(rate("198.51.100.7"));
    assert_eq!(
        judge(&cfg, &user, &botnet),
        (
            Level::Block,
            "smtp: 6 networks/1h > 5 (block: corroborated by rate); rate: 150 msgs/1h > 100".into()
        )
    );
    // Six addresses of one /24 (a provider's pool) and the same mail: notify.
    let mut pool: Vec<Seen> = (0..6)
        .map(|i| Seen {
            addr: ClientAddr::parse(&format!("192.0.2.{}", 10 + i)).unwrap(),
            ..seen(1)[0]
        })
        .collect();
    pool.push(rate("192.0.2.10"));
    assert_eq!(judge(&cfg, &user, &pool).0, Level::Notify);
    // A newsletter: one address, many messages that hardly bounce: no alarm.
    let newsletter = [seen(1)[0], rate("198.51.100.7")];
    assert_eq!(judge(&cfg, &user, &newsletter).0, Level::Ok);
    cfg.detection.corroborate = false;
    assert_eq!(judge(&cfg, &user, &botnet).0, Level::Notify);
}

#[test]
fn a_high_bounce_share_blocks_a_single_address_spammer_not_a_newsletter() {
    let cfg = Config::default();
    let user = SaslUser::parse("a@example.com").unwrap();
    let counted = |source, count| Seen {
        source,
        count,
        ..seen(1)[0]
    };
    // One address, 300 messages in the hour, a third bouncing.
    let spammer = [
        seen(1)[0],
        counted(Source::Rate, 300),
        counted(Source::Bounces, 100),
    ];
    assert_eq!(
        judge(&cfg, &user, &spammer),
        (
            Level::Block,
            "bounces: 33 % of 300 msgs/1h >= 25; rate: 300 msgs/1h > 100; bounces: 100 bounces/1h > 20".into()
        )
    );
    // The share blocks at bounce_share, and its reason says so.
    let at_share = [
        seen(1)[0],
        counted(Source::Rate, 400),
        counted(Source::Bounces, 100),
    ];
    let (level, reason) = judge(&cfg, &user, &at_share);
    assert_eq!(level, Level::Block, "{reason}");
    assert!(
        reason.starts_with("bounces: 25 % of 400 msgs/1h >= 25;"),
        "{reason}"
    );
    // A newsletter: 2,000 messages from one /24, 3 % bouncing: no alarm.
    let newsletter = [
        seen(1)[0],
        counted(Source::Rate, 2000),
        counted(Source::Bounces, 60),
    ];
    assert_eq!(judge(&cfg, &user, &newsletter).0, Level::Ok);
    // Few bounces say little, whatever their share.
    let few = [
        seen(1)[0],
        counted(Source::Rate, 60),
        counted(Source::Bounces, 40),
    ];
    assert_eq!(judge(&cfg, &user, &few).0, Level::Notify);
}

#[test]
fn notify_expires_block_stays() {
    let cfg = Config::default();
    let user = SaslUser::parse("a@example.com").unwrap();
    let nothing = Tally::default();
    let quiet = evaluate(&cfg, &user, &facts(&nothing));
    let hit = Timestamp::from_millis(0);
    let day = Timestamp::from_millis(86_400_000);
    for (level, expect) in [(Level::Notify, Some(Level::Ok)), (Level::Block, None)] {
        let state = AccountState {
            level,
            last_hit: Some(hit),
            ..AccountState::default()
        };
        let (_, t) = decide(&cfg, &state, &quiet, day);
        assert_eq!(t.map(|t| t.to), expect);
    }
}
