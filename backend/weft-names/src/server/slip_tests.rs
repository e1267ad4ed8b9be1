//! Rate-limited answers over UDP: what slips out carries no options but the cookie, so
//! it is no larger than the query but for a server cookie, and a NOTIFY is limited like
//! any other answer.

use std::cell::RefCell;
use std::rc::Rc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use weft::testing::Clock;

use super::tests::{EXAMPLE, Wire, catalog, query};
use super::*;

/// An NSID longer than any query here, so that echoing it would show.
const NSID: &str = "a-server-identifier-long-enough-to-outweigh-any-query-in-these-tests";

/// A server limiting each client to one UDP answer a second, with no burst, slipping
/// every limited answer (or none, with `slip` 0).
fn limited(cookies: bool, slip: u32) -> (DnsServer, (Clock, weft::time::ClockGuard)) {
    let clock = Clock::fake();
    let installed = clock.install();
    let zones = catalog(EXAMPLE);
    let config = DnsConfig {
        zones,
        edns: EdnsConfig {
            nsid: Some(NSID.into()),
            cookies,
        },
        rate_limit: Some(RateLimit {
            responses_per_second: 1,
            burst: 1,
            slip,
            ipv4_prefix: RateLimit::DEFAULT_IPV4_PREFIX,
            ipv6_prefix: RateLimit::DEFAULT_IPV6_PREFIX,
        }),
        ..DnsConfig::default()
    };
    let server = DnsServer::new(
        config,
        ServiceMetrics::detached("dns"),
        Rc::new(Wire::default()),
    );
    (server, (clock, installed))
}

/// Sends `packet` over UDP; the packets answered.
fn send(server: &DnsServer, packet: &[u8]) -> (Outcome, Vec<Vec<u8>>) {
    let sent = Rc::new(RefCell::new(Vec::new()));
    let inbox = sent.clone();
    let outcome = server.handle(
        packet,
        Via::Udp,
        Some("127.0.0.1:40000".parse().unwrap()),
        move |bytes: Vec<u8>| inbox.borrow_mut().push(bytes),
    );
    let sent = sent.borrow().clone();
    (outcome, sent)
}

/// A query for `www.example.test.` asking for the NSID, with `cookie` as its COOKIE.
fn asking_nsid(cookie: &[u8]) -> Vec<u8> {
    let mut m = query(7, "www.example.test.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns.options_mut()
        .insert(EdnsOption::Unknown(u16::from(EdnsCode::NSID), Vec::new()));
    edns.options_mut().insert(EdnsOption::Unknown(
        u16::from(EdnsCode::Cookie),
        cookie.to_vec(),
    ));
    m.edns = Some(edns);
    m.to_vec().unwrap()
}

/// The second answer to `packet`, which the limit slips; the first goes out whole.
fn slipped(cookies: bool, packet: &[u8]) -> (Vec<u8>, Message) {
    let (server, _clock) = limited(cookies, 1);
    let (first, _) = send(&server, packet);
    assert!(matches!(first, Outcome::Answered), "{first:?}");
    let (second, mut sent) = send(&server, packet);
    assert!(matches!(second, Outcome::RateLimited), "{second:?}");
    assert_eq!(sent.len(), 1, "a slipped answer goes out");
    let bytes = sent.pop().unwrap();
    let message = Message::from_vec(&bytes).unwrap();
    (bytes, message)
}

fn options(message: &Message) -> Vec<u16> {
    let edns = message.edns.as_ref().expect("an OPT");
    edns.options()
        .as_ref()
        .iter()
        .map(|(code, _)| u16::from(*code))
        .collect()
}

#[test]
fn a_truncated_slip_has_a_bare_opt_and_is_no_larger_than_the_query() {
    let packet = asking_nsid(&[1; 8]);
    let (bytes, answer) = slipped(false, &packet);
    assert!(answer.metadata.truncation);
    assert!(answer.answers.is_empty());
    assert_eq!(options(&answer), Vec::<u16>::new());
    assert!(
        bytes.len() <= packet.len(),
        "{} bytes answer a {}-byte query",
        bytes.len(),
        packet.len()
    );
}

#[test]
fn a_client_cookie_alone_slips_badcookie_with_the_cookie_alone() {
    let packet = asking_nsid(&[1; 8]);
    let (bytes, answer) = slipped(true, &packet);
    assert_eq!(answer.metadata.response_code, ResponseCode::BADCOOKIE);
    assert_eq!(options(&answer), vec![u16::from(EdnsCode::Cookie)]);
    // The server cookie the client needs is the only growth over the query.
    assert!(
        bytes.len() <= packet.len() + 16,
        "{} bytes answer a {}-byte query",
        bytes.len(),
        packet.len()
    );
}

#[test]
fn a_wrong_server_cookie_slips_badcookie_with_the_cookie_alone() {
    let packet = asking_nsid(&[1; 24]);
    let (bytes, answer) = slipped(true, &packet);
    assert_eq!(answer.metadata.response_code, ResponseCode::BADCOOKIE);
    assert_eq!(options(&answer), vec![u16::from(EdnsCode::Cookie)]);
    assert!(
        bytes.len() <= packet.len(),
        "{} bytes answer a {}-byte query",
        bytes.len(),
        packet.len()
    );
}

#[test]
fn a_notify_over_the_limit_is_not_answered() {
    let (server, _clock) = limited(false, 0);
    let mut notify = Message::new(9, MessageType::Query, OpCode::Notify);
    notify.queries.push(Query::query(
        hickory_proto::rr::Name::from_ascii("example.test.").unwrap(),
        RecordType::SOA,
    ));
    let packet = notify.to_vec().unwrap();
    let (first, sent) = send(&server, &packet);
    assert!(matches!(first, Outcome::Refused), "{first:?}");
    assert_eq!(sent.len(), 1);
    let (second, sent) = send(&server, &packet);
    assert!(matches!(second, Outcome::RateLimited), "{second:?}");
    assert!(sent.is_empty(), "a limited NOTIFY gets nothing");
    assert_eq!(
        server.metrics().rate_limits(Limited::Dropped),
        1,
        "and is counted"
    );
}
