//! The labelled corpus (examples/scenario) as the shipped jails see it: its mail.log
//! through the real `fail2ban-regex` with each shipped filter.

use std::path::Path;

use super::fail2ban;

/// (source, shipped filter with its arguments)
pub const FILTERS: [(&str, &str); 4] = [
    ("smtp", "mailguard-postfix-sasl"),
    ("imap", "mailguard-dovecot-login[service=imap]"),
    ("pop3", "mailguard-dovecot-login[service=pop3]"),
    ("bounces", "mailguard-postfix-bounce"),
];

/// One line a filter matched: a login (smtp, imap, pop3) or a bounced recipient.
pub struct Found {
    /// The log time as `fail2ban-regex` printed it, and parsed.
    pub time: String,
    pub t: f64,
    pub source: &'static str,
    /// Its place in that filter's output (log order).
    pub index: usize,
    pub user: String,
    pub ip: String,
}

/// What the shipped filters find in `dir/mail.log` (a written corpus), the four
/// `fail2ban-regex` runs side by side (they are most of the time). Sorted by time, then
/// source, then log order.
pub fn found(dir: &Path) -> Vec<Found> {
    let fd = fail2ban::filter_dir(dir);
    let log = dir.join("mail.log");
    let log = log.to_str().expect("utf-8 path");
    let outputs: Vec<(&'static str, String)> = std::thread::scope(|sc| {
        let handles: Vec<_> = FILTERS
            .iter()
            .map(|&(source, f)| {
                let fd = &fd;
                let output = Some("<time> <F-USER> <ip>");
                (
                    source,
                    sc.spawn(move || fail2ban::regex(log, f, fd, output)),
                )
            })
            .collect();
        handles
            .into_iter()
            .map(|(src, h)| (src, h.join().expect("fail2ban-regex thread")))
            .collect()
    });
    let mut found = Vec::new();
    for (source, text) in outputs {
        for (index, line) in text.lines().enumerate() {
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f.len(), 3, "fail2ban-regex printed {line:?}");
            found.push(Found {
                time: f[0].into(),
                t: f[0].parse().expect("time"),
                source,
                index,
                user: f[1].into(),
                ip: f[2].into(),
            });
        }
    }
    found.sort_by(|a, b| {
        a.t.total_cmp(&b.t)
            .then(a.source.cmp(b.source))
            .then(a.index.cmp(&b.index))
    });
    found
}
