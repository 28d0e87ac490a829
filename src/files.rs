//! Files: replacing those other programs read (Postfix maps, Dovecot passwd-files,
//! node_exporter's textfiles) whole, never half-written; telling two paths apart;
//! the private state directory.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// Creates the state directory (database, spool) `0700` if it is missing. A directory
/// other users can write to is refused: they could swap the database (and the
/// evidence in it) or plant a link where root is about to create a file. Its group
/// counts as other users, and so does an owner other than us or root.
pub fn private_dir(dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(dir, e))?;
    }
    let meta = fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
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

/// Replaces `path` with `data` atomically: a temp file in the same directory, synced,
/// then renamed over it, so Postfix or Dovecot never read half a file. `owner` keeps
/// the replaced file's uid and gid.
///
/// The directory may belong to someone else (`prometheus` owns node_exporter's
/// textfile directory), so the temp file gets a random name and is created with
/// O_EXCL (tempfile): a link planted there is never followed, never written through
/// or chowned/chmodded. The rename replaces a link at `path` itself, not its target.
pub fn write_atomically(
    path: &Path,
    data: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // Removed on drop, so on every error below.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    let f = tmp.as_file_mut();
    f.write_all(data)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&*f, Some(uid), Some(gid))?;
    }
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Whether two paths name the same file (through links and `..`); paths that do not
/// resolve are compared as written.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}
