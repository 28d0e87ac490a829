//! Where the store lives: a SQLite file on this server, or a PostgreSQL database that
//! several servers share. `database`, `--db` and `F2B_MAILGUARD_DB` all
//! go through [`DatabaseLocation::parse`].

use std::fmt;
use std::path::{Path, PathBuf};

use super::pg_url::PgUrl;
use crate::error::Invalid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    Sqlite(PathBuf),
    Postgres(PgUrl),
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

    /// `local_base` of the store `raw` names, even one refused: a PostgreSQL URL with
    /// a mistake still names a shared store, whose spool is in `local_dir`. None for
    /// anything else that is not valid.
    pub fn local_base_of(raw: &str, local_dir: &Path) -> Option<PathBuf> {
        match Self::parse("database", raw) {
            Ok(loc) => Some(loc.local_base(local_dir)),
            Err(_) => url_scheme(raw)
                .filter(|s| matches!(*s, "postgresql" | "postgres"))
                .map(|_| local_dir.join(SHARED_LOCAL_NAME)),
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
            ("postgresql://u:hunt/er2@h/db", "as %2F"),
            ("postgresql://u:hunt@er2@h/db", "as %40"),
            ("postgresql://h/db?password=hunt@er2", "as %2F"),
            ("postgresql://h?password=hunt@er2", "as %3F"),
            ("postgresql://u:hunt?er2@h/db?sslmode=bogus", "sslmode"),
        ] {
            let err = DatabaseLocation::parse("database", raw)
                .expect_err(raw)
                .to_string();
            assert!(err.contains(says), "{raw}: {err}");
            for part in ["hunt", "er2"] {
                assert!(!err.contains(part), "{raw}: {err}");
            }
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
            // A '?' in the password does not start the query.
            ("postgresql://u:a?b@h/d?sslmode=require", Client::Require),
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
