//! A shared store's `postgresql://` URL: what the client library and libpq both read
//! the same way, and the one way it is shown (`masked`), which never shows a password.
//!
//! The client library ends the user name and password at the first `@` anywhere in
//! the URL; libpq ends them at the first `@` before any `/`. So a password may hold
//! `?`, `+`, `=`, `:` or `&` as written (both read them alike), but an unencoded `/`
//! (libpq reads a different host, user and database) or a second `@` (the client
//! library reads the rest as the host) is refused: written `%2F` and `%40`, every
//! reader agrees.

use std::fmt;

use super::pg_tls::{PgTls, SslMode};
use crate::error::Invalid;

/// A `postgresql://` URL that the client library parses and that names a host (a
/// socket directory counts), with libpq's TLS options. Its Debug and Display hide the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl {
    raw: String,
    /// The URL without the TLS options (`sslmode`, `sslrootcert`, `sslcert`,
    /// `sslkey`), which the client library lacks.
    client: String,
    tls: PgTls,
}

/// Query parameters whose values are shown: they name where and how to connect,
/// never a secret. Any other parameter (a password, or part of one written with an
/// unencoded `&`) is shown as `***`.
const SHOWN_PARAMS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "application_name",
    "options",
    "sslmode",
    "sslnegotiation",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];

/// `raw` (a URL, valid or not) for people: everything between `://` and the last `@`
/// hidden but a plain user name, and every query value but those in `SHOWN_PARAMS`.
/// Every place that shows a shared store's URL goes through this.
pub fn masked(raw: &str) -> String {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return "***".to_owned();
    };
    let mut out = format!("{scheme}://");
    let after = match rest.rsplit_once('@') {
        Some((userinfo, after)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, _)) => (user, true),
                None => (userinfo, false),
            };
            let plain = user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '%'));
            out.push_str(if plain { user } else { "***" });
            if password && plain {
                out.push_str(":***");
            }
            out.push('@');
            after
        }
        None => rest,
    };
    let (head, query) = match after.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (after, None),
    };
    out.push_str(head);
    if let Some(query) = query {
        let params: Vec<&str> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((key, _)) if SHOWN_PARAMS.contains(&key) => p,
                Some(("password", _)) => "password=***",
                _ => "***",
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

impl PgUrl {
    pub(super) fn parse(field: &'static str, raw: &str) -> Result<Self, Invalid> {
        Self::readers_agree(field, raw)?;
        let (tls, client) = PgTls::split(field, raw)?;
        let url = Self {
            raw: raw.to_owned(),
            client,
            tls,
        };
        // The parser's messages name the option, never its value (no password leaks).
        let cfg = url.client_config().map_err(|e| {
            Invalid::new(
                field,
                format!("{url} is not a PostgreSQL URL libpq would take: {e}"),
            )
        })?;
        if cfg.get_hosts().is_empty() {
            return Err(Invalid::new(
                field,
                format!("{url} names no host: add ?host=/run/postgresql for this machine's socket, or write user@HOST"),
            ));
        }
        Ok(url)
    }

    /// Refuses what the client library and libpq would read differently. These
    /// messages never show the URL: where readers disagree, no one knows which part
    /// is the password.
    fn readers_agree(field: &'static str, raw: &str) -> Result<(), Invalid> {
        let rest = raw.split_once("://").map_or(raw, |(_, r)| r);
        let Some((userinfo, after)) = rest.split_once('@') else {
            return Ok(());
        };
        if after.contains('@') {
            return Err(Invalid::new(
                field,
                "holds more than one '@': the client library ends the user name and password at the first; write '@' in them as %40",
            ));
        }
        if userinfo.contains('/') {
            return Err(Invalid::new(
                field,
                "holds a '/' before its '@': libpq ends the host there and reads another user, host and database; write '/' in the user name or password as %2F",
            ));
        }
        let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
        if user.contains('?') {
            return Err(Invalid::new(
                field,
                "holds a '?' in its user name (a query before the '@'?); write '?' in a user name as %3F, and '@' in a query value as %40",
            ));
        }
        Ok(())
    }

    /// The client library's view of the URL (validated at parse, so this succeeds),
    /// with TLS asked for when `sslmode` wants it. libpq ignores `sslmode` on a Unix
    /// socket (the server never offers TLS there), so a socket-only URL has none.
    pub fn client_config(&self) -> Result<postgres::Config, postgres::Error> {
        use postgres::config::{Host, SslMode as Client};
        let mut cfg: postgres::Config = self.client.parse()?;
        let socket_only = cfg.get_hosts().iter().all(|h| matches!(h, Host::Unix(_)));
        cfg.ssl_mode(match self.tls.mode {
            _ if socket_only => Client::Disable,
            SslMode::Disable => Client::Disable,
            SslMode::Prefer => Client::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Client::Require,
        });
        Ok(cfg)
    }

    pub fn tls(&self) -> &PgTls {
        &self.tls
    }
}

impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&masked(&self.raw))
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::pg_tls::split_query;

    #[test]
    fn masks_everything_a_password_could_be() {
        for (raw, shown) in [
            (
                "postgresql://mg:Qz7?Wk3+Vb9=@db:5432/mg?host=/run/x",
                "postgresql://mg:***@db:5432/mg?host=/run/x",
            ),
            ("postgresql://mg:Qz7/Wk3@db/mg", "postgresql://mg:***@db/mg"),
            ("postgresql://mg:Qz7@Wk3@db/mg", "postgresql://mg:***@db/mg"),
            (
                "postgres://mg@db/mg?password=Qz7&Wk3&sslmode=disable&Vb9=x",
                "postgres://mg@db/mg?password=***&***&sslmode=disable&***",
            ),
            ("postgresql://a?b:Qz7@db/mg", "postgresql://***@db/mg"),
            ("not a url Qz7", "***"),
        ] {
            assert_eq!(masked(raw), shown, "{raw}");
        }
    }

    #[test]
    fn the_query_starts_after_the_password() {
        assert_eq!(
            split_query("postgresql://u:a?b@h/d?sslmode=require"),
            ("postgresql://u:a?b@h/d", Some("sslmode=require"))
        );
        assert_eq!(
            split_query("postgresql://h/d?port=1"),
            ("postgresql://h/d", Some("port=1"))
        );
        assert_eq!(
            split_query("postgresql://u@h/d"),
            ("postgresql://u@h/d", None)
        );
    }
}
