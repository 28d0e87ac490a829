//! The database's directory and file: created private, and refused when someone else
//! could swap them.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Creates the database directory `0700` and the file `0600` before SQLite touches them;
/// SQLite gives its `-wal` and `-shm` files the database file's permissions.
/// A directory another user can write to is refused: they could swap the database
/// (and the evidence in it) or plant a link where root is about to create it. Its
/// group counts as other users, and so does an owner other than us or root.
pub(super) fn create_private(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        crate::files::private_dir(dir)?;
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}
