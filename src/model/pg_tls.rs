//! TLS to the shared store as libpq has it: `sslmode`, `sslrootcert`, and a client
//! certificate (`sslcert`, `sslkey`) in the `database` URL. The client library knows
//! only disable/prefer/require, no root certificate and no client certificate, so
//! these are taken out of the URL here and the store's rustls connector does what
//! libpq would.

use std::path::PathBuf;

use crate::error::Invalid;

/// libpq's `sslmode` (`allow` is left out: it tries plain text first, which no
/// one setting up a shared store should want).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// Where the CA certificates that sign the server's certificate come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file (`sslrootcert=PATH`).
    File(PathBuf),
    /// The system's trusted roots (`sslrootcert=system`, PostgreSQL 16's libpq).
    System,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTls {
    pub mode: SslMode,
    /// None: libpq's default file, `~/.postgresql/root.crt`, if it exists.
    pub root_cert: Option<RootCert>,
    /// `sslcert`; None: libpq's default, `~/.postgresql/postgresql.crt`, if it exists.
    pub client_cert: Option<PathBuf>,
    /// `sslkey`; None: libpq's default, `~/.postgresql/postgresql.key`.
    pub client_key: Option<PathBuf>,
}

impl SslMode {
    fn parse(field: &'static str, raw: &str) -> Result<Self, Invalid> {
        Ok(match raw {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(Invalid::new(
                    field,
                    format!("sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"),
                ))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// The URL up to its query, and its query, as the client library splits them: the
/// query starts at the first `?` after the user name and password.
pub(super) fn split_query(url: &str) -> (&str, Option<&str>) {
    let creds_end = url.find("://").map(|s| s + 3).map_or(0, |from| {
        url[from..].find('@').map_or(from, |at| from + at + 1)
    });
    match url[creds_end..].find('?') {
        Some(q) => (&url[..creds_end + q], Some(&url[creds_end + q + 1..])),
        None => (url, None),
    }
}

impl PgTls {
    /// Takes the TLS options out of the URL's query; returns them and the URL
    /// without them (the rest, encoded as given, is the client library's).
    pub fn split(field: &'static str, url: &str) -> Result<(Self, String), Invalid> {
        let (head, Some(query)) = split_query(url) else {
            return Ok((Self::default_for(None, None)?, url.to_owned()));
        };
        let (mut mode, mut root) = (None, None);
        let (mut cert, mut key) = (None, None);
        let mut rest = Vec::new();
        for param in query.split('&') {
            match param.split_once('=') {
                Some(("sslmode", v)) => mode = Some(SslMode::parse(field, &decode(field, v)?)?),
                Some(("sslrootcert", v)) => root = Some(decode(field, v)?),
                Some((name @ ("sslcert" | "sslkey"), v)) => {
                    let path = decode(field, v)?;
                    if path.is_empty() {
                        return Err(Invalid::new(field, format!("{name} is empty")));
                    }
                    let slot = if name == "sslcert" {
                        &mut cert
                    } else {
                        &mut key
                    };
                    *slot = Some(PathBuf::from(path));
                }
                _ => rest.push(param),
            }
        }
        let root = match root.as_deref() {
            None => None,
            Some("") => return Err(Invalid::new(field, "sslrootcert is empty")),
            Some("system") => Some(RootCert::System),
            Some(path) => Some(RootCert::File(PathBuf::from(path))),
        };
        let mut tls =
            Self::default_for(mode, root).map_err(|e| Invalid::new(field, e.to_string()))?;
        (tls.client_cert, tls.client_key) = (cert, key);
        let client = if rest.is_empty() {
            head.to_owned()
        } else {
            format!("{head}?{}", rest.join("&"))
        };
        Ok((tls, client))
    }

    /// libpq's defaults: `prefer`, or `verify-full` with the system's roots, which
    /// refuse anything weaker (a public CA signs anyone's host name).
    fn default_for(mode: Option<SslMode>, root_cert: Option<RootCert>) -> Result<Self, Invalid> {
        let mode = match (mode, &root_cert) {
            (None, Some(RootCert::System)) => SslMode::VerifyFull,
            (None, _) => SslMode::Prefer,
            (Some(m), Some(RootCert::System)) if m != SslMode::VerifyFull => {
                return Err(Invalid::new(
                    "sslmode",
                    format!("sslmode={} with sslrootcert=system: the system's CAs sign anyone's name, so only verify-full checks anything", m.as_str()),
                ))
            }
            (Some(m), _) => m,
        };
        Ok(Self {
            mode,
            root_cert,
            client_cert: None,
            client_key: None,
        })
    }
}

/// Percent-decoding of a query value, as the client library does for the others.
fn decode(field: &'static str, raw: &str) -> Result<String, Invalid> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Invalid::new(field, "has a bad %-escape in an ssl option"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Invalid::new(field, "an ssl option is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> Result<(PgTls, String), String> {
        PgTls::split("database", url).map_err(|e| e.to_string())
    }

    #[test]
    fn the_tls_options_are_taken_out_and_the_rest_kept() {
        let (tls, rest) = split(
            "postgresql://u@h/d?sslmode=verify-full&application_name=x&sslrootcert=/etc/ca%20x.pem",
        )
        .expect("url");
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert, Some(RootCert::File("/etc/ca x.pem".into())));
        assert_eq!(rest, "postgresql://u@h/d?application_name=x");
        assert_eq!((tls.client_cert, tls.client_key), (None, None));
        let (tls, rest) =
            split("postgresql://u@h/d?sslcert=/etc/mg.crt&port=5433&sslkey=/etc/mg%2Ekey")
                .expect("url");
        assert_eq!(tls.client_cert, Some("/etc/mg.crt".into()));
        assert_eq!(tls.client_key, Some("/etc/mg.key".into()));
        assert_eq!(rest, "postgresql://u@h/d?port=5433");
        let (tls, rest) = split("postgresql://u@h/d").expect("url");
        assert_eq!((tls.mode, tls.root_cert), (SslMode::Prefer, None));
        assert_eq!(rest, "postgresql://u@h/d");
        let (tls, rest) = split("postgresql://u@h/d?sslrootcert=system").expect("url");
        assert_eq!(
            (tls.mode, tls.root_cert),
            (SslMode::VerifyFull, Some(RootCert::System))
        );
        assert_eq!(rest, "postgresql://u@h/d");
    }

    #[test]
    fn bad_tls_options_are_refused() {
        for (url, says) in [
            (
                "postgresql://u@h/d?sslmode=allow",
                "sslmode=allow is not one of",
            ),
            (
                "postgresql://u@h/d?sslmode=verify-ca&sslrootcert=system",
                "only verify-full",
            ),
            ("postgresql://u@h/d?sslrootcert=", "sslrootcert is empty"),
            ("postgresql://u@h/d?sslrootcert=%zz", "bad %-escape"),
            ("postgresql://u@h/d?sslcert=", "sslcert is empty"),
            ("postgresql://u@h/d?sslkey=", "sslkey is empty"),
        ] {
            let err = split(url).expect_err(url);
            assert!(err.contains(says), "{url}: {err}");
        }
    }
}
