//! Validated types for everything that comes from outside (Fail2ban tags, CLI, config).
//! Once a value has one of these types, later code does not need to check it again.

use crate::error::Invalid;

/// `Display` as the type's `as_str()`: the word it is stored, configured and shown as.
macro_rules! display_as_str {
    ($($t:ty),+) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )+};
}
pub(crate) use display_as_str;

mod action;
pub mod display;
mod level;
mod location;
mod net;
mod owner;
mod pg_tls;
mod pg_url;
mod source;
mod time;
mod user;

pub use action::ActionKind;
pub use level::{Level, Mode};
pub use location::DatabaseLocation;
pub use net::{Cidr, ClientAddr, ClientNet, NetPrefixes};
pub use owner::{Asn, CountryCode};
pub use pg_tls::{PgTls, RootCert, SslMode};
pub use pg_url::PgUrl;
pub use source::{MessageCount, Source};
pub use time::{Deadline, Span, Timestamp};
pub use user::{fold_case, SaslUser, MAX_USER_BYTES};

/// A network on the database's whitelist, for every account or for one.
#[derive(Debug, Clone)]
pub struct WhitelistEntry {
    pub cidr: Cidr,
    pub user: Option<SaslUser>,
    pub note: Option<String>,
    pub added: Timestamp,
}
const MAX_LABEL_BYTES: usize = 256;
/// Longest accepted Fail2ban ticket id: Python's repr of a tuple of a user, an address
/// and a queue id or a recipient (which Postfix's 2048-byte line limit bounds); repr
/// stretches a value at most 2.5-fold (escapes such as `\\` or `\U000e0001`).
pub const MAX_FID_BYTES: usize = 8192;

fn check_printable(field: &'static str, value: &str) -> Result<(), Invalid> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(Invalid::new(
            field,
            format!("contains a control character (U+{:04X})", c as u32),
        ));
    }
    Ok(())
}

/// A short free-text label (jail name, Fail2ban ticket id, whitelist note):
/// stored and shown, never interpreted, so only control characters are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label(String);

impl Label {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, Invalid> {
        Self::parse_max(field, raw, MAX_LABEL_BYTES)
    }

    /// A Fail2ban ticket id (`<fid>`): whatever Fail2ban builds from a valid user and
    /// address must fit, or a real login would be refused.
    pub fn fid(raw: &str) -> Result<Self, Invalid> {
        Self::parse_max("fid", raw, MAX_FID_BYTES)
    }

    /// The ticket id `ingest` gives the message a `TIME USER ADDRESS` line stands for:
    /// `line N`, which tells it from another message of the same second. Valid by
    /// construction; written digit by digit, as the formatting machinery costs more
    /// than replaying the line.
    pub fn of_line(n: usize) -> Self {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        let mut rest = n;
        loop {
            start -= 1;
            digits[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        let mut id = String::with_capacity(5 + digits.len() - start);
        id.push_str("line ");
        id.extend(digits[start..].iter().map(|&d| char::from(d)));
        Self(id)
    }

    fn parse_max(field: &'static str, raw: &str, max: usize) -> Result<Self, Invalid> {
        if raw.len() > max {
            return Err(Invalid::new(
                field,
                format!("is {} bytes long (at most {max})", raw.len()),
            ));
        }
        check_printable(field, raw)?;
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_id_is_the_fid_of_its_text() {
        for n in [0, 1, 9, 10, 99, 100, 1_500_000, usize::MAX] {
            let made = Label::of_line(n);
            assert_eq!(made, Label::fid(&format!("line {n}")).unwrap());
        }
    }
}
