//! The mail the policy service held in-band (its `HOLD` answer at end of data), noted
//! as it answers so that `release` finds it. The map's quarantine start
//! (`LocalState::quarantined`) can come after the service's first hold: the service
//! knows a rise at once, while the map is rebuilt by the worker that follows it, and a
//! level changed on another server reaches this server's map only at its next
//! `run-actions`.
//!
//! The service appends one line per held message, `ACCOUNT<TAB>QUEUE_ID`, to a file
//! beside the local state, under a lock of that file only: an answer never waits for
//! a convergence. Whoever opens the local state takes the lines into it (`take`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::config::Config;
use crate::files::private_dir;
use crate::model::SaslUser;

const NOTES: &str = "mailguard.held-in-band";
/// Queue ids kept per account: a botnet held at notify reaches block (refused, no
/// longer held) within seconds; beyond this, `postqueue -j` and `postsuper -H` remain.
const MAX_PER_ACCOUNT: usize = 100_000;

/// Postfix's queue ids, short or long (`enable_long_queue_ids`): letters and digits.
/// Nothing else may reach the file's lines.
fn queue_id_ok(id: &str) -> bool {
    (5..=20).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn open(path: &Path, create: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(create)
        // Never through a link: the service runs as root.
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(path)
}

/// Notes that the service answered `HOLD` for `user`'s message `queue_id` here.
pub fn note(cfg: &Config, user: &SaslUser, queue_id: &str) -> crate::error::Result<()> {
    let dir = cfg.local_dir();
    let path = dir.join(NOTES);
    if !queue_id_ok(queue_id) {
        return Err(crate::error::Error::Usage(format!(
            "not a Postfix queue id: {queue_id:?}"
        )));
    }
    private_dir(&dir)?;
    let io = |e| crate::error::Error::io(&path, e);
    let mut f = open(&path, true).map_err(io)?;
    f.lock().map_err(io)?;
    f.write_all(format!("{}\t{queue_id}\n", user.as_str()).as_bytes())
        .map_err(io)
}

/// The noted lines, locked until `clear` or drop.
pub(super) struct Notes(File);

impl Notes {
    /// None when nothing was ever noted here.
    pub fn open(dir: &Path) -> std::io::Result<Option<Self>> {
        match open(&dir.join(NOTES), false) {
            Ok(f) => {
                f.lock()?;
                Ok(Some(Self(f)))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Adds the noted messages to `into` (per account, its queue ids); false if none
    /// was noted. A line that is not an account and a queue id is skipped.
    pub fn take(&mut self, into: &mut BTreeMap<String, BTreeSet<String>>) -> std::io::Result<bool> {
        let mut text = String::new();
        self.0.rewind()?;
        self.0.read_to_string(&mut text)?;
        let mut any = false;
        for line in text.lines() {
            let Some((user, id)) = line.split_once('\t') else {
                continue;
            };
            let (Ok(user), true) = (SaslUser::parse(user), queue_id_ok(id)) else {
                continue;
            };
            let ids = into.entry(user.as_str().to_owned()).or_default();
            if ids.len() < MAX_PER_ACCOUNT {
                ids.insert(id.to_owned());
            }
            any = true;
        }
        Ok(any)
    }

    /// Empties the file, once what it held is saved elsewhere.
    pub fn clear(self) -> std::io::Result<()> {
        self.0.set_len(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_taken_once_and_strange_lines_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            local_dir: Some(dir.path().to_path_buf()),
            ..Config::default()
        };
        let alice = SaslUser::parse("Alice@Example.test").unwrap();
        note(&cfg, &alice, "4XyZ1abc").unwrap();
        assert!(note(&cfg, &alice, "4XY\tbob@x").is_err());
        let mut f = open(&dir.path().join(NOTES), false).unwrap();
        f.write_all(b"bob@example.test\tnot/an/id\n\tABCDE12\nno tab\n")
            .unwrap();
        let mut notes = Notes::open(dir.path()).unwrap().unwrap();
        let mut into = BTreeMap::new();
        assert!(notes.take(&mut into).unwrap());
        assert_eq!(into.len(), 1, "{into:?}");
        assert!(into["alice@example.test"].contains("4XyZ1abc"));
        notes.clear().unwrap();
        let mut notes = Notes::open(dir.path()).unwrap().unwrap();
        assert!(!notes.take(&mut BTreeMap::new()).unwrap());
    }
}
