//! The rustls connector behind libpq's `sslmode` and `sslrootcert`:
//! - `prefer`/`require`: encrypted, the certificate unchecked, unless a root
//!   certificate is there (`sslrootcert`, or `~/.postgresql/root.crt`): then, as
//!   libpq keeps for compatibility, the chain is checked as with `verify-ca`;
//! - `verify-ca`: the chain up to one of the root certificates;
//! - `verify-full`: that, and the certificate names the host of the URL;
//! - `sslcert`/`sslkey` (or `~/.postgresql/postgresql.crt` and `.key`): a client
//!   certificate for pg_hba's `cert` method, its key refused when others may read it.
//!
//! The handshake's signatures are always checked, whatever the mode.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::model::{PgTls, RootCert, SslMode};

/// The connector for `tls`; `used` is false when the client library will not ask
/// for TLS (sslmode=disable, or a Unix socket), and no root certificate is read.
pub fn connector(tls: &PgTls, used: bool) -> Result<MakeRustlsConnect, String> {
    let roots = if used { roots(tls)? } else { None };
    let client = if used { client_auth(tls)? } else { None };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Verifier {
        roots: roots.map(Arc::new),
        full: tls.mode == SslMode::VerifyFull,
        provider: provider.clone(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let config = match client {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("sslcert/sslkey: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// The client certificate chain and key to present, if any: named in the URL (then
/// they must be there), or libpq's default files if the certificate exists.
fn client_auth(
    tls: &PgTls,
) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, String> {
    let cert = match &tls.client_cert {
        Some(path) => path.clone(),
        None => match dot_postgresql("postgresql.crt").filter(|p| p.exists()) {
            Some(path) => path,
            None if tls.client_key.is_some() => {
                return Err("sslkey without sslcert: name the certificate too".into())
            }
            None => return Ok(None),
        },
    };
    let key = tls
        .client_key
        .clone()
        .or_else(|| dot_postgresql("postgresql.key"))
        .ok_or("sslcert without sslkey: name the key too")?;
    let chain = CertificateDer::pem_file_iter(&cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("sslcert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("sslcert {}: no certificate in it", cert.display()));
    }
    private_to_us(&key)?;
    let key =
        PrivateKeyDer::from_pem_file(&key).map_err(|e| format!("sslkey {}: {e}", key.display()))?;
    Ok(Some((chain, key)))
}

/// libpq's rule for the key file: a regular file (a symlink to one is followed, as
/// `stat` does), no access for others, and none for the group unless root owns it
/// (then the group may read it: a root-owned 0640 key).
fn private_to_us(key: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let shown = key.display();
    let meta = std::fs::metadata(key).map_err(|e| format!("sslkey {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("sslkey {shown}: not a regular file"));
    }
    let mode = meta.mode() & 0o777;
    let (refused, fix) = if meta.uid() == 0 {
        (0o037, "0640")
    } else {
        (0o077, "0600")
    };
    if mode & refused != 0 {
        return Err(format!(
            "sslkey {shown}: mode {mode:04o} lets others read the key; chmod it to {fix} or less"
        ));
    }
    Ok(())
}

/// The root certificates the mode checks against, if any.
fn roots(tls: &PgTls) -> Result<Option<RootCertStore>, String> {
    let verify = matches!(tls.mode, SslMode::VerifyCa | SslMode::VerifyFull);
    match &tls.root_cert {
        Some(RootCert::System) => {
            let found = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err("sslrootcert=system: the system has no trusted CA certificates".into());
            }
            Ok(Some(store))
        }
        // Given by name, a missing file is an error in every mode: libpq would go on
        // unverified under require, which hides a typo.
        Some(RootCert::File(path)) => pem_roots(path).map(Some),
        None => match dot_postgresql("root.crt").filter(|p| p.exists()) {
            Some(path) => pem_roots(&path).map(Some),
            None if verify => Err(format!(
                "sslmode={} needs the CA certificate: give sslrootcert=PATH (or sslrootcert=system), or place it in ~/.postgresql/root.crt",
                tls.mode.as_str()
            )),
            None => Ok(None),
        },
    }
}

/// A file of libpq's in `~/.postgresql`.
fn dot_postgresql(name: &str) -> Option<PathBuf> {
    crate::passwd::home().map(|h| h.join(".postgresql").join(name))
}

fn pem_roots(path: &Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("sslrootcert {shown}: {e}"))?;
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("sslrootcert {shown}: no CA certificate in it"));
    }
    Ok(store)
}

#[derive(Debug)]
struct Verifier {
    /// None: encrypted, the certificate unchecked (prefer/require without a root).
    roots: Option<Arc<RootCertStore>>,
    /// verify-full: the certificate must name the host.
    full: bool,
    provider: Arc<CryptoProvider>,
}

/// `ServerCertVerifier`'s signature methods, each calling the rustls function of its
/// own name with the verifier's algorithms.
macro_rules! signature_checks {
    ($($check:ident),+) => {$(
        fn $check(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            $check(message, cert, dss, &self.provider.signature_verification_algorithms)
        }
    )+};
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            let algs = self.provider.signature_verification_algorithms.all;
            verify_server_cert_signed_by_trust_anchor(&cert, roots, intermediates, now, algs)?;
            if self.full {
                verify_server_name(&cert, server_name)?;
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    // The handshake's signatures, TLS 1.2's and 1.3's alike: rustls's own check of
    // each, with the provider's algorithms (the same whatever the mode).
    signature_checks!(verify_tls12_signature, verify_tls13_signature);

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::private_to_us;

    #[test]
    fn a_key_others_may_read_or_no_file_is_refused_as_libpq_refuses_it() {
        let dir = tempfile::tempdir().expect("dir");
        let key = dir.path().join("k.key");
        std::fs::write(&key, "not read here").expect("key");
        let root = std::fs::metadata(&key).expect("meta").uid() == 0;
        let mode = |m: u32| {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(m)).expect("chmod");
            private_to_us(&key)
        };
        assert!(mode(0o600).is_ok());
        // The owner's own bits are the owner's business.
        assert!(mode(0o700).is_ok());
        // The group may read a key root owns, nobody else's.
        assert_eq!(mode(0o640).is_ok(), root);
        let err = mode(0o644).expect_err("world-readable");
        assert!(err.contains("lets others read the key"), "{err}");
        assert!(mode(0o660).is_err());
        let err = private_to_us(dir.path()).expect_err("a directory");
        assert!(err.contains("not a regular file"), "{err}");
    }
}
