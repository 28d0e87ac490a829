//! Logins refused for good (input that can never become valid, exit 2), one line
//! each beside the spool (`<db>.rejected`), so `status`, `check`, `metrics` and
//! `doctor` can say that logins were dropped and why, even while the config is broken.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::files::private_dir;
use crate::model::{Span, Timestamp};

/// Past this the file starts over and the old one is kept as `.1`: together at least
/// a day of rejections at any plausible rate, and never more than 512 KiB.
const ROTATE_BYTES: u64 = 256 * 1024;
/// A reason is cut to this many characters: the rejected value may be long or hostile.
const REASON_CHARS: usize = 200;

pub struct Rejections {
    path: PathBuf,
}

impl Rejections {
    pub fn beside(db: &Path) -> Self {
        let mut path = db.as_os_str().to_owned();
        path.push(".rejected");
        Self { path: path.into() }
    }

    pub(super) fn beside_spool(spool: &Path) -> Self {
        Self::beside(&spool.with_extension(""))
    }

    fn old(&self) -> PathBuf {
        let mut p = self.path.as_os_str().to_owned();
        p.push(".1");
        p.into()
    }

    /// Counts one rejection at `at` (wall clock) with its reason.
    pub fn note(&self, at: Timestamp, reason: &str) -> Result<()> {
        let io = |e: std::io::Error| Error::io(&self.path, e);
        if let Some(dir) = self.path.parent() {
            private_dir(dir)?;
        }
        // Shown on a terminal later: no control characters, no line breaks.
        let reason: String = reason
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .take(REASON_CHARS)
            .collect();
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.len() > ROTATE_BYTES) {
            // Two racing rotations lose at most one file's count, never a spooled login.
            std::fs::rename(&self.path, self.old()).map_err(io)?;
        }
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&self.path)
            .map_err(io)?;
        f.write_all(format!("{}\t{reason}\n", at.millis()).as_bytes())
            .map_err(io)
    }

    /// Rejections in the 24 hours before `now`, and the last one with its reason.
    pub fn summary(&self, now: Timestamp) -> (u64, Option<(Timestamp, String)>) {
        let since = now.minus(Span::secs(24 * 3600));
        let mut count = 0;
        let mut last: Option<(Timestamp, String)> = None;
        for path in [self.old(), self.path.clone()] {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => {
                    last = Some((now, format!("{}: {e}", path.display())));
                    continue;
                }
            };
            for (ms, reason) in text.lines().filter_map(|l| l.split_once('\t')) {
                let Ok(ms) = ms.parse::<i64>() else { continue };
                let at = Timestamp::from_millis(ms);
                if at > since {
                    count += 1;
                }
                if last.as_ref().is_none_or(|(t, _)| at >= *t) {
                    last = Some((at, reason.to_owned()));
                }
            }
        }
        (count, last.filter(|(t, _)| *t > since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_a_day_and_keeps_the_last_reason_printable() {
        let dir = tempfile::tempdir().unwrap();
        let r = Rejections::beside(&dir.path().join("mg.db"));
        let now = Timestamp::from_millis(100 * 86_400_000);
        r.note(now.minus(Span::secs(2 * 86_400)), "old").unwrap();
        r.note(now.minus(Span::secs(60)), "invalid --ip: \"x\ny\"")
            .unwrap();
        r.note(now.minus(Span::secs(30)), "invalid --user: long")
            .unwrap();
        let (n, last) = r.summary(now);
        assert_eq!(n, 2);
        assert_eq!(last.unwrap().1, "invalid --user: long");
        let text = std::fs::read_to_string(dir.path().join("mg.db.rejected")).unwrap();
        assert!(text.contains("\"x?y\""), "{text}");
    }
}
