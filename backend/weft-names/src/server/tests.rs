//! The server without sockets: packets in, packets out, time on a fake clock.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use weft::testing::Clock;

use super::*;
use crate::forward::{TcpAnswer, TcpExchange, UdpLease};
use crate::zone::Zone;

pub(super) const EXAMPLE: &str = include_str!("../../testdata/example.test.zone");
pub(super) const UPSTREAM: &str = "127.0.0.1:5300";

/// Records what would go upstream: UDP queries with the local port each left from (a
/// new one each), and TCP exchanges.
#[derive(Default)]
pub(super) struct Wire(
    pub(super) RefCell<Vec<(Vec<u8>, SocketAddr, u16)>>,
    pub(super) RefCell<Vec<TcpOut>>,
);

/// The local port the first UDP query leaves from in tests.
pub(super) const FIRST_PORT: u16 = 40_000;

/// A TCP exchange asked for: the query, where, the callback, and whether it was
/// abandoned.
pub(super) struct TcpOut {
    pub(super) packet: Vec<u8>,
    pub(super) to: SocketAddr,
    pub(super) answer: Option<TcpAnswer>,
    pub(super) abandoned: Rc<std::cell::Cell<bool>>,
}

impl UpstreamLink for Wire {
    fn send(&self, packet: &[u8], to: SocketAddr) -> Option<UdpLease> {
        let port = FIRST_PORT + u16::try_from(self.0.borrow().len()).unwrap();
        self.0.borrow_mut().push((packet.to_vec(), to, port));
        // Each port a connection, as the reactor lists a real one, numbered as its port.
        Some(UdpLease::new(port, || {}).on(weft::observe::ConnectionId(u64::from(port))))
    }

    fn exchange_tcp(&self, packet: &[u8], to: SocketAddr, answer: TcpAnswer) -> TcpExchange {
        let abandoned = Rc::new(std::cell::Cell::new(false));
        self.1.borrow_mut().push(TcpOut {
            packet: packet.to_vec(),
            to,
            answer: Some(answer),
            abandoned: abandoned.clone(),
        });
        TcpExchange::new(move || abandoned.set(true))
    }
}

pub(super) type Inbox = Rc<RefCell<Vec<Message>>>;

pub(super) struct Harness {
    pub(super) server: DnsServer,
    pub(super) wire: Rc<Wire>,
    pub(super) inbox: Inbox,
    pub(super) clock: Clock,
    _installed: weft::time::ClockGuard,
}

pub(super) fn harness(zone_text: &str, forward: bool) -> Harness {
    let upstreams: &[&str] = if forward { &[UPSTREAM] } else { &[] };
    harness_with(zone_text, upstreams, ForwardOptions::default())
}

/// A server for `zone_text` forwarding to `upstreams` with `forwarding`.
pub(super) fn harness_with(
    zone_text: &str,
    upstreams: &[&str],
    forwarding: ForwardOptions,
) -> Harness {
    let clock = Clock::fake();
    let installed = clock.install();
    let zones = catalog(zone_text);
    let config = DnsConfig {
        zones,
        forward: upstreams.iter().map(|u| u.parse().unwrap()).collect(),
        forwarding,
        cache_size: 100,
        timeout: Duration::from_secs(2),
        ..DnsConfig::default()
    };
    let wire = Rc::new(Wire::default());
    let server = DnsServer::new(config, ServiceMetrics::detached("dns"), wire.clone());
    Harness {
        server,
        wire,
        inbox: Inbox::default(),
        clock,
        _installed: installed,
    }
}

/// A catalog of one zone, `example.test.` as `zone_text` says.
pub(super) fn catalog(zone_text: &str) -> Catalog {
    let mut zones = Catalog::default();
    zones
        .add(Zone::parse(Path::new("example.test.zone"), zone_text).unwrap())
        .unwrap();
    zones
}

pub(super) fn query(id: u16, name: &str, qtype: RecordType) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.queries
        .push(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m
}

impl Harness {
    pub(super) fn send(&self, message: &Message, via: Via) -> Outcome {
        self.send_bytes(&message.to_vec().unwrap(), via)
    }

    pub(super) fn send_bytes(&self, packet: &[u8], via: Via) -> Outcome {
        self.send_bytes_from(packet, via, "127.0.0.1:40000".parse().unwrap())
    }

    /// `message` from the client at `client`.
    pub(super) fn send_from(&self, message: &Message, via: Via, client: SocketAddr) -> Outcome {
        self.send_bytes_from(&message.to_vec().unwrap(), via, client)
    }

    fn send_bytes_from(&self, packet: &[u8], via: Via, client: SocketAddr) -> Outcome {
        let inbox = self.inbox.clone();
        self.server
            .handle(packet, via, Some(client), move |bytes: Vec<u8>| {
                inbox.borrow_mut().push(Message::from_vec(&bytes).unwrap())
            })
    }

    pub(super) fn ask(&self, name: &str, qtype: RecordType) -> Message {
        assert_eq!(
            self.send(&query(77, name, qtype), Via::Udp),
            Outcome::Answered
        );
        self.inbox.borrow_mut().pop().expect("an answer")
    }

    /// The upstream query sent last, decoded.
    pub(super) fn upstream_query(&self) -> Message {
        let (packet, to, _) = self.wire.0.borrow().last().cloned().expect("sent upstream");
        assert_eq!(to, UPSTREAM.parse::<SocketAddr>().unwrap());
        Message::from_vec(&packet).unwrap()
    }

    /// The local port the query with `id` left from.
    pub(super) fn port_of(&self, id: u16) -> u16 {
        let wire = self.wire.0.borrow();
        let sent = wire.iter().rev().find(|(p, ..)| p[..2] == id.to_be_bytes());
        sent.expect("a query with that id").2
    }

    /// `message` arrives from the upstream, on the port its id's query left from.
    pub(super) fn upstream_sends(&self, message: &Message) -> Result<(), String> {
        let port = self.port_of(message.metadata.id);
        self.server
            .upstream_received(&message.to_vec().unwrap(), UPSTREAM.parse().unwrap(), port)
    }

    /// The upstream answers `question` with one A record of `ttl`.
    pub(super) fn upstream_answers(&self, question: &Message, ttl: u32) {
        self.upstream_sends(&a_answer(question, ttl)).unwrap();
    }

    /// Completes the TCP exchange asked for last with `result`.
    pub(super) fn tcp_answers(&self, result: Result<Vec<u8>, String>) {
        let answer = self.wire.1.borrow_mut().last_mut().unwrap().answer.take();
        answer.expect("not completed yet")(result);
    }
}

/// An answer to `question` with one A record of `ttl`.
pub(super) fn a_answer(question: &Message, ttl: u32) -> Message {
    let mut answer = Message::response(question.metadata.id, OpCode::Query);
    answer.queries = question.queries.clone();
    answer.answers.push(Record::from_rdata(
        question.queries[0].name().clone(),
        ttl,
        RData::A(A::new(198, 51, 100, 7)),
    ));
    answer
}

#[test]
fn zone_answers_are_authoritative_and_echo_the_id_and_question() {
    let h = harness(EXAMPLE, false);
    let r = h.ask("www.example.test.", RecordType::A);
    assert_eq!(r.metadata.id, 77);
    assert!(r.metadata.authoritative && !r.metadata.recursion_available);
    assert!(r.metadata.recursion_desired, "RD is copied");
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        r.queries[0].name(),
        &Name::from_ascii("www.example.test.").unwrap()
    );
    assert_eq!(r.answers[0].data, RData::A(A::new(192, 0, 2, 10)));
    assert_eq!(h.server.metrics().responses(ResponseCode::NoError), 1);
}

#[test]
fn a_zone_answer_to_class_any_is_not_authoritative() {
    let h = harness(EXAMPLE, false);
    let mut any = query(78, "www.example.test.", RecordType::A);
    any.queries[0].set_query_class(DNSClass::ANY);
    assert_eq!(h.send(&any, Via::Udp), Outcome::Answered);
    let r = h.inbox.borrow_mut().pop().expect("an answer");
    assert_eq!(r.answers[0].data, RData::A(A::new(192, 0, 2, 10)));
    assert!(!r.metadata.authoritative, "AA clear for QCLASS ANY");
    assert!(
        h.ask("www.example.test.", RecordType::A)
            .metadata
            .authoritative
    );
}

#[test]
fn nxdomain_and_nodata_carry_the_soa_and_cnames_are_chased() {
    let h = harness(EXAMPLE, false);
    let nx = h.ask("nope.example.test.", RecordType::A);
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(nx.metadata.authoritative);
    assert_eq!(nx.authorities[0].record_type(), RecordType::SOA);

    let nodata = h.ask("mail.example.test.", RecordType::TXT);
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);

    let chain = h.ask("chain.example.test.", RecordType::AAAA);
    let types: Vec<_> = chain.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(
        types,
        [RecordType::CNAME, RecordType::CNAME, RecordType::AAAA]
    );
    assert_eq!(h.server.metrics().responses(ResponseCode::NXDomain), 1);
}

#[test]
fn out_of_zone_queries_are_refused_when_nothing_is_forwarded() {
    let h = harness(EXAMPLE, false);
    let mut q = query(5, "www.elsewhere.test.", RecordType::A);
    q.metadata.recursion_desired = false;
    assert_eq!(h.send(&q, Via::Udp), Outcome::Refused);
    let r = h.inbox.borrow_mut().pop().unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert!(h.wire.0.borrow().is_empty());
    let axfr = h.send(&query(6, "example.test.", RecordType::AXFR), Via::Tcp);
    assert!(
        matches!(axfr, Outcome::Transfer(t) if t.qtype() == RecordType::AXFR),
        "a transfer goes back to the transport, which knows the peer"
    );
}

/// A secondary zone not transferred yet (or expired) is this service's to answer for:
/// SERVFAIL, Not Ready, never forwarded; the other names go on as before.
#[test]
fn a_secondary_zone_without_a_copy_gets_servfail_not_ready_and_is_never_forwarded() {
    let clock = Clock::fake();
    let _installed = clock.install();
    let pending = crate::transfer::Secondary {
        origin: Name::from_ascii("pending.test.").unwrap(),
        file: "pending.test.zone".into(),
        primaries: Vec::new(),
        max_records: crate::transfer::inbound::MAX_RECORDS,
        request_ixfr: true,
    };
    let config = DnsConfig {
        zones: catalog(EXAMPLE),
        forward: vec![UPSTREAM.parse().unwrap()],
        transfer: TransferConfig {
            secondaries: vec![pending],
            ..TransferConfig::default()
        },
        ..DnsConfig::default()
    };
    let wire = Rc::new(Wire::default());
    let server = DnsServer::new(config, ServiceMetrics::detached("dns"), wire.clone());
    let answers = Inbox::default();
    let mut asked = query(7, "www.Pending.test.", RecordType::A);
    asked.edns = Some(Edns::new());
    let inbox = answers.clone();
    let outcome = server.handle(&asked.to_vec().unwrap(), Via::Udp, None, move |bytes| {
        inbox.borrow_mut().push(Message::from_vec(&bytes).unwrap());
    });
    assert_eq!(outcome, Outcome::Answered);
    let answer = answers.borrow_mut().pop().unwrap();
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    let ede = answer.edns.as_ref().and_then(|e| {
        e.options()
            .as_ref()
            .iter()
            .find_map(|(code, option)| (u16::from(*code) == 15).then(|| option.clone()))
    });
    assert!(format!("{ede:?}").contains("[0, 14]"), "Not Ready: {ede:?}");
    assert!(wire.0.borrow().is_empty(), "nothing forwarded");
}

/// Meta types name no data: a zone answers them with no data, as NSD does, and none is
/// forwarded (an OPT never is, RFC 6891 section 6.1.1); ANY still is.
#[test]
fn meta_types_get_no_data_in_a_zone_and_are_never_forwarded() {
    let h = harness(EXAMPLE, true);
    for qtype in [RecordType::OPT, RecordType::TSIG, RecordType::Unknown(249)] {
        let nodata = h.ask("www.example.test.", qtype);
        assert_eq!(
            nodata.metadata.response_code,
            ResponseCode::NoError,
            "{qtype}"
        );
        assert!(nodata.metadata.authoritative, "{qtype}");
        assert!(nodata.answers.is_empty(), "{qtype}");
        assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);
    }
    for (id, qtype) in [
        RecordType::OPT,
        RecordType::TSIG,
        RecordType::Unknown(249),
        RecordType::Unknown(254),
        RecordType::Unknown(128),
    ]
    .into_iter()
    .enumerate()
    {
        let q = query(id as u16, "www.elsewhere.test.", qtype);
        assert_eq!(h.send(&q, Via::Udp), Outcome::Refused, "{qtype}");
        let r = h.inbox.borrow_mut().pop().unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{qtype}");
    }
    assert!(h.wire.0.borrow().is_empty(), "no meta type asked upstream");
    h.send(&query(9, "www.elsewhere.test.", RecordType::ANY), Via::Udp);
    assert_eq!(h.wire.0.borrow().len(), 1, "ANY is forwarded");
}

#[test]
fn datagrams_from_ports_that_answer_anything_go_unanswered() {
    let h = harness(EXAMPLE, false);
    // A daytime service's line, read as a header: opcode 13 (NOTIMP), and a question
    // asked as it should be; from port 13 neither is answered, from elsewhere both are.
    let daytime = b"Fri Dec  4 08:00:44 2026\r\n";
    let question = query(7, "www.example.test.", RecordType::A)
        .to_vec()
        .unwrap();
    for port in [0, 7, 13, 17, 19, 37] {
        let from: SocketAddr = ([192, 0, 2, 9], port).into();
        for packet in [&daytime[..], &question] {
            let outcome = h.server.handle(packet, Via::Udp, Some(from), move |_| {
                panic!("answered a datagram from port {port}")
            });
            assert!(
                matches!(outcome, Outcome::Dropped(_)),
                "{port}: {outcome:?}"
            );
        }
    }
    assert_eq!(h.server.metrics().counts().dropped, 12);
    assert!(h.send_bytes(daytime, Via::Udp) != Outcome::Answered);
    assert_eq!(
        h.inbox.borrow_mut().len(),
        1,
        "NOTIMP from an ordinary port"
    );
    assert_eq!(h.send_bytes(&question, Via::Udp), Outcome::Answered);
    // Over TCP the peer's port is its own: a connection cannot be forged.
    let from: SocketAddr = ([192, 0, 2, 9], 13).into();
    let outcome = h.server.handle(&question, Via::Tcp, Some(from), |_| {});
    assert_eq!(outcome, Outcome::Answered);
}

#[test]
fn malformed_packets_get_formerr_or_are_dropped_and_counted() {
    let h = harness(EXAMPLE, false);
    let mut packet = query(0xbeef, "www.example.test.", RecordType::A)
        .to_vec()
        .unwrap();
    packet.truncate(packet.len() - 3);
    assert!(matches!(
        h.send_bytes(&packet, Via::Udp),
        Outcome::Malformed(_)
    ));
    let r = h.inbox.borrow_mut().pop().unwrap();
    assert_eq!(
        (r.metadata.id, r.metadata.response_code),
        (0xbeef, ResponseCode::FormErr)
    );

    assert!(matches!(
        h.send_bytes(b"\x01\x02", Via::Udp),
        Outcome::Dropped(_)
    ));
    let mut answer = query(1, "www.example.test.", RecordType::A);
    answer.metadata.message_type = MessageType::Response;
    assert!(matches!(h.send(&answer, Via::Udp), Outcome::Dropped(_)));
    for _ in 0..50 {
        let junk: Vec<u8> = (0..fastrand::usize(0..80))
            .map(|_| fastrand::u8(..))
            .collect();
        let _ = h.send_bytes(&junk, Via::Udp);
    }
    assert!(h.server.metrics().counts().dropped >= 2);
}

#[test]
fn udp_answers_larger_than_the_client_takes_are_truncated_and_tcp_gets_them_whole() {
    let mut zone = EXAMPLE.to_owned();
    for i in 0..12 {
        zone.push_str(&format!("big IN TXT \"{i:02} {}\"\n", "x".repeat(60)));
    }
    let h = harness(&zone, false);
    let big = query(9, "big.example.test.", RecordType::TXT);
    h.send(&big, Via::Udp);
    let r = h.inbox.borrow_mut().pop().unwrap();
    assert!(r.metadata.truncation && r.answers.is_empty());
    assert_eq!((r.metadata.id, r.queries.len()), (9, 1));

    let mut with_edns = big.clone();
    with_edns.edns = Some(Edns::new());
    with_edns.edns.as_mut().unwrap().set_max_payload(4096);
    h.send(&with_edns, Via::Udp);
    let r = h.inbox.borrow_mut().pop().unwrap();
    assert!(
        !r.metadata.truncation && r.answers.len() == 12,
        "1232 bytes fit"
    );
    assert!(r.edns.is_some(), "an EDNS query gets an EDNS answer");

    h.send(&big, Via::Tcp);
    let r = h.inbox.borrow_mut().pop().unwrap();
    assert!(!r.metadata.truncation && r.answers.len() == 12);
}

#[test]
fn an_additional_section_that_does_not_fit_udp_is_left_out_without_tc() {
    let mut zone =
        "$ORIGIN example.test.\n$TTL 60\n@ SOA ns hostmaster 1 2 3 4 5\n@ NS ns\n".to_owned();
    for i in 0..12 {
        zone.push_str(&format!(
            "@ MX {i} mail{i}\nmail{i} A 192.0.2.{i}\nmail{i} AAAA 2001:db8::{i}\n"
        ));
    }
    let h = harness(&zone, false);
    let udp = h.ask("example.test.", RecordType::MX);
    assert!(!udp.metadata.truncation, "the answer itself fits");
    assert_eq!(udp.answers.len(), 12);
    assert!(udp.additionals.is_empty());

    h.send(&query(78, "example.test.", RecordType::MX), Via::Tcp);
    let tcp = h.inbox.borrow_mut().pop().unwrap();
    assert_eq!(tcp.additionals.len(), 24, "A and AAAA of each exchange");
}

#[test]
fn an_error_answer_whose_tsig_record_would_pass_512_bytes_over_udp_goes_without_it_and_tc_set() {
    // A key name and a question of about 255 octets each: the BADKEY answer, the
    // question and a TSIG record owned by the key's name, would take some 560 bytes.
    let long = |last: char| {
        format!(
            "{}.{}.{}.{}.",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            last.to_string().repeat(61)
        )
    };
    let key = crate::TsigKey::new(&long('k'), "hmac-sha256", "bWFkZSBmb3IgdGhlIHRlc3Q=").unwrap();
    let question = long('q').replacen('a', "", 1);
    let mut packet = query(7, &question, RecordType::A).to_vec().unwrap();
    crate::tsig::sign_query(&key, &mut packet);
    let h = harness(EXAMPLE, false);
    for (via, fits) in [(Via::Udp, true), (Via::Tcp, false)] {
        let sent = Rc::new(RefCell::new(Vec::new()));
        let out = sent.clone();
        h.server.handle(
            &packet,
            via,
            Some("127.0.0.1:40000".parse().unwrap()),
            move |b| {
                *out.borrow_mut() = b;
            },
        );
        let bytes = sent.borrow().clone();
        let answer = Message::from_vec(&bytes).unwrap();
        assert_eq!(answer.metadata.response_code, ResponseCode::NotAuth);
        if fits {
            assert!(bytes.len() <= 512, "{} bytes over UDP", bytes.len());
            assert!(answer.metadata.truncation, "TC: ask again over TCP");
        } else {
            assert!(bytes.len() > 512, "over TCP the TSIG record goes with it");
            assert!(!answer.metadata.truncation);
        }
    }
}

/// The answers a TCP connection's wire holds, unframed, in order.
fn framed_answers(wire: &mut weft::testing::StringTransport) -> Vec<Message> {
    let mut out: &[u8] = wire.value();
    let mut answers = Vec::new();
    while out.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([out[0], out[1]]));
        answers.push(Message::from_vec(&out[2..2 + len]).unwrap());
        out = &out[2 + len..];
    }
    answers
}

/// A TCP connection open across a reload is answered by the server the reload put in
/// force from its next question on; a question it asked before is answered by the
/// server it asked (which its forwarder keeps alive while questions are out, on a
/// reactor).
#[test]
fn a_tcp_connection_moves_to_the_server_in_force_and_its_waiting_question_is_still_answered() {
    use weft::framing::Int16StringReceiver;
    let h = harness(EXAMPLE, true);
    let frame = |m: &Message| {
        let packet = m.to_vec().unwrap();
        let mut framed = u16::try_from(packet.len()).unwrap().to_be_bytes().to_vec();
        framed.extend_from_slice(&packet);
        framed
    };
    let mut wire = weft::testing::StringTransport::new();
    let mut connection = Int16StringReceiver::new(crate::DnsTcp::new(h.server.clone()));
    wire.receive(
        &mut connection,
        &frame(&query(1, "a.elsewhere.test.", RecordType::A)),
    );
    let up = h.upstream_query();
    let port = h.port_of(up.metadata.id);

    let edited = EXAMPLE
        .replace("2024010101 ;", "2024010102 ;")
        .replace("www     300 IN A 192.0.2.10", "www     300 IN A 192.0.2.11");
    let config = DnsConfig {
        zones: catalog(&edited),
        forward: vec![UPSTREAM.parse().unwrap()],
        timeout: Duration::from_secs(2),
        ..DnsConfig::default()
    };
    let next = DnsServer::succeeding(
        config,
        ServiceMetrics::detached("dns"),
        h.wire.clone(),
        Some(&h.server),
    );
    wire.receive(
        &mut connection,
        &frame(&query(2, "www.example.test.", RecordType::A)),
    );
    let old = framed_answers(&mut wire);
    assert_eq!(old.len(), 1);
    assert_eq!(
        old[0].answers[0].data,
        RData::A(A::new(192, 0, 2, 10)),
        "not in force until the reload commits"
    );

    next.put_in_force();
    wire.receive(
        &mut connection,
        &frame(&query(3, "www.example.test.", RecordType::A)),
    );
    let answers = framed_answers(&mut wire);
    assert_eq!(answers.len(), 2);
    assert_eq!(
        (answers[1].metadata.id, &answers[1].answers[0].data),
        (3, &RData::A(A::new(192, 0, 2, 11))),
        "the next question is answered by the zone put in force"
    );

    h.server
        .upstream_received(
            &a_answer(&up, 60).to_vec().unwrap(),
            UPSTREAM.parse().unwrap(),
            port,
        )
        .unwrap();
    let answers = framed_answers(&mut wire);
    assert_eq!(answers.len(), 3, "the waiting question is answered");
    assert_eq!(answers[2].metadata.id, 1);
}
