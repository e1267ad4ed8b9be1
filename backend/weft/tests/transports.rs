//! UDP, Unix and TLS on real sockets, and client connections.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::rc::Rc;
use std::time::Duration;

use weft::testing::RecordingObserver;
use weft::{ClientFactory, ConnectError, Connector, Protocol, Transport, factory};
use weft_test_support::{Echo, UdpEcho, eventually, spawn_reactor};

#[test]
fn udp_echo_counts_datagrams_and_drops_oversized_ones() {
    let observer = RecordingObserver::new();
    let obs = observer.clone();
    let server = spawn_reactor(move |r| {
        r.set_observer(obs);
        let port = r
            .listen_udp_with("udp-echo", "udp:0:interface=127.0.0.1", UdpEcho, 512)
            .unwrap();
        (port.local_addr().unwrap(), port.transport().info().clone())
    });
    let (addr, info) = server.value.clone();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.send_to(&[7u8; 1000], addr).unwrap();
    client.send_to(b"ping", addr).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping");
    eventually("oversized datagram reported", || {
        observer.count("DatagramTruncated") == 1
    });
    assert_eq!(info.stats.reads(), 1);
    eventually("send counted", || info.stats.writes() == 1);
    assert_eq!(info.stats.bytes_in(), 4);
}

/// The largest datagram of each family goes through whole: 65,507 bytes over IPv4,
/// 65,527 over IPv6 (which was dropped as larger than IPv4's limit).
#[test]
fn the_largest_datagram_of_each_family_is_echoed() {
    for (endpoint, local, largest) in [
        (
            "udp:0:interface=127.0.0.1",
            "127.0.0.1:0",
            weft::net::MAX_DATAGRAM,
        ),
        (
            r"udp:0:interface=\:\:1",
            "[::1]:0",
            weft::net::MAX_DATAGRAM_V6,
        ),
    ] {
        let Ok(client) = UdpSocket::bind(local) else {
            eprintln!("skipped: no {local} here");
            continue;
        };
        let server = spawn_reactor(move |r| {
            let port = r.listen_udp("udp-echo", endpoint, UdpEcho).unwrap();
            port.local_addr().unwrap()
        });
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let datagram = vec![3u8; largest];
        client.send_to(&datagram, server.value).unwrap();
        let mut buf = vec![0u8; 70_000];
        let (n, _) = client.recv_from(&mut buf).expect(endpoint);
        assert_eq!(n, largest, "{endpoint}");
    }
}

#[test]
fn unix_socket_echo() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let endpoint = format!("unix:{}:mode=600", path.display());
    let _server = spawn_reactor(move |r| {
        r.listen(&endpoint, factory(|| Echo)).unwrap();
    });
    let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.write_all(b"over unix").unwrap();
    let mut buf = [0u8; 9];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"over unix");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// A self-signed certificate for `localhost`, written as PEM files.
fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

/// Collects what a client connection receives, and answers the first chunk.
struct Collect(Rc<RefCell<Vec<u8>>>);

impl Protocol for Collect {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(b"secret");
    }
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        self.0.borrow_mut().extend_from_slice(data);
        transport.lose_connection();
    }
}

#[test]
fn tls_listen_and_connect_and_a_plaintext_client_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let observer = RecordingObserver::new();
    let obs = observer.clone();
    let (c, k) = (cert.clone(), key.clone());
    let server = spawn_reactor(move |r| {
        r.set_observer(obs);
        let endpoint = format!(
            "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}",
            k.display(),
            c.display()
        );
        r.listen_as("tls-echo", &endpoint, factory(|| Echo))
            .unwrap()
            .local_addr()
            .unwrap()
    });
    let addr = server.value;

    // A plaintext client gets nothing and does not disturb the server.
    let mut plain = std::net::TcpStream::connect(addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut junk = Vec::new();
    let _ = plain.read_to_end(&mut junk);
    eventually("handshake failure reported", || {
        observer.count("TlsHandshake") == 1
    });

    // A weft TLS client trusting the certificate gets its echo.
    let got = Rc::new(RefCell::new(Vec::new()));
    let client_reactor = weft::Reactor::with_config(weft::ReactorConfig {
        handle_signals: false,
        ..Default::default()
    })
    .unwrap();
    let endpoint = format!(
        "ssl:localhost:{}:caCerts={}:timeout=5",
        addr.port(),
        cert.display()
    );
    let g = got.clone();
    let r = client_reactor.clone();
    client_reactor.call_when_running(move || {
        let reactor = r.clone();
        r.spawn(async move {
            let transport = reactor
                .connect(&endpoint, Collect(g))
                .await
                .expect("TLS connect");
            assert_eq!(
                transport.info().transport,
                weft::observe::TransportKind::Tls
            );
        });
        let r = r.clone();
        r.clone()
            .call_later(Duration::from_secs(2), move || r.stop());
    });
    client_reactor.run().unwrap();
    assert_eq!(&*got.borrow(), b"secret");
}

/// A server that accepts every connection and fails its TLS handshake gives no success:
/// a reconnecting factory backs off and gives up after `max_retries`, where it reset on
/// each accept before the handshake and retried for ever.
#[test]
fn a_tls_handshake_that_fails_is_retried_only_max_retries_times() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let (cert, _key) = certificate(dir.path());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counted = accepts.clone();
    let server = std::thread::spawn(move || {
        let until = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < until {
            match listener.accept() {
                // Closed at once: the client's handshake fails.
                Ok((stream, _)) => drop((stream, counted.fetch_add(1, Ordering::SeqCst))),
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    });
    let reactor = weft::Reactor::with_config(weft::ReactorConfig {
        handle_signals: false,
        ..Default::default()
    })
    .unwrap();
    let policy = Rc::new(
        weft::ReconnectingClientFactory::new(factory(|| Echo))
            .initial_delay(Duration::from_millis(10))
            .policy(1.0, 0.0, Duration::from_millis(10), Some(2)),
    );
    let endpoint = format!("ssl:localhost:{port}:caCerts={}:timeout=5", cert.display());
    reactor.connect_with(&endpoint, policy.clone()).unwrap();
    let r = reactor.clone();
    // Three attempts 10 ms apart take a few milliseconds; 1.5 s leaves a busy machine
    // room, and one that retried for ever would have made hundreds.
    reactor.call_later(Duration::from_millis(1500), move || r.stop());
    reactor.run().unwrap();
    server.join().unwrap();
    assert_eq!(
        accepts.load(Ordering::SeqCst),
        3,
        "the first attempt and two retries"
    );
}

/// Records what happened to a client connector.
#[derive(Default)]
struct Outcome {
    failed: RefCell<Option<ConnectError>>,
    lost: RefCell<Option<weft::CloseReason>>,
}

struct Client(Rc<Outcome>);

impl weft::Factory for Client {
    fn build_protocol(&self, _peer: &weft::Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(Collect(Rc::default())))
    }
}

impl ClientFactory for Client {
    fn client_connection_failed(&self, _c: &Connector, reason: &ConnectError) {
        *self.0.failed.borrow_mut() = Some(reason.clone());
        weft::reactor::Reactor::current().stop();
    }
    fn client_connection_lost(&self, _c: &Connector, reason: &weft::CloseReason) {
        *self.0.lost.borrow_mut() = Some(reason.clone());
        weft::reactor::Reactor::current().stop();
    }
}

fn run_client(endpoint: String) -> Rc<Outcome> {
    let reactor = weft::Reactor::with_config(weft::ReactorConfig {
        handle_signals: false,
        ..Default::default()
    })
    .unwrap();
    let outcome = Rc::new(Outcome::default());
    let client = Client(outcome.clone());
    reactor.connect_with(&endpoint, client).unwrap();
    reactor.run().unwrap();
    outcome
}

#[test]
fn a_client_factory_hears_about_failure_and_loss() {
    let server = spawn_reactor(|r| {
        r.listen("tcp:0:interface=127.0.0.1", factory(|| Echo))
            .unwrap()
            .local_addr()
            .unwrap()
    });
    let outcome = run_client(format!("tcp:127.0.0.1:{}:timeout=5", server.value.port()));
    assert_eq!(outcome.lost.borrow().clone(), Some(weft::CloseReason::Done));

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let outcome = run_client(format!("tcp:127.0.0.1:{}", closed.port()));
    assert!(matches!(
        outcome.failed.borrow().clone(),
        Some(ConnectError::Refused { .. })
    ));
}

/// Where connections to a loopback listener come from: the peer of each accepted one.
fn accepted_peers(
    listener: std::net::TcpListener,
    n: usize,
) -> std::thread::JoinHandle<Vec<SocketAddr>> {
    std::thread::spawn(move || {
        (0..n)
            .map(|_| listener.accept().expect("accept").1)
            .collect()
    })
}

#[test]
fn clients_connect_from_their_bind_address() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let peers = accepted_peers(listener, 2);
    // A protocol client (Connector) and an async stream, each from its own loopback address.
    let outcome = run_client(format!("tcp:127.0.0.1:{port}:bindAddress=127.0.0.2"));
    assert_eq!(outcome.failed.borrow().clone(), None);
    let reactor = weft::Reactor::with_config(weft::ReactorConfig {
        handle_signals: false,
        ..Default::default()
    })
    .unwrap();
    let local = Rc::new(RefCell::new(None));
    let (r, l) = (reactor.clone(), local.clone());
    reactor.spawn(async move {
        let endpoint = format!("tcp:127.0.0.1:{port}:bindAddress=127.0.0.3\\:0");
        let stream = r.connect_stream("client", &endpoint).await;
        *l.borrow_mut() = Some(stream.map(|s| s.info().local.socket_addr()));
        r.stop();
    });
    reactor.run().unwrap();
    let local = local.borrow_mut().take().expect("the attempt finished");
    assert_eq!(
        local.expect("connects").map(|a| a.ip()),
        Some([127, 0, 0, 3].into())
    );
    let peers: Vec<_> = peers.join().unwrap().iter().map(SocketAddr::ip).collect();
    assert_eq!(
        peers,
        [[127, 0, 0, 2], [127, 0, 0, 3]].map(std::net::IpAddr::from)
    );
}

struct Made(Rc<std::cell::Cell<bool>>);

impl Protocol for Made {
    fn connection_made(&mut self, _transport: &Transport) {
        self.0.set(true);
    }

    fn data_received(&mut self, _transport: &Transport, _data: &[u8]) {}
}

#[test]
fn a_connection_made_for_a_caller_that_gave_up_before_reading_it_is_closed() {
    // The caller drops its `connect` future after the connection was made and handed to
    // it, but before reading it (as a `select!` that takes another branch does): nobody
    // owns the connection, so it must be closed, not left running for ever.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("tcp:127.0.0.1:{}", listener.local_addr().unwrap().port());
    let reactor = weft::Reactor::with_config(weft::ReactorConfig {
        handle_signals: false,
        ..Default::default()
    })
    .unwrap();
    let r = reactor.clone();
    reactor.call_when_running(move || {
        let reactor = r.clone();
        r.spawn(async move {
            let made = Rc::new(std::cell::Cell::new(false));
            let mut connect = Box::pin(reactor.connect(&endpoint, Made(made.clone())));
            // Polled once (the attempt starts), then left unread until it has connected.
            std::future::poll_fn(|cx| {
                let _ = connect.as_mut().poll(cx);
                std::task::Poll::Ready(())
            })
            .await;
            while !made.get() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(connect);
        });
    });
    weft_test_support::run_with_client(&reactor, move || {
        let (mut accepted, _) = listener.accept().unwrap();
        accepted
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0; 16];
        let read = accepted.read(&mut buf).map_err(|e| e.kind());
        assert_eq!(read, Ok(0), "the unclaimed connection is closed");
    });
}
