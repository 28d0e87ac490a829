use std::path::PathBuf;

/// Input from outside (CLI, Fail2ban tags, input lines) that does not pass validation.
/// Displayed as `invalid --FIELD: REASON`, always on one line; a positional argument
/// has an upper-case field as in the usage line (`CIDR`) and is named without `--`,
/// and so is a field of an input line (see `in_line`).
#[derive(Debug, Clone, thiserror::Error)]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
    /// A field of an input line (`ingest`), not a command-line argument.
    in_line: bool,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let positional = self.field.bytes().all(|b| b.is_ascii_uppercase());
        let dashes = if positional || self.in_line { "" } else { "--" };
        write!(f, "invalid {dashes}{}: {}", self.field, self.reason)
    }
}

impl Invalid {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
            in_line: false,
        }
    }

    /// The same error about the argument or field `field` (a parser names the value
    /// it parses, e.g. `user`, whether it came as `--user` or as `USER`).
    pub fn for_field(self, field: &'static str) -> Self {
        Self { field, ..self }
    }

    /// The same error about a field of an input line, named without `--`.
    pub fn in_line(self) -> Self {
        Self {
            in_line: true,
            ..self
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] Invalid),

    #[error("{file}: {key}: {reason}")]
    Config {
        file: String,
        key: String,
        reason: String,
    },

    #[error("{0}")]
    Usage(String),

    #[error("database {path}: {source}")]
    Store {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error("database {path}: {reason}")]
    StoreState { path: PathBuf, reason: String },

    /// The shared (PostgreSQL) store failed; `url` has no password.
    #[error("shared database {url}: {reason}")]
    SharedStore { url: String, reason: String },

    /// The shared store could not be reached within `connect_timeout`.
    #[error("shared database {url} is unreachable: {reason}")]
    SharedStoreUnreachable { url: String, reason: String },

    /// A program we ran (postqueue...) failed; the text says which and how.
    #[error("{0}")]
    External(String),

    /// The spool could not take a login (full, unwritable).
    #[error("spool {path}: {reason}")]
    Spool { path: PathBuf, reason: String },

    /// A login kept in the spool behind its account's earlier ones, which wait there:
    /// stored now, it would come before them.
    #[error("earlier logins of {user} wait in the spool (another session holds the account, or the drain ran out of time)")]
    Behind { user: String },

    /// A login neither stored nor kept in the spool: Fail2ban's retry is its last chance.
    #[error("{cause}; and it could not be kept in the spool: {spool}")]
    NotKept { cause: String, spool: String },

    /// Leave with this exit status; the command already printed what it had to say.
    #[error("")]
    Exit(u8),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// 2 for anything a retry cannot fix (bad input or config); 1 for runtime failures
    /// such as a database locked past the busy timeout, which a retry may fix.
    /// (`record` keeps a login in the spool instead of failing with a config error.)
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid(_) | Error::Config { .. } | Error::Usage(_) => 2,
            Error::Exit(code) => i32::from(*code),
            _ => 1,
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Renders an error and its causes on a single line, so Fail2ban's log keeps it whole.
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out.replace(['\n', '\r'], " ")
}
