//! `[policy]`: the in-band policy service (`serve`) that Dovecot's auth policy and
//! Postfix's policy delegation ask while a login or a message is under way.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::value::{parsed, secret, Range};
use crate::model::Span;

/// Where the Postfix listener is: a Unix socket (reachable only by the `postfix`
/// group) or a TCP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostfixListen {
    Unix(PathBuf),
    Inet(SocketAddr),
}

impl PostfixListen {
    /// `unix:/abs/path` or `inet:ADDR:PORT`, as Postfix writes its own endpoints.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if let Some(path) = raw.strip_prefix("unix:") {
            let p = PathBuf::from(path);
            if !p.is_absolute() || path.len() > 100 {
                return Err(format!(
                    "{raw:?}: the socket must be an absolute path of at most 100 bytes"
                ));
            }
            return Ok(Self::Unix(p));
        }
        if let Some(addr) = raw.strip_prefix("inet:") {
            return addr
                .parse()
                .map(Self::Inet)
                .map_err(|_| format!("{raw:?}: inet: needs an address and a port"));
        }
        Err(format!(
            "{raw:?} is neither unix:/path nor inet:127.0.0.1:PORT"
        ))
    }

    /// The `check_policy_service` argument for Postfix: a socket under Postfix's queue
    /// directory is named relative to it, as chrooted smtpd processes see it.
    pub fn for_postfix(&self, queue_directory: &std::path::Path) -> String {
        match self {
            Self::Unix(p) => match p.strip_prefix(queue_directory) {
                Ok(rel) => format!("unix:{}", rel.display()),
                Err(_) => format!("unix:{}", p.display()),
            },
            Self::Inet(a) => format!("inet:{a}"),
        }
    }
}

impl fmt::Display for PostfixListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Inet(a) => write!(f, "inet:{a}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Whether this server uses the service: `serve` runs only then, and `check`,
    /// `metrics` and `doctor` report it down when it does not answer.
    pub enabled: bool,
    /// Dovecot's auth policy over HTTP ("": off). TCP only: Dovecot 2.3 cannot use a
    /// Unix socket URL.
    #[serde(with = "opt_socket_addr")]
    pub dovecot_listen: Option<SocketAddr>,
    /// The `X-API-Key` Dovecot sends (`auth_policy_server_api_header`). Required with
    /// a Dovecot listener: any local user can reach a TCP port, and a forged report
    /// of successful logins could lock an honest account.
    #[serde(serialize_with = "secret")]
    pub dovecot_api_key: String,
    /// Postfix's policy delegation ("": off).
    #[serde(with = "opt_postfix_listen")]
    pub postfix_listen: Option<PostfixListen>,
    /// The group that may connect to the Unix socket (smtpd runs as `postfix`).
    pub postfix_group: String,
    /// Connections served at once over both listeners; more are closed at once
    /// (Postfix and Dovecot then fall back to their defaults: mail and logins flow).
    #[serde(with = "Range::<1, 100_000>")]
    pub max_connections: u32,
    /// How long an answer that records may wait for its own judgement before it is
    /// given from what is known (milliseconds). Keep it well below Dovecot's
    /// `auth_policy_server_timeout_msecs` and Postfix's policy `timeout`.
    #[serde(with = "Range::<0, 10_000>")]
    pub answer_within_ms: u32,
    /// Writer threads on a shared (PostgreSQL) database, each with its own kept
    /// connection; SQLite has one. Fewer writers commit larger batches (fewer WAL
    /// flushes), more wait less behind each other's commits.
    #[serde(with = "Range::<1, 64>")]
    pub writers: u32,
    /// Levels set elsewhere (release, another server on a shared database) reach
    /// the answers within this long; a shared database also tells at once.
    pub refresh: Span,
}

impl PolicyConfig {
    /// Whether Postfix asks the service about every message (a Postfix listener on an
    /// enabled service): the service then counts each one at its end of data, and a
    /// Fail2ban jail's ticket for the same message must not count it again.
    pub fn counts_messages(&self) -> bool {
        self.enabled && self.postfix_listen.is_some()
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            dovecot_listen: Some(SocketAddr::from(([127, 0, 0, 1], 10027))),
            dovecot_api_key: String::new(),
            postfix_listen: Some(PostfixListen::Unix(PathBuf::from(
                "/var/spool/postfix/private/f2b-mailguard",
            ))),
            postfix_group: "postfix".into(),
            max_connections: 512,
            answer_within_ms: 300,
            writers: 8,
            refresh: Span::secs(2),
        }
    }
}

mod opt_socket_addr {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        parsed(d, |v| {
            if v.is_empty() {
                return Ok(None);
            }
            v.parse()
                .map(Some)
                .map_err(|_| format!("{v:?} is not ADDRESS:PORT, e.g. 127.0.0.1:10027"))
        })
    }

    pub fn serialize<S: Serializer>(v: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(a) => s.collect_str(a),
            None => s.serialize_str(""),
        }
    }
}

mod opt_postfix_listen {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PostfixListen>, D::Error> {
        parsed(d, |v| {
            if v.is_empty() {
                Ok(None)
            } else {
                PostfixListen::parse(v).map(Some)
            }
        })
    }

    pub fn serialize<S: Serializer>(v: &Option<PostfixListen>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(l) => s.collect_str(l),
            None => s.serialize_str(""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn postfix_endpoints_parse_strictly() {
        assert_eq!(
            PostfixListen::parse("inet:127.0.0.1:10028").unwrap(),
            PostfixListen::Inet("127.0.0.1:10028".parse().unwrap())
        );
        for bad in [
            "unix:relative",
            "inet:127.0.0.1",
            "tcp:1.2.3.4:5",
            "",
            "unix:",
        ] {
            assert!(PostfixListen::parse(bad).is_err(), "{bad}");
        }
        let l = PostfixListen::parse("unix:/var/spool/postfix/private/f2b-mailguard").unwrap();
        assert_eq!(
            l.for_postfix(Path::new("/var/spool/postfix")),
            "unix:private/f2b-mailguard"
        );
        assert_eq!(
            l.for_postfix(Path::new("/srv/spool")),
            "unix:/var/spool/postfix/private/f2b-mailguard"
        );
    }
}
