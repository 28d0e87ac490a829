//! The shared store's error inside the backend: what the client library reported, or
//! a stored value that no longer passes validation. Below the rows and the statement
//! cache, which both return it.

#[derive(Debug)]
pub(super) enum PgError {
    Sql(postgres::Error),
    /// A stored value that no longer passes validation (a damaged or hand-edited row).
    Bad(String),
}

impl From<postgres::Error> for PgError {
    fn from(e: postgres::Error) -> Self {
        PgError::Sql(e)
    }
}

pub(super) type R<T> = Result<T, PgError>;
