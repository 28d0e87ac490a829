//! The engine's rules, case by case.

use super::*;
use crate::ownership::Ownership;

/// xorshift64: a fixed, dependency-free sequence.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn seen(n: usize) -> Vec<Seen> {
    (0..n)
        .map(|i| Seen {
            source: Source::Smtp,
            addr: ClientAddr::parse(&format!("198.{}.100.7", 18 + i)).unwrap(),
            time: Timestamp::from_millis(1000 * i as i64),
            count: 1,
            events: 1,
            message: None,
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

/// Without owners, on a first day, a count rises above notify only as far as its /16s
/// do: 21 /24s of one /16 (a provider's pool) notify, of 11 /16s block, of 21 lock;
/// unless `escalate_min_spread` is 0.
#[test]
fn a_first_day_count_rises_only_as_far_as_its_16s() {
    let cfg = Config::default();
    let user = SaslUser::parse("a@example.com").unwrap();
    let spread = |sixteens: usize| -> Vec<Seen> {
        seen(21)
            .into_iter()
            .enumerate()
            .map(|(i, s)| Seen {
                addr: ClientAddr::parse(&format!("198.{}.{i}.7", 18 + i % sixteens)).unwrap(),
                ..s
            })
            .collect()
    };
    assert_eq!(
        judge(&cfg, &user, &spread(1)),
        (
            Level::Notify,
            "smtp: 21 networks/1h > 5 (held at notify: 1 wider network only); \
             spread: 21 networks/1d > 20"
                .into()
        )
    );
    assert_eq!(judge(&cfg, &user, &spread(10)).0, Level::Notify);
    let (level, reason) = judge(&cfg, &user, &spread(11));
    assert_eq!(level, Level::Block);
    assert!(reason.starts_with("smtp: 21 networks/1h > 10;"), "{reason}");
    assert_eq!(judge(&cfg, &user, &spread(21)).0, Level::Lock);
    // More than four times the lock threshold in an hour (/24s of one /16) is no
    // pool: it rises.
    let flood = |n: usize| -> Vec<Seen> {
        seen(1)
            .into_iter()
            .cycle()
            .take(n)
            .enumerate()
            .map(|(i, s)| Seen {
                addr: ClientAddr::parse(&format!("198.18.{i}.7")).unwrap(),
                ..s
            })
            .collect()
    };
    assert_eq!(judge(&cfg, &user, &flood(80)).0, Level::Notify);
    assert_eq!(judge(&cfg, &user, &flood(81)).0, Level::Lock);
    // escalate_min_spread = 0: every count may block, this one too.
    let mut every = cfg.clone();
    every.detection.escalate_min_spread = 0;
    assert_eq!(judge(&every, &user, &spread(1)).0, Level::Lock);
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
        message: None,
    };
    // Six /24s and 150 messages: a botnet's first minutes.
    let mut botnet = seen(6);
    botnet.push(rate("198.18.100.7"));
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
    let newsletter = [seen(1)[0], rate("198.18.100.7")];
    assert_eq!(judge(&cfg, &user, &newsletter).0, Level::Ok);
    cfg.detection.corroborate = false;
    assert_eq!(judge(&cfg, &user, &botnet).0, Level::Notify);
}

/// One address's mail: `messages` accepted, and bounced recipients, `per_message` of
/// each of `bounced` messages, each a call with the bounce jail's ticket id.
fn mail(messages: u32, bounced: u32, per_message: u32) -> Vec<Seen> {
    let one = seen(1)[0];
    let mut out = vec![
        one,
        Seen {
            source: Source::Rate,
            count: messages,
            ..one
        },
    ];
    for m in 0..bounced {
        for r in 0..per_message {
            let fid = format!("('B{m:09X}', 'gone{r}@remote.example')");
            out.push(Seen {
                source: Source::Bounces,
                message: message_of(Source::Bounces, Some(&fid)),
                ..one
            });
        }
    }
    out
}

#[test]
fn a_high_bounce_share_blocks_a_single_address_spammer_not_a_newsletter() {
    let cfg = Config::default();
    let user = SaslUser::parse("a@example.com").unwrap();
    // One address, 300 messages in the hour, a third bouncing.
    assert_eq!(
        judge(&cfg, &user, &mail(300, 100, 1)),
        (
            Level::Block,
            "bounces: 33 % of 300 msgs/1h bounced (100) >= 25 %; rate: 300 msgs/1h > 100; \
             bounces: 100 bounces/1h > 20"
                .into()
        )
    );
    // The share blocks at bounce_share, and its reason says so.
    let (level, reason) = judge(&cfg, &user, &mail(400, 100, 1));
    assert_eq!(level, Level::Block, "{reason}");
    assert!(
        reason.starts_with("bounces: 25 % of 400 msgs/1h bounced (100) >= 25 %;"),
        "{reason}"
    );
    // A newsletter: 2,000 messages from one /24, 3 % bouncing: no alarm.
    assert_eq!(judge(&cfg, &user, &mail(2000, 60, 1)).0, Level::Ok);
    // Few bounced messages say little, whatever their share.
    assert_eq!(judge(&cfg, &user, &mail(60, 40, 1)).0, Level::Notify);
}

/// A reply to all of a planted Cc list: one message, 60 dead recipients. Compared with
/// accepted messages, 60 bounced recipients of 1 message were 6,000 %; it is one
/// bounced message of one, below `bounce_share_min`: the bounce count notifies.
#[test]
fn one_message_to_many_dead_recipients_does_not_block() {
    let cfg = Config::default();
    let user = SaslUser::parse("a@example.com").unwrap();
    let (level, reason) = judge(&cfg, &user, &mail(1, 1, 60));
    assert_eq!(
        (level, reason.as_str()),
        (Level::Notify, "bounces: 60 bounces/1h > 20")
    );
    // Spread over many messages, the same share blocks: 200 messages, 30 % bounced,
    // two dead recipients each.
    assert_eq!(judge(&cfg, &user, &mail(200, 60, 2)).0, Level::Block);
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
