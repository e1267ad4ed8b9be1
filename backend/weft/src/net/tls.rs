//! TLS with rustls (ring provider): PEM loading and handshakes for `ssl:` endpoints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

/// A TLS handshake that has not finished by then is abandoned.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// The most a PEM file may hold: a certificate chain or a key is a few KiB, a bundle of
/// every public root about 200 KiB.
const MAX_PEM_BYTES: u64 = 4 << 20;

/// A PEM file's bytes, from a regular file of at most [`MAX_PEM_BYTES`]: a FIFO would
/// hang whoever reads it (`weft check`, a start, a reload) and a device would never end.
fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    crate::files::read_regular(path, MAX_PEM_BYTES).map_err(|e| pem_error(path, e))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no CERTIFICATE found in PEM file"));
    }
    Ok(certs)
}

/// A further certificate of an `ssl:` listener, served to clients that ask for one of
/// its names by SNI; clients that send no name or another one get the endpoint's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniCertificate {
    /// DNS names, matched exactly and without regard to ASCII case.
    pub names: Vec<String>,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// What the two files held when they were checked ([`check_server_files`]): a
    /// certificate renewed in place makes a different entry, so a reload serves it.
    pub contents: FilesDigest,
}

/// A digest of what some files held: two digests differ when the files' bytes did
/// (SipHash, as `std` keys it: not against an adversary, who could write the files).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FilesDigest(u64);

impl FilesDigest {
    /// The digest of this one's files and then `other`'s.
    #[must_use]
    pub fn and(self, other: FilesDigest) -> FilesDigest {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (self.0, other.0).hash(&mut hasher);
        FilesDigest(hasher.finish())
    }

    fn of(files: &[&[u8]]) -> FilesDigest {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        files.hash(&mut hasher);
        FilesDigest(hasher.finish())
    }
}

/// A certificate chain and its key, loaded and checked against each other.
fn certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs = load_certs(cert)?;
    match CertifiedKey::from_der(certs, load_key(key)?, &provider()) {
        Ok(certified) => Ok(Arc::new(certified)),
        // rustls says `keys may not be consistent: KeyMismatch`.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(pem_error(
                key,
                format!(
                    "is not the private key of the first certificate in {} (the server's \
                     own, which comes before any intermediate; was the pair renewed one \
                     file at a time?)",
                    cert.display()
                ),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// The private key in the PEM file at `path`; the error says what is there instead when it
/// is not one weft can read: an encrypted key (there is no one to ask for a passphrase), or
/// no key at all.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_pem(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        let has = |text: &[u8]| pem.windows(text.len()).any(|w| w == text);
        if has(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") || has(b"Proc-Type: 4,ENCRYPTED") {
            pem_error(
                path,
                "holds an encrypted private key, which weft cannot read (it asks for no \
                 passphrase); write it out decrypted, readable by weft's user alone, with \
                 `openssl pkey -in KEY -out KEY.plain`",
            )
        } else if matches!(e, rustls_pki_types::pem::Error::NoItemsFound) {
            pem_error(
                path,
                "no private key found in PEM file (one begins `-----BEGIN PRIVATE KEY-----`, \
                 `RSA PRIVATE KEY` or `EC PRIVATE KEY`)",
            )
        } else {
            pem_error(path, e)
        }
    })
}

/// What a server certificate says of itself (the first of a PEM chain, the server's
/// own): when it is valid, and for which names. Read for warnings and the gateway's expiry
/// gauge; nothing here verifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    /// Not valid before this.
    pub not_before: SystemTime,
    /// Not valid after this.
    pub not_after: SystemTime,
    /// Its subject alternative names of type DNS, as written (`*.example.com` among
    /// them); clients match names against these alone, not the subject's common name
    /// (RFC 6125 §6.4.4).
    pub dns_names: Vec<String>,
}

impl CertificateFacts {
    /// Reads the first certificate in the PEM file at `cert`.
    pub fn read(cert: &Path) -> Result<Self, TlsError> {
        let certs = load_certs(cert)?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&certs[0])
            .map_err(|e| pem_error(cert, format!("its first certificate cannot be read: {e}")))?;
        let at = |asn1: &x509_parser::time::ASN1Time| {
            let seconds = asn1.timestamp();
            match u64::try_from(seconds) {
                Ok(after) => SystemTime::UNIX_EPOCH + Duration::from_secs(after),
                Err(_) => SystemTime::UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs()),
            }
        };
        let validity = parsed.validity();
        let dns_names = match parsed.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(Self {
            not_before: at(&validity.not_before),
            not_after: at(&validity.not_after),
            dns_names,
        })
    }

    /// Whether a client asking for `name` by SNI accepts it: one of its DNS names is
    /// `name`, without regard to ASCII case, or a wildcard `*.` standing for exactly
    /// `name`'s first label (RFC 6125 §6.4.3).
    pub fn covers(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        self.dns_names.iter().any(|dns| {
            let dns = dns.trim_end_matches('.');
            if let Some(parent) = dns.strip_prefix("*.") {
                name.split_once('.').is_some_and(|(first, rest)| {
                    !first.is_empty() && rest.eq_ignore_ascii_case(parent)
                })
            } else {
                dns.eq_ignore_ascii_case(name)
            }
        })
    }
}

/// Picks the certificate by the name the client sent, the default one otherwise.
#[derive(Debug)]
struct SniResolver {
    default: Arc<CertifiedKey>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl rustls::server::ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // rustls hands over the name already validated as a DNS name and lowercased.
        let chosen = hello.server_name().and_then(|name| self.by_name.get(name));
        Some(chosen.unwrap_or(&self.default).clone())
    }
}

/// A TLS acceptor for a PEM certificate chain and private key, offering `alpn`, with
/// `sni` chosen by the name the client asks for.
pub(crate) fn acceptor(
    cert: &Path,
    key: &Path,
    alpn: &[Vec<u8>],
    sni: &[SniCertificate],
) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let mut by_name = HashMap::new();
    for extra in sni {
        let loaded = certified_key(&extra.cert, &extra.key)?;
        for name in &extra.names {
            by_name.insert(name.to_ascii_lowercase(), loaded.clone());
        }
    }
    let resolver = SniResolver {
        default: certified_key(cert, key)?,
        by_name,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = alpn.to_vec();
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Loads an `ssl:` server's certificate chain and private key exactly as listening does,
/// binding nothing: a configuration can be checked before anything starts. Says what the
/// files held, so a reload tells a certificate renewed in place from the one it serves.
pub fn check_server_files(cert: &Path, key: &Path) -> Result<FilesDigest, TlsError> {
    certified_key(cert, key)?;
    Ok(FilesDigest::of(&[&read_pem(cert)?, &read_pem(key)?]))
}

/// Loads an `ssl:` client's trusted roots (`caCerts=`) exactly as connecting does.
pub fn check_ca_certs(ca_certs: &Path) -> Result<FilesDigest, TlsError> {
    connector(Some(ca_certs))?;
    Ok(FilesDigest::of(&[&read_pem(ca_certs)?]))
}

/// A TLS connector trusting the roots in `ca_certs`, or the system's roots without one.
pub(crate) fn connector(ca_certs: Option<&Path>) -> Result<tokio_rustls::TlsConnector, TlsError> {
    let roots = match ca_certs {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in load_certs(path)? {
                roots.add(cert)?;
            }
            Arc::new(roots)
        }
        None => system_roots(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The system's trusted roots (the platform store; on Linux the CA bundle that
/// `SSL_CERT_FILE` / `SSL_CERT_DIR` or the distribution names), read once. Certificates
/// that do not load are logged and skipped; none at all trusts nothing.
fn system_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: std::sync::OnceLock<Arc<rustls::RootCertStore>> = std::sync::OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for err in &found.errors {
                tracing::warn!(%err, "a system root certificate could not be loaded");
            }
            let mut roots = rustls::RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            if ignored > 0 || added == 0 {
                tracing::warn!(added, ignored, "system root certificates loaded");
            }
            Arc::new(roots)
        })
        .clone()
}

/// How the server side of a handshake ended short.
#[derive(Debug)]
pub(crate) enum HandshakeFailed {
    /// The peer broke it off, sent what is not TLS, or did not finish in time.
    Peer(std::io::Error),
    /// The connection was asked to close while it ran (its service stopping, the
    /// dashboard, the idle timeout): why is the transport's to say.
    Cut,
}

/// The server side of a handshake on a connection registered already (`transport`),
/// bounded in time, and given up as soon as the connection is asked to close: a peer
/// that connects and says nothing is a connection like any other (listed, counted,
/// closable, drained, timed out when idle) while it holds its place.
/// A peer whose first byte is a letter (plain text, such as an HTTP request: a TLS
/// connection begins with a handshake record, 0x16) is sent `plain_reply`, if there is
/// one, rather than a TLS alert it cannot read, and the handshake is not begun.
pub(crate) async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    transport: &crate::Transport,
    plain_reply: Option<&[u8]>,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, HandshakeFailed> {
    // One deadline for the look at the first byte and the handshake together.
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    if let Some(reply) = plain_reply
        && plain_text(&stream, transport, deadline).await?
    {
        // Non-blocking: a short answer fits a fresh connection's buffer, or is dropped.
        let _ = stream.try_write(reply);
        let _ = socket2::SockRef::from(&stream).shutdown(std::net::Shutdown::Write);
        linger(&stream, transport).await;
        return Err(HandshakeFailed::Peer(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the peer spoke plain text, not TLS (a plain HTTP request?); answered it so",
        )));
    }
    shake(acceptor, stream, transport, deadline).await
}

/// How long a connection answered in plain text reads what its peer still sends, and
/// how much of it.
const LINGER: (Duration, usize) = (Duration::from_secs(1), 64 * 1024);

/// Reads and drops what the peer still sends (its request, unread) until it closes, for
/// a second and 64 KiB at most, given up when the connection is asked to close: a socket
/// closed with bytes unread is reset, and the answer it holds lost with it (a lingering
/// close, as nginx makes one).
async fn linger(stream: &TcpStream, transport: &crate::Transport) {
    let (most, mut left) = LINGER;
    // On the heap: this rare path's buffer is no part of every TLS connection's task.
    let mut buf = vec![0u8; 4096];
    let drained = std::future::poll_fn(|cx| {
        use std::task::Poll;
        transport.register_waker(cx.waker());
        loop {
            if transport.is_disconnecting() {
                reset_if_aborted(transport, Some(stream));
                return Poll::Ready(());
            }
            if left == 0 {
                return Poll::Ready(());
            }
            match stream.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => {
                    crate::tasks::waiting_on_peer();
                    return Poll::Pending;
                }
            }
            match stream.try_read(&mut buf) {
                // The peer closed.
                Ok(0) => return Poll::Ready(()),
                Ok(n) => left = left.saturating_sub(n),
                // Nothing yet: readiness is cleared, and the next poll waits for it.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Poll::Ready(()),
            }
        }
    });
    let _ = tokio::time::timeout(most, drained).await;
}

/// Resets the socket of a connection aborted (from the dashboard, at a drain's
/// deadline) in its handshake, as a served connection aborted is.
fn reset_if_aborted(transport: &crate::Transport, socket: Option<&TcpStream>) {
    if transport.is_aborted()
        && let Some(socket) = socket
    {
        let _ = socket2::SockRef::from(socket).set_linger(Some(Duration::ZERO));
    }
}

fn timed_out() -> HandshakeFailed {
    HandshakeFailed::Peer(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "TLS handshake timed out",
    ))
}

/// Whether the peer's first byte is a letter, once it comes (by `deadline`, given up when
/// the connection is asked to close); `false` for a peer that hangs up first, whose
/// handshake then says so.
async fn plain_text(
    stream: &TcpStream,
    transport: &crate::Transport,
    deadline: tokio::time::Instant,
) -> Result<bool, HandshakeFailed> {
    let mut deadline = std::pin::pin!(tokio::time::sleep_until(deadline));
    std::future::poll_fn(|cx| {
        use std::task::Poll;
        transport.register_waker(cx.waker());
        if transport.is_disconnecting() {
            reset_if_aborted(transport, Some(stream));
            return Poll::Ready(Err(HandshakeFailed::Cut));
        }
        let mut first = [0u8; 1];
        let mut buf = tokio::io::ReadBuf::new(&mut first);
        match stream.poll_peek(cx, &mut buf) {
            Poll::Ready(Ok(n)) => Poll::Ready(Ok(n == 1 && first[0].is_ascii_alphabetic())),
            Poll::Ready(Err(_)) => Poll::Ready(Ok(false)),
            Poll::Pending => {
                // Waiting for the peer to say something: no stall.
                crate::tasks::waiting_on_peer();
                deadline.as_mut().poll(cx).map(|()| Err(timed_out()))
            }
        }
    })
    .await
}

async fn shake(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    transport: &crate::Transport,
    deadline: tokio::time::Instant,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, HandshakeFailed> {
    let mut accept = std::pin::pin!(acceptor.accept(stream));
    let mut deadline = std::pin::pin!(tokio::time::sleep_until(deadline));
    std::future::poll_fn(|cx| {
        use std::task::Poll;
        transport.register_waker(cx.waker());
        if transport.is_disconnecting() {
            reset_if_aborted(transport, accept.get_ref());
            return Poll::Ready(Err(HandshakeFailed::Cut));
        }
        // Polled when its socket is ready: the handshake moves, so the connection is not
        // idle (and once done, the idle timeout runs from there).
        transport.info().stats.touch();
        if let Poll::Ready(done) = accept.as_mut().poll(cx) {
            return Poll::Ready(done.map_err(HandshakeFailed::Peer));
        }
        // A handshake waits on nothing but its peer's records (or its peer's reading of
        // ours): no stall, however long it takes within its deadline.
        crate::tasks::waiting_on_peer();
        deadline.as_mut().poll(cx).map(|()| Err(timed_out()))
    })
    .await
}

/// Logs and reports a server-side handshake that failed on the connection `info`.
pub(crate) fn report_handshake_failure(
    info: &crate::observe::ConnectionInfo,
    err: &std::io::Error,
) {
    use crate::observe::{self, ErrorKind, Event, LogTopic, ProtocolError};
    let (service, peer, connection) = (&info.service, &info.peer, info.id);
    // A flood of bad handshakes (one per connection) has the log budget of any handled
    // error: `report_error`'s.
    let kind = ErrorKind::TlsHandshake;
    if let Some(suppressed) = observe::budgeted(service, LogTopic::Error(kind)) {
        tracing::info!(%service, %peer, %connection, kind = kind.as_str(), %err, suppressed, "TLS handshake failed");
    }
    observe::emit(|| {
        Event::ProtocolError(ProtocolError {
            service: service.clone(),
            connection: Some(connection),
            kind,
            count: 1,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_path_that_is_not_a_regular_file_is_refused_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("key.pem");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        // Read, a FIFO with no writer would wait for ever.
        for err in [
            check_server_files(&fifo, &fifo).unwrap_err(),
            check_ca_certs(&fifo).unwrap_err(),
            check_server_files(dir.path(), &fifo).unwrap_err(),
        ] {
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
    }

    #[test]
    fn a_certificate_says_when_it_is_valid_and_for_which_names() {
        let dir = tempfile::tempdir().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["www.example.com".into(), "*.example.org".into()])
                .unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 2);
        params.not_after = rcgen::date_time_ymd(2021, 3, 4);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let path = dir.path().join("c.pem");
        std::fs::write(&path, cert.pem()).unwrap();
        let facts = CertificateFacts::read(&path).unwrap();
        let day = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(facts.not_before, day(1_577_923_200));
        assert_eq!(facts.not_after, day(1_614_816_000));
        assert!(facts.covers("WWW.example.com"));
        assert!(facts.covers("www.example.com."));
        assert!(facts.covers("a.example.org"));
        assert!(
            !facts.covers("example.org"),
            "a wildcard stands for one label"
        );
        assert!(!facts.covers("a.b.example.org"));
        assert!(!facts.covers("example.com"));
    }

    #[test]
    fn a_key_of_another_certificate_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let one = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (dir.path().join("one.crt"), dir.path().join("other.key"));
        std::fs::write(&cert, one.cert.pem()).unwrap();
        std::fs::write(&key, other.signing_key.serialize_pem()).unwrap();
        let err = check_server_files(&cert, &key).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{}: is not the private key of the first certificate in {}",
                key.display(),
                cert.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn a_key_file_weft_cannot_read_says_what_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, made.cert.pem()).unwrap();
        let body = "MIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n";
        for (name, text, says) in [
            (
                "pkcs8.pem",
                format!(
                    "-----BEGIN ENCRYPTED PRIVATE KEY-----\n{body}-----END ENCRYPTED PRIVATE KEY-----\n"
                ),
                "holds an encrypted private key",
            ),
            (
                "legacy.pem",
                format!(
                    "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
                     DEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\n{body}\
                     -----END RSA PRIVATE KEY-----\n"
                ),
                "holds an encrypted private key",
            ),
            ("cert.pem", made.cert.pem(), "no private key found"),
        ] {
            let key = dir.path().join(name);
            std::fs::write(&key, text).unwrap();
            let err = check_server_files(&cert, &key).unwrap_err().to_string();
            assert!(err.contains(says), "{name}: {err}");
        }
        let key = dir.path().join("key.pem");
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        check_server_files(&cert, &key).unwrap();
    }
}
