//! What the man pages say beyond the `--help` text: DESCRIPTION, EXAMPLES, FILES,
//! EXIT STATUS and SEE ALSO, per page. build.rs appends these to what clap_mangen
//! renders from src/cli.rs. Plain text; a paragraph's lines starting with "| " are its
//! terms (a command, a file), the lines after them their description.

/// Where install.sh (PREFIX /usr/local) and the package put the documentation.
pub const DOCS: &str = "/usr/share/doc/f2b-mailguard/ (the Debian package) or \
/usr/local/share/doc/f2b-mailguard/ (install.sh): README.md and docs/*.md";

const FILES: &str = "| /etc/f2b-mailguard/config.toml\n\
The configuration (--config, F2B_MAILGUARD_CONFIG). Every key has a default; \
`f2b-mailguard config check` shows the effective values.\n\n\
| /var/lib/f2b-mailguard/mailguard.db\n\
The SQLite database (key database; or a shared PostgreSQL URL). Its .spool beside \
it keeps logins that could not be stored yet.\n\n\
| /etc/fail2ban/jail.d/mailguard.conf, /etc/fail2ban/jail.d/mailguard.local\n\
The shipped jails (disabled) and the admin's settings that enable them.\n\n\
| /etc/fail2ban/jail.d/mailguard-backend.local\n\
The jails' log backend for this system, written by \
`f2b-mailguard generate fail2ban-backend`.\n\n\
| /etc/postfix/mailguard_sasl_access\n\
The check_sasl_access map of blocked accounts (key postfix.sasl_map).";

const EXIT: &str = "0 success; 1 a runtime failure (a database locked past \
busy_timeout, an action that failed: retrying may help); 2 invalid input or \
configuration (one line on standard error; retrying cannot help). record, check and \
doctor differ: see their pages.";

/// The extra sections of the page for the command `path` (e.g. `["status"]`; `[]`
/// for f2b-mailguard(1)): (heading, text).
pub fn sections(path: &[&str]) -> Vec<(&'static str, String)> {
    let (description, examples, exit): (&str, &str, &str) = match path {
        [] => (
            "Fail2ban's mailguard jails hand every successful Postfix, Dovecot or Roundcube \
login to `f2b-mailguard record`, which stores it and counts per account the distinct \
client networks, owners and countries in a sliding window, the accepted messages and \
bounces. An account past a threshold rises to notify (the admin is mailed), block \
(its sending is refused through Postfix's check_sasl_access map and its queued mail \
held) or lock (its password reset, its Dovecot sessions ended). Until the config \
says mode = \"enforce\" it only reports.\n\n\
Set-up: install, run `f2b-mailguard doctor` and do what it says; then enable the \
jails in /etc/fail2ban/jail.d/mailguard.local.",
            "| f2b-mailguard doctor\n\
Audit the set-up and print a fix for each problem.\n\n\
| f2b-mailguard status\n\
The accounts above normal, and what waits.\n\n\
| f2b-mailguard status alice@example.com\n\
One account: its level, networks and recent logins.\n\n\
| f2b-mailguard release alice@example.com\n\
Back to normal: unblocked, its held mail released.",
            EXIT,
        ),
        ["record"] => (
            "Run by Fail2ban's mailguard action for each matched line, never by hand: \
stores one login (or message, or bounce) and decides at once.",
            "| f2b-mailguard record --source smtp --jail mailguard-smtp --user alice@example.com --ip 198.51.100.23 --time 1765000000\n\
What the action runs (fail2ban-client shows the real line with `get JAIL action mailguard actionban`).",
            "0 stored, or kept in the spool when the database or config cannot be used \
(Fail2ban's retry would only add it twice); 1 the spool is full or cannot be written \
either; 2 input that can never be valid (counted, shown by status).",
        ),
        ["doctor"] => (
            "Checks the config, the database, the periodic worker, the ownership \
databases, Fail2ban (can it start, are the jails enabled, reading a written log, \
calling this binary with this config), Postfix and Dovecot, each finding with a fix \
to copy. A config that does not load is reported and the other checks still run.",
            "| f2b-mailguard doctor\n\
| f2b-mailguard doctor --json\n\
| f2b-mailguard doctor --send-test-mail",
            "0 nothing warns or fails (notes do not count); 1 something warns; 2 \
something fails.",
        ),
        ["check"] => (
            "A Nagios/Icinga plugin: one status line with performance data.",
            "| f2b-mailguard check --pending-age 10m",
            "0 OK; 1 WARNING (an account at notify, an action pending too long, logins \
spooled or rejected); 2 CRITICAL (an account blocked or locked, enforced or \
would-be; an action failed for good); 3 UNKNOWN (the database or config could not be \
read).",
        ),
        ["status"] => (
            "Without an account: the accounts above normal, pending actions and the spool. \
With one: its level history, networks and recent logins.",
            "| f2b-mailguard status\n| f2b-mailguard status alice@example.com\n| f2b-mailguard status --json",
            EXIT,
        ),
        ["release"] => (
            "Returns an account to normal: it leaves the block map, its held mail is \
released, and detection starts afresh from the release.",
            "| f2b-mailguard release alice@example.com",
            EXIT,
        ),
        ["generate"] => (
            "fail2ban-backend writes /etc/fail2ban/jail.d/mailguard-backend.local: the \
systemd journal for each mailguard jail whose log file is missing (Debian 12 without \
rsyslog), the log file for the others. Run it again after installing or removing \
rsyslog; doctor says when. A file the admin edited is kept. man and the shell \
names are for packaging.",
            "| f2b-mailguard generate fail2ban-backend && fail2ban-client reload\n\
| f2b-mailguard generate fail2ban-backend --stdout\n\
| f2b-mailguard generate man /tmp/man\n\
| f2b-mailguard generate bash > /usr/share/bash-completion/completions/f2b-mailguard",
            EXIT,
        ),
        ["run-actions"] => (
            "The worker: retries queued actions, stores what waits in the spool and \
converges this server (block map, held mail, kicks). Run every minute by \
f2b-mailguard-actions.timer or cron (`f2b-mailguard doctor` prints the lines).",
            "| f2b-mailguard run-actions\n| f2b-mailguard run-actions --follow",
            EXIT,
        ),
        _ => ("", "", EXIT),
    };
    let mut out = Vec::new();
    if !description.is_empty() {
        out.push(("DESCRIPTION", description.to_owned()));
    }
    if !examples.is_empty() {
        out.push(("EXAMPLES", examples.to_owned()));
    }
    out.push(("FILES", FILES.to_owned()));
    out.push(("EXIT STATUS", exit.to_owned()));
    let see = if path.is_empty() {
        format!("fail2ban-client(1), postconf(5), doveadm(1); the documentation in {DOCS}.")
    } else {
        format!("f2b-mailguard(1); the documentation in {DOCS}.")
    };
    out.push(("SEE ALSO", see));
    out
}

/// `text` as roff: paragraphs; one that starts with "| " lines shows them as terms.
pub fn roff(heading: &str, text: &str) -> String {
    let escape = |l: &str| {
        let l = l.replace('\\', "\\\\").replace('-', "\\-");
        if l.starts_with('.') || l.starts_with('\'') {
            format!("\\&{l}")
        } else {
            l
        }
    };
    let mut out = format!(".SH \"{heading}\"\n");
    for para in text.split("\n\n") {
        let lines: Vec<&str> = para.lines().collect();
        let terms = lines.iter().take_while(|l| l.starts_with("| ")).count();
        if terms == 0 {
            out.push_str(".PP\n");
        } else {
            out.push_str(".TP\n");
            for (i, t) in lines[..terms].iter().enumerate() {
                if i > 0 {
                    out.push_str(".TQ\n");
                }
                out.push_str(&format!(".B {}\n", escape(&t[2..])));
            }
        }
        for line in &lines[terms..] {
            out.push_str(&escape(line));
            out.push('\n');
        }
    }
    out
}
