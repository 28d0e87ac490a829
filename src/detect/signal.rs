//! Signals: one threshold crossed, with the figures that explain it, and the rules
//! that raise or silence them (bounce share, owners, corroboration).

use super::{Parties, Tally, Usual};
use crate::config::{Config, Detection, Thresholds};
use crate::model::{Level, SaslUser, Source, Span};

/// One threshold crossed, with the figures that explain it.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub source: Source,
    pub level: Level,
    pub value: u64,
    /// `networks/1h`, `msgs/1h`, `deferred`...
    pub unit: String,
    pub threshold: u64,
    /// How `value` crossed `threshold`, as the reason says it.
    pub crossing: Crossing,
    /// Set for a baseline signal: the account's usual figure and the factor applied.
    pub usual: Option<(u32, u32)>,
    /// Set when a network count was held at notify: its networks belong to only this
    /// many owners (or wider networks), see `detection.escalate_min_spread`.
    pub held: Option<Parties>,
    /// For a network count when owners are known: how many own those networks.
    pub owners: Option<usize>,
    /// Set when a network count at notify was raised to block by a message signal of
    /// this source, see `detection.corroborate`.
    pub corroborated: Option<Source>,
}

/// How a value crosses its threshold: a count when above it, the bounce share when at
/// it (`detection.bounce_share` is "at least").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crossing {
    Above,
    AtLeast,
}

impl Crossing {
    pub fn crosses(self, value: u64, threshold: u64) -> bool {
        match self {
            Crossing::Above => value > threshold,
            Crossing::AtLeast => value >= threshold,
        }
    }
}

impl std::fmt::Display for Crossing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Crossing::Above => ">",
            Crossing::AtLeast => ">=",
        })
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.usual {
            Some((usual, factor)) => write!(
                f,
                "baseline: {} {} {} {} ({factor}x usual {usual})",
                self.value, self.unit, self.crossing, self.threshold
            ),
            None => {
                // `networks of 12 owners/1h` when owners are known.
                match (self.owners, self.unit.split_once('/')) {
                    (Some(owners), Some((what, per))) => write!(
                        f,
                        "{}: {} {what} of {owners} owner{}/{per} {} {}",
                        self.source,
                        self.value,
                        if owners == 1 { "" } else { "s" },
                        self.crossing,
                        self.threshold
                    ),
                    _ => write!(
                        f,
                        "{}: {} {} {} {}",
                        self.source, self.value, self.unit, self.crossing, self.threshold
                    )
                    // A share: its threshold is a percentage too.
                    .and_then(|()| match self.crossing {
                        Crossing::AtLeast => f.write_str(" %"),
                        Crossing::Above => Ok(()),
                    }),
                }
            }
            .and_then(|()| match (self.held, self.corroborated) {
                (Some(parties), _) => write!(f, " (held at notify: {parties} only)"),
                (None, Some(by)) => write!(f, " (block: corroborated by {by})"),
                (None, None) => Ok(()),
            }),
        }
    }
}

/// Whether the admin gave `user` thresholds of its own for `source`.
pub(super) fn own_thresholds(cfg: &Config, user: &SaslUser, source: Source) -> bool {
    cfg.users
        .get(user)
        .is_some_and(|p| p.thresholds.contains_key(&source))
}

/// A busy hour of mail from one owner (without an ASN database, one wider network)
/// that hardly bounces is an office sending its newsletter, not a stolen password:
/// its absolute message and bounce counts are no alarm then (a spammer's mail
/// bounces, a botnet's comes from many owners). Not from a party new to the account:
/// that is judged by `new_sending`.
pub(super) fn one_quiet_owner(counts: &Tally) -> bool {
    let smtp = counts.source(Source::Smtp).parties();
    let messages = counts.source(Source::Rate).messages;
    let bounces = counts.source(Source::Bounces).messages;
    let new = !counts.source(Source::Smtp).new_owners.is_empty();
    smtp.count == 1 && !new && bounces.saturating_mul(10) < messages
}

/// Mail from new parties blocks above this many times the account's busiest hour...
const NEW_SENDING_FACTOR: u64 = 2;
/// ...and above this many messages in the window: a stolen password sending a steady
/// 40 an hour is stopped within a quarter hour (a spammer at 1,500 an hour within
/// half a minute), a traveller's few mails from a hotel are not.
const NEW_SENDING_MIN: u64 = 10;

/// Mail from parties new to the account, far above its own usual busiest hour (or,
/// without a baseline, above its floor), blocks whatever share of it bounces: a rented
/// server sending a steady trickle to a clean list bounces little. A newsletter from
/// the account's own server is known; a whitelisted network is never new.
pub(super) fn new_sending(d: &Detection, counts: &Tally, usual: Option<Usual>) -> Option<Signal> {
    if d.baseline.factor == 0 {
        return None;
    }
    let value = counts.source(Source::Rate).new_messages;
    let usual = usual.map_or(0, |u| u.messages);
    let threshold = (u64::from(usual) * NEW_SENDING_FACTOR).max(NEW_SENDING_MIN);
    Crossing::Above.crosses(value, threshold).then(|| Signal {
        source: Source::Rate,
        level: Level::Block,
        value,
        unit: format!("msgs from new parties/{}", d.window),
        threshold,
        crossing: Crossing::Above,
        usual: None,
        held: None,
        owners: None,
        corroborated: None,
    })
}

/// SMTP logins from more than this many owners new to the account in the window...
pub(super) const NEW_OWNERS_MAILING: u64 = 2;
/// ...with more than this many messages from new parties in it block.
const NEW_OWNERS_MAIL: u64 = 2;
/// Without an ASN database, more than this many new wider networks (/16s, /32s)...
pub(super) const NEW_NETS_MAILING: u64 = 3;
/// ...whose mail also bounced more than this many times.
const NEW_NETS_BOUNCES: u64 = 1;

/// One new owner after another, each sending: a drip or a proxy list blocks at its
/// third new owner in the hour with a few messages from them, not only at its
/// seventh in the day. A traveller's hotel, airport and roaming carrier are two new
/// owners in an hour at most, and a venue's mail is one owner's. Without an ASN
/// database a trip spans more wider networks than owners, but its mail hardly
/// bounces: a fourth new /16 (/32) in the hour whose mail bounced twice blocks, and
/// a drip sending spam from a new host every quarter hour is stopped within its first
/// hours, not only at its thirteenth new /16 of the day. Before the account is `warm`
/// nothing is new: parties first seen within the window stand in, with bounced mail
/// always (a role mailbox's households all start on its first day, and hardly bounce).
pub(super) fn new_owners_mailing(d: &Detection, counts: &Tally, warm: bool) -> Option<Signal> {
    let smtp = counts.source(Source::Smtp);
    let (rate, bounces) = (counts.source(Source::Rate), counts.source(Source::Bounces));
    let (value, mail, bounced) = if warm {
        let value = smtp.new_owners.len();
        (value, rate.new_messages, bounces.new_messages)
    } else {
        let value = smtp.fresh_parties.len();
        (value, rate.fresh_messages, bounces.fresh_messages)
    };
    let bounce = Crossing::Above.crosses(bounced, NEW_NETS_BOUNCES);
    let (threshold, by) = match (smtp.parties().known, bounce) {
        (true, _) if warm => (NEW_OWNERS_MAILING, Source::Rate),
        (true, true) => (NEW_OWNERS_MAILING, Source::Bounces),
        (false, true) => (NEW_NETS_MAILING, Source::Bounces),
        (_, false) => return None,
    };
    let value = value as u64;
    let noun = if warm { "new " } else { "fresh " };
    (Crossing::Above.crosses(value, threshold) && Crossing::Above.crosses(mail, NEW_OWNERS_MAIL))
        .then(|| Signal {
            source: Source::Smtp,
            level: Level::Block,
            value,
            unit: format!("{noun}{}/{}", smtp.parties().noun(), d.window),
            threshold,
            crossing: Crossing::Above,
            usual: None,
            held: None,
            owners: None,
            corroborated: Some(by),
        })
}

/// SMTP logins from more parties in the spread window than a day's travel shows
/// block: `spread_owners_block` owners once the account is `warm` (counted by the
/// parties new to it, `n`); before, twice as many unless owners are known and a
/// `burst` shows (a role mailbox's households and phones are all its own). Without an
/// ASN database twice as many again, since wider networks split an owner (a phone's
/// carrier spans several /16s), and before the account is warm its /16s (/32s) count,
/// not the spread's /24s: a slow drip that starts on an account's first day.
pub(super) fn spread_block(
    d: &Detection,
    counts: &Tally,
    n: usize,
    warm: bool,
    burst: bool,
) -> Option<Signal> {
    let smtp = counts.source(Source::Smtp).parties();
    let mut block = d.spread_owners_block;
    if !smtp.known {
        block = block.saturating_mul(2);
    }
    if !warm && (!burst || !smtp.known) {
        block = block.saturating_mul(2);
    }
    let (value, counted) = match (warm, smtp.known) {
        (true, _) => (n, format!("new {}", smtp.noun())),
        (false, true) => (n, "owners".into()),
        (false, false) => (counts.spread_parties(), smtp.noun().into()),
    };
    let t = Thresholds {
        notify: None,
        block: (block > 0).then_some(block),
        lock: None,
    };
    crossed(Source::Spread, value as u64, Some(d.spread_window), t).map(|s| Signal {
        unit: format!("{counted}/{}", d.spread_window),
        ..s
    })
}

/// The owner count of a login source other than smtp (whose network count already
/// escalates), against `detection.owners_*`: only when an ASN database names owners.
pub(super) fn owner_count(d: &Detection, source: Source, owners: usize) -> Option<Signal> {
    if source.counted_as() == Source::Smtp {
        return None;
    }
    let t = Thresholds {
        notify: (d.owners_notify > 0).then_some(d.owners_notify),
        block: (d.owners_block > 0).then_some(d.owners_block),
        lock: (d.owners_lock > 0).then_some(d.owners_lock),
    };
    crossed(source, owners as u64, Some(d.window), t).map(|s| Signal {
        unit: format!("owners/{}", d.window),
        ..s
    })
}

/// Blocks on the share of messages that bounce (`detection.bounce_share`): spam to
/// bought or guessed addresses bounces in bulk, an honest sender's mail seldom does.
/// Messages with a bounced recipient are compared with accepted messages, so one
/// message to many dead addresses (a reply to all of a planted Cc list) is one
/// bounced message, and the share needs more than `bounce_share_min` of them.
pub(super) fn bounce_share(d: &Detection, counts: &Tally) -> Option<Signal> {
    let bounced = counts.bounced_messages();
    let messages = counts.source(Source::Rate).messages;
    if d.bounce_share == 0 || bounced <= u64::from(d.bounce_share_min) || messages == 0 {
        return None;
    }
    let percent = bounced.saturating_mul(100) / messages;
    let crossing = Crossing::AtLeast;
    crossing
        .crosses(percent, d.bounce_share.into())
        .then(|| Signal {
            source: Source::Bounces,
            level: Level::Block,
            value: percent,
            unit: format!("% of {messages} msgs/{} bounced ({bounced})", d.window),
            threshold: d.bounce_share.into(),
            crossing,
            usual: None,
            held: None,
            owners: None,
            corroborated: None,
        })
}

/// A network count above this many times its highest threshold is no pool's hour (a
/// provider's "send as" pool shows a dozen addresses in one): `party_capped` lets it
/// rise, so it is never held where it blocked before, and `record` reads that far.
pub(super) const PARTY_CAP_UP_TO: usize = 4;

/// Before an account has history and without an ASN database, /24s stand in poorly
/// for owners: a big provider's "send as" pool spans a dozen /24s in a handful of
/// /16s, a botnet's hosts sit in about as many /16s as addresses. So a network count
/// `full` rises above notify only as far as its `parties` (/16s, /32s) alone cross
/// the same thresholds `t`, up to `PARTY_CAP_UP_TO`; held at notify, mail evidence
/// still raises it (`corroborate`).
pub(super) fn party_capped(full: Signal, parties: usize, t: Thresholds) -> Signal {
    let highest = t.lock.or(t.block).or(t.notify).map_or(0, u64::from);
    if full.value > highest.saturating_mul(PARTY_CAP_UP_TO as u64) {
        return full;
    }
    let by_parties =
        crossed(full.source, parties as u64, None, t).map_or(Level::Notify, |s| s.level);
    let level = by_parties.max(Level::Notify);
    if level >= full.level {
        return full;
    }
    let threshold = if level == Level::Block {
        t.block
    } else {
        t.notify
    };
    Signal {
        level,
        threshold: threshold.map_or(full.threshold, u64::from),
        held: (level == Level::Notify).then_some(Parties {
            count: parties,
            known: false,
        }),
        ..full
    }
}

/// Raises the network counts at `candidates` (indexes into `signals`) to block when
/// a message signal is at notify or above: many networks alone may be a traveller's
/// day, messages alone a newsletter; a stolen password shows both within minutes.
pub(super) fn corroborate(signals: &mut [Signal], candidates: &[usize]) {
    let by = signals
        .iter()
        .find(|s| !s.source.is_login() && s.source != Source::Spread)
        .map(|s| s.source);
    let Some(by) = by else { return };
    for &i in candidates {
        signals[i].level = Level::Block;
        signals[i].corroborated = Some(by);
        signals[i].held = None;
    }
}

/// `networks/1h`: what a signal counts, per window if it was counted over one. Built
/// only for a signal that fired: evaluation runs at every replayed event.
pub(crate) fn unit(source: Source, window: Option<Span>) -> String {
    match window {
        Some(window) => format!("{}/{window}", source.unit()),
        None => source.unit().into(),
    }
}

/// The strongest level `value` crosses; `window` is what it was counted over, if any.
pub(super) fn crossed(
    source: Source,
    value: u64,
    window: Option<Span>,
    t: Thresholds,
) -> Option<Signal> {
    [
        (Level::Lock, t.lock),
        (Level::Block, t.block),
        (Level::Notify, t.notify),
    ]
    .into_iter()
    .find_map(|(level, threshold)| {
        threshold
            .filter(|&th| Crossing::Above.crosses(value, th.into()))
            .map(|threshold| Signal {
                source,
                level,
                value,
                unit: unit(source, window),
                threshold: threshold.into(),
                crossing: Crossing::Above,
                usual: None,
                held: None,
                owners: None,
                corroborated: None,
            })
    })
}
