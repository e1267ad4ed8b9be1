//! TLS started on a connection that began in the clear (Twisted's `startTLS`), on real
//! loopback sockets with rustls on the other end: as the server (an SMTP-like STARTTLS,
//! what was written before in the clear and what after over TLS), as the client, and a
//! peer whose handshake is not TLS.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use weft::testing::RecordingObserver;
use weft::{Protocol, StartTlsError, TlsStart, Transport, factory};
use weft_test_support::{connect, eventually, spawn_reactor};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate for `localhost`, and a server configuration showing it.
fn server_config() -> (CertificateDer<'static>, Arc<rustls::ServerConfig>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = made.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    (cert, Arc::new(config))
}

/// A client configuration trusting `cert` alone.
fn client_config(cert: &CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Greets, and on `STARTTLS` answers in the clear, starts TLS and welcomes over it; then
/// echoes each line with a prefix.
struct StartTlsServer {
    config: Arc<rustls::ServerConfig>,
}

impl Protocol for StartTlsServer {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(b"220 ready\r\n");
    }
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        if data == b"STARTTLS\r\n" {
            transport.write(b"220 go ahead\r\n");
            transport
                .start_tls(TlsStart::Server(self.config.clone()))
                .unwrap();
            assert_eq!(
                transport.start_tls(TlsStart::Server(self.config.clone())),
                Err(StartTlsError::Started)
            );
            transport.write(b"250 welcome, over TLS\r\n");
        } else {
            transport.write(b"echo: ");
            transport.write(data);
        }
    }
}

fn serve() -> (
    weft_test_support::Running<std::net::SocketAddr>,
    CertificateDer<'static>,
    Arc<RecordingObserver>,
) {
    let (cert, config) = server_config();
    let observer = RecordingObserver::new();
    let obs = observer.clone();
    let server = spawn_reactor(move |r| {
        r.set_observer(obs);
        r.listen(
            "tcp:0:interface=127.0.0.1",
            factory(move || StartTlsServer {
                config: config.clone(),
            }),
        )
        .unwrap()
        .local_addr()
        .unwrap()
    });
    (server, cert, observer)
}

/// Reads one line (up to `\n`) byte by byte, so nothing after it is taken from the socket.
fn line(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8];
    while got.last() != Some(&b'\n') {
        s.read_exact(&mut byte).unwrap();
        got.push(byte[0]);
    }
    String::from_utf8(got).unwrap()
}

/// Connects to `addr` and asks for TLS; the answer came in the clear.
fn asked_for_tls(addr: std::net::SocketAddr) -> TcpStream {
    let mut tcp = connect(addr);
    assert_eq!(line(&mut tcp), "220 ready\r\n");
    tcp.write_all(b"STARTTLS\r\n").unwrap();
    assert_eq!(line(&mut tcp), "220 go ahead\r\n", "in the clear");
    tcp
}

#[test]
fn a_server_starts_tls_what_came_before_in_the_clear_and_what_after_over_it() {
    let (server, cert, _observer) = serve();
    let tcp = asked_for_tls(server.value);
    let name = ServerName::try_from("localhost").unwrap();
    let session = rustls::ClientConnection::new(client_config(&cert), name).unwrap();
    let mut tls = BufReader::new(rustls::StreamOwned::new(session, tcp));
    let mut welcome = String::new();
    tls.read_line(&mut welcome).unwrap();
    assert_eq!(
        welcome, "250 welcome, over TLS\r\n",
        "written after, sent over TLS"
    );
    tls.get_mut().write_all(b"hello\r\n").unwrap();
    let mut echo = String::new();
    tls.read_line(&mut echo).unwrap();
    assert_eq!(echo, "echo: hello\r\n", "read over TLS too");
}

#[test]
fn a_peer_whose_handshake_is_not_tls_is_closed_saying_so() {
    let (server, _cert, observer) = serve();
    let mut tcp = asked_for_tls(server.value);
    tcp.write_all(b"EHLO but no TLS at all\r\n\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest);
    eventually("the close", || observer.count("ConnectionClosed") == 1);
    let closed = observer
        .events()
        .into_iter()
        .find(|e| e.contains("ConnectionClosed"))
        .unwrap();
    assert!(closed.contains("TLS handshake failed"), "{closed}");
}

/// Asks the server to start TLS, starts it as the client, says hello over it.
struct StartTlsClient {
    config: Arc<rustls::ClientConfig>,
    got: Rc<std::cell::RefCell<Vec<u8>>>,
}

impl Protocol for StartTlsClient {
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        match data {
            b"220 ready\r\n" => transport.write(b"STARTTLS\r\n"),
            b"220 go ahead\r\n" => {
                let server_name = ServerName::try_from("localhost").unwrap();
                transport
                    .start_tls(TlsStart::Client {
                        config: self.config.clone(),
                        server_name,
                    })
                    .unwrap();
                transport.write(b"hello over TLS\r\n");
            }
            _ => {
                self.got.borrow_mut().extend_from_slice(data);
                transport.lose_connection();
                weft::Reactor::current().stop();
            }
        }
    }
}

#[test]
fn a_client_starts_tls_and_checks_the_server_s_certificate() {
    let (cert, config) = server_config();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // The peer: rustls's server once it said to go ahead.
    let peer = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tcp.write_all(b"220 ready\r\n").unwrap();
        assert_eq!(line(&mut tcp), "STARTTLS\r\n");
        tcp.write_all(b"220 go ahead\r\n").unwrap();
        let session = rustls::ServerConnection::new(config).unwrap();
        let mut tls = BufReader::new(rustls::StreamOwned::new(session, tcp));
        let mut said = String::new();
        tls.read_line(&mut said).unwrap();
        tls.get_mut().write_all(b"got it\r\n").unwrap();
        tls.get_mut().flush().unwrap();
        said
    });
    let got = Rc::new(std::cell::RefCell::new(Vec::new()));
    let reactor = weft::Reactor::with_config(weft::ReactorConfig {
        handle_signals: false,
        ..Default::default()
    })
    .unwrap();
    let protocol = StartTlsClient {
        config: client_config(&cert),
        got: got.clone(),
    };
    let r = reactor.clone();
    reactor.call_when_running(move || {
        let reactor = r.clone();
        r.spawn(async move {
            reactor
                .connect(&format!("tcp:127.0.0.1:{port}"), protocol)
                .await
                .expect("connect");
        });
        let r = r.clone();
        r.clone()
            .call_later(Duration::from_secs(3), move || r.stop());
    });
    reactor.run().unwrap();
    assert_eq!(peer.join().unwrap(), "hello over TLS\r\n");
    assert_eq!(&*got.borrow(), b"got it\r\n");
}
