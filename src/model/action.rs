//! What containment can do to an account: the kinds of action a level queues. Plain
//! data shared by the config (which lists them per level), the store (the outbox) and
//! the worker (which runs them).

use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Admin mail with the evidence and the release command.
    Mail,
    /// The account in Postfix's check_sasl_access map: no more sending.
    SaslBlock,
    /// Put the account's queued mail on hold (not deleted: release can send it).
    HoldQueue,
    /// New random password in the password store.
    ResetPassword,
    /// Flush Dovecot's auth cache for the account and kick its sessions.
    DovecotKick,
    /// Mail the account's owner what was seen, what was done and what to do now.
    NotifyUser,
}

impl ActionKind {
    pub const ALL: [ActionKind; 6] = [
        ActionKind::Mail,
        ActionKind::SaslBlock,
        ActionKind::HoldQueue,
        ActionKind::ResetPassword,
        ActionKind::DovecotKick,
        ActionKind::NotifyUser,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Mail => "mail",
            ActionKind::SaslBlock => "sasl_block",
            ActionKind::HoldQueue => "hold_queue",
            ActionKind::ResetPassword => "reset_password",
            ActionKind::DovecotKick => "dovecot_kick",
            ActionKind::NotifyUser => "notify_user",
        }
    }

    /// What the admin reads in mail and status.
    pub fn describe(self) -> &'static str {
        match self {
            ActionKind::Mail => "mail the admin",
            ActionKind::SaslBlock => {
                "refuse (block) or hold (quarantine) its mail: Postfix check_sasl_access"
            }
            ActionKind::HoldQueue => "hold the account's queued mail",
            ActionKind::ResetPassword => "reset the password",
            ActionKind::DovecotKick => "flush Dovecot's auth cache and kick sessions",
            ActionKind::NotifyUser => "mail the account's owner",
        }
    }
}

impl FromStr for ActionKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|a| a.as_str()).collect();
                format!("{s:?} is not one of {}", names.join(", "))
            })
    }
}

super::display_as_str!(ActionKind);
