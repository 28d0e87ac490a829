//! Attacker-chosen text (account names, envelope senders, command output) as a person
//! reads it in a terminal or a mail. Everything outside printable ASCII is escaped as
//! `\u{202e}`: bidi overrides cannot reorder a line, zero-width and other format
//! characters cannot hide, and a Cyrillic `а` cannot pass for an `a`. A backslash is
//! doubled, so no plain name reads like an escaped one. JSON keeps the exact text.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::SaslUser;

/// `text` with every character outside printable ASCII, and `\`, escaped.
pub fn shown(text: &str) -> Cow<'_, str> {
    if text.chars().all(|c| plain(c) && c != '\\') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            c if plain(c) => out.push(c),
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// Printable ASCII, space included: shown as is.
pub fn plain(c: char) -> bool {
    matches!(c, ' '..='~')
}

impl SaslUser {
    /// The name for people: see `shown`.
    pub fn shown(&self) -> Cow<'_, str> {
        shown(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn escapes_what_could_deceive() {
        for (text, want) in [
            ("alice@example.com", "alice@example.com"),
            ("\u{202e}moc.x", r"\u{202e}moc.x"),
            ("al\u{200b}ice", r"al\u{200b}ice"),
            ("\u{430}lice", r"\u{430}lice"),
            ("a\tb\x7f", r"a\u{9}b\u{7f}"),
            // The plain name `\u{430}lice` is not the Cyrillic one.
            (r"\u{430}lice", r"\\u{430}lice"),
        ] {
            assert_eq!(shown(text), want, "{text:?}");
        }
    }
}
