//! Postfix: the check_sasl_access map (who may not send) and the queue (hold, release,
//! purge an account's mail).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::{exec, postcat};
use crate::config::Config;
use crate::detect::PostfixAnswer;
use crate::files::write_atomically;
use crate::model::{fold_case, SaslUser};

/// Whether a login can be a key in a Postfix map source file: a leading `#` makes
/// the line a comment, and Postfix drops a line with an unbalanced `"` (tested with
/// postmap 3.7). SaslUser already excludes whitespace and control characters.
pub fn map_key_ok(user: &SaslUser) -> bool {
    !user.as_str().starts_with('#') && !user.as_str().contains('"')
}

/// The text after `HOLD` in the map: fixed, so no attacker text reaches Postfix's log
/// through it, and without ">" (see the mailguard-postfix-refused filter).
pub const HOLD_TEXT: &str = "quarantined after suspicious logins";

/// The map's text for the accounts with an answer (see `detect::PostfixAnswer`), and
/// how many it lists. The database is the truth, so the whole map is rewritten from
/// it: a crash half-way or a release in between cannot leave a stale entry. Accounts
/// that cannot be map keys are left out (see `map_key_ok`); the caller reports them.
pub fn sasl_map_text(cfg: &Config, entries: &[(SaslUser, PostfixAnswer)]) -> (String, usize) {
    let p = &cfg.contain.postfix;
    let mut text = String::from(
        "# Written by f2b-mailguard: accounts blocked (REJECT) or quarantined (HOLD). Do not\n\
         # edit; use `f2b-mailguard release USER`.\n",
    );
    let mut written = 0;
    for (user, answer) in entries.iter().filter(|(u, _)| map_key_ok(u)) {
        let action = match answer {
            PostfixAnswer::Dunno => continue,
            PostfixAnswer::Hold => format!("HOLD {HOLD_TEXT}"),
            PostfixAnswer::Reject => p.reject.clone(),
        };
        text.push_str(user.as_str());
        text.push(' ');
        text.push_str(&action);
        text.push('\n');
        written += 1;
    }
    (text, written)
}

/// `type:path` of the map, as Postfix names it.
pub fn sasl_map_name(cfg: &Config) -> String {
    let p = &cfg.contain.postfix;
    format!("{}:{}", p.map_type, p.sasl_map.display())
}

/// Replaces the map's source with `text` atomically (temp file + rename), then builds
/// the indexed map with postmap.
pub fn build_sasl_map(cfg: &Config, text: &str) -> Result<(), String> {
    let p = &cfg.contain.postfix;
    let map = &p.sasl_map;
    write_atomically(map, text.as_bytes(), 0o644, None)
        .map_err(|e| format!("{}: {e}", map.display()))?;
    let arg = sasl_map_name(cfg);
    let ran = exec::run(
        &p.postmap,
        &[&arg],
        None,
        cfg.contain.actions.command_timeout,
    )?;
    // postmap exits 0 even when it skips a line it cannot parse; its warnings are failures.
    if !ran.success() || ran.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        return Err(ran.failure(&p.postmap));
    }
    Ok(())
}

/// One line of `postqueue -j`; other fields are ignored, as Postfix asks.
#[derive(Debug, Deserialize)]
pub struct QueuedMessage {
    pub queue_name: String,
    pub queue_id: String,
    #[serde(default)]
    pub sender: String,
    #[serde(default)]
    pub arrival_time: Option<f64>,
    #[serde(default)]
    pub recipients: Vec<serde::de::IgnoredAny>,
}

/// Parses `postqueue -j` output. Lines that are not JSON objects of the expected shape
/// are skipped: Postfix may print warnings, and a message can vanish while listing.
/// showq reads one queue directory after another, so a message that moves between
/// two of them meanwhile (incoming to active to deferred) can be listed twice: each
/// queue id is kept once, as listed last.
pub fn parse_queue(json_lines: &[u8]) -> Vec<QueuedMessage> {
    let mut listed: Vec<QueuedMessage> = Vec::new();
    let mut at: BTreeMap<String, usize> = BTreeMap::new();
    let parsed = String::from_utf8_lossy(json_lines)
        .lines()
        .filter_map(|l| serde_json::from_str::<QueuedMessage>(l).ok())
        // Queue ids are [0-9A-Za-z]; anything else is not passed to postsuper.
        .filter(|m| !m.queue_id.is_empty() && m.queue_id.bytes().all(|b| b.is_ascii_alphanumeric()))
        .collect::<Vec<_>>();
    for m in parsed {
        match at.get(&m.queue_id) {
            Some(&i) => listed[i] = m,
            None => {
                at.insert(m.queue_id.clone(), listed.len());
                listed.push(m);
            }
        }
    }
    listed
}

pub fn queue(cfg: &Config) -> Result<Vec<QueuedMessage>, String> {
    let p = &cfg.contain.postfix;
    let ran = exec::run(
        &p.postqueue,
        &["-j"],
        None,
        cfg.contain.actions.command_timeout,
    )?;
    if !ran.success() {
        return Err(ran.failure(&p.postqueue));
    }
    Ok(parse_queue(&ran.stdout))
}

/// The logins behind queued messages read so far, by `QueuedMessage::key` ("" for
/// none): a queue file's login never changes, so each is read with postcat once.
pub type Submitters = BTreeMap<String, String>;

impl QueuedMessage {
    /// The message over time: Postfix reuses short queue ids once a message is gone.
    pub fn key(&self) -> String {
        format!(
            "{}@{}",
            self.queue_id,
            self.arrival_time.unwrap_or(0.0) as i64
        )
    }
}

/// The SASL login behind each of `messages`, in order ("" for none). `known` keeps
/// the logins read: a message is read with postcat once (it keeps its queue id and
/// arrival time when it moves to or from the hold queue).
pub fn logins(
    cfg: &Config,
    messages: &[QueuedMessage],
    known: &mut Submitters,
) -> Result<Vec<String>, String> {
    let unread: Vec<&str> = (messages.iter())
        .filter(|m| !known.contains_key(&m.key()))
        .map(|m| m.queue_id.as_str())
        .collect();
    let read = postcat::submitters(cfg, &unread)?;
    let mut found = Vec::with_capacity(messages.len());
    for m in messages {
        let key = m.key();
        let login = match known.get(&key) {
            Some(l) => l.clone(),
            None => {
                let l = read.get(&m.queue_id).map(|u| u.as_str().to_owned());
                let l = l.unwrap_or_default();
                // A file still arriving (maildrop, incoming) may not be whole yet.
                if !matches!(m.queue_name.as_str(), "maildrop" | "incoming") {
                    known.insert(key, l.clone());
                }
                l
            }
        };
        found.push(login);
    }
    Ok(found)
}

/// Forgets the logins of messages no longer in the queue (`listed`: all of it).
pub fn forget_unlisted(known: &mut Submitters, listed: &[QueuedMessage]) {
    let listed: BTreeSet<String> = listed.iter().map(QueuedMessage::key).collect();
    known.retain(|k, _| listed.contains(k));
}

/// The account among `users` a message (with its `login`) belongs to: the one that
/// submitted it (its login is in the queue file, whatever envelope sender a botnet
/// chose), else the one whose address is its envelope sender (an account's own mail
/// before `postcat` could tell, and the iRedMail rule login = address; holding a
/// stranger's forgery of it loses nothing).
pub fn owner_among<'a>(
    users: &'a [SaslUser],
    m: &QueuedMessage,
    login: &str,
) -> Option<&'a SaslUser> {
    let sender = fold_case(&m.sender);
    (users.iter().find(|u| u.as_str() == login))
        .or_else(|| users.iter().find(|u| u.as_str() == sender))
}

/// Runs `postsuper FLAG -` [QUEUE] with the ids on stdin; returns how many were given.
pub fn postsuper(
    cfg: &Config,
    flag: &str,
    queue: Option<&str>,
    ids: &[String],
) -> Result<usize, String> {
    if ids.is_empty() {
        return Ok(0);
    }
    let p = &cfg.contain.postfix;
    let mut args = vec![flag, "-"];
    args.extend(queue);
    let input = ids.join("\n") + "\n";
    let ran = exec::run(
        &p.postsuper,
        &args,
        Some(input.as_bytes()),
        cfg.contain.actions.command_timeout,
    )?;
    if !ran.success() {
        return Err(ran.failure(&p.postsuper));
    }
    Ok(ids.len())
}

/// Asks for immediate delivery of released messages (`postqueue -i ID` each):
/// `postsuper -H` moves them to the deferred queue, which Postfix would otherwise
/// only scan at its next queue run, minutes later. A failure only delays them.
pub fn deliver_now(cfg: &Config, ids: &[String]) {
    let p = &cfg.contain.postfix;
    for id in ids {
        let _ = exec::run(
            &p.postqueue,
            &["-i", id],
            None,
            cfg.contain.actions.command_timeout,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_json_lines() {
        let out = br#"{"queue_name": "deferred", "queue_id": "32BC4C620F", "arrival_time": 1, "sender": "a@example.test", "recipients": []}
postqueue: warning: Mail system is down -- accessing queue directly
{"queue_name": "hold", "queue_id": "A1B6CC6235", "sender": "", "recipients": [{"address": "x@y"}]}
{"queue_name": "active", "queue_id": "BAD;ID", "sender": "a@example.test"}
"#;
        let q = parse_queue(out);
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].queue_id, "32BC4C620F");
        assert_eq!(q[1].sender, "");
    }

    #[test]
    fn a_message_listed_in_two_queues_while_it_moves_is_one_message() {
        let out =
            br#"{"queue_name": "incoming", "queue_id": "32BC4C620F", "sender": "a@example.test"}
{"queue_name": "active", "queue_id": "A1B6CC6235", "sender": "b@example.test"}
{"queue_name": "deferred", "queue_id": "32BC4C620F", "sender": "a@example.test"}
"#;
        let q = parse_queue(out);
        let listed: Vec<(&str, &str)> = (q.iter())
            .map(|m| (m.queue_id.as_str(), m.queue_name.as_str()))
            .collect();
        assert_eq!(
            listed,
            [("32BC4C620F", "deferred"), ("A1B6CC6235", "active")]
        );
    }
}
