//! How worried we are about an account, and whether we act on it.

use serde::Serialize;

/// How worried we are about an account. Ordered: `Ok < Notify < Block < Lock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Notify,
    Block,
    Lock,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Notify => "notify",
            Level::Block => "block",
            Level::Lock => "lock",
        }
    }

    pub fn from_db(raw: &str) -> Option<Self> {
        [Level::Ok, Level::Notify, Level::Block, Level::Lock]
            .into_iter()
            .find(|l| l.as_str() == raw)
    }

    /// Block and lock only take effect in enforce mode; notify is always "real".
    pub fn needs_enforcement(self) -> bool {
        self >= Level::Block
    }

    /// What an admin reads: `block`, or `would block` when only warned.
    pub fn describe(self, enforced: bool) -> String {
        if self.needs_enforcement() && !enforced {
            format!("would {}", self.as_str())
        } else {
            self.as_str().to_owned()
        }
    }
}

super::display_as_str!(Level);

/// `warn` computes every level but only reports block/lock; `enforce` acts on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Warn,
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Warn => "warn",
            Mode::Enforce => "enforce",
        }
    }
}
