//! The labelled detection-quality corpus: a seeded, fully deterministic mail log of
//! honest and compromised accounts, in the syslog format Postfix and Dovecot write on
//! Debian, the label of every account, and the owner (AS number, organisation,
//! country) of every client address, from a synthetic world of networks.
//!
//! Used by `examples/scenario` (the command) and `tests/quality.rs` (through
//! `#[path]`), so the test needs no nested cargo. Only `std`, `chrono` and `serde`.
//!
//! Everything is drawn from one SplitMix64 stream per account (forked from the seed),
//! so the same `Params` always give the same bytes. Log times start a fixed number of
//! days before END, a constant, never the clock.
//!
//! Modules: plan (the account classes, how many of each), world (owners and their
//! ranges), owners (owners.csv), names, people (honest persons), classes (providers,
//! newsletters), attacks, activity (what happens), render (log lines).
#![allow(dead_code)]

// Explicit paths: this file is also included by tests through `#[path]`.
#[path = "activity.rs"]
mod activity;
#[path = "attacks.rs"]
mod attacks;
#[path = "classes.rs"]
mod classes;
#[path = "harder.rs"]
mod harder;
#[path = "names.rs"]
mod names;
#[path = "owners.rs"]
mod owners;
#[path = "people.rs"]
mod people;
#[path = "plan.rs"]
mod plan;
#[path = "render.rs"]
mod render;
#[path = "rng.rs"]
mod rng;
#[path = "world.rs"]
mod world;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use activity::{Act, Gen};
use names::{BULK_NAMES, FIRST, LAST};
use people::{Kind, Person};
pub use plan::{plan, Class};
use render::Render;
pub use rng::Rng;
use world::World;

/// 2026-11-22 00:00:00 UTC. The corpus covers the `days` before it: a past stretch of
/// year-less syslog time, which Fail2ban reads as this year.
pub const END: i64 = 1_795_305_600;

const SEC: i64 = 1000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// The mail server itself (its own addresses are the documentation ones, no client's).
const HOST: &str = "mail";
const MX_NAME: &str = "mail.example.com";
const LIP4: &str = "192.0.2.25";
const LIP6: &str = "2001:db8::25";

pub const DOMAINS: &[&str] = &["example.com", "example.org", "example.net"];

#[derive(Debug, Clone)]
pub struct Params {
    pub seed: u64,
    pub days: u32,
    pub users: usize,
    /// Classes left out: their accounts live as multi_device instead.
    pub without: &'static [Class],
}

/// One line of labels.jsonl.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Label {
    pub user: String,
    pub class: String,
    pub compromised: bool,
    /// Log time (seconds since 1970) of the attacker's first login, if compromised.
    pub compromise_start: Option<i64>,
    /// Log time of the attacker's first message: later than `compromise_start` when
    /// the password was checked over IMAP first.
    #[serde(default)]
    pub first_message: Option<i64>,
    /// Log times of the attacker's messages, if compromised: what share of them got
    /// out before the account was blocked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attack_messages: Vec<i64>,
}

/// What the shipped filters must find in the log: every successful SASL submission,
/// IMAP and POP3 login, and every bounced recipient of a SASL-submitted message.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Expected {
    pub smtp: u64,
    pub imap: u64,
    pub pop3: u64,
    pub bounces: u64,
}

/// scenario.json: how the corpus was made, and the ground truth counts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub seed: u64,
    pub days: u32,
    pub users: usize,
    pub start: i64,
    pub end: i64,
    /// Log time of the first successful SASL submission, to check how Fail2ban read the
    /// year-less timestamps.
    pub first_login: i64,
    pub lines: usize,
    pub expected: Expected,
    /// owners.csv: owners and owned ranges written, and unannounced /24s in use.
    #[serde(default)]
    pub owners: usize,
    #[serde(default)]
    pub owner_ranges: usize,
    #[serde(default)]
    pub unowned_ranges: usize,
    /// The office NAT's address, which the admin whitelists (newsletter_office).
    #[serde(default)]
    pub office_nat: String,
}

pub struct Corpus {
    /// Log lines in time order, without newlines.
    pub log: Vec<String>,
    pub labels: Vec<Label>,
    pub meta: Meta,
    /// owners.csv (see `World::owners_csv`).
    pub owners: String,
}

impl Corpus {
    /// Writes DIR/mail.log, DIR/labels.jsonl, DIR/scenario.json and DIR/owners.csv.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(dir)?;
        let mut w = std::io::BufWriter::new(std::fs::File::create(dir.join("mail.log"))?);
        for l in &self.log {
            w.write_all(l.as_bytes())?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
        let mut labels = String::new();
        for l in &self.labels {
            labels.push_str(&serde_json::to_string(l).expect("label"));
            labels.push('\n');
        }
        std::fs::write(dir.join("labels.jsonl"), labels)?;
        std::fs::write(dir.join("owners.csv"), &self.owners)?;
        std::fs::write(
            dir.join("scenario.json"),
            serde_json::to_string_pretty(&self.meta).expect("meta") + "\n",
        )
    }
}

/// Account names: classes in random order, so names say nothing about the class.
fn accounts(order: &mut Rng, classes: &[Class]) -> Vec<String> {
    let mut combos: Vec<(usize, usize)> = (0..FIRST.len())
        .flat_map(|f| (0..LAST.len()).map(move |l| (f, l)))
        .collect();
    order.shuffle(&mut combos);
    let mut taken = HashSet::new();
    let mut bulk = 0;
    let mut people = Vec::new();
    for (i, c) in classes.iter().enumerate() {
        let domain = order.pick(DOMAINS);
        let local = if *c == Class::Newsletter {
            bulk += 1;
            let base = BULK_NAMES[(bulk - 1) % BULK_NAMES.len()];
            if bulk > BULK_NAMES.len() {
                format!("{base}{bulk}")
            } else {
                base.to_owned()
            }
        } else {
            let (f, l) = combos[i % combos.len()];
            if i >= combos.len() {
                format!("{}.{}{}", FIRST[f], LAST[l], i / combos.len())
            } else {
                format!("{}.{}", FIRST[f], LAST[l])
            }
        };
        let mut user = format!("{local}@{domain}");
        while !taken.insert(user.clone()) {
            user = format!("{local}{}@{domain}", order.range(2, 99));
        }
        people.push(user);
    }
    people
}

pub fn generate(params: &Params) -> Corpus {
    let days = params.days.clamp(1, 60) as i64;
    let start = END * 1000 - days * DAY;
    let end = END * 1000;
    let mut root = Rng::new(params.seed);
    let mut world_rng = root.fork(1);
    let mut world = World::new(&mut world_rng, start, end);

    let mut classes: Vec<Class> = plan(params.users, params.without)
        .into_iter()
        .flat_map(|(c, k)| std::iter::repeat_n(c, k))
        .collect();
    let mut order = root.fork(2);
    order.shuffle(&mut classes);
    let people = accounts(&mut order, &classes);
    world.users = people.clone();

    let mut g = Gen {
        world,
        acts: Vec::new(),
    };
    // Attacks come after a week of honest use when there is one (baselines form).
    let earliest = if days >= 8 { 7 * DAY } else { 6 * HOUR };
    let mut labels = Vec::new();
    for (i, (user, class)) in people.iter().zip(&classes).enumerate() {
        let mut rng = root.fork(1000 + i as u64);
        let mut times = None;
        match class {
            Class::Provider => g.provider(&mut rng, user, false),
            Class::ProviderPool => g.provider(&mut rng, user, true),
            Class::Newsletter => g.newsletter(&mut rng, user),
            Class::NewsletterOffice => g.newsletter_office(&mut rng, user),
            Class::VpnUser => g.vpn_user(&mut rng, user),
            Class::OutlookFetch => g.outlook_fetch(&mut rng, user),
            Class::SharedMailbox => g.shared_mailbox(&mut rng, user),
            Class::Crm => g.crm(&mut rng, user),
            _ => {
                let kind = match class {
                    Class::OfficeNat => Kind::Office,
                    Class::Traveller => Kind::Travel,
                    Class::Phone => Kind::Phone,
                    _ => Kind::Home,
                };
                let p = Person::new(&g.world, &mut rng, user, kind);
                g.live(&mut rng, &p);
                // The attack, after hours of honest use; the user goes on as before.
                if class.compromised() {
                    let (lo, hi) = match class {
                        Class::SlowDrip => (start + earliest.min(4 * HOUR), end - DAY),
                        Class::DripTwoDays => (start + earliest.min(4 * HOUR), end - 2 * DAY),
                        Class::QuietSender | Class::QuietSenderClean => {
                            (start + earliest, end - 10 * HOUR)
                        }
                        _ => (start + earliest, end - 4 * HOUR),
                    };
                    let t0 = rng.span(lo, hi.max(lo + HOUR)) / 1000 * 1000;
                    let first = match class {
                        Class::BotnetBurst => g.botnet(&mut rng, user, t0, false),
                        Class::CloudBotnet => g.botnet(&mut rng, user, t0, true),
                        Class::ImapChecker => g.imap_checker(&mut rng, user, t0),
                        Class::SlowDrip => g.drip(&mut rng, user, t0),
                        Class::HostingBotnet => g.hosting_botnet(&mut rng, user, t0),
                        Class::ResidentialProxy => g.residential_proxy(&mut rng, user, t0),
                        Class::QuietSender => g.quiet_sender(&mut rng, user, t0, 0.3),
                        Class::QuietSenderClean => g.quiet_sender(&mut rng, user, t0, 0.02),
                        Class::ImapTheft => g.imap_theft(&mut rng, user, t0),
                        Class::DripTwoDays => g.drip_two_days(&mut rng, user, t0),
                        _ => g.spammer(&mut rng, user, t0),
                    };
                    times = Some((t0 / 1000, first / 1000));
                }
            }
        }
        labels.push(Label {
            user: user.clone(),
            class: class.name().to_owned(),
            compromised: class.compromised(),
            compromise_start: times.map(|t| t.0),
            first_message: times.map(|t| t.1),
            attack_messages: Vec::new(),
        });
    }
    let mut noise = root.fork(3);
    g.noise(&mut noise);
    labels.sort_by(|a, b| a.user.cmp(&b.user));

    let mut render = Render::new(root.fork(4));
    let mut acts = std::mem::take(&mut g.acts);
    acts.sort_by_key(Act::time);
    // The attacker's messages, by account: in time order, as the acts are.
    let mut attack: std::collections::HashMap<&str, Vec<i64>> = std::collections::HashMap::new();
    for a in &acts {
        if let Act::Submit { user, msgs, .. } = a {
            for m in msgs.iter().filter(|m| m.spam) {
                attack.entry(user.as_str()).or_default().push(m.t / 1000);
            }
        }
    }
    for l in &mut labels {
        if let Some(times) = attack.remove(l.user.as_str()) {
            l.attack_messages = times;
        }
    }
    for a in &acts {
        render.act(&g.world, a);
    }
    let relays = g.world.remote.iter().map(|r| r.2);
    let (owners, n_owners, ranges) = g.world.owners_csv(acts.iter().map(Act::addr).chain(relays));
    let Render {
        mut lines,
        expected,
        first_login,
        ..
    } = render;
    lines.sort_by_key(|(t, seq, _)| (*t, *seq));
    let log: Vec<String> = lines.into_iter().map(|(_, _, l)| l).collect();
    Corpus {
        meta: Meta {
            seed: params.seed,
            days: days as u32,
            users: labels.len(),
            start: start / 1000,
            end: end / 1000,
            first_login: first_login.unwrap_or(start) / 1000,
            lines: log.len(),
            expected,
            owners: n_owners,
            owner_ranges: ranges,
            unowned_ranges: owners.lines().count() - 1 - ranges,
            office_nat: g.world.office_nat.to_string(),
        },
        log,
        labels,
        owners,
    }
}

/// Small helper for callers printing a summary.
pub fn summary(c: &Corpus) -> String {
    let mut s = String::new();
    for class in Class::ALL {
        let n = c.labels.iter().filter(|l| l.class == class.name()).count();
        if n == 0 {
            continue;
        }
        let _ = write!(s, "{}={n} ", class.name());
    }
    let _ = write!(
        s,
        "| {} lines; expected smtp={} imap={} pop3={} bounces={}; {} owners, {} ranges, {} unowned",
        c.meta.lines,
        c.meta.expected.smtp,
        c.meta.expected.imap,
        c.meta.expected.pop3,
        c.meta.expected.bounces,
        c.meta.owners,
        c.meta.owner_ranges,
        c.meta.unowned_ranges,
    );
    s
}
