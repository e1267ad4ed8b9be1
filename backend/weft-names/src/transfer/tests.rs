//! Transfer decisions and the messages of a whole zone, without sockets.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};

use super::*;
use crate::wire::Parsed;

const EXAMPLE: &str = include_str!("../../testdata/example.test.zone");

fn catalog(text: &str) -> Rc<Catalog> {
    let mut catalog = Catalog::default();
    catalog
        .add(Zone::parse(Path::new("example.test.zone"), text).unwrap())
        .unwrap();
    Rc::new(catalog)
}

fn allowing(prefix: &str) -> TransferConfig {
    TransferConfig {
        allow: vec![TransferPeer {
            prefix: prefix.parse().unwrap(),
            key: None,
        }],
        ..TransferConfig::default()
    }
}

fn asked(packet: &[u8]) -> Transfer {
    let Parsed::Query(request) = crate::wire::parse(packet, false) else {
        panic!("a query")
    };
    Transfer::new(request, packet)
}

/// What `packet` from 127.0.0.1 over `via` gets, with `config`.
fn plan_for(packet: &[u8], via: Via, config: &TransferConfig, metrics: &ServiceMetrics) -> Plan {
    let peer = Some("127.0.0.1".parse().unwrap());
    plan(
        asked(packet),
        peer,
        via,
        &catalog(EXAMPLE),
        config,
        false,
        metrics,
    )
}

fn answer(plan: Plan) -> Message {
    match plan {
        Plan::Answer(bytes) => Message::from_vec(&bytes).unwrap(),
        Plan::Stream(_) => panic!("one message expected"),
    }
}

#[test]
fn a_transfer_is_refused_to_peers_not_allowed_notauth_outside_the_zones_and_notimp_over_udp() {
    let metrics = ServiceMetrics::detached("dns");
    let axfr = transfer_query(1, "example.test.", RecordType::AXFR, None);
    let elsewhere = allowing("127.0.0.2");
    let refused = answer(plan_for(&axfr, Via::Tcp, &elsewhere, &metrics));
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert!(refused.answers.is_empty());
    let nobody = TransferConfig::default();
    let refused = answer(plan_for(&axfr, Via::Tcp, &nobody, &metrics));
    assert_eq!(
        refused.metadata.response_code,
        ResponseCode::Refused,
        "none by default"
    );

    let below_apex = transfer_query(2, "www.example.test.", RecordType::AXFR, None);
    let allowed = allowing("127.0.0.0/8");
    let notauth = answer(plan_for(&below_apex, Via::Tcp, &allowed, &metrics));
    assert_eq!(notauth.metadata.response_code, ResponseCode::NotAuth);

    let over_udp = answer(plan_for(&axfr, Via::Udp, &allowed, &metrics));
    assert_eq!(over_udp.metadata.response_code, ResponseCode::NotImp);
    assert!(matches!(
        plan_for(&axfr, Via::Tcp, &allowed, &metrics),
        Plan::Stream(_)
    ));

    let counted = metrics.transfer();
    assert_eq!(counted.transfers(TransferResult::Refused), 2);
    assert_eq!(counted.transfers(TransferResult::NotAuth), 1);
    assert_eq!(counted.transfers(TransferResult::Udp), 1);
    assert_eq!(metrics.responses(ResponseCode::Refused), 2);
}

#[test]
fn ixfr_gets_the_soa_when_current_soa_and_tc_over_udp_when_behind_and_the_zone_over_tcp() {
    let metrics = ServiceMetrics::detached("dns");
    let allowed = allowing("127.0.0.1");
    let current = 2024010101;
    for newer in [current, current + 5] {
        let ixfr = transfer_query(3, "example.test.", RecordType::IXFR, Some(newer));
        for via in [Via::Udp, Via::Tcp] {
            let soa = answer(plan_for(&ixfr, via, &allowed, &metrics));
            assert_eq!(soa.metadata.response_code, ResponseCode::NoError);
            assert!(soa.metadata.authoritative && !soa.metadata.truncation);
            assert_eq!(soa.answers.len(), 1);
            assert_eq!(soa.answers[0].record_type(), RecordType::SOA);
        }
    }
    let behind = transfer_query(4, "example.test.", RecordType::IXFR, Some(current - 1));
    let soa = answer(plan_for(&behind, Via::Udp, &allowed, &metrics));
    assert!(soa.metadata.truncation, "TC: ask again over TCP");
    assert_eq!(soa.answers.len(), 1);
    let Plan::Stream(job) = plan_for(&behind, Via::Tcp, &allowed, &metrics) else {
        panic!("the whole zone over TCP")
    };
    let records: usize = all_messages(*job)
        .iter()
        .map(|m| Message::from_vec(m).unwrap().answers.len())
        .sum();
    assert_eq!(records, catalog(EXAMPLE).zones()[0].len() + 1, "AXFR-style");

    // Serial arithmetic (RFC 1982): a serial that wrapped is newer.
    assert!(serial_at_least(3, u32::MAX - 2));
    assert!(!serial_at_least(u32::MAX - 2, 3));
    // Half the space apart, neither is newer (RFC 1982 §3.2): a secondary holding one
    // does not transfer the other, in either direction.
    let (a, b) = (100, 100 + (1 << 31));
    assert!(!serial_newer(a, b) && !serial_newer(b, a));
    assert!(serial_newer(101, 100) && !serial_newer(100, 100));

    let without_soa = transfer_query(5, "example.test.", RecordType::IXFR, None);
    let formerr = answer(plan_for(&without_soa, Via::Tcp, &allowed, &metrics));
    assert_eq!(formerr.metadata.response_code, ResponseCode::FormErr);
    // A SOA owned by another name is no SOA of this zone (RFC 1995 section 3): the
    // request is malformed, not answered with the whole zone.
    let mut elsewhere = Message::from_vec(&transfer_query(
        6,
        "example.test.",
        RecordType::IXFR,
        Some(current - 1),
    ))
    .unwrap();
    elsewhere.authorities[0].name = Name::from_ascii("foo.").unwrap();
    let formerr = answer(plan_for(
        &elsewhere.to_vec().unwrap(),
        Via::Tcp,
        &allowed,
        &metrics,
    ));
    assert_eq!(formerr.metadata.response_code, ResponseCode::FormErr);
    // The zone's name in other letters is the zone's.
    let mut cased = Message::from_vec(&transfer_query(
        7,
        "example.test.",
        RecordType::IXFR,
        Some(current),
    ))
    .unwrap();
    cased.authorities[0].name = Name::from_ascii("EXAMPLE.Test.").unwrap();
    let soa = answer(plan_for(
        &cased.to_vec().unwrap(),
        Via::Tcp,
        &allowed,
        &metrics,
    ));
    assert_eq!(soa.metadata.response_code, ResponseCode::NoError);
    assert_eq!(metrics.transfer().transfers(TransferResult::UpToDate), 5);
    assert_eq!(metrics.transfer().transfers(TransferResult::Truncated), 1);
}

#[test]
fn a_large_zone_goes_in_many_messages_soa_first_and_last_each_record_once() {
    let mut text =
        String::from("$ORIGIN big.test.\n$TTL 300\n@ SOA ns hostmaster 7 1h 15m 1w 5m\n@ NS ns\n");
    for i in 0..20_000 {
        writeln!(
            text,
            "host{i} A 10.{}.{}.{}",
            i >> 16,
            (i >> 8) & 255,
            i & 255
        )
        .unwrap();
    }
    let mut catalog = Catalog::default();
    catalog
        .add(Zone::parse(Path::new("big.zone"), &text).unwrap())
        .unwrap();
    let catalog = Rc::new(catalog);
    let packet = transfer_query(9, "big.test.", RecordType::AXFR, None);
    let peer = Some("127.0.0.1".parse().unwrap());
    let metrics = ServiceMetrics::detached("dns");
    let Plan::Stream(job) = plan(
        asked(&packet),
        peer,
        Via::Tcp,
        &catalog,
        &allowing("127.0.0.1"),
        false,
        &metrics,
    ) else {
        panic!("streamed")
    };
    // Transfers of one zone share its list of names, made by the first: starting one
    // does not copy a large zone on the thread that answers everyone else.
    let zone = &catalog.zones()[job.zone];
    assert!(Arc::ptr_eq(&zone.owners(), &zone.owners()));
    let messages = all_messages(*job);
    assert!(messages.len() > 10, "{} messages", messages.len());
    let mut records: Vec<Record> = Vec::new();
    for (i, bytes) in messages.iter().enumerate() {
        assert!(
            bytes.len() <= usize::from(u16::MAX),
            "message {i}: {} bytes",
            bytes.len()
        );
        let message = Message::from_vec(bytes).unwrap();
        assert_eq!(message.metadata.id, 9);
        assert!(message.metadata.authoritative);
        assert_eq!(
            message.queries.len(),
            usize::from(i == 0),
            "the question in the first only"
        );
        records.extend(message.answers);
    }
    assert_eq!(records.len(), 20_000 + 3);
    assert_eq!(records.first().unwrap().record_type(), RecordType::SOA);
    assert_eq!(records.last().unwrap().record_type(), RecordType::SOA);
    let soas = records
        .iter()
        .filter(|r| r.record_type() == RecordType::SOA)
        .count();
    assert_eq!(soas, 2, "the SOA opens and closes, nowhere else");
    let mut names: Vec<String> = records.iter().map(|r| r.name.to_string()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 20_000 + 1, "every name once");
}

/// What a NOTIFY gets at a service that is a secondary for no zone.
fn notify_received(packet: &[u8]) -> Option<(Vec<u8>, ResponseCode)> {
    super::notify_received(packet, &[], None, || None).map(|(bytes, rcode, _)| (bytes, rcode))
}

#[test]
fn a_notify_from_a_primary_of_a_secondary_zone_is_taken_and_any_other_refused() {
    let key =
        crate::TsigKey::new("xfr.example.", "hmac-sha256", "c2VjcmV0c2VjcmV0c2VjcmV0").unwrap();
    let zone = |primaries: Vec<NotifyPeer>| Secondary {
        origin: Name::from_ascii("Example.Test.").unwrap(),
        file: "example.test.zone".into(),
        primaries,
        max_records: inbound::MAX_RECORDS,
        request_ixfr: true,
    };
    let primary = |addr: &str, key: Option<crate::TsigKey>| NotifyPeer {
        addr: addr.parse().unwrap(),
        key,
    };
    let mut notify = transfer_query(21, "example.test.", RecordType::SOA, None);
    notify[2] |= 4 << 3;
    let from = Some("192.0.2.1".parse().unwrap());
    let plain = [zone(vec![primary("192.0.2.1:53", None)])];
    let (bytes, rcode, taken) = super::notify_received(&notify, &plain, from, || None).unwrap();
    assert_eq!(rcode, ResponseCode::NoError);
    assert_eq!(taken, Some(Name::from_ascii("Example.Test.").unwrap()));
    let answer = Message::from_vec(&bytes).unwrap();
    assert!(answer.metadata.authoritative);
    assert_eq!(answer.metadata.op_code, OpCode::Notify);
    assert_eq!(answer.queries.len(), 1, "the question echoed");
    // Any port of the primary's address (a NOTIFY leaves from any).
    let refused = |zones: &[Secondary], from: &str, signed: Option<&str>| {
        let key = signed.map(|k| Name::from_ascii(k).unwrap());
        let got = super::notify_received(&notify, zones, Some(from.parse().unwrap()), || key);
        got.unwrap().1 == ResponseCode::Refused
    };
    assert!(refused(&plain, "192.0.2.2", None), "another address");
    assert!(refused(&[], "192.0.2.1", None), "no secondary zone");
    let keyed = [zone(vec![primary("192.0.2.1:5300", Some(key))])];
    assert!(
        refused(&keyed, "192.0.2.1", None),
        "unsigned, where the primary has a key"
    );
    assert!(
        refused(&keyed, "192.0.2.1", Some("other.key.")),
        "another key"
    );
    assert!(
        !refused(&keyed, "192.0.2.1", Some("XFR.example.")),
        "its key"
    );
    // The log line says which of the zone, the address and the key did not fit.
    let why = |zones: &[Secondary], from: &str, signed: Option<&str>| {
        let key = signed.map(|k| Name::from_ascii(k).unwrap());
        super::notify_refusal(&notify, zones, Some(from.parse().unwrap()), key.as_ref())
    };
    assert_eq!(
        why(&[], "192.0.2.1", None),
        "for example.test., no secondary zone of this service"
    );
    assert_eq!(
        why(&plain, "192.0.2.2", None),
        "for example.test., not from an address of its primaries"
    );
    assert_eq!(
        why(&keyed, "192.0.2.1", Some("other.key.")),
        "for example.test. from a primary's address, not signed with its key (signed with other.key.)"
    );
    assert_eq!(
        why(&keyed, "192.0.2.1", None),
        "for example.test. from a primary's address, not signed with its key (no valid signature)"
    );
    let mut other = transfer_query(22, "other.test.", RecordType::SOA, None);
    other[2] |= 4 << 3;
    let got = super::notify_received(&other, &plain, from, || None).unwrap();
    assert_eq!(
        (got.1, got.2),
        (ResponseCode::Refused, None),
        "another zone"
    );
}

#[test]
fn a_notify_received_is_refused_with_its_question() {
    let mut notify = transfer_query(11, "example.test.", RecordType::SOA, None);
    notify[2] |= 4 << 3;
    let refused = Message::from_vec(&notify_received(&notify).unwrap().0).unwrap();
    assert_eq!(refused.metadata.id, 11);
    assert_eq!(refused.metadata.op_code, OpCode::Notify);
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert_eq!(refused.queries.len(), 1);
    assert!(refused.edns.is_none(), "none asked, none given");
    let query = transfer_query(12, "example.test.", RecordType::SOA, None);
    assert!(notify_received(&query).is_none(), "a query is not a NOTIFY");

    // RFC 6891 section 6.1.1: a request with an OPT gets a response with one.
    let mut with_opt = Message::new(13, MessageType::Query, OpCode::Notify);
    with_opt.queries.push(Query::query(
        Name::from_ascii("example.test.").unwrap(),
        RecordType::SOA,
    ));
    let mut edns = hickory_proto::op::Edns::new();
    edns.set_max_payload(4096).set_dnssec_ok(true);
    with_opt.edns = Some(edns);
    let refused = notify_received(&with_opt.to_vec().unwrap()).unwrap().0;
    let refused = Message::from_vec(&refused).unwrap();
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    let opt = refused.edns.expect("an OPT in the answer");
    assert_eq!(opt.max_payload(), crate::wire::EDNS_UDP_SIZE);
    assert!(opt.flags().dnssec_ok, "DO copied");

    // RFC 1996 section 3.7: a NOTIFY has a question; one without gets FORMERR, as NSD
    // answers it.
    let bare = Message::new(14, MessageType::Query, OpCode::Notify);
    let (bytes, rcode) = notify_received(&bare.to_vec().unwrap()).unwrap();
    assert_eq!(rcode, ResponseCode::FormErr);
    let formerr = Message::from_vec(&bytes).unwrap();
    assert_eq!(
        (formerr.metadata.id, formerr.metadata.response_code),
        (14, ResponseCode::FormErr)
    );
    // So does one whose question is cut short.
    let mut cut = transfer_query(15, "example.test.", RecordType::SOA, None);
    cut[2] |= 4 << 3;
    cut.truncate(16);
    assert_eq!(notify_received(&cut).unwrap().1, ResponseCode::FormErr);
}

/// The frames written on `wire` so far, decoded.
fn frames(bytes: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 2 <= bytes.len() {
        let len = usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
        out.push(Message::from_vec(&bytes[at + 2..at + 2 + len]).unwrap());
        at += 2 + len;
    }
    out
}

#[test]
fn a_reader_that_does_not_read_holds_the_high_water_mark_and_one_message_and_leaving_aborts() {
    use weft::Address;
    use weft::framing::Int16StringReceiver;
    use weft::testing::{Clock, StringTransport};

    let clock = Clock::fake();
    let _installed = clock.install();
    let mut text =
        String::from("$ORIGIN big.test.\n$TTL 300\n@ SOA ns hostmaster 7 1h 15m 1w 5m\n@ NS ns\n");
    for i in 0..20_000 {
        writeln!(
            text,
            "host{i} A 10.{}.{}.{}",
            i >> 16,
            (i >> 8) & 255,
            i & 255
        )
        .unwrap();
    }
    let mut config = crate::DnsConfig::default();
    config
        .zones
        .add(Zone::parse(Path::new("big.zone"), &text).unwrap())
        .unwrap();
    config.transfer = allowing("127.0.0.1");
    struct NoUpstream;
    impl crate::UpstreamLink for NoUpstream {
        fn send(&self, _: &[u8], _: SocketAddr) -> Option<crate::UdpLease> {
            None
        }
        fn exchange_tcp(&self, _: &[u8], _: SocketAddr, _: crate::TcpAnswer) -> crate::TcpExchange {
            crate::TcpExchange::new(|| {})
        }
    }
    let metrics = ServiceMetrics::detached("dns");
    let server = crate::DnsServer::new(config, metrics.clone(), Rc::new(NoUpstream));
    let addr = |a: &str| Address::Ip(a.parse().unwrap());
    let mut wire = StringTransport::with_addresses(addr("127.0.0.1:40000"), addr("127.0.0.1:53"));
    let mut proto = Int16StringReceiver::new(crate::DnsTcp::new(server));
    let frame = |packet: Vec<u8>| {
        let mut framed = u16::try_from(packet.len()).unwrap().to_be_bytes().to_vec();
        framed.extend_from_slice(&packet);
        framed
    };
    wire.receive(
        &mut proto,
        &frame(transfer_query(1, "big.test.", RecordType::AXFR, None)),
    );
    clock.advance(Duration::ZERO);
    let held = wire.transport().buffered();
    let bound = weft::transport::DEFAULT_HIGH_WATER + MESSAGE_BUDGET + 1024;
    assert!(
        held > 0 && held <= bound,
        "{held} bytes held, at most {bound}"
    );
    assert!(
        wire.transport().is_reading_paused(),
        "nothing else is read meanwhile"
    );

    // The reader reads: the rest comes, a turn at a time.
    let mut seen = 0;
    loop {
        let now = wire.value().len();
        if now == seen {
            break;
        }
        seen = now;
        clock.advance(Duration::ZERO);
    }
    let messages = frames(wire.value());
    let records: usize = messages.iter().map(|m| m.answers.len()).sum();
    assert_eq!(records, 20_000 + 3, "the hosts, the NS and the SOA twice");
    assert!(
        !wire.transport().is_reading_paused(),
        "reading again once sent"
    );
    assert_eq!(metrics.transfer().transfers(TransferResult::Complete), 1);

    // A second transfer whose reader leaves halfway is counted as aborted.
    wire.receive(
        &mut proto,
        &frame(transfer_query(2, "big.test.", RecordType::AXFR, None)),
    );
    clock.advance(Duration::ZERO);
    wire.lose(&mut proto, weft::CloseReason::Done);
    clock.advance(Duration::ZERO);
    assert_eq!(metrics.transfer().transfers(TransferResult::Aborted), 1);
    assert_eq!(metrics.transfer().transfers(TransferResult::Complete), 1);
}
