//! Where evidence comes from and how many messages it stands for.

use serde::Serialize;

use crate::error::Invalid;

/// Where a piece of evidence came from: a successful login (smtp, imap, pop3, webmail,
/// smtp-refused), counted as distinct client networks, or a count of messages: accepted
/// submissions (`rate`), hard bounces (`bounces`), mail waiting in the deferred queue
/// (`queue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Smtp,
    Imap,
    Pop3,
    Webmail,
    Rate,
    Bounces,
    Queue,
    /// Not recorded: SMTP logins counted per wider network (/24, /48) over a day, which
    /// catches a slow drip of new addresses that never crowds one hour.
    Spread,
    /// An SMTP login with the right password that Postfix then refused because the
    /// account is in our check_sasl_access map: counted as smtp (see `counted_as`),
    /// stored apart so `status` can say which networks kept trying after the block.
    #[serde(rename = "smtp-refused")]
    SmtpRefused,
}

impl Source {
    pub const ALL: [Source; 9] = [
        Source::Smtp,
        Source::Imap,
        Source::Pop3,
        Source::Webmail,
        Source::Rate,
        Source::Bounces,
        Source::Queue,
        Source::Spread,
        Source::SmtpRefused,
    ];

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| {
                Invalid::new(
                    "source",
                    format!(
                        "{raw:?} is not one of smtp, imap, pop3, webmail, rate, bounces, queue, spread, smtp-refused"
                    ),
                )
            })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Smtp => "smtp",
            Source::Imap => "imap",
            Source::Pop3 => "pop3",
            Source::Webmail => "webmail",
            Source::Rate => "rate",
            Source::Bounces => "bounces",
            Source::Queue => "queue",
            Source::Spread => "spread",
            Source::SmtpRefused => "smtp-refused",
        }
    }

    /// Logins count distinct networks; the others count messages.
    pub fn is_login(self) -> bool {
        matches!(
            self,
            Source::Smtp | Source::Imap | Source::Pop3 | Source::Webmail | Source::SmtpRefused
        )
    }

    /// The source whose networks and thresholds this evidence counts toward. A refused
    /// submission proves the password as an accepted one does, so it counts as smtp:
    /// block → lock needs the same networks whether Postfix still accepted them or not.
    pub fn counted_as(self) -> Source {
        match self {
            Source::SmtpRefused => Source::Smtp,
            s => s,
        }
    }

    /// Whether `[thresholds.SOURCE]` exists for it (not for one counted as another).
    pub fn has_thresholds(self) -> bool {
        self.counted_as() == self
    }

    /// What `record` may be told; queue and spread are computed.
    pub fn is_recorded(self) -> bool {
        !matches!(self, Source::Queue | Source::Spread)
    }

    /// What a threshold of this source counts, for explanations: `14 networks/1h`.
    pub fn unit(self) -> &'static str {
        match self {
            Source::Smtp
            | Source::Imap
            | Source::Pop3
            | Source::Webmail
            | Source::Spread
            | Source::SmtpRefused => "networks",
            Source::Rate => "msgs",
            Source::Bounces => "bounces",
            Source::Queue => "deferred",
        }
    }
}

super::display_as_str!(Source);

/// How many messages one event stands for (Fail2ban's <failures> for rate and bounces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageCount(u32);

impl MessageCount {
    pub const MAX: u32 = 1_000_000;
    pub const ONE: Self = Self(1);

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match raw.parse::<u32>() {
            Ok(n) if (1..=Self::MAX).contains(&n) => Ok(Self(n)),
            _ => Err(Invalid::new(
                "count",
                format!("{raw:?} is not a whole number from 1 to {}", Self::MAX),
            )),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}
