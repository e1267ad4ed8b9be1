//! `ReactorPool`: several reactors on one address through SO_REUSEPORT, real sockets.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::time::Duration;

use weft::{
    DatagramProtocol, DatagramTransport, Protocol, Reactor, ReactorConfig, ReactorPool, Transport,
    factory,
};

/// Answers each connection's first bytes with the index of its reactor and its
/// connection id.
struct WhoAmI;

impl Protocol for WhoAmI {
    fn data_received(&mut self, transport: &Transport, _: &[u8]) {
        let info = transport.info();
        transport.write(format!("{} {}\n", info.reactor, info.id).as_bytes());
    }
}

/// Answers each datagram with the index of its reactor.
struct WhoAmIUdp;

impl DatagramProtocol for WhoAmIUdp {
    fn datagram_received(&mut self, transport: &DatagramTransport, _: &[u8], from: SocketAddr) {
        transport.write(Reactor::current().index().to_string().as_bytes(), from);
    }
}

fn config() -> ReactorConfig {
    ReactorConfig {
        handle_signals: false,
        shutdown_deadline: Duration::from_secs(2),
        ..ReactorConfig::default()
    }
}

fn ask(addr: SocketAddr) -> (u16, u64) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"?").unwrap();
    let mut answer = String::new();
    let mut byte = [0u8; 1];
    while s.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        answer.push(byte[0] as char);
    }
    let (reactor, id) = answer.split_once(' ').expect("reactor and id");
    (reactor.parse().unwrap(), id.parse().unwrap())
}

#[test]
fn every_reactor_accepts_on_the_same_port_with_ids_unique_across_them() {
    let (addrs_tx, addrs_rx) = mpsc::channel();
    let runner = std::thread::spawn(move || {
        let mut pool = ReactorPool::new(2, config()).unwrap();
        let listen = |reactor: &Reactor| -> Result<(SocketAddr, SocketAddr), weft::ListenError> {
            let tcp = reactor.listen_as("who", "tcp:0:interface=127.0.0.1", factory(|| WhoAmI))?;
            let udp = reactor.listen_udp("who", "udp:0:interface=127.0.0.1", WhoAmIUdp)?;
            Ok((tcp.local_addr().unwrap(), udp.local_addr().unwrap()))
        };
        let first = listen(pool.first()).unwrap();
        let (others_tx, others_rx) = mpsc::channel();
        pool.start_others(move |reactor| {
            others_tx.send(listen(reactor)?).unwrap();
            Ok::<_, weft::ListenError>(())
        })
        .unwrap();
        let second = others_rx.recv().unwrap();
        addrs_tx
            .send((first, second, pool.first().handle()))
            .unwrap();
        pool.run().unwrap();
    });
    let ((tcp, udp), second, handle) = addrs_rx.recv().unwrap();
    assert_eq!(second, (tcp, udp), "port 0 resolves to one port for all");

    let answers: Vec<(u16, u64)> = (0..32).map(|_| ask(tcp)).collect();
    let reactors: BTreeSet<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(reactors, BTreeSet::from([0, 1]), "{answers:?}");
    let ids: BTreeSet<u64> = answers.iter().map(|a| a.1).collect();
    assert_eq!(ids.len(), answers.len(), "ids are unique across reactors");

    let mut udp_reactors = BTreeSet::new();
    for _ in 0..32 {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.send_to(b"?", udp).unwrap();
        let mut buf = [0u8; 8];
        let n = s.recv(&mut buf).unwrap();
        udp_reactors.insert(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(udp_reactors.len(), 2, "{udp_reactors:?}");

    // Stopping reactor 0 stops the pool: run returns once every reactor shut down.
    let held = TcpStream::connect(tcp).unwrap();
    handle.stop();
    runner.join().unwrap();
    let mut buf = [0u8; 1];
    let mut held = held;
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(matches!(held.read(&mut buf), Ok(0) | Err(_)));
    assert!(
        TcpStream::connect(tcp).is_err(),
        "nothing listens after the pool stopped"
    );
}

#[test]
fn a_setup_that_fails_stops_the_pool_before_anything_serves() {
    let mut pool = ReactorPool::new(3, config()).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    let result = pool.start_others(move |reactor| {
        reactor
            .listen_as(
                "who",
                &format!("tcp:{busy}:interface=127.0.0.1"),
                factory(|| WhoAmI),
            )
            .map(drop)
    });
    let error = result.expect_err("the port is taken by a socket without SO_REUSEPORT");
    assert!(error.to_string().starts_with("reactor 1: "), "{error}");
}

/// Takes nothing in: a client's port in these tests only needs to exist.
struct Quiet;

impl DatagramProtocol for Quiet {
    fn datagram_received(&mut self, _: &DatagramTransport, _: &[u8], _: SocketAddr) {}
}

#[test]
fn a_client_s_udp_ports_share_their_port_with_no_other_socket_of_the_pool() {
    let pool = ReactorPool::new(2, config()).unwrap();
    let reactor = pool.first().clone();
    let listener = reactor
        .listen_udp("who", "udp:0:interface=127.0.0.1", WhoAmIUdp)
        .unwrap()
        .local_addr()
        .unwrap();
    // Ports of a client's own asked at port 0 are each the system's pick, not the port
    // the pool's first `udp:0` got (which a listener on another reactor joins).
    let ports: Vec<SocketAddr> = (0..4)
        .map(|_| {
            reactor
                .open_udp("client", "udp:0:interface=127.0.0.1", Quiet)
                .unwrap()
                .local_addr()
                .unwrap()
        })
        .collect();
    let distinct: BTreeSet<SocketAddr> = ports.iter().copied().chain([listener]).collect();
    assert_eq!(distinct.len(), 5, "listener {listener}, clients {ports:?}");
    // Nor is a port a listener holds given to a client that asks for it by number (a
    // resolver drawing a random port), as it would be with SO_REUSEPORT: the kernel
    // would then hand part of the listener's datagrams to the client's socket.
    let taken = reactor.open_udp(
        "client",
        &format!("udp:{}:interface=127.0.0.1", listener.port()),
        Quiet,
    );
    let error = taken.expect_err("the listener's port is not shared with a client");
    assert!(error.to_string().contains("in use"), "{error}");
    drop(pool);
}
