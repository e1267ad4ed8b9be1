//! TLS with rustls (ring provider): PEM loading and handshakes for `ssl:` endpoints.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

/// A TLS handshake that has not finished by then is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// rustls rejected the key or certificate.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The server name is not a valid DNS name or IP address.
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::Pem {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no CERTIFICATE found in PEM file"));
    }
    Ok(certs)
}

/// A TLS acceptor for a PEM certificate chain and private key, offering `alpn`.
pub(crate) fn acceptor(
    cert: &Path,
    key: &Path,
    alpn: &[Vec<u8>],
) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let certs = load_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = alpn.to_vec();
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Loads an `ssl:` server's certificate chain and private key exactly as listening does,
/// binding nothing: a configuration can be checked before anything starts.
pub fn check_server_files(cert: &Path, key: &Path) -> Result<(), TlsError> {
    acceptor(cert, key, &[]).map(drop)
}

/// Loads an `ssl:` client's trusted roots (`caCerts=`) exactly as connecting does.
pub fn check_ca_certs(ca_certs: &Path) -> Result<(), TlsError> {
    connector(Some(ca_certs)).map(drop)
}

/// A TLS connector trusting the roots in `ca_certs`.
pub(crate) fn connector(ca_certs: Option<&Path>) -> Result<tokio_rustls::TlsConnector, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = ca_certs {
        for cert in load_certs(path)? {
            roots.add(cert)?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The server side of a handshake, bounded in time.
pub(crate) async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

/// Logs and reports a server-side handshake that failed (no connection was opened).
pub(crate) fn report_handshake_failure(
    service: &std::sync::Arc<str>,
    peer: &crate::Address,
    err: &std::io::Error,
) {
    use crate::observe::{self, ErrorKind, Event, ProtocolError};
    tracing::info!(%service, %peer, %err, "TLS handshake failed");
    observe::emit(|| {
        Event::ProtocolError(ProtocolError {
            service: service.clone(),
            connection: None,
            kind: ErrorKind::TlsHandshake,
            message: format!("TLS handshake with {peer} failed: {err}"),
        })
    });
}

/// The client side of a handshake.
pub(crate) async fn connect(
    connector: tokio_rustls::TlsConnector,
    host: &str,
    stream: TcpStream,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = ServerName::try_from(host.to_owned()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            TlsError::ServerName(host.into()),
        )
    })?;
    tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}
