//! Where the store lives: a SQLite file on this server, or a PostgreSQL database that
//! several servers share. `database`, `--db` and `F2B_MAILGUARD_DB` all
//! go through [`DatabaseLocation::parse`].

use std::fmt;
use std::path::{Path, PathBuf};

use super::pg_tls::{PgTls, SslMode};
use crate::error::Invalid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    Sqlite(PathBuf),
    Postgres(PgUrl),
}

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

/// The file name, in `local_dir`, this server's own files of a shared store start
/// with: `postgresql.spool`, `postgresql.worker.lock`.
const SHARED_LOCAL_NAME: &str = "postgresql";

impl DatabaseLocation {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, Invalid> {
        if raw.is_empty() {
            return Err(Invalid::new(field, "is empty"));
        }
        if let Some(scheme) = url_scheme(raw) {
            // Lower case only, as libpq has it.
            if scheme != "postgresql" && scheme != "postgres" {
                return Err(Invalid::new(
                    field,
                    format!(
                        "looks like a URL ({scheme}:), but only postgresql:// (or postgres://) URLs are understood; \
                         a SQLite database is a file path (./NAME for a relative one whose name has a colon)"
                    ),
                ));
            }
            if !raw[scheme.len()..].starts_with("://") {
                return Err(Invalid::new(
                    field,
                    format!("{scheme}: is not a URL: write postgresql://USER@HOST/DATABASE (or ?host=/run/postgresql for this machine's socket)"),
                ));
            }
            return PgUrl::parse(field, raw).map(DatabaseLocation::Postgres);
        }
        Ok(DatabaseLocation::Sqlite(PathBuf::from(raw)))
    }

    /// The SQLite file, if this is one.
    pub fn sqlite(&self) -> Option<&Path> {
        match self {
            DatabaseLocation::Sqlite(p) => Some(p),
            DatabaseLocation::Postgres(_) => None,
        }
    }

    /// What this server's own files (spool, worker lock) are named after: the SQLite
    /// file itself, or `local_dir/postgresql` for a shared store, which has no file here.
    pub fn local_base(&self, local_dir: &Path) -> PathBuf {
        match self {
            DatabaseLocation::Sqlite(p) => p.clone(),
            DatabaseLocation::Postgres(_) => local_dir.join(SHARED_LOCAL_NAME),
        }
    }
}

impl fmt::Display for DatabaseLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseLocation::Sqlite(p) => write!(f, "{}", p.display()),
            DatabaseLocation::Postgres(url) => url.fmt(f),
        }
    }
}

/// The scheme of something shaped like a URL (`mysql://…`, `sqlite:x.db`,
/// `postgresql:`): letters first, then letters, digits, `+`, `-`, `.`, then a colon.
/// A path starting with `/` or `.` never is one.
fn url_scheme(raw: &str) -> Option<&str> {
    let (scheme, _) = raw.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let shaped = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    shaped.then_some(scheme)
}

impl PgUrl {
    fn parse(field: &'static str, raw: &str) -> Result<Self, Invalid> {
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
    /// The URL with its password (in the user part or as `password=`) as `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let raw = self.raw.as_str();
        let (head, query) = match raw.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (raw, None),
        };
        let (scheme, rest) = head.split_once("://").unwrap_or(("", head));
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        write!(f, "{scheme}://")?;
        match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => match userinfo.split_once(':') {
                Some((user, _)) => write!(f, "{user}:***@{hosts}")?,
                None => write!(f, "{userinfo}@{hosts}")?,
            },
            None => f.write_str(authority)?,
        }
        f.write_str(path)?;
        if let Some(query) = query {
            let params: Vec<&str> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some(("password", _)) => "password=***",
                    _ => p,
                })
                .collect();
            write!(f, "?{}", params.join("&"))?;
        }
        Ok(())
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

    #[test]
    fn paths_are_sqlite_and_postgres_urls_are_postgres() {
        for raw in ["/var/lib/x.db", "x.db", "./postgresql:x", "a/b:c"] {
            assert_eq!(
                DatabaseLocation::parse("database", raw).ok(),
                Some(DatabaseLocation::Sqlite(PathBuf::from(raw))),
                "{raw}"
            );
        }
        for raw in [
            "postgresql://postgres@/mg?host=/run/postgresql",
            "postgres://mg:secret@db.example.test:5433/mg?sslmode=prefer",
            "postgresql://mg@10.0.0.1/mg",
            "postgresql://mg@db/mg?sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem",
            "postgresql://mg@db/mg?sslmode=require",
        ] {
            let loc = DatabaseLocation::parse("database", raw).expect(raw);
            assert!(matches!(loc, DatabaseLocation::Postgres(_)), "{raw}");
        }
    }

    #[test]
    fn other_urls_and_bad_postgres_urls_are_refused_without_the_password() {
        for (raw, says) in [
            ("postgresql:", "is not a URL"),
            ("mysql://u@h/db", "looks like a URL (mysql:)"),
            ("sqlite:/var/lib/x.db", "looks like a URL (sqlite:)"),
            ("file:x.db", "looks like a URL (file:)"),
            ("POSTGRESQL://u@h/db", "looks like a URL (POSTGRESQL:)"),
            ("postgresql://u:hunter2@/db", "names no host"),
            ("postgresql://u:hunter2@h/db?sslmode=bogus", "sslmode"),
            ("postgresql://u:hunter2@h/db?sslmode=allow", "sslmode=allow"),
        ] {
            let err = DatabaseLocation::parse("database", raw)
                .expect_err(raw)
                .to_string();
            assert!(err.contains(says), "{raw}: {err}");
            assert!(!err.contains("hunter2"), "{raw}: {err}");
        }
    }

    #[test]
    fn the_password_is_never_displayed() {
        for (raw, shown) in [
            (
                "postgresql://mg:hunter2@db:5432/mg?host=/run/x",
                "postgresql://mg:***@db:5432/mg?host=/run/x",
            ),
            (
                "postgres://mg@db/mg?password=hunter2&sslmode=disable",
                "postgres://mg@db/mg?password=***&sslmode=disable",
            ),
            (
                "postgresql://postgres@/mg?host=/tmp/s",
                "postgresql://postgres@/mg?host=/tmp/s",
            ),
        ] {
            let loc = DatabaseLocation::parse("database", raw).expect(raw);
            assert_eq!(loc.to_string(), shown);
            assert!(!format!("{loc:?}").contains("hunter2"));
        }
    }

    #[test]
    fn tls_is_asked_of_the_client_library_over_tcp_only() {
        use postgres::config::SslMode as Client;
        for (raw, wanted) in [
            ("postgresql://u@h/d", Client::Prefer),
            ("postgresql://u@h/d?sslmode=verify-full", Client::Require),
            ("postgresql://u@h/d?sslmode=disable", Client::Disable),
            (
                "postgresql://u@/d?host=/run/postgresql&sslmode=verify-full",
                Client::Disable,
            ),
        ] {
            let Ok(DatabaseLocation::Postgres(url)) = DatabaseLocation::parse("db", raw) else {
                panic!("{raw}");
            };
            let cfg = url.client_config().expect(raw);
            assert_eq!(cfg.get_ssl_mode(), wanted, "{raw}");
        }
    }

    #[test]
    fn a_shared_store_keeps_its_local_files_in_local_dir() {
        let dir = Path::new("/var/lib/f2b-mailguard");
        let pg = DatabaseLocation::parse("db", "postgresql://u@h/d").expect("url");
        assert_eq!(pg.local_base(dir), dir.join("postgresql"));
        let file = DatabaseLocation::parse("db", "/x/mg.db").expect("path");
        assert_eq!(file.local_base(dir), Path::new("/x/mg.db"));
    }
}
