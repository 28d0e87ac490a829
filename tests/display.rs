//! Account names are attacker-chosen: what `status`, `check` and the admin mail show of
//! them must not reorder, hide or imitate text, nor split or decode into something else.
//! JSON keeps the exact name.

use crate::support;

use std::time::Duration;

use support::smtp_sink::{decode_word, quoted_printable, SmtpSink};
use support::{now, Sandbox};

/// Right-to-left override: the name reads `alice@example.com` backwards-reversed.
const BIDI: &str = "\u{202e}moc.elpmaxe@ecila";
/// A zero-width space inside `alice`.
const ZERO_WIDTH: &str = "al\u{200b}ice@example.com";
/// A Cyrillic `а` for the Latin one.
const CONFUSABLE: &str = "\u{430}lice@example.com";

/// Characters that must never reach a terminal or a mail raw.
fn sneaky(text: &str) -> Vec<char> {
    text.chars()
        .filter(|c| ['\u{202e}', '\u{200b}', '\u{430}'].contains(c))
        .collect()
}

#[test]
fn status_shows_tricky_names_escaped_and_json_keeps_them_exact() {
    let s = Sandbox::new("");
    let t = now() - 60;
    for user in [BIDI, ZERO_WIDTH, CONFUSABLE] {
        s.burst(user, 3, t);
    }
    let text = s.ok(&["status"]);
    assert!(sneaky(&text).is_empty(), "{text}");
    for shown in [
        r"\u{202e}moc.elpmaxe@ecila",
        r"al\u{200b}ice@example.com",
        r"\u{430}lice@example.com",
    ] {
        assert!(text.contains(shown), "{shown} not in\n{text}");
    }
    let detail = s.ok(&["status", "--", BIDI]);
    assert!(sneaky(&detail).is_empty(), "{detail}");
    assert!(
        detail.starts_with(r"\u{202e}moc.elpmaxe@ecila: ok"),
        "{detail}"
    );

    let json = s.status(now());
    let users: Vec<&str> = json["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .filter_map(|a| a["user"].as_str())
        .collect();
    for user in [BIDI, ZERO_WIDTH, CONFUSABLE] {
        assert!(users.contains(&user), "{user:?} not exact in {users:?}");
    }
}

#[test]
fn a_pipe_in_a_name_cannot_split_checks_perfdata() {
    let s = Sandbox::new("");
    // 11 networks in the hour: notify and (in warn mode) would block.
    s.burst("x|notify=0;;;@example.com", 11, now() - 60);
    s.burst(BIDI, 11, now() - 60);
    let out = s.run(&["check"]);
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(2), "{line}");
    assert_eq!(
        line.matches('|').count(),
        1,
        "one text/perfdata split: {line}"
    );
    let (text, perf) = line.split_once('|').expect("perfdata");
    assert!(text.contains(r"x\u{7c}notify=0;;;@example.com"), "{text}");
    assert!(text.contains(r"\u{202e}moc.elpmaxe@ecila"), "{text}");
    assert!(sneaky(&line).is_empty(), "{line}");
    assert!(perf.contains(" would_block=2 "), "{perf}");
}

/// A header as a lenient mail reader shows it: any `=?charset?q|b?text?=` decoded,
/// even one not followed by white space (`=?…?=:`), as many readers do. One pass:
/// text that decoding produced is not decoded again.
fn leniently_decoded(raw: &str) -> String {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(start) = rest.find("=?") {
        out.push_str(&rest[..start]);
        let word = &rest[start + 2..];
        let parts: Vec<&str> = word.splitn(3, '?').collect();
        let end = parts.get(2).and_then(|p| p.find("?="));
        let (Some(end), [_, enc, text]) = (end, parts.as_slice()) else {
            out.push_str("=?");
            rest = word;
            continue;
        };
        let text = &text[..end];
        let bytes = decode_word(enc, text);
        out.push_str(&String::from_utf8_lossy(&bytes));
        rest = &parts[2][end + 2..];
        // Folding white space between two encoded words is not text.
        if rest.trim_start().starts_with("=?") && !out.ends_with(' ') {
            rest = rest.trim_start();
        }
    }
    out.push_str(rest);
    out
}

/// The Subject header as sent: folded lines joined.
fn raw_subject(data: &str) -> String {
    let mut value: Option<String> = None;
    for line in data.lines().take_while(|l| !l.is_empty()) {
        match &mut value {
            Some(v) if line.starts_with([' ', '\t']) => v.push_str(line),
            Some(_) => break,
            None => {
                if let Some(v) = line.strip_prefix("Subject:") {
                    value = Some(v.trim().to_owned());
                }
            }
        }
    }
    value.expect("a Subject header")
}

#[test]
fn the_admin_mail_shows_names_escaped_and_its_subject_decodes_to_the_literal_name() {
    let sink = SmtpSink::start();
    let s = Sandbox::acting(&format!(
        "mode = \"warn\"\n\
         [actions]\nretry_base = \"1s\"\ncommand_timeout = \"10s\"\n\
         [mail]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\nfrom = \"mailguard@example.test\"\nto = [\"postmaster@example.test\"]\n\
         [postfix]\nsasl_map = \"/nonexistent/map\"\n",
        sink.port
    ));
    // An ASCII name that a mail reader would show as `alice@example.test`.
    let encoded = "=?utf-8?q?alice@example.test?=";
    s.burst(encoded, 11, now() - 300);
    s.burst(BIDI, 11, now() - 300);
    let mails = sink.wait_for(4, Duration::from_secs(30));
    let subjects: Vec<String> = mails
        .iter()
        .map(|m| leniently_decoded(&raw_subject(&m.data)))
        .collect();
    for level in ["notify", "would block"] {
        let want = format!("[f2b-mailguard] {encoded}: {level}");
        assert!(subjects.contains(&want), "{want:?} not in {subjects:?}");
        let want = format!(r"[f2b-mailguard] \u{{202e}}moc.elpmaxe@ecila: {level}");
        assert!(subjects.contains(&want), "{want:?} not in {subjects:?}");
    }
    assert!(
        !subjects.iter().any(|s| s.contains(" alice@example.test")),
        "{subjects:?}"
    );
    let bidi = mails
        .iter()
        .find(|m| m.data.contains("moc.elpmaxe"))
        .expect("the mail about the bidi name");
    assert!(bidi.data.is_ascii(), "{}", bidi.data);
    let body = quoted_printable(&bidi.data);
    assert!(sneaky(&body).is_empty(), "{body}");
    assert!(
        body.contains(r"flagged the mail account \u{202e}moc.elpmaxe@ecila."),
        "{body}"
    );
    // The release line names the account exactly, with nothing raw in it.
    let release = r#"f2b-mailguard release -- "$(printf '\342\200\256moc.elpmaxe@ecila')""#;
    assert!(body.contains(release), "{body}");
    let sh = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"printf %s "$(printf '\342\200\256moc.elpmaxe@ecila')""#)
        .output()
        .expect("sh");
    assert_eq!(String::from_utf8_lossy(&sh.stdout), BIDI);
}

#[test]
fn status_user_shows_each_action_outcome_whole() {
    // Nothing listens on the mail port and the map's directory does not exist: the
    // admin mail's and the SASL block's errors are long.
    let port = support::smtp_sink::free_port();
    let s = Sandbox::acting(&format!(
        "mode = \"enforce\"\n[actions]\nmax_attempts = 1\n\
         [mail]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\nto = [\"postmaster@example.test\"]\n\
         [postfix]\nsasl_map = \"/nonexistent/a/rather/long/directory/name/mailguard_sasl_access\"\n"
    ));
    s.burst("alice@example.com", 11, now() - 300);
    // Every action of both escalations run (notify's, then block's, whose queue hold
    // succeeds): waiting for "all failed" raced the block's actions being queued.
    let d = s.wait_user("alice@example.com", "actions run", |d| {
        let actions = d["actions"].as_array().unwrap();
        actions.iter().any(|a| a["level"] == "block")
            && actions.iter().all(|a| a["state"] != "pending")
    });
    let text = s.ok(&["status", "alice@example.com"]);
    // The SASL block and the admin mail fail at notify and at block, with long errors
    // (the queue hold, where it fails, fails with a short one).
    let long: Vec<&serde_json::Value> = (d["actions"].as_array().unwrap().iter())
        .filter(|a| a["kind"] == "sasl_block" || a["kind"] == "mail")
        .collect();
    assert_eq!(long.len(), 4, "{d:#}");
    for a in long {
        assert_eq!(a["state"], "failed", "{a:#}");
        let outcome = a["outcome"].as_str().unwrap();
        assert!(outcome.len() > 72, "{outcome}");
        assert!(text.contains(&format!("      {outcome}\n")), "{text}");
    }
}
