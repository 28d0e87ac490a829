//! The database's directory and file: created private, and refused when someone else
//! could swap them.

use std::fs::{DirBuilder, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// Creates the database directory `0700` and the file `0600` before SQLite touches them;
/// SQLite gives its `-wal` and `-shm` files the database file's permissions.
/// A directory another user can write to is refused: they could swap the database
/// (and the evidence in it) or plant a link where root is about to create it. Its
/// group counts as other users, and so does an owner other than us or root.
pub(super) fn create_private(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::io(dir, e))?;
        }
        check_dir(dir)?;
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

fn check_dir(dir: &Path) -> Result<()> {
    let meta = std::fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
    let refuse = |reason: String| {
        Err(Error::StoreState {
            path: dir.to_path_buf(),
            reason,
        })
    };
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return refuse(format!(
            "is writable by other users (mode {mode:o}); if it is the database's own directory, \
             chmod go-w {}, else keep the database in a private directory such as \
             /var/lib/f2b-mailguard (chmod 700)",
            dir.display()
        ));
    }
    // SAFETY: geteuid cannot fail and touches no memory.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return refuse(format!(
            "is owned by another user (uid {}), who could replace the database; \
             chown {me} {} (the user f2b-mailguard runs as), or keep the database in a \
             directory of that user's",
            meta.uid(),
            dir.display()
        ));
    }
    Ok(())
}
