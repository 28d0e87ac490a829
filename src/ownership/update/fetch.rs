//! One HTTP GET into a file: https (plain http only to loopback, checked by the
//! config), the system's CA certificates, a proxy from the environment
//! (`https_proxy`, `ALL_PROXY`...), the whole transfer bounded in time and size.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::Agent;

use crate::error::one_line;

/// Larger than any vendor's file (IPinfo Lite, the largest, is about 100 MB).
pub const MAX_DOWNLOAD: u64 = 512 << 20;

/// Why a download failed.
#[derive(Debug)]
pub enum FetchError {
    /// 404: the file is not (yet) there; a monthly file may not be out.
    NotFound,
    Failed(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::NotFound => f.write_str("HTTP 404 Not Found"),
            FetchError::Failed(why) => f.write_str(why),
        }
    }
}

pub struct Client {
    agent: Agent,
    timeout: Duration,
}

impl Client {
    /// `tls`: whether any URL is https (the CA certificates are loaded only then).
    pub fn new(timeout: Duration, tls: bool) -> Result<Self, String> {
        let mut config = Agent::config_builder()
            .timeout_global(Some(timeout))
            .user_agent(concat!("f2b-mailguard/", env!("CARGO_PKG_VERSION")))
            .max_redirects(5);
        if tls {
            config = config.tls_config(tls_config()?);
        }
        Ok(Self {
            agent: config.build().into(),
            timeout,
        })
    }

    /// GETs `url` into `out`; `shown` names it in errors (without a token).
    pub fn get(&self, url: &str, shown: &str, out: &mut impl Write) -> Result<u64, FetchError> {
        let late = || {
            FetchError::Failed(format!(
                "{shown}: not complete within ownership.download_timeout ({}s)",
                self.timeout.as_secs()
            ))
        };
        let request = self
            .agent
            .get(url)
            .config()
            // An https download never follows a redirect to plain http.
            .https_only(url.starts_with("https://"))
            .build();
        let mut response = request.call().map_err(|e| match e {
            ureq::Error::StatusCode(404) => FetchError::NotFound,
            ureq::Error::StatusCode(code) => FetchError::Failed(format!("{shown}: HTTP {code}")),
            ureq::Error::Timeout(_) => late(),
            other => FetchError::Failed(format!("{shown}: {}", one_line(&other))),
        })?;
        let body = response.body_mut();
        if body.content_length().is_some_and(|n| n > MAX_DOWNLOAD) {
            return Err(FetchError::Failed(format!(
                "{shown}: larger than {} MiB",
                MAX_DOWNLOAD >> 20
            )));
        }
        let mut reader = body.with_config().limit(MAX_DOWNLOAD).reader();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if timed_out(&e) => return Err(late()),
                Err(e) => {
                    return Err(FetchError::Failed(format!(
                        "{shown}: download cut after {total} bytes: {e}"
                    )))
                }
            };
            out.write_all(&buf[..n])
                .map_err(|e| FetchError::Failed(format!("writing the download: {e}")))?;
            total += n as u64;
        }
    }
}

/// rustls with ring and the system's CA certificates, as for the shared store.
fn tls_config() -> Result<TlsConfig, String> {
    let found = rustls_native_certs::load_native_certs();
    let roots: Vec<Certificate<'static>> = found
        .certs
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    if roots.is_empty() {
        return Err(
            "the system has no trusted CA certificates (Debian: apt install ca-certificates)"
                .into(),
        );
    }
    Ok(TlsConfig::builder()
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build())
}

/// ureq hands its own errors through `Read` wrapped in an `io::Error`.
fn timed_out(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::TimedOut
        || e.get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
            .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)))
}
