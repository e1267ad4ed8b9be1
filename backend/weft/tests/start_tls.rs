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
    /// Written in the clear after the answer, before the start: enough to fill the
    /// sockets' buffers while the client does not read.
    padding: usize,
    /// Everything handed to the protocol, in order.
    heard: Arc<std::sync::Mutex<Vec<u8>>>,
    /// Whether it welcomes over TLS; a quiet one writes nothing after the start, so the
    /// handshake is driven by the flush alone.
    welcome: bool,
}

impl Protocol for StartTlsServer {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(b"220 ready\r\n");
    }
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        self.heard.lock().unwrap().extend_from_slice(data);
        if data == b"STARTTLS\r\n" {
            transport.write(b"220 go ahead\r\n");
            transport.write(&vec![b' '; self.padding]);
            transport
                .start_tls(TlsStart::Server(self.config.clone()))
                .unwrap();
            assert_eq!(
                transport.start_tls(TlsStart::Server(self.config.clone())),
                Err(StartTlsError::Started)
            );
            if self.welcome {
                transport.write(b"250 welcome, over TLS\r\n");
            }
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
    let (server, cert, observer, _heard) = serve_padded(0);
    (server, cert, observer)
}

/// What the server protocol heard.
type Heard = Arc<std::sync::Mutex<Vec<u8>>>;

fn serve_padded(
    padding: usize,
) -> (
    weft_test_support::Running<std::net::SocketAddr>,
    CertificateDer<'static>,
    Arc<RecordingObserver>,
    Heard,
) {
    serve_with(padding, true, None)
}

fn serve_with(
    padding: usize,
    welcome: bool,
    idle_timeout: Option<Duration>,
) -> (
    weft_test_support::Running<std::net::SocketAddr>,
    CertificateDer<'static>,
    Arc<RecordingObserver>,
    Heard,
) {
    let (cert, config) = server_config();
    let observer = RecordingObserver::new();
    let obs = observer.clone();
    let heard = Heard::default();
    let h = heard.clone();
    let server = spawn_reactor(move |r| {
        r.set_observer(obs);
        // Small send buffers, so a little padding fills them while the client does not read.
        r.listen_with(
            "starttls",
            "tcp:0:interface=127.0.0.1",
            &weft::ListenOptions::new()
                .send_buffer(Some(4096))
                .idle_timeout(idle_timeout),
            factory(move || StartTlsServer {
                config: config.clone(),
                padding,
                heard: h.clone(),
                welcome,
            }),
        )
        .unwrap()
        .local_addr()
        .unwrap()
    });
    (server, cert, observer, heard)
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
    speak_no_tls(server.value);
    closed_by_a_failed_handshake(&observer);
}

/// Asks `addr` for TLS, then sends what is not a TLS handshake and reads to the end.
fn speak_no_tls(addr: std::net::SocketAddr) {
    let mut tcp = asked_for_tls(addr);
    tcp.write_all(b"EHLO but no TLS at all\r\n\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest);
}

#[test]
fn a_failed_handshake_is_reported_when_nothing_waits_to_go_out_over_tls() {
    // Not TLS: the protocol error, reported once.
    let (server, _cert, observer, _heard) = serve_with(0, false, None);
    speak_no_tls(server.value);
    closed_by_a_failed_handshake(&observer);

    // A peer that hangs up mid-handshake: closed as the peer's doing, reported too (as on
    // an `ssl:` listener).
    let (server, _cert, observer, _heard) = serve_with(0, false, None);
    let tcp = asked_for_tls(server.value);
    drop(tcp);
    eventually("the close", || observer.count("ConnectionClosed") == 1);
    let closed = observer.first("ConnectionClosed").unwrap();
    assert!(
        closed.contains("PeerClosed") || closed.contains("Reset"),
        "closed as the peer's doing: {closed}"
    );
    eventually("the report", || observer.count("kind: TlsHandshake") == 1);
}

#[test]
fn a_handshake_the_peer_never_begins_times_out_as_idle_not_as_output_it_will_not_read() {
    // Output waits behind the handshake (the welcome), but on the handshake, not on a
    // peer that stopped reading: the idle timeout ends it as a timeout.
    let (server, _cert, observer, _heard) = serve_with(0, true, Some(Duration::from_millis(300)));
    let tcp = asked_for_tls(server.value);
    let asked = std::time::Instant::now();
    eventually("the close", || observer.count("ConnectionClosed") == 1);
    let closed = observer.first("ConnectionClosed").unwrap();
    assert!(closed.contains("TimedOut"), "closed as idle: {closed}");
    // By the idle timeout, long before the handshake's own limit (10 s).
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    drop(tcp);
}

#[test]
fn a_slow_handshake_that_moves_is_not_taken_for_an_idle_connection() {
    // Each flight comes within the idle timeout (300 ms), the whole handshake after more
    // than that since the last bytes the protocol moved ("220 go ahead").
    let (server, cert, observer, _heard) = serve_with(0, true, Some(Duration::from_millis(300)));
    let mut tcp = asked_for_tls(server.value);
    let name = ServerName::try_from("localhost").unwrap();
    let mut session = rustls::ClientConnection::new(client_config(&cert), name).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    session.write_tls(&mut tcp).unwrap();
    while !session.wants_write() {
        session.read_tls(&mut tcp).unwrap();
        session.process_new_packets().unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut tls = BufReader::new(rustls::StreamOwned::new(session, tcp));
    let mut welcome = String::new();
    tls.read_line(&mut welcome).unwrap();
    assert_eq!(welcome, "250 welcome, over TLS\r\n");
    assert_eq!(
        observer.count("ConnectionClosed"),
        0,
        "{:?}",
        observer.events()
    );
}

/// Waits for the one connection's close and checks it says the handshake failed.
fn closed_by_a_failed_handshake(observer: &RecordingObserver) {
    eventually("the close", || observer.count("ConnectionClosed") == 1);
    let closed = observer.first("ConnectionClosed").unwrap();
    assert!(
        closed.contains("Protocol(\"TLS handshake failed"),
        "closed as a protocol error: {closed}"
    );
    // Reported as a failed handshake on an `ssl:` listener is, once.
    let errors = observer.count("kind: TlsHandshake");
    assert_eq!(errors, 1, "{:?}", observer.events());
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

#[test]
fn nothing_the_peer_sends_before_the_handshake_is_taken_in_the_clear() {
    // 48 KiB in the clear after the answer: more than the sockets' small buffers take
    // while the client does not read, so the start waits on it; less than the transport's
    // high-water mark, so reading is not paused by back-pressure meanwhile.
    let padding = 48 << 10;
    let (server, _cert, observer, heard) = serve_padded(padding);
    let client = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    client.set_recv_buffer_size(4096).unwrap();
    client.connect(&server.value.into()).unwrap();
    let mut tcp: TcpStream = client.into();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(line(&mut tcp), "220 ready\r\n");
    tcp.write_all(b"STARTTLS\r\n").unwrap();
    assert_eq!(line(&mut tcp), "220 go ahead\r\n");
    std::thread::sleep(Duration::from_millis(300));
    // A man in the middle's command, in the clear, before the client's handshake (the
    // STARTTLS injection of CVE-2011-0411).
    tcp.write_all(b"MAIL FROM:<injected@example>\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut clear = vec![0u8; padding];
    tcp.read_exact(&mut clear).unwrap();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest);
    closed_by_a_failed_handshake(&observer);
    let heard = String::from_utf8_lossy(&heard.lock().unwrap()).into_owned();
    assert_eq!(
        heard, "STARTTLS\r\n",
        "the command went to the TLS handshake, not the protocol"
    );
    closed_by_a_failed_handshake(&observer);
}

#[test]
fn a_second_start_or_one_on_a_unix_socket_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let (_cert, config) = server_config();
    let said = Arc::new(std::sync::Mutex::new(None));
    let s = said.clone();
    let endpoint = format!("unix:{}", path.display());
    let _server = spawn_reactor(move |r| {
        r.listen(
            &endpoint,
            factory(move || Refused {
                config: config.clone(),
                said: s.clone(),
            }),
        )
        .unwrap();
    });
    let mut unix = std::os::unix::net::UnixStream::connect(&path).unwrap();
    unix.write_all(b"go").unwrap();
    eventually("the start was asked", || said.lock().unwrap().is_some());
    assert_eq!(
        said.lock().unwrap().clone().unwrap(),
        Err(StartTlsError::Unsupported)
    );
}

/// Asks to start TLS on whatever connection it serves, and says what it was told.
struct Refused {
    config: Arc<rustls::ServerConfig>,
    said: Arc<std::sync::Mutex<Option<Result<(), StartTlsError>>>>,
}

impl Protocol for Refused {
    fn data_received(&mut self, transport: &Transport, _data: &[u8]) {
        let r = transport.start_tls(TlsStart::Server(self.config.clone()));
        *self.said.lock().unwrap() = Some(r);
    }
}
