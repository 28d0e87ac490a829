//! Who submitted a queued message: the SASL login Postfix wrote into the queue file
//! (`named_attribute: sasl_username=…` in `postcat -e`). Unlike the envelope sender,
//! which any client on port 25 can set to any address, only smtpd writes it, and only
//! after a successful AUTH (or XCLIENT LOGIN= from a host Postfix trusts).

use std::collections::BTreeMap;

use super::exec;
use crate::config::Config;
use crate::model::SaslUser;

/// Queue ids per postcat run: well below any argv limit, few processes for a big queue.
const IDS_PER_RUN: usize = 500;

/// The SASL account behind each of `ids` that has one. Messages without a login (mail
/// from outside, local sendmail) are absent from the map. A message that leaves the
/// queue while we look is skipped.
pub fn submitters(cfg: &Config, ids: &[&str]) -> Result<BTreeMap<String, SaslUser>, String> {
    let postcat = &cfg.contain.postfix.postcat;
    let timeout = cfg.contain.actions.command_timeout;
    let mut found = BTreeMap::new();
    let mut rest: Vec<&str> = ids.to_vec();
    while !rest.is_empty() {
        let batch: Vec<&str> = rest.iter().take(IDS_PER_RUN).copied().collect();
        let mut args = vec!["-e", "-q"];
        args.extend(&batch);
        let ran = exec::run(postcat, &args, None, timeout)?;
        let read = parse(&ran.stdout, &mut found);
        if ran.success() {
            rest.drain(..batch.len());
            continue;
        }
        // postcat stops at the first id it cannot open: a message delivered or deleted
        // since the listing. Skip it and go on after it; anything else is a failure.
        let gone = vanished(&ran.stderr)
            .and_then(|id| batch.iter().position(|b| *b == id))
            .filter(|at| *at >= read);
        match gone {
            Some(at) => {
                rest.drain(..=at);
            }
            None => return Err(ran.failure(postcat)),
        }
    }
    Ok(found)
}

/// Reads `postcat -e` output into `found` (queue id → login); returns how many
/// messages it saw. Only a record at the start of a line inside a message's envelope
/// section counts: the sender and recipients are printed after their own labels, so
/// no address can pass for a record.
fn parse(out: &[u8], found: &mut BTreeMap<String, SaslUser>) -> usize {
    let mut seen = 0;
    let mut current: Option<String> = None;
    for line in String::from_utf8_lossy(out).lines() {
        if let Some(header) = line.strip_prefix("*** ") {
            current = header
                .strip_prefix("ENVELOPE RECORDS ")
                .and_then(|h| h.strip_suffix(" ***"))
                .and_then(|path| path.rsplit('/').next())
                .map(str::to_owned);
            seen += usize::from(current.is_some());
            continue;
        }
        let (Some(id), Some(name)) = (
            current.as_ref(),
            line.strip_prefix("named_attribute: sasl_username="),
        ) else {
            continue;
        };
        if let Ok(user) = SaslUser::parse(name) {
            found.entry(id.clone()).or_insert(user);
        }
    }
    seen
}

/// The queue id in `postcat: fatal: open queue file ID: No such file or directory`.
fn vanished(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    let rest = text.split("open queue file ").nth(1)?;
    let id = rest.split(':').next()?;
    rest.contains("No such file")
        .then(|| id.to_owned())
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_per_queue_file_and_nothing_from_addresses() {
        let out = b"*** ENVELOPE RECORDS deferred/D/D6B0698E139 ***
named_attribute: rewrite_context=local
sender: named_attribute: sasl_username=victim@example.test
recipient: y@remote.example
*** MESSAGE CONTENTS deferred/D/D6B0698E139 ***
*** ENVELOPE RECORDS deferred/D/D45C598E133 ***
named_attribute: sasl_method=PLAIN
named_attribute: sasl_username=Alice@Example.test
sender: Alice@example.test
*** MESSAGE FILE END deferred/D/D45C598E133 ***
";
        let mut found = BTreeMap::new();
        assert_eq!(parse(out, &mut found), 2);
        assert_eq!(found.len(), 1);
        assert_eq!(found["D45C598E133"].as_str(), "alice@example.test");
    }

    #[test]
    fn a_vanished_message_is_named() {
        let err = b"/usr/sbin/postcat: fatal: open queue file NOSUCH1: No such file or directory\n";
        assert_eq!(vanished(err).as_deref(), Some("NOSUCH1"));
        assert_eq!(
            vanished(b"postcat: fatal: open queue file X: Permission denied"),
            None
        );
    }
}
