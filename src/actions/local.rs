//! What this server did to its own Postfix and Dovecot: the messages it put on hold,
//! the containments whose sessions it kicked, the map it last built.
//!
//! Kept on this machine (`local_dir`), not in the database: several servers share one
//! database, and each must release only the mail *it* held (never what an admin held
//! by hand, never another server's queue ids, which mean nothing here). One JSON file,
//! replaced atomically; read and written under an exclusive lock on a file beside it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::in_band::Notes;
use super::postfix::Submitters;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::files::{private_dir, write_atomically};

const STATE: &str = "mailguard.local.json";
const LOCK: &str = "mailguard.local.lock";
/// Left by a worker that found the lock taken: the holder converges once more.
const AGAIN: &str = "mailguard.local.again";

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalState {
    /// Per account: the messages (`QueuedMessage::key`) held here since it was contained. Kept until the
    /// account is released, so mail an admin released by hand is not held again.
    #[serde(default)]
    pub held: BTreeMap<String, BTreeSet<String>>,
    /// Per contained account: the containment (see `converge::containment_id`) whose
    /// Dovecot sessions were kicked here.
    #[serde(default)]
    pub kicked: BTreeMap<String, String>,
    /// Per quarantined account: since when (seconds, as Postfix's arrival times) this
    /// server's map holds its new mail. The hold queue's messages it submitted since
    /// are the quarantine's, joined to `held`; older ones were held by someone else.
    #[serde(default)]
    pub quarantined: BTreeMap<String, i64>,
    /// Per account: queue ids of the messages the policy service held in-band here
    /// (see `in_band`), joined to `held` once in the hold queue, kept until released.
    #[serde(default)]
    pub held_in_band: BTreeMap<String, BTreeSet<String>>,
    /// Who submitted each message in this queue, as far as read.
    #[serde(default)]
    pub submitters: Submitters,
    /// Digest of the map (type, path, text) postmap last built here.
    #[serde(default)]
    pub map_built: Option<String>,
}

/// The local state, locked for as long as this value lives.
pub struct Local {
    path: PathBuf,
    _lock: File,
    pub state: LocalState,
    /// As on disk: `save` writes only a change.
    saved: LocalState,
}

/// Opens (creating 0600) a file of ours in the state directory.
fn own_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        // Never through a link: as root that would create a file wherever it points.
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

fn open_lock(dir: &Path) -> Result<(File, PathBuf)> {
    private_dir(dir)?;
    let path = dir.join(LOCK);
    Ok((own_file(&path)?, path))
}

impl Local {
    /// Waits for the lock (a release or a one-off action: short, and must not be lost).
    pub fn open(cfg: &Config) -> Result<Self> {
        let dir = cfg.local_dir();
        let (lock, path) = open_lock(&dir)?;
        lock.lock().map_err(|e| Error::io(&path, e))?;
        Self::read(&dir, lock)
    }

    /// Takes the lock if free; else leaves word for its holder to converge once more
    /// (it checks after unlocking) and returns None, so a burst of workers never waits.
    pub fn try_open(cfg: &Config) -> Result<Option<Self>> {
        let dir = cfg.local_dir();
        let (lock, path) = open_lock(&dir)?;
        let again = dir.join(AGAIN);
        own_file(&again)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        // What we converge now includes whatever the marker's writer wanted.
        match std::fs::remove_file(&again) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(Error::io(&again, e)),
            _ => {}
        }
        Self::read(&dir, lock).map(Some)
    }

    /// Whether a worker asked for another convergence while the lock was held.
    pub fn wanted_again(cfg: &Config) -> bool {
        cfg.local_dir().join(AGAIN).exists()
    }

    fn read(dir: &Path, lock: File) -> Result<Self> {
        let path = dir.join(STATE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::io(
                    &path,
                    std::io::Error::new(
                        ErrorKind::InvalidData,
                        format!(
                            "{e}; it lists the mail this server held: release held mail with \
                             postsuper -H by hand, then delete the file"
                        ),
                    ),
                )
            })?,
            Err(e) if e.kind() == ErrorKind::NotFound => LocalState::default(),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let mut local = Self {
            path,
            _lock: lock,
            saved: state.clone(),
            state,
        };
        // What the policy service held since: saved here before its notes go.
        if let Some(mut notes) = Notes::open(dir).map_err(|e| Error::io(dir, e))? {
            if notes
                .take(&mut local.state.held_in_band)
                .map_err(|e| Error::io(dir, e))?
            {
                local.save()?;
                notes.clear().map_err(|e| Error::io(dir, e))?;
            }
        }
        Ok(local)
    }

    pub fn save(&mut self) -> Result<()> {
        if self.state == self.saved {
            return Ok(());
        }
        let text = serde_json::to_vec_pretty(&self.state)
            .map_err(|e| Error::io(&self.path, std::io::Error::new(ErrorKind::InvalidData, e)))?;
        write_atomically(&self.path, &text, 0o600, None).map_err(|e| Error::io(&self.path, e))?;
        self.saved = self.state.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path) -> Config {
        Config {
            local_dir: Some(dir.to_path_buf()),
            ..Config::default()
        }
    }

    #[test]
    fn state_survives_a_save_and_the_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(&dir.path().join("state"));
        let mut l = Local::open(&c).unwrap();
        l.state
            .held
            .entry("alice@example.test".into())
            .or_default()
            .insert("ABC123@17".into());
        l.save().unwrap();
        assert!(Local::try_open(&c).unwrap().is_none(), "locked");
        assert!(Local::wanted_again(&c));
        drop(l);
        let again = Local::try_open(&c).unwrap().expect("free");
        assert!(!Local::wanted_again(&c));
        assert_eq!(again.state.held["alice@example.test"].len(), 1);
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        std::fs::write(dir.path().join(STATE), "{not json").unwrap();
        let e = Local::open(&c).err().expect("refused").to_string();
        assert!(e.contains(STATE) && e.contains("postsuper -H"), "{e}");
    }
}
