//! An account's stored evidence folded for one evaluation: rows that evaluation cannot
//! tell apart (same source, same address, same side of each window's start) become
//! one `Seen` standing for all of them. A phone that logs in every few minutes is then
//! parsed, whitelisted and counted once per `record`, not once per login.

use std::collections::HashMap;

use super::{MessageKey, Seen};
use crate::config::WindowStarts;
use crate::model::{ClientAddr, Source, Timestamp};

pub struct Fold {
    /// The windows' starts: evidence after a start counts in that window.
    starts: WindowStarts,
    seen: Vec<Seen>,
    /// Address as stored → indices into `seen` of the evidence from it.
    by_addr: HashMap<Box<str>, Vec<usize>>,
}

impl Fold {
    pub fn new(starts: WindowStarts) -> Self {
        Self {
            starts,
            seen: Vec::new(),
            by_addr: HashMap::new(),
        }
    }

    /// Adds one stored piece of evidence (of `message`, for a bounce); `parse` reads
    /// its address, only the first time that address is met.
    pub fn add<E>(
        &mut self,
        (source, message): (Source, Option<MessageKey>),
        addr: &str,
        time: Timestamp,
        count: u32,
        parse: impl FnOnce(&str) -> Result<ClientAddr, E>,
    ) -> Result<(), E> {
        let side = self.starts.side(time);
        if let Some(ids) = self.by_addr.get(addr) {
            for &i in ids {
                let s = &mut self.seen[i];
                if s.source == source && s.message == message && self.starts.side(s.time) == side {
                    s.time = s.time.max(time);
                    s.count = s.count.saturating_add(count);
                    s.events = s.events.saturating_add(1);
                    return Ok(());
                }
            }
        }
        let seen = Seen {
            source,
            addr: parse(addr)?,
            time,
            count,
            events: 1,
            message,
        };
        self.by_addr
            .entry(addr.into())
            .or_default()
            .push(self.seen.len());
        self.seen.push(seen);
        Ok(())
    }

    pub fn into_seen(self) -> Vec<Seen> {
        self.seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::detect::{Known, Tally, Whitelist};
    use crate::model::SaslUser;

    #[test]
    fn folded_evidence_counts_as_the_rows_it_stands_for() {
        let cfg = Config::default();
        let d = &cfg.detection;
        let user = SaslUser::parse("a@example.com").unwrap();
        let wl = Whitelist::new(&cfg, &user, &[]);
        let at = Timestamp::from_millis(10 * 86_400_000);
        // Six hours of evidence, a row a minute: three addresses (one whitelisted),
        // logins and message counts, across both windows' starts.
        let mut rows = Vec::new();
        for minute in 0..360i64 {
            let time = at.minus(crate::model::Span::secs(60 * minute));
            let addr = ["198.51.100.7", "2001:db8::1", "10.0.0.2"][minute as usize % 3];
            let source = if minute % 4 == 0 {
                Source::Rate
            } else {
                Source::Smtp
            };
            rows.push((source, addr, time, 1 + minute as u32 % 7));
        }
        let mut fold = Fold::new(d.window_starts(at));
        let mut parsed = 0;
        for (source, addr, time, count) in &rows {
            fold.add((*source, None), addr, *time, *count, |a| {
                parsed += 1;
                ClientAddr::parse(a)
            })
            .unwrap();
        }
        let folded = fold.into_seen();
        assert!(folded.len() <= 3 * 2 * 3, "{} groups", folded.len());
        assert_eq!(parsed, folded.len());
        assert_eq!(folded.iter().map(|s| s.events).sum::<u32>(), 360);
        let one_each: Vec<Seen> = rows
            .iter()
            .map(|(source, addr, time, count)| Seen {
                source: *source,
                addr: ClientAddr::parse(addr).unwrap(),
                time: *time,
                count: *count,
                events: 1,
                message: None,
            })
            .collect();
        let none = crate::ownership::Ownership::none();
        assert_eq!(
            Tally::count(d, (&wl, &none, &Known::none()), at, &folded),
            Tally::count(d, (&wl, &none, &Known::none()), at, &one_each)
        );
    }

    #[test]
    fn an_unreadable_address_is_an_error() {
        let zero = Timestamp::from_millis(0);
        let mut fold = Fold::new(crate::config::WindowStarts {
            window: zero,
            spread: zero,
        });
        let r = fold.add(
            (Source::Smtp, None),
            "bad",
            Timestamp::from_millis(1),
            1,
            |a| ClientAddr::parse(a).map_err(|_| a.to_string()),
        );
        assert_eq!(r, Err("bad".to_string()));
    }
}
