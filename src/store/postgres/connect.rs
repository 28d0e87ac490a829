//! Connecting to the shared store with bounded waits: `record` runs under Fail2ban's
//! global action lock, so neither connecting nor a database or network that dies
//! mid-transaction may hold it for long. Connecting gives up after
//! `connect_timeout`; afterwards TCP keepalives and `tcp_user_timeout` notice a dead
//! peer, and `record`'s transaction bounds its own waits on the server (write.rs).

use std::time::Duration;

use postgres::Client;

use super::{one_line, pgpass, tls};
use crate::error::{Error, Result};
use crate::model::PgUrl;

/// What the client library uses when the URL does not say (`keepalives_idle`).
const LIBRARY_KEEPALIVE_IDLE: Duration = Duration::from_secs(2 * 60 * 60);

/// Connects with the URL's settings, ours where it names none: `wait` to connect,
/// keepalives after `wait` idle (then every second, 3 tries) and unacknowledged
/// data for at most twice `wait`, the password from libpq's password file.
pub(super) fn connect(url: &PgUrl, wait: Duration) -> Result<Client> {
    let shown = url.to_string();
    let mut pg = url.client_config().map_err(|e| Error::SharedStore {
        url: shown.clone(),
        reason: e.to_string(),
    })?;
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(wait);
    }
    if pg.get_keepalives_idle() == LIBRARY_KEEPALIVE_IDLE {
        pg.keepalives_idle(wait.max(Duration::from_secs(1)));
    }
    if pg.get_keepalives_interval().is_none() {
        pg.keepalives_interval(Duration::from_secs(1));
    }
    if pg.get_keepalives_retries().is_none() {
        pg.keepalives_retries(3);
    }
    if pg.get_tcp_user_timeout().is_none() {
        pg.tcp_user_timeout(wait * 2);
    }
    if pg.get_password().is_none() {
        if let Some(password) = pgpass::password_for(&pg) {
            pg.password(password);
        }
    }
    if pg.get_application_name().is_none() {
        pg.application_name("f2b-mailguard");
    }
    let used = pg.get_ssl_mode() != postgres::config::SslMode::Disable;
    let connector = tls::connector(url.tls(), used).map_err(|reason| Error::SharedStore {
        url: shown.clone(),
        reason,
    })?;
    connect_within(pg, connector)
        .map_err(|reason| Error::SharedStoreUnreachable { url: shown, reason })
}

/// Connects, giving up after the connect timeout. The client's own timeout covers
/// the socket's connect only; a server (or a proxy) that accepts and never answers
/// would hold `record`, and with it Fail2ban's action lock, for ever. The attempt
/// left behind ends with the process, which keeps the login in its spool.
fn connect_within(
    pg: postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
) -> std::result::Result<Client, String> {
    let timeout = pg
        .get_connect_timeout()
        .copied()
        .unwrap_or(Duration::from_secs(2));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("pg-connect".into())
        .spawn(move || {
            // The receiver may have given up: nobody to tell.
            let _ = tx.send(pg.connect(tls).map_err(|e| one_line(&e)));
        })
        .map_err(|e| format!("cannot start connecting: {e}"))?;
    match rx.recv_timeout(timeout) {
        Ok(connected) => connected,
        Err(_) => Err(format!(
            "no answer within connect_timeout ({} ms)",
            timeout.as_millis()
        )),
    }
}
