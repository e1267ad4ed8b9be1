//! Connected UDP (Twisted's `transport.connect(host, port)` on a datagram port), on real
//! loopback sockets: one peer heard, others not; `send` goes to it; a closed port there is
//! heard as `connection_refused`; a service's port and a second connect are refused.

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weft::net::UdpConnectError;
use weft::{DatagramProtocol, DatagramTransport};
use weft_test_support::{eventually, spawn_reactor};

/// What a connected port heard, for the test's thread.
#[derive(Default)]
struct Heard {
    datagrams: Vec<(Vec<u8>, SocketAddr)>,
    refused: usize,
}

/// Connects to `peer` when it starts, says hello, and records what it hears.
struct Connected {
    peer: SocketAddr,
    heard: Arc<Mutex<Heard>>,
}

impl DatagramProtocol for Connected {
    fn start_protocol(&mut self, transport: &DatagramTransport) {
        transport.connect(self.peer).unwrap();
        assert!(matches!(
            transport.connect(self.peer),
            Err(UdpConnectError::Connected(_))
        ));
        assert_eq!(transport.peer(), Some(self.peer));
        assert!(transport.send(b"hello"));
        let elsewhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(
            !transport.write(b"stray", elsewhere),
            "a connected port sends to its peer only"
        );
    }
    fn datagram_received(&mut self, _: &DatagramTransport, data: &[u8], from: SocketAddr) {
        self.heard
            .lock()
            .unwrap()
            .datagrams
            .push((data.to_vec(), from));
    }
    fn connection_refused(&mut self, transport: &DatagramTransport) {
        self.heard.lock().unwrap().refused += 1;
        // Twisted's protocols often try again; the port stays open for it.
        if self.heard.lock().unwrap().refused == 1 {
            transport.send(b"again?");
        }
    }
}

fn connected_to(peer: SocketAddr) -> (weft_test_support::Running<SocketAddr>, Arc<Mutex<Heard>>) {
    let heard = Arc::new(Mutex::new(Heard::default()));
    let h = heard.clone();
    let running = spawn_reactor(move |r| {
        r.open_udp(
            "client",
            "udp:0:interface=127.0.0.1",
            Connected { peer, heard: h },
        )
        .unwrap()
        .local_addr()
        .unwrap()
    });
    (running, heard)
}

#[test]
fn a_connected_port_sends_to_its_peer_and_hears_it_alone() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (running, heard) = connected_to(peer.local_addr().unwrap());
    let mut buf = [0; 64];
    let (n, from) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
    assert_eq!(from, running.value);
    // A third party's datagram to the port is dropped by the kernel; the peer's arrives.
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    stranger.send_to(b"not for you", running.value).unwrap();
    peer.send_to(b"hi back", running.value).unwrap();
    eventually("the peer's answer", || {
        !heard.lock().unwrap().datagrams.is_empty()
    });
    std::thread::sleep(Duration::from_millis(100));
    let heard = heard.lock().unwrap();
    assert_eq!(
        heard.datagrams,
        vec![(b"hi back".to_vec(), peer.local_addr().unwrap())]
    );
    assert_eq!(heard.refused, 0);
}

#[test]
fn nothing_listening_at_the_peer_is_heard_as_connection_refused() {
    let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let (_running, heard) = connected_to(addr);
    // The hello, then the one sent again from the first refusal: two refusals.
    eventually("both refusals", || heard.lock().unwrap().refused == 2);
}

/// Tries to connect a service's port and says what it was told.
struct TriesToConnect(Arc<Mutex<Option<String>>>);

impl DatagramProtocol for TriesToConnect {
    fn start_protocol(&mut self, transport: &DatagramTransport) {
        let said = transport.connect("127.0.0.1:9".parse().unwrap());
        *self.0.lock().unwrap() = Some(said.unwrap_err().to_string());
    }
    fn datagram_received(&mut self, _: &DatagramTransport, _: &[u8], _: SocketAddr) {}
}

#[test]
fn a_service_s_port_does_not_connect() {
    let said = Arc::new(Mutex::new(None));
    let s = said.clone();
    let _running = spawn_reactor(move |r| {
        r.listen_udp("svc", "udp:0:interface=127.0.0.1", TriesToConnect(s))
            .unwrap();
    });
    eventually("the refusal", || said.lock().unwrap().is_some());
    assert!(
        said.lock()
            .unwrap()
            .as_deref()
            .unwrap()
            .contains("only a client's own UDP port"),
        "{said:?}"
    );
}

/// Sends twice at once to its peer, and counts the refusals it hears.
struct Twice(Arc<Mutex<Heard>>);

impl DatagramProtocol for Twice {
    fn start_protocol(&mut self, transport: &DatagramTransport) {
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        transport.connect(addr).unwrap();
        transport.send(b"one");
        // On loopback the refusal of the first is back before this one: the kernel
        // reports it to this send, which fails with it.
        transport.send(b"two");
    }
    fn datagram_received(&mut self, _: &DatagramTransport, _: &[u8], _: SocketAddr) {}
    fn connection_refused(&mut self, _: &DatagramTransport) {
        self.0.lock().unwrap().refused += 1;
    }
}

#[test]
fn a_refusal_a_send_takes_is_heard_too_and_not_counted_as_a_drop() {
    let observer = weft::testing::RecordingObserver::new();
    let obs = observer.clone();
    let heard = Arc::new(Mutex::new(Heard::default()));
    let h = heard.clone();
    let _running = spawn_reactor(move |r| {
        r.set_observer(obs);
        r.open_udp("client", "udp:0:interface=127.0.0.1", Twice(h))
            .unwrap();
    });
    eventually("a refusal", || heard.lock().unwrap().refused >= 1);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        observer.count("DatagramDropped"),
        0,
        "a refusal is no drop: {:?}",
        observer.events()
    );
}

/// A port's task is said to be spawned where the port was opened (the shutdown's warning
/// and the inspector name it), not inside weft.
#[test]
fn a_port_s_task_is_said_to_be_spawned_at_the_line_that_opened_it() {
    struct Quiet;
    impl DatagramProtocol for Quiet {
        fn datagram_received(&mut self, _: &DatagramTransport, _: &[u8], _: SocketAddr) {}
    }
    let sites = Arc::new(Mutex::new(Vec::new()));
    let seen = sites.clone();
    let first = line!() + 2;
    let _running = spawn_reactor(move |r| {
        let client = r.open_udp("client", "udp:0:interface=127.0.0.1", Quiet);
        let server = r.listen_udp("server", "udp:0:interface=127.0.0.1", Quiet);
        let _ports = (client.unwrap(), server.unwrap());
        let tasks = weft::tasks::pending_tasks();
        *seen.lock().unwrap() = tasks.iter().map(|t| t.site.to_string()).collect();
    });
    let sites = sites.lock().unwrap().clone();
    for line in [first, first + 1] {
        assert!(
            sites
                .iter()
                .any(|s| s.ends_with(&format!("udp_connect.rs:{line}"))),
            "line {line}: {sites:?}"
        );
    }
}
