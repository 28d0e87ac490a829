//! The in-band policy service (`serve`): Dovecot's auth policy over HTTP and Postfix's
//! policy delegation, answered from the levels held in memory while one writer
//! thread records every login and message through the store, as `record` does.
//!
//! Threads from std, one per connection, bounded; nothing here runs a command.

mod answer;
mod dovecot;
mod postfix;
pub mod probe;
mod state;
mod writer;

use std::fmt;
use std::hash::BuildHasher;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

pub use answer::{login_answer, LoginAnswer};
pub use postfix::read_request;
pub use state::{Known, State, Ticket};
pub use writer::{Job, Writer};

use crate::config::{Config, PostfixListen};
use crate::error::{Error, Result};
use crate::model::{Label, SaslUser, Timestamp};
use crate::ownership::Ownership;
use crate::store::{LoginEvent, POLICY_DOVECOT_JAIL, POLICY_POSTFIX_JAIL};
use dovecot::Sessions;

/// Recordings waiting for the writers; past this they go to the spool.
const QUEUE: usize = 20_000;
/// A connection silent this long is closed (Postfix keeps idle ones 300 s by default).
const IDLE: Duration = Duration::from_secs(600);

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, n: usize) {
        self.0.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the service did since it started, for its log.
#[derive(Default)]
pub struct Stats {
    pub dovecot_answers: Counter,
    pub postfix_answers: Counter,
    pub recorded: Counter,
    pub spooled: Counter,
    pub lost: Counter,
    /// Requests that could not be answered (closed without a reply).
    pub refused_requests: Counter,
    /// Connections closed at once because `max_connections` were open.
    pub over_limit: Counter,
    /// Answers given before their judgement was stored (`answer_within_ms`).
    pub late: Counter,
    /// Names or addresses the store would refuse.
    pub invalid: Counter,
    pub store_errors: Counter,
}

/// Why a request gets no answer: the connection is closed (Postfix then applies its
/// default action; Dovecot, with `auth_policy_reject_on_fail = no`, lets the login in).
#[derive(Debug)]
pub enum Unanswerable {
    Io(std::io::Error),
    Bad(String),
    /// The API key was missing or wrong.
    Forbidden,
}

impl fmt::Display for Unanswerable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "{e}"),
            Self::Bad(why) => write!(f, "refused a request: {why}"),
            Self::Forbidden => f.write_str("refused a request without the right X-API-Key"),
        }
    }
}

/// Everything a connection's thread needs.
pub struct Service {
    pub cfg: Arc<Config>,
    pub owners: Arc<Ownership>,
    pub state: Arc<State>,
    pub stats: Arc<Stats>,
    sessions: Sessions,
    /// One queue per writer; an account's events always go to the same one, in order.
    jobs: Vec<SyncSender<Job>>,
    lanes: std::collections::hash_map::RandomState,
    jail_dovecot: Label,
    jail_postfix: Label,
    connections: AtomicUsize,
}

/// The listeners, bound before anything is served (so a bad address fails at start).
pub struct Listeners {
    pub dovecot: Option<TcpListener>,
    pub postfix: Option<PostfixSocket>,
}

pub enum PostfixSocket {
    Unix(UnixListener, PathBuf),
    Inet(TcpListener),
}

impl Listeners {
    pub fn bind(cfg: &Config) -> Result<Self> {
        let p = &cfg.policy;
        if !p.enabled {
            return Err(Error::Usage(
                "policy.enabled is false: set it to true once Dovecot and Postfix are wired to the service (docs/policy-service.md); check, metrics and doctor then watch it".into(),
            ));
        }
        if p.dovecot_listen.is_some() && p.dovecot_api_key.is_empty() {
            return Err(Error::Usage(
                "policy.dovecot_api_key is empty: set it (and Dovecot's auth_policy_server_api_header to \"X-API-Key: KEY\"), or turn the Dovecot listener off with policy.dovecot_listen = \"\"".into(),
            ));
        }
        if p.dovecot_listen.is_none() && p.postfix_listen.is_none() {
            return Err(Error::Usage(
                "policy.dovecot_listen and policy.postfix_listen are both off: nothing to serve"
                    .into(),
            ));
        }
        let dovecot = p
            .dovecot_listen
            .map(|a| TcpListener::bind(a).map_err(|e| bind_error(&a.to_string(), e)))
            .transpose()?;
        let postfix = match &p.postfix_listen {
            None => None,
            Some(PostfixListen::Inet(a)) => Some(PostfixSocket::Inet(
                TcpListener::bind(a).map_err(|e| bind_error(&a.to_string(), e))?,
            )),
            Some(PostfixListen::Unix(path)) => Some(PostfixSocket::Unix(
                unix_socket(path, &p.postfix_group)?,
                path.clone(),
            )),
        };
        Ok(Self { dovecot, postfix })
    }
}

fn bind_error(what: &str, e: std::io::Error) -> Error {
    Error::External(format!("cannot listen on {what}: {e}"))
}

/// Binds the socket, readable and writable by its owner and `group` only (smtpd runs
/// as `postfix`): any other local user could otherwise count mail to an account.
fn unix_socket(path: &Path, group: &str) -> Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    // Only a stale socket is removed, never a file someone put there.
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.file_type().is_socket() {
            return Err(Error::External(format!(
                "{} exists and is not a socket",
                path.display()
            )));
        }
        std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
    }
    let listener =
        UnixListener::bind(path).map_err(|e| bind_error(&path.display().to_string(), e))?;
    let gid = crate::passwd::group_id(group)
        .ok_or_else(|| Error::Usage(format!("policy.postfix_group: no group {group:?}")))?;
    std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| Error::io(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| Error::io(path, e))?;
    Ok(listener)
}

impl Service {
    /// The service and the queue of each of its `writers`.
    pub fn new(
        cfg: Arc<Config>,
        owners: Arc<Ownership>,
        writers: usize,
    ) -> Result<(Arc<Self>, Vec<std::sync::mpsc::Receiver<Job>>)> {
        let writers = writers.max(1);
        let (jobs, rx): (Vec<_>, Vec<_>) =
            (0..writers).map(|_| sync_channel(QUEUE / writers)).unzip();
        let label = |s: &str| Label::parse("jail", s);
        let svc = Self {
            cfg,
            owners,
            state: Arc::new(State::new()),
            stats: Arc::new(Stats::default()),
            sessions: Sessions::new(),
            jobs,
            lanes: std::collections::hash_map::RandomState::new(),
            jail_dovecot: label(POLICY_DOVECOT_JAIL)?,
            jail_postfix: label(POLICY_POSTFIX_JAIL)?,
            connections: AtomicUsize::new(0),
        };
        Ok((Arc::new(svc), rx))
    }

    /// Hands the event `make` builds to the writer, stamped with the time it takes its
    /// place in the account's order: an event stamped after a level change is judged
    /// after it. A full queue or a gone writer keeps it in the spool instead, and the
    /// answer is given from what is known.
    fn send(&self, user: &SaslUser, make: impl FnOnce(Timestamp) -> LoginEvent) -> Option<Ticket> {
        let mut returned = None;
        let lane = &self.jobs[self.lanes.hash_one(user) as usize % self.jobs.len()];
        let sent = self.state.sent(user, || {
            match lane.try_send(Job::Record(make(Timestamp::now()))) {
                Ok(()) => Ok(()),
                Err(
                    TrySendError::Full(Job::Record(e)) | TrySendError::Disconnected(Job::Record(e)),
                ) => {
                    returned = Some(e);
                    Err(())
                }
                Err(_) => Err(()),
            }
        });
        if let Some(e) = returned {
            self.keep(&e);
        }
        sent.ok()
    }

    fn keep(&self, event: &LoginEvent) {
        let spool = crate::spool::Spool::beside(&self.cfg.local_base());
        match spool.keep(event) {
            Ok(()) => self.stats.spooled.inc(),
            Err(e) => {
                self.stats.lost.inc();
                eprintln!(
                    "f2b-mailguard serve: the queue is full and the spool refused an event: {e}"
                );
            }
        }
    }

    /// Asks the first writer, which keeps the whole picture, to read every level again.
    pub fn refresh(&self) {
        if let Some(first) = self.jobs.first() {
            let _ = first.try_send(Job::Refresh);
        }
    }

    /// Serves both listeners until they fail; each connection on its own thread.
    pub fn serve(self: &Arc<Self>, listeners: Listeners) -> Result<()> {
        std::thread::scope(|scope| {
            let mut threads = Vec::new();
            let named = |n: &str| std::thread::Builder::new().name(format!("policy-{n}"));
            let started = |r: std::io::Result<_>| {
                r.map_err(|e| Error::External(format!("cannot start a listener thread: {e}")))
            };
            if let Some(l) = listeners.dovecot {
                threads.push(started(
                    named("dovecot").spawn_scoped(scope, move || self.accept_tcp(l, true)),
                )?);
            }
            match listeners.postfix {
                Some(PostfixSocket::Inet(l)) => threads.push(started(
                    named("postfix").spawn_scoped(scope, move || self.accept_tcp(l, false)),
                )?),
                Some(PostfixSocket::Unix(l, _)) => threads.push(started(
                    named("postfix").spawn_scoped(scope, move || self.accept_unix(l)),
                )?),
                None => {}
            }
            for t in threads {
                t.join()
                    .map_err(|_| Error::External("a listener thread panicked".into()))??;
            }
            Ok(())
        })
    }

    fn accept_tcp(self: &Arc<Self>, l: TcpListener, dovecot: bool) -> Result<()> {
        for conn in l.incoming() {
            let Ok(stream) = conn else { continue };
            let _ = stream.set_nodelay(true);
            self.connection(stream, move |svc, s: TcpStream| {
                let _ = s.set_read_timeout(Some(IDLE));
                if dovecot {
                    svc.serve_dovecot(s)
                } else {
                    svc.serve_postfix(s)
                }
            });
        }
        Ok(())
    }

    fn accept_unix(self: &Arc<Self>, l: UnixListener) -> Result<()> {
        for conn in l.incoming() {
            let Ok(stream) = conn else { continue };
            self.connection(stream, |svc, s: UnixStream| {
                let _ = s.set_read_timeout(Some(IDLE));
                svc.serve_postfix(s)
            });
        }
        Ok(())
    }

    /// Runs `serve` on its own thread unless `max_connections` are open: then the
    /// connection is closed at once and the client falls back to its default.
    fn connection<S: Send + 'static>(
        self: &Arc<Self>,
        stream: S,
        serve: impl FnOnce(&Self, S) -> std::result::Result<(), Unanswerable> + Send + 'static,
    ) {
        let max = self.cfg.policy.max_connections as usize;
        if self.connections.fetch_add(1, Ordering::AcqRel) >= max {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            self.stats.over_limit.inc();
            return;
        }
        let svc = self.clone();
        let started = std::thread::Builder::new()
            .name("policy-conn".into())
            .spawn(move || {
                match serve(&svc, stream) {
                    Ok(()) | Err(Unanswerable::Io(_)) => {}
                    Err(e) => {
                        svc.stats.refused_requests.inc();
                        eprintln!("f2b-mailguard serve: {e}");
                    }
                }
                svc.connections.fetch_sub(1, Ordering::AcqRel);
            });
        if started.is_err() {
            self.connections.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
