//! The text `status` prints for a person: the overview and one account's detail,
//! in columns that stay aligned whatever the names hold.

use super::Overview;
use crate::config::Config;
use crate::detect::PostfixAnswer;
use crate::model::display::shown;
use crate::model::{Level, Timestamp};
use crate::report::Detail;

pub(super) fn when(secs: f64) -> String {
    Timestamp::from_millis((secs * 1000.0) as i64).rfc3339()
}

/// Cuts to `width` characters, marking the cut, so columns stay aligned.
pub(super) fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('~');
    out
}

/// Breaks `s` into lines of at most `width` characters at spaces, a word longer than
/// that into pieces: a reason is read whole, never cut.
pub(super) fn wrap(s: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut len = 0;
    for word in s.split(' ').filter(|w| !w.is_empty()) {
        let mut chars: Vec<char> = word.chars().collect();
        if len > 0 && len + 1 + chars.len() <= width {
            line.push(' ');
            line.extend(&chars);
            len += 1 + chars.len();
            continue;
        }
        if len > 0 {
            lines.push(std::mem::take(&mut line));
        }
        while chars.len() > width {
            lines.push(chars.drain(..width).collect());
        }
        len = chars.len();
        line = chars.into_iter().collect();
    }
    if len > 0 || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// Prints `s` wrapped to `width`, each line after `indent`.
fn print_wrapped(indent: &str, s: &str, width: usize) {
    for line in wrap(s, width) {
        println!("{indent}{line}");
    }
}

/// Colour only for a person at a terminal, and never with NO_COLOR set (no-color.org).
fn use_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Red for block and lock, yellow for notify; the padding stays outside the codes.
fn paint(text: &str, level: Level, colour: bool) -> String {
    let code = match level {
        Level::Block | Level::Lock => "31",
        Level::Notify => "33",
        Level::Ok => return text.to_owned(),
    };
    if !colour {
        return text.to_owned();
    }
    let trimmed = text.trim_end();
    format!("\x1b[{code}m{trimmed}\x1b[0m{}", &text[trimmed.len()..])
}

pub(super) fn print_overview(cfg: &Config, o: &Overview) {
    let colour = use_colour();
    println!(
        "mode {} · window {} · as of {}",
        o.mode,
        cfg.detection.window,
        when(o.at)
    );
    if o.actions.pending + o.actions.failed > 0 {
        let oldest = o
            .actions
            .oldest_pending
            .map(|t| format!(", oldest queued {}", when(t)))
            .unwrap_or_default();
        println!(
            "actions: {} pending, {} failed{oldest} (status USER shows them)",
            o.actions.pending, o.actions.failed
        );
    }
    for problem in o.backlog.problems() {
        println!("{problem}");
    }
    if o.accounts.is_empty() {
        println!(
            "no account logged in during the last {}",
            cfg.detection.window
        );
        return;
    }
    println!(
        "{:<30} {:<12} {:>5} {:>6} {:>5}  LAST SEEN (UTC)",
        "USER", "LEVEL", "NETS", "LOGINS", "MSGS"
    );
    for r in &o.accounts {
        let last = r
            .last_seen
            .map(|t| when(t)[..16].to_owned())
            .unwrap_or_default();
        println!(
            "{:<30} {} {:>5} {:>6} {:>5}  {}",
            fit(&r.user.shown(), 30),
            paint(&format!("{:<12}", r.state), r.level, colour),
            r.networks,
            r.logins,
            r.messages,
            last
        );
        if r.level > Level::Ok || !r.reason.is_empty() && r.networks > 1 {
            print_wrapped("    ", &shown(&r.reason), 74);
        }
        // What fires now, when the stored reason (of the last change) says otherwise.
        let now = r.signals.join("; ");
        if !now.is_empty() && now != r.reason {
            print_wrapped("    ", &format!("now: {}", shown(&now)), 74);
        }
    }
}

pub(super) fn print_detail(cfg: &Config, d: &Detail) {
    println!(
        "{}: {} (mode {})",
        d.user.shown(),
        d.state,
        cfg.mode.as_str()
    );
    if let Some(from) = d.counting_from {
        println!("counting logins from {} (last release)", when(from));
    }
    if d.postfix == PostfixAnswer::Hold {
        println!("quarantined: Postfix holds its new mail (release sends it)");
    }
    println!(
        "sent {} message(s), {} hard bounce(s) in the last {}",
        d.messages, d.bounces, cfg.detection.window
    );
    if d.refused_logins > 0 && d.refused_counted {
        // The botnet still has the password: Postfix refuses it, we keep counting it.
        println!(
            "refused {} login(s) with the right password from {} network(s) in the last {} \
             (blocked in Postfix; counted as smtp, shown as smtp-refused below)",
            d.refused_logins, d.refused_networks, cfg.detection.window
        );
    } else if d.refused_logins > 0 {
        // Postfix refuses only a blocked account: someone else wrote these lines.
        println!(
            "NOT COUNTED: {} refused login(s) from {} network(s) in the last {} while the \
             account is not blocked in enforce mode (Postfix cannot have refused it: \
             the lines were shaped by a client or forged; shown as smtp-refused below)",
            d.refused_logins, d.refused_networks, cfg.detection.window
        );
    }
    for s in &d.signals {
        print_wrapped("", &format!("now: {s}"), 78);
    }
    println!();
    // The owner column only when an ownership database knows one, the servers' when
    // the store does (not for logins stored before servers were).
    let owners = d.networks.iter().any(|n| n.owner().is_some());
    let servers = d.networks.iter().any(|n| !n.servers.is_empty());
    let server_col = |names: &str| {
        if servers {
            format!("{:<12} ", fit(names, 12))
        } else {
            String::new()
        }
    };
    println!(
        "{:<24} {:<16} {:<16} {}{:>6}  {}",
        "NETWORK",
        "FIRST SEEN",
        "LAST SEEN",
        server_col("SERVERS"),
        "COUNT",
        if owners {
            "SOURCES       OWNER"
        } else {
            "SOURCES"
        }
    );
    for n in &d.networks {
        let sources: Vec<&str> = n.sources.iter().map(|s| s.as_str()).collect();
        let mut sources = sources.join(",");
        if n.whitelisted {
            sources.push_str(" (whitelisted)");
        }
        let line = match n.owner() {
            Some(owner) => format!("{sources:<13} {}", fit(&owner, 48)),
            None => sources,
        };
        let names: Vec<&str> = n.servers.iter().map(String::as_str).collect();
        println!(
            "{:<24} {:<16} {:<16} {}{:>6}  {}",
            fit(&n.network, 24),
            &when(n.first_seen)[..16],
            &when(n.last_seen)[..16],
            server_col(&shown(&names.join(","))),
            n.count,
            line.trim_end()
        );
    }
    println!();
    if d.history.is_empty() {
        println!("level history: none (never flagged)");
        return;
    }
    print_history(d);
    if d.actions.is_empty() {
        return;
    }
    println!("\nactions:");
    for a in &d.actions {
        let when_done = a.updated.or(Some(a.created)).map(when).unwrap_or_default();
        let retry = a
            .next_attempt
            .map(|t| format!(", next try {}", when(t)))
            .unwrap_or_default();
        let on = a
            .server
            .as_deref()
            .map(|s| format!(" on {}", shown(s)))
            .unwrap_or_default();
        println!(
            "  #{} {} ({}){on}: {} after {} attempt(s), {when_done}{retry}",
            a.id,
            a.kind,
            a.level.describe(a.enforced),
            a.state,
            a.attempts
        );
        // Whole: it is short, and a cut queue id or error is of no use.
        if let Some(o) = &a.outcome {
            println!("      {}", shown(o));
        }
    }
}

fn print_history(d: &Detail) {
    println!("level history:");
    for h in &d.history {
        println!(
            "  {}  {} -> {}  by {}",
            when(h.time),
            h.from,
            h.to.describe(h.enforced),
            shown(&h.actor)
        );
        print_wrapped("      ", &shown(&h.reason), 72);
    }
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wrap_keeps_every_character_within_the_width() {
        let reason = "smtp: 12 new networks of 1 owner/1h > 10; new to this account: \
                      AS64500 Example Hosting Ltd, 198.51.0.0/16; owners: AS64500 ×12";
        let lines = wrap(reason, 30);
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.chars().count() <= 30), "{lines:?}");
        assert_eq!(lines.join(" "), reason);
        let long = "x".repeat(65);
        assert_eq!(
            wrap(&long, 30),
            vec!["x".repeat(30), "x".repeat(30), "x".repeat(5)]
        );
        assert_eq!(wrap("", 30), vec![String::new()]);
    }
}
