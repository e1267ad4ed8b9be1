//! The DNS service on real loopback sockets: UDP, TCP, and forwarding to a second
//! server on loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use weft::{ListenOptions, Reactor};
use weft_names::{DnsConfig, ServiceMetrics, Zone, listen};

const EXAMPLE: &str = include_str!("../testdata/example.test.zone");
const ELSEWHERE: &str =
    "$ORIGIN elsewhere.test.\n$TTL 60\n@ SOA ns hostmaster 1 2 3 4 5\nwww A 198.51.100.80\n";

fn zone(text: &str) -> DnsConfig {
    let mut config = DnsConfig::default();
    config
        .zones
        .add(Zone::parse(Path::new("test.zone"), text).unwrap())
        .unwrap();
    config
}

fn query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.queries
        .push(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

fn udp_ask(server: SocketAddr, id: u16, name: &str) -> Message {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.send_to(&query(id, name, RecordType::A), server).unwrap();
    let mut buf = [0; 4096];
    let (n, from) = s.recv_from(&mut buf).unwrap();
    assert_eq!(from, server);
    Message::from_vec(&buf[..n]).unwrap()
}

fn tcp_ask(server: SocketAddr, id: u16, name: &str) -> Message {
    let mut s = TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let q = query(id, name, RecordType::A);
    s.write_all(&(q.len() as u16).to_be_bytes()).unwrap();
    s.write_all(&q).unwrap();
    let mut len = [0; 2];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut body).unwrap();
    Message::from_vec(&body).unwrap()
}

fn a(message: &Message) -> Vec<String> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            _ => None,
        })
        .collect()
}

/// Runs the reactor here and `client` on a thread; stops when the client is done.
fn run_with_client(reactor: &Reactor, client: impl FnOnce() + Send + 'static) {
    let handle = reactor.handle();
    let thread = std::thread::spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(client));
        handle.stop();
        result
    });
    reactor.run().unwrap();
    if let Err(panic) = thread.join().unwrap() {
        std::panic::resume_unwind(panic);
    }
}

fn addr(a: &weft::Address) -> SocketAddr {
    a.socket_addr().unwrap()
}

#[test]
fn zones_over_udp_and_tcp_and_forwarding_to_a_loopback_upstream() {
    let reactor = Reactor::new().unwrap();
    let endpoints = ["udp:0:interface=127.0.0.1".to_owned()];
    let (_, upstream) = listen(
        &reactor,
        "upstream",
        &endpoints,
        &ListenOptions::default(),
        zone(ELSEWHERE),
        ServiceMetrics::detached("upstream"),
    )
    .unwrap();
    let upstream = addr(&upstream[0]);
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();

    let mut config = zone(EXAMPLE);
    config.forward = vec![upstream];
    config.timeout = Duration::from_millis(300);
    let front = [
        "udp:0:interface=127.0.0.1".to_owned(),
        "tcp:0:interface=127.0.0.1".to_owned(),
    ];
    let (server, bound) = listen(
        &reactor,
        "dns",
        &front,
        &ListenOptions::default(),
        config,
        ServiceMetrics::detached("dns"),
    )
    .unwrap();
    let (udp, tcp) = (addr(&bound[0]), addr(&bound[1]));

    let mut stuck = zone(EXAMPLE);
    stuck.forward = vec![silent.local_addr().unwrap()];
    stuck.timeout = Duration::from_millis(200);
    let (_, stuck) = listen(
        &reactor,
        "stuck",
        &endpoints,
        &ListenOptions::default(),
        stuck,
        ServiceMetrics::detached("stuck"),
    )
    .unwrap();
    let stuck = addr(&stuck[0]);

    run_with_client(&reactor, move || {
        let r = udp_ask(udp, 1, "www.example.test.");
        assert_eq!((r.metadata.id, a(&r)), (1, vec!["192.0.2.10".to_owned()]));
        assert!(r.metadata.authoritative);
        let r = tcp_ask(tcp, 2, "chain.example.test.");
        assert_eq!(a(&r), ["192.0.2.10"]);

        let r = udp_ask(udp, 3, "www.elsewhere.test.");
        assert_eq!(a(&r), ["198.51.100.80"], "forwarded");
        assert!(!r.metadata.authoritative && r.metadata.recursion_available);
        let r = tcp_ask(tcp, 4, "www.elsewhere.test.");
        assert_eq!(
            (r.metadata.id, a(&r)),
            (4, vec!["198.51.100.80".to_owned()])
        );
        let r = udp_ask(udp, 5, "nope.elsewhere.test.");
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);

        let r = udp_ask(stuck, 6, "www.elsewhere.test.");
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    });
    let counts = server.metrics().counts();
    assert_eq!((counts.cache_hits, counts.cache_misses), (1, 2));
}
