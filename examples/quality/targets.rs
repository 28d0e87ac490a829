//! The detection targets the quality report checks, each met or not.

use super::{duration, pct, Outcome};

/// What a target measures for one account.
#[derive(Clone, Copy)]
enum Measure {
    /// compromise_start to notify.
    Notify,
    /// compromise_start to block.
    Block,
    /// first message to block.
    MessageBlock,
}

/// The per-class detection targets: class, measure, within (seconds; None: reached at all).
const TARGETS: &[(&str, Measure, Option<f64>)] = &[
    ("botnet_burst", Measure::Block, Some(180.0)),
    ("cloud_botnet", Measure::Block, None),
    ("single_ip_spammer", Measure::Block, Some(600.0)),
    ("imap_checker", Measure::Notify, Some(600.0)),
    ("imap_checker", Measure::MessageBlock, Some(300.0)),
    ("slow_drip", Measure::Block, Some(7200.0)),
];

/// One line per detection target, and whether it is met.
pub fn targets(outcomes: &[Outcome]) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for &(class, measure, within) in TARGETS {
        let rows: Vec<&Outcome> = outcomes.iter().filter(|o| o.label.class == class).collect();
        if rows.is_empty() {
            continue;
        }
        let times: Vec<Option<f64>> = rows
            .iter()
            .map(|o| match measure {
                Measure::Notify => o.to_notify,
                Measure::Block => o.to_block,
                Measure::MessageBlock => o.message_to_block,
            })
            .collect();
        let ok = times
            .iter()
            .filter(|t| t.is_some_and(|t| within.is_none_or(|w| t <= w)))
            .count();
        let (what, from) = match measure {
            Measure::Notify => ("at notify", "of the compromise"),
            Measure::Block => ("blocked", "of the compromise"),
            Measure::MessageBlock => ("blocked", "of the first message"),
        };
        let limit = within.map_or_else(
            || "(no time target)".to_owned(),
            |w| format!("within {} {from}", duration(w)),
        );
        let worst = if times.iter().any(Option::is_none) {
            "never".to_owned()
        } else {
            duration(times.iter().flatten().copied().fold(0.0, f64::max))
        };
        out.push((
            format!(
                "{class} {what} {limit}: {ok}/{} (worst {worst})",
                rows.len()
            ),
            ok == rows.len(),
        ));
    }
    let bad: Vec<&Outcome> = outcomes.iter().filter(|o| o.label.compromised).collect();
    let blocked = bad.iter().filter(|o| o.highest >= 2).count();
    out.push((
        format!(
            "every compromised account reaches block: {blocked}/{}",
            bad.len()
        ),
        blocked == bad.len(),
    ));
    let notified = outcomes.iter().filter(|o| o.highest >= 1);
    let (tp, all) = notified.fold((0, 0), |(tp, n), o| {
        (tp + o.label.compromised as usize, n + 1)
    });
    let precision = if all == 0 {
        1.0
    } else {
        tp as f64 / all as f64
    };
    out.push((
        format!("notify precision >= 95 %: {}", pct(tp, all)),
        precision >= 0.95,
    ));
    let recalled = bad.iter().filter(|o| o.highest >= 1).count();
    out.push((
        format!("recall at notify 100 %: {}", pct(recalled, bad.len())),
        recalled == bad.len(),
    ));
    let beyond = outcomes
        .iter()
        .filter(|o| !o.label.compromised && o.highest > 1)
        .count();
    out.push((
        format!("honest accounts beyond notify: {beyond} (must be 0)"),
        beyond == 0,
    ));
    out
}
