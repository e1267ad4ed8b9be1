//! What the dashboard's DNS view records of each answer, and the named steps of a
//! forwarded query's chain, without sockets.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::tests::{EXAMPLE, UPSTREAM, harness, query};
use super::*;
use crate::forward::{STEP_CACHE, STEP_UPSTREAM, UPSTREAM_LABEL};

#[test]
fn every_answer_is_recorded_with_its_client_code_and_source() {
    let h = harness(EXAMPLE, true);
    let upstream: SocketAddr = UPSTREAM.parse().unwrap();
    h.send(&query(1, "www.example.test.", RecordType::A), Via::Udp);
    h.send(&query(2, "nope.example.test.", RecordType::A), Via::Udp);
    h.send(&query(3, "api.elsewhere.test.", RecordType::A), Via::Udp);
    h.upstream_answers(&h.upstream_query(), 30);
    h.send(&query(4, "API.elsewhere.test.", RecordType::A), Via::Udp);
    h.send(
        &query(5, "slow.elsewhere.test.", RecordType::AAAA),
        Via::Udp,
    );
    h.clock.advance(Duration::from_secs(2));
    h.send(&query(6, "x.elsewhere.test.", RecordType::OPT), Via::Tcp);
    // Of a class not served: refused with its question, which names the row.
    let mut chaos = query(7, "version.bind.", RecordType::TXT);
    chaos.queries[0].set_query_class(hickory_proto::rr::DNSClass::CH);
    // Refused, not bad input: no error reported for it.
    assert!(matches!(h.send(&chaos, Via::Udp), Outcome::Refused));
    // An opcode not served (NOTIMP) is a refusal of what it asks, well formed; a packet
    // that does not decode as a query (FORMERR) is malformed.
    let mut status = query(8, "example.test.", RecordType::SOA);
    status.metadata.op_code = hickory_proto::op::OpCode::Status;
    // Refused, as a class not served is: not reported as bad input.
    assert_eq!(h.send(&status, Via::Udp), Outcome::Refused);
    let mut two = query(9, "www.example.test.", RecordType::A);
    two.queries.push(two.queries[0].clone());
    assert!(matches!(h.send(&two, Via::Udp), Outcome::Malformed(_)));
    assert_eq!(h.inbox.borrow().len(), 9, "every query answered");

    let read = h.server.metrics().figures().read();
    let seen: Vec<_> = read
        .recent
        .iter()
        .rev()
        .map(|q| (q.name.as_str(), q.qtype, q.rcode, q.source))
        .collect();
    assert_eq!(
        seen,
        [
            (
                "www.example.test.",
                Some(RecordType::A),
                ResponseCode::NoError,
                Source::Zone
            ),
            (
                "nope.example.test.",
                Some(RecordType::A),
                ResponseCode::NXDomain,
                Source::Zone
            ),
            (
                "api.elsewhere.test.",
                Some(RecordType::A),
                ResponseCode::NoError,
                Source::Upstream(upstream)
            ),
            (
                "API.elsewhere.test.",
                Some(RecordType::A),
                ResponseCode::NoError,
                Source::Cache
            ),
            (
                "slow.elsewhere.test.",
                Some(RecordType::AAAA),
                ResponseCode::ServFail,
                Source::Timeout
            ),
            (
                "x.elsewhere.test.",
                Some(RecordType::OPT),
                ResponseCode::Refused,
                Source::Refused
            ),
            (
                "version.bind.",
                Some(RecordType::TXT),
                ResponseCode::Refused,
                Source::Refused
            ),
            ("", None, ResponseCode::NotImp, Source::Refused),
            ("", None, ResponseCode::FormErr, Source::Malformed),
        ]
    );
    assert!(
        read.recent
            .iter()
            .all(|q| q.client == Some("127.0.0.1:40000".parse().unwrap()))
    );
    assert_eq!(
        read.top.first(),
        Some(&("api.elsewhere.test.".to_owned(), 2)),
        "names are counted case-insensitively: {:?}",
        read.top
    );
    let u = &read.upstreams[0];
    assert_eq!((u.addr, u.answers, u.timeouts), (upstream, 1, 1));
    assert_eq!(
        u.buckets.last().map(|b| b.1),
        Some(1),
        "its answer is timed"
    );
}

#[test]
fn a_forwarded_query_names_the_cache_lookup_then_the_upstream_it_waits_on() {
    let h = harness(EXAMPLE, true);
    h.send(&query(9, "stuck.elsewhere.test.", RecordType::A), Via::Udp);
    let pending: Vec<_> = weft::defer::pending()
        .into_iter()
        .filter(|p| p.label == Some(UPSTREAM_LABEL))
        .collect();
    assert_eq!(pending.len(), 1);
    let step = pending[0].named.clone().expect("a named step");
    assert_eq!(
        (step.index, step.name),
        (1, STEP_UPSTREAM),
        "after {STEP_CACHE}"
    );
    assert_eq!(
        step.detail.map(|d| d.as_str().to_owned()),
        Some(UPSTREAM.into())
    );
    // And on the port it left from, a connection the inspector lists.
    let sent_from = h.wire.0.borrow()[0].2;
    assert_eq!(
        step.waits_on.and_then(weft::defer::WaitsOn::connection),
        Some(weft::observe::ConnectionId(u64::from(sent_from)))
    );
    h.clock.advance(Duration::from_secs(2));
    assert_eq!(h.server.upstream_in_flight(), 0);
}

/// A client asking for a server cookie alone gets one (RFC 7873 section 5.4): answered,
/// and recorded as such, neither refused nor malformed.
#[test]
fn a_server_cookie_asked_for_alone_is_recorded_as_a_cookie() {
    let config = DnsConfig {
        zones: super::tests::catalog(EXAMPLE),
        edns: crate::EdnsConfig {
            cookies: true,
            ..crate::EdnsConfig::default()
        },
        ..DnsConfig::default()
    };
    let link = std::rc::Rc::new(super::tests::Wire::default());
    let server = DnsServer::new(config, ServiceMetrics::detached("dns"), link);
    // The header (no question, one additional record), then an OPT holding a client
    // cookie: option 10, 8 bytes.
    let mut packet = vec![0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    packet.extend_from_slice(&[0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 12, 0, 10, 0, 8]);
    packet.extend_from_slice(&[7; 8]);
    let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let outcome = server.handle(&packet, Via::Udp, Some(client), |_| {});
    assert_eq!(outcome, Outcome::Answered);
    let read = server.metrics().figures().read();
    let recorded: Vec<_> = read.recent.iter().map(|q| (q.rcode, q.source)).collect();
    assert_eq!(recorded, [(ResponseCode::NoError, Source::Cookie)]);
}
