//! What the loopback tests share: a DNS service on a reactor, and blocking std clients
//! that send packets built with hickory over real UDP and TCP sockets.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use weft::Reactor;
use weft_names::{DnsConfig, DnsServer, ServiceMetrics, Zone, listen};

pub const EXAMPLE: &str = include_str!("../../testdata/example.test.zone");

/// A configuration serving the zone `text`.
pub fn zone(text: &str) -> DnsConfig {
    let mut config = DnsConfig::default();
    config
        .zones
        .add(Zone::parse(Path::new("test.zone"), text).unwrap())
        .unwrap();
    config
}

/// A query for `name`/`qtype`, recursion desired.
pub fn message(id: u16, name: &str, qtype: RecordType) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.queries
        .push(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m
}

/// The encoded query for `name`/`qtype`.
pub fn query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    message(id, name, qtype).to_vec().unwrap()
}

/// Sends `packet` over UDP and returns the one datagram that comes back.
pub fn udp_exchange(server: SocketAddr, packet: &[u8]) -> Message {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.send_to(packet, server).unwrap();
    let mut buf = [0; 65_535];
    let (n, from) = s.recv_from(&mut buf).unwrap();
    assert_eq!(from, server);
    Message::from_vec(&buf[..n]).unwrap()
}

/// Sends `packet` over a new TCP connection, framed, and returns the first answer.
pub fn tcp_exchange(server: SocketAddr, packet: &[u8]) -> Message {
    let mut s = TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&(packet.len() as u16).to_be_bytes()).unwrap();
    s.write_all(packet).unwrap();
    let mut len = [0; 2];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut body).unwrap();
    Message::from_vec(&body).unwrap()
}

pub fn udp_ask(server: SocketAddr, id: u16, name: &str) -> Message {
    udp_exchange(server, &query(id, name, RecordType::A))
}

pub fn tcp_ask(server: SocketAddr, id: u16, name: &str) -> Message {
    tcp_exchange(server, &query(id, name, RecordType::A))
}

/// The addresses of the A records of the answer section.
pub fn a(message: &Message) -> Vec<String> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            _ => None,
        })
        .collect()
}

pub fn addr(a: &weft::Address) -> SocketAddr {
    a.socket_addr().unwrap()
}

/// Service `name` running `config` on loopback UDP and TCP: the server and its UDP and
/// TCP addresses.
pub fn serve(
    reactor: &Reactor,
    name: &str,
    config: DnsConfig,
) -> (DnsServer, SocketAddr, SocketAddr) {
    let endpoints = [
        "udp:0:interface=127.0.0.1".to_owned(),
        "tcp:0:interface=127.0.0.1".to_owned(),
    ];
    let (server, bound) = listen(
        reactor,
        name,
        &endpoints,
        &Default::default(),
        config,
        ServiceMetrics::detached(name),
    )
    .unwrap();
    (server, addr(&bound[0]), addr(&bound[1]))
}
