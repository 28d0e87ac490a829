//! The text Postfix answers a blocked account with (`postfix.reject`).

/// Characters at most: mailguard-postfix-refused.conf reads the refusal back only from a
/// line of at most 800 characters, which must leave room for the client's fields.
const REJECT_MAX_CHARS: usize = 120;

/// `550 5.7.1 text`: a permanent or temporary SMTP code, its enhanced status code, and
/// one line of text, as Postfix's access(5) numeric action takes it.
pub(super) fn check_reject(v: &str) -> std::result::Result<(), String> {
    let mut parts = v.splitn(3, ' ');
    let code = parts.next().unwrap_or("");
    let dsn = parts.next().unwrap_or("");
    let text = parts.next().unwrap_or("");
    let code_ok =
        code.len() == 3 && code.starts_with(['4', '5']) && code.bytes().all(|b| b.is_ascii_digit());
    let dsn_ok = dsn.starts_with(code.get(..1).unwrap_or("x"))
        && dsn.split('.').count() == 3
        && dsn
            .split('.')
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    if !code_ok || !dsn_ok || text.trim().is_empty() {
        return Err(format!(
            "{v:?} is not \"CODE X.Y.Z text\" (e.g. \"550 5.7.1 Account suspended\")"
        ));
    }
    if v.chars().count() > REJECT_MAX_CHARS {
        return Err(format!(
            "is longer than {REJECT_MAX_CHARS} characters (the mailguard-smtp-refused filter \
             reads only short lines back)"
        ));
    }
    if v.chars().any(char::is_control) {
        return Err("contains a control character".into());
    }
    // mailguard-postfix-refused.conf reads refusals back and allows no ">" in them.
    if v.contains('>') {
        return Err(
            "contains \">\" (the mailguard-smtp-refused filter reads this text back)".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_reject, REJECT_MAX_CHARS};

    #[test]
    fn reject_codes() {
        assert!(check_reject("550 5.7.1 Account suspended").is_ok());
        assert!(check_reject("450 4.7.1 Try later").is_ok());
        assert!(check_reject("550 4.7.1 mismatch").is_err());
        assert!(check_reject("REJECT text").is_err());
        assert!(check_reject("550 5.7.1").is_err());
        assert!(check_reject("550 5.7.1 a\nb").is_err());
        assert!(check_reject("550 5.7.1 write to <postmaster@example.com>").is_err());
        let longest = format!("550 5.7.1 {}", "x".repeat(REJECT_MAX_CHARS - 10));
        assert!(check_reject(&longest).is_ok());
        assert!(check_reject(&format!("{longest}x")).is_err());
    }
}
