//! Queries per second on loopback UDP: the DNS service answering from a zone, against a
//! baseline measured in the same run — a UDP port on the same reactor that sends back a
//! pre-encoded response with the query's id, doing no DNS work.
//!
//! `cargo bench -p weft-names --bench queries` (set `QUERIES=N` for more or fewer).

use std::cell::RefCell;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use weft::{DatagramProtocol, DatagramTransport, Reactor};
use weft_names::{DnsConfig, ServiceMetrics, Via, Zone, listen};

/// Clients sending at once, each keeping `WINDOW` queries out.
const CLIENTS: usize = 2;
const WINDOW: usize = 16;

/// Answers every datagram with the same bytes, the query's id patched in.
struct Static(Vec<u8>);

impl DatagramProtocol for Static {
    fn datagram_received(&mut self, t: &DatagramTransport, data: &[u8], from: SocketAddr) {
        if data.len() >= 2 {
            self.0[..2].copy_from_slice(&data[..2]);
            t.write(&self.0, from);
        }
    }
}

fn query(id: u16) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.queries.push(Query::query(
        Name::from_ascii("www.example.test.").unwrap(),
        RecordType::A,
    ));
    m.to_vec().unwrap()
}

/// Sends `total` queries to `server` from `CLIENTS` threads; returns queries per second.
fn load(server: SocketAddr, total: usize) -> f64 {
    let per_client = total / CLIENTS;
    let start = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            std::thread::spawn(move || {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.connect(server).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let packet = query(1);
                let mut buf = [0; 1500];
                let (mut sent, mut got) = (0, 0);
                while sent < WINDOW.min(per_client) {
                    s.send(&packet).unwrap();
                    sent += 1;
                }
                while got < per_client {
                    match s.recv(&mut buf) {
                        Ok(_) => got += 1,
                        // A datagram lost under load: count it and send another.
                        Err(_) => got += 1,
                    }
                    if sent < per_client {
                        s.send(&packet).unwrap();
                        sent += 1;
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    (per_client * CLIENTS) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let total: usize = std::env::var("QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let reactor = Reactor::new().unwrap();
    let zone = Zone::parse(
        Path::new("example.test.zone"),
        include_str!("../testdata/example.test.zone"),
    )
    .unwrap();
    let mut config = DnsConfig::default();
    config.zones.add(zone).unwrap();
    let (server, bound) = listen(
        &reactor,
        "dns",
        &["udp:0:interface=127.0.0.1".to_owned()],
        &Default::default(),
        config,
        ServiceMetrics::detached("dns"),
    )
    .unwrap();
    let zone_addr = bound[0].socket_addr().unwrap();

    // The baseline's bytes are the zone's own answer, so both send the same size.
    let answer = Rc::new(RefCell::new(Vec::new()));
    let out = answer.clone();
    server.handle(&query(1), Via::Udp, None, move |bytes: Vec<u8>| {
        *out.borrow_mut() = bytes
    });
    let answer = answer.borrow().clone();
    let baseline = reactor
        .listen_udp("static", "udp:0:interface=127.0.0.1", Static(answer))
        .unwrap();
    let static_addr = baseline.local_addr().unwrap();

    let handle = reactor.handle();
    let client = std::thread::spawn(move || {
        load(zone_addr, total / 10); // warm up
        let zone_qps = load(zone_addr, total);
        let static_qps = load(static_addr, total);
        handle.stop();
        (zone_qps, static_qps)
    });
    reactor.run().unwrap();
    let (zone_qps, static_qps) = client.join().unwrap();
    drop(server);
    println!("loopback UDP, {CLIENTS} clients x {WINDOW} in flight, {total} queries each run");
    println!("  pre-encoded static response : {static_qps:>10.0} queries/s (baseline)");
    println!("  answered from the zone      : {zone_qps:>10.0} queries/s");
    println!(
        "  zone / baseline             : {:>10.2}",
        zone_qps / static_qps
    );
}
