//! The long-lived writer the Python Fail2ban action (action.d/f2b_mailguard.py) starts:
//! Fail2ban hands each ticket over with one pipe write instead of a shell and a process.
//!
//! Input: one ticket per line, a JSON object whose string fields are `record`'s options
//! (`source`, `jail`, `user`, `ip`, `time`, `fid`, `count`), validated by `record`'s own
//! parser. JSON escapes every control character, so a user name cannot end its line or
//! add a field; a line longer than `MAX_LINE` is refused whole.
//!
//! Output: after each batch, one line `{"done":N,...}`: the next N input lines are
//! stored, were stored already, are kept in the spool, or were refused and counted,
//! as `record` would have. The action resends whatever is not acknowledged when this
//! process dies; the store's duplicate rule keeps a resent ticket once.
//!
//! Each batch is what has arrived, at most `--batch` lines, in one transaction on a
//! connection kept open. EOF on stdin: store what was read, then exit.

use std::ffi::OsString;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use super::record::{keep, reject};
use super::{App, Run};
use crate::actions;
use crate::cli::{Record, Stream};
use crate::config::{Config, DEFAULT_CONFIG};
use crate::detect::Engine;
use crate::error::{Error, Invalid, Result};
use crate::model::Deadline;
use crate::ownership::Ownership;
use crate::spool;
use crate::store::{self, BatchCounts, LoginEvent, Store};

/// The longest line read: far above any ticket (Postfix cuts its log lines at 2,000
/// characters, JSON escaping at most sextuples them), small enough to hold in memory.
pub const MAX_LINE: usize = 64 * 1024;

/// A long-lived connection is reopened this often anyway, so a replaced ASN database
/// or a moved config is picked up without a restart.
const REOPEN_AFTER: Duration = Duration::from_secs(600);

/// One ticket line: `record`'s options, each as the text Fail2ban gave.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ticket {
    source: Option<String>,
    jail: Option<String>,
    user: Option<String>,
    ip: Option<String>,
    time: Option<String>,
    fid: Option<String>,
    count: Option<String>,
}

impl Ticket {
    fn into_record(self) -> Record {
        let os = |v: Option<String>| v.map(OsString::from);
        Record {
            source: os(self.source),
            jail: os(self.jail),
            user: os(self.user),
            ip: os(self.ip),
            time: os(self.time),
            fid: os(self.fid),
            count: os(self.count),
        }
    }
}

/// What the reader thread hands on.
enum Incoming {
    Line(Vec<u8>),
    /// A line over `MAX_LINE` bytes, skipped to its end.
    TooLong,
}

/// One input line as a login, validated as `record` validates its arguments.
fn parse(incoming: Incoming) -> std::result::Result<LoginEvent, Invalid> {
    let raw = match incoming {
        Incoming::Line(raw) => raw,
        Incoming::TooLong => {
            return Err(Invalid::new(
                "ticket",
                format!("line longer than {MAX_LINE} bytes"),
            ))
        }
    };
    let ticket: Ticket = serde_json::from_slice(&raw)
        .map_err(|e| Invalid::new("ticket", format!("not a ticket line: {e}")))?;
    ticket.into_record().event()
}

impl Run for Stream {
    fn run(&self, app: &App) -> Result<()> {
        let batch = usize::from(self.batch);
        let (tx, rx) = sync_channel(batch * 4);
        // Reading apart from storing: lines keep arriving while a batch commits.
        std::thread::spawn(move || read_lines(tx));
        let mut out = std::io::stdout().lock();
        let mut writer = Writer::new(app);
        while let Some(lines) = next_batch(&rx, batch) {
            let n = lines.len();
            let mut refused = 0;
            let mut events = Vec::with_capacity(n);
            for line in lines {
                match parse(line) {
                    Ok(event) => events.push(event),
                    Err(invalid) => {
                        refused += 1;
                        // Counted where the admin looks; the reason goes to stderr.
                        eprintln!("f2b-mailguard: {}", reject(app, invalid));
                    }
                }
            }
            let done = writer.store(&events)?;
            let ack = format!(
                "{{\"done\":{n},\"stored\":{},\"duplicates\":{},\"kept\":{},\"refused\":{refused}}}\n",
                done.batch.stored, done.batch.duplicates, done.kept
            );
            // The action gone: what is stored stays, the rest it resends to the next one.
            if out
                .write_all(ack.as_bytes())
                .and_then(|()| out.flush())
                .is_err()
            {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// The next lines that have arrived, at most `max`; waits for the first. None at EOF.
fn next_batch(rx: &Receiver<Incoming>, max: usize) -> Option<Vec<Incoming>> {
    let mut lines = vec![rx.recv().ok()?];
    while lines.len() < max {
        match rx.try_recv() {
            Ok(line) => lines.push(line),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
        }
    }
    Some(lines)
}

/// Stdin's lines, each at most `MAX_LINE` bytes, until EOF. A last line without its
/// line break is the writer dying mid-write: it was not sent, and is resent.
fn read_lines(tx: SyncSender<Incoming>) {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    loop {
        let mut line = Vec::new();
        match (&mut input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let incoming = if line.last() == Some(&b'\n') {
            line.pop();
            Incoming::Line(line)
        } else if line.len() > MAX_LINE {
            if !skip_line(&mut input) {
                return;
            }
            Incoming::TooLong
        } else {
            return;
        };
        if tx.send(incoming).is_err() {
            return;
        }
    }
}

/// Reads past the next line break; false at EOF or on an error.
fn skip_line(input: &mut impl BufRead) -> bool {
    loop {
        let (found, used) = match input.fill_buf() {
            Ok([]) | Err(_) => return false,
            Ok(buf) => match buf.iter().position(|b| *b == b'\n') {
                Some(i) => (true, i + 1),
                None => (false, buf.len()),
            },
        };
        input.consume(used);
        if found {
            return true;
        }
    }
}

/// What one batch came to.
struct Done {
    batch: BatchCounts,
    kept: usize,
}

/// The store, kept open between batches; reopened after a failure, when the config
/// file changes, and every `REOPEN_AFTER`.
struct Writer<'a> {
    app: &'a App,
    open: Option<Opened>,
}

struct Opened {
    cfg: Config,
    owners: Ownership,
    store: Box<dyn Store>,
    /// The config file's modification time when it was read.
    config_mtime: Option<SystemTime>,
    since: Instant,
}

impl<'a> Writer<'a> {
    fn new(app: &'a App) -> Self {
        Self { app, open: None }
    }

    fn config_file(&self) -> PathBuf {
        self.app
            .config_path
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
    }

    /// Stores `events` (spooled logins first, as `record` does), or keeps them in the
    /// spool; an error only when they are neither stored nor kept.
    fn store(&mut self, events: &[LoginEvent]) -> Result<Done> {
        if events.is_empty() {
            return Ok(Done {
                batch: BatchCounts::default(),
                kept: 0,
            });
        }
        let fresh = self.open.take().filter(|o| {
            o.since.elapsed() < REOPEN_AFTER && o.config_mtime == mtime(&self.config_file())
        });
        let mut open = match fresh {
            Some(open) => open,
            None => match self.open_store() {
                Ok(open) => open,
                Err((base, e)) => return self.keep(&base, events, &e),
            },
        };
        match store_batch(self.app, &mut open, events) {
            Ok((batch, kept)) => {
                self.open = Some(open);
                if batch.queued > 0 {
                    // Mail, postmap, postsuper, doveadm: never in this loop.
                    actions::worker::spawn(
                        self.app.config_path.as_deref(),
                        self.app.db_arg.as_deref(),
                    );
                }
                Ok(Done { batch, kept })
            }
            // A lost connection or a broken file: the next batch opens afresh.
            Err(e) => self.keep(&open.cfg.local_base(), events, &e),
        }
    }

    /// The config and the store; on failure, where to keep the logins and why.
    fn open_store(&self) -> std::result::Result<Opened, (PathBuf, Error)> {
        let cfg = self
            .app
            .config()
            .map_err(|e| (self.app.spool_database(), e))?;
        let config_mtime = mtime(&self.config_file());
        let store = store::open(&cfg).map_err(|e| (cfg.local_base(), e))?;
        let owners = Ownership::open_or_warn(&cfg);
        Ok(Opened {
            cfg,
            owners,
            store,
            config_mtime,
            since: Instant::now(),
        })
    }

    fn keep(&self, base: &Path, events: &[LoginEvent], cause: &Error) -> Result<Done> {
        keep(base, events, cause)?;
        Ok(Done {
            batch: BatchCounts::default(),
            kept: events.len(),
        })
    }
}

/// The spool first (older logins, for at most `record_wait`), then the batch, with
/// the open store; a login whose account still has logins waiting in the spool is
/// kept behind them, or it would be judged before them. Returns what was stored and
/// how many were kept.
fn store_batch(
    app: &App,
    open: &mut Opened,
    events: &[LoginEvent],
) -> Result<(BatchCounts, usize)> {
    let engine = Engine::new(&open.cfg, &open.owners);
    let spools = spool::spools(&open.cfg.local_base(), app.db_from_config());
    let until = Deadline::after(open.cfg.record_wait);
    let drained = spool::drain_waiting(&spools, open.store.as_mut(), &engine, until)?;
    // Messages the policy service counts: acknowledged as already stored.
    let (in_band, events): (Vec<&LoginEvent>, Vec<&LoginEvent>) =
        events.iter().partition(|e| e.counted_in_band(&open.cfg));
    let (behind, ready): (Vec<LoginEvent>, Vec<LoginEvent>) = events
        .into_iter()
        .cloned()
        .partition(|e| drained.waiting.contains(&e.user));
    if let Some(first) = behind.first() {
        let user = first.user.as_str().to_owned();
        keep(&open.cfg.local_base(), &behind, &Error::Behind { user })?;
    }
    let mut batch = open.store.record_batch(&ready, &engine)?;
    batch.queued += drained.queued;
    batch.duplicates += in_band.len();
    Ok((batch, behind.len()))
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Incoming {
        Incoming::Line(text.as_bytes().to_vec())
    }

    #[test]
    fn a_line_is_validated_as_records_arguments() {
        let ok = parse(line(
            r#"{"source":"smtp","jail":"mailguard-smtp","user":"a\"b\n--ip=1.2.3.4@x","ip":"192.0.2.1","time":"1795418066.0","fid":"('a', '192.0.2.1')","count":"1"}"#,
        ));
        // The escaped line break stays inside the user name, which refuses it.
        let err = ok.expect_err("a control character in a user name");
        assert_eq!(err.field, "user", "{err}");
        let good = parse(line(
            r#"{"source":"rate","jail":"mailguard-rate","user":"a@x","ip":"192.0.2.1","time":"1795418066","fid":"a@x B1","count":"3"}"#,
        ))
        .expect("a valid ticket");
        assert_eq!(good.count.get(), 3);
        assert_eq!(good.time.millis(), 1_795_418_066_000);
        for bad in [
            r#"{"source":"smtp","user":"a@x","ip":"192.0.2.1","jail":"j","extra":"1"}"#,
            r#"{"source":"smtp","user":"a@x","ip":"not an address","jail":"j"}"#,
            r#"{"source":"smtp","user":"a@x","ip":"192.0.2.1"}"#,
            "not json",
        ] {
            assert!(parse(line(bad)).is_err(), "{bad}");
        }
        assert_eq!(
            parse(Incoming::TooLong).expect_err("too long").field,
            "ticket"
        );
    }

    #[test]
    fn long_lines_are_refused_whole_and_reading_goes_on() {
        let mut input = vec![b'x'; MAX_LINE + 10];
        input.extend_from_slice(b"\nnext\n");
        let mut r = std::io::Cursor::new(input);
        let mut first = Vec::new();
        (&mut r)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut first)
            .expect("read");
        assert_eq!(first.len(), MAX_LINE + 1);
        assert!(skip_line(&mut r));
        let mut next = Vec::new();
        r.read_until(b'\n', &mut next).expect("read");
        assert_eq!(next, b"next\n");
    }
}
