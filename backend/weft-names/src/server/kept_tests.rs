//! Kept answers to queries with EDNS options: a COOKIE, an NSID request, padding and
//! unknown options leave the answer as it is, so it is kept and copied, with the NSID and
//! the server cookie made for each client written into the copy's OPT.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::EdnsOption;
use weft::testing::Clock;

use super::tests::{EXAMPLE, Wire, catalog, query};
use super::*;

const NSID: u16 = 3;
const COOKIE: u16 = 10;
const PADDING: u16 = 12;
const SUBNET: u16 = 8;

struct Server {
    server: DnsServer,
    _clock: (Clock, weft::time::ClockGuard),
}

/// A server for `zone` with `edns` and `rate_limit`.
fn server(zone: &str, edns: EdnsConfig, rate_limit: Option<RateLimit>) -> Server {
    let clock = Clock::fake();
    let installed = clock.install();
    let zones = catalog(zone);
    let config = DnsConfig {
        zones,
        edns,
        rate_limit,
        ..DnsConfig::default()
    };
    let metrics = ServiceMetrics::detached("dns");
    let server = DnsServer::new(config, metrics, Rc::new(Wire::default()));
    Server {
        server,
        _clock: (clock, installed),
    }
}

fn cookies() -> EdnsConfig {
    EdnsConfig {
        nsid: None,
        cookies: true,
    }
}

impl Server {
    /// Sends `packet` over UDP from `from`; the outcome and the answer, if one was sent.
    fn send(&self, packet: &[u8], from: &str) -> (Outcome, Option<Message>) {
        let sent = Rc::new(RefCell::new(None));
        let inbox = sent.clone();
        let from: SocketAddr = from.parse().unwrap();
        let outcome = self.server.handle(packet, Via::Udp, Some(from), move |b| {
            *inbox.borrow_mut() = Some(Message::from_vec(&b).unwrap());
        });
        let answer = sent.borrow_mut().take();
        (outcome, answer)
    }

    /// The answer to `packet` from `from`, which must be answered.
    fn answer(&self, packet: &[u8], from: &str) -> Message {
        let (outcome, answer) = self.send(packet, from);
        assert_eq!(outcome, Outcome::Answered);
        answer.expect("an answer")
    }

    fn reuses(&self) -> u64 {
        self.server.metrics().reuses()
    }
}

/// A query for `name`/A with an OPT (size 1232, DO as `dnssec_ok`) carrying `options`.
fn asking(name: &str, dnssec_ok: bool, options: &[(u16, &[u8])]) -> Vec<u8> {
    let mut m = query(7, name, RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(1232).set_dnssec_ok(dnssec_ok);
    for (code, data) in options {
        edns.options_mut()
            .insert(EdnsOption::Unknown(*code, data.to_vec()));
    }
    m.edns = Some(edns);
    m.to_vec().unwrap()
}

/// The options of `answer`'s OPT, as codes and data.
fn options_of(answer: &Message) -> Vec<(u16, Vec<u8>)> {
    let edns = answer.edns.as_ref().expect("an OPT");
    edns.options()
        .as_ref()
        .iter()
        .map(|(code, option)| {
            let data = Vec::<u8>::try_from(option).unwrap();
            (u16::from(*code), data)
        })
        .collect()
}

fn cookie_of(answer: &Message) -> Vec<u8> {
    let options = options_of(answer);
    let cookie = options.iter().find(|(code, _)| *code == COOKIE);
    cookie.expect("a COOKIE option").1.clone()
}

#[test]
fn a_cookie_query_is_answered_from_the_kept_answer_with_the_server_cookie_made_for_its_client() {
    let s = server(EXAMPLE, cookies(), None);
    let a = [1; 8];
    let first = s.answer(
        &asking("www.example.test.", false, &[(COOKIE, &a)]),
        "127.0.0.1:5000",
    );
    assert_eq!(s.reuses(), 0, "the first is answered in full, and kept");
    let again = s.answer(
        &asking("www.example.test.", false, &[(COOKIE, &a)]),
        "127.0.0.1:5000",
    );
    assert_eq!(
        s.reuses(),
        1,
        "the same question is answered from the kept answer"
    );
    assert_eq!(again.metadata.id, 7);
    assert_eq!(again.answers, first.answers);
    let cookie = cookie_of(&again);
    assert_eq!(
        (cookie.len(), &cookie[..8]),
        (24, &a[..]),
        "the client cookie echoed"
    );
    assert_eq!(options_of(&again).len(), 1, "the cookie alone: {again:?}");

    // Another client, with its own client cookie, gets its own server cookie.
    let b = [2; 8];
    let other = s.answer(
        &asking("www.example.test.", false, &[(COOKIE, &b)]),
        "127.0.0.2:5000",
    );
    assert_eq!(s.reuses(), 2);
    let other_cookie = cookie_of(&other);
    assert_eq!(&other_cookie[..8], &b[..]);
    assert_ne!(
        other_cookie[8..],
        cookie[8..],
        "a server cookie is per client"
    );
    assert_eq!(
        options_of(&other).len(),
        1,
        "nothing of the first client's: {other:?}"
    );
    // A query without a cookie gets none, from the same kept answer.
    let plain = s.answer(&asking("www.example.test.", false, &[]), "127.0.0.3:5000");
    assert_eq!((s.reuses(), options_of(&plain)), (3, vec![]));
}

#[test]
fn a_server_cookie_from_a_kept_answer_is_valid_and_lifts_the_rate_limit_on_the_kept_path() {
    let limit = RateLimit {
        responses_per_second: 1,
        burst: 1,
        slip: 0,
        ipv4_prefix: RateLimit::DEFAULT_IPV4_PREFIX,
        ipv6_prefix: RateLimit::DEFAULT_IPV6_PREFIX,
    };
    let s = server(EXAMPLE, cookies(), Some(limit));
    let from = "127.0.0.1:5000";
    let client = [3; 8];
    let learned = s.answer(
        &asking("www.example.test.", false, &[(COOKIE, &client)]),
        from,
    );
    let cookie = cookie_of(&learned);
    let (limited, _) = s.send(
        &asking("www.example.test.", false, &[(COOKIE, &client)]),
        from,
    );
    assert_eq!(
        limited,
        Outcome::RateLimited,
        "a client cookie alone is limited"
    );
    for _ in 0..5 {
        let answer = s.answer(
            &asking("www.example.test.", false, &[(COOKIE, &cookie)]),
            from,
        );
        assert_eq!(&cookie_of(&answer)[..8], &client[..]);
    }
    assert_eq!(
        s.reuses(),
        5,
        "each came from the kept answer, none limited"
    );
    // The same cookie from another address is not valid: it is limited.
    let elsewhere = "127.0.1.1:5000";
    s.answer(
        &asking("www.example.test.", false, &[(COOKIE, &cookie)]),
        elsewhere,
    );
    let (outcome, _) = s.send(
        &asking("www.example.test.", false, &[(COOKIE, &cookie)]),
        elsewhere,
    );
    assert_eq!(outcome, Outcome::RateLimited);
}

#[test]
fn nsid_padding_and_unknown_options_are_answered_from_the_kept_answer_with_the_nsid_asked() {
    let edns = EdnsConfig {
        nsid: Some("ns1.test".into()),
        cookies: false,
    };
    let s = server(EXAMPLE, edns, None);
    let from = "127.0.0.1:5000";
    let nsid = s.answer(&asking("www.example.test.", true, &[(NSID, &[])]), from);
    assert_eq!(options_of(&nsid), vec![(NSID, b"ns1.test".to_vec())]);
    let plain = s.answer(&asking("www.example.test.", true, &[]), from);
    assert_eq!(
        (s.reuses(), options_of(&plain)),
        (1, vec![]),
        "no NSID unasked"
    );
    let again = s.answer(&asking("www.example.test.", true, &[(NSID, &[])]), from);
    assert_eq!(s.reuses(), 2);
    assert_eq!(options_of(&again), vec![(NSID, b"ns1.test".to_vec())]);
    assert!(again.edns.as_ref().unwrap().flags().dnssec_ok, "DO copied");
    // Cookies are off: a cookie is one more option this server ignores.
    let ignored: &[(u16, &[u8])] = &[(PADDING, &[0; 40]), (65_001, b"x"), (COOKIE, &[4; 8])];
    let answer = s.answer(&asking("www.example.test.", true, ignored), from);
    assert_eq!((s.reuses(), options_of(&answer)), (3, vec![]));
    assert_eq!(answer.edns.as_ref().unwrap().max_payload(), 1232);
}

#[test]
fn a_client_subnet_or_a_malformed_cookie_is_answered_in_full() {
    let s = server(EXAMPLE, cookies(), None);
    let from = "127.0.0.1:5000";
    s.answer(&asking("www.example.test.", false, &[]), from);
    // A subnet hickory reads and takes: answered, but not from the kept answer.
    let subnet: &[u8] = &[0, 1, 24, 0, 192, 0, 2];
    s.answer(
        &asking("www.example.test.", false, &[(SUBNET, subnet)]),
        from,
    );
    assert_eq!(s.reuses(), 0);
    let (outcome, answer) = s.send(
        &asking("www.example.test.", false, &[(COOKIE, &[5; 12])]),
        from,
    );
    assert!(matches!(outcome, Outcome::Malformed(_)), "{outcome:?}");
    assert_eq!(
        answer.unwrap().metadata.response_code,
        ResponseCode::FormErr
    );
    assert_eq!(s.reuses(), 0);
}

#[test]
fn a_kept_answer_too_large_with_the_cookie_is_truncated_for_it_and_kept_whole_for_the_rest() {
    // One TXT record whose answer fits in 512 bytes, but not with a cookie.
    let text = "x".repeat(220);
    let zone = format!("{EXAMPLE}big IN TXT \"{text}\" \"{text}\"\n");
    let s = server(&zone, cookies(), None);
    let from = "127.0.0.1:5000";
    let small = |options: &[(u16, &[u8])]| {
        let mut m = Message::from_vec(&asking("big.example.test.", false, options)).unwrap();
        m.queries[0].set_query_type(RecordType::TXT);
        m.edns.as_mut().unwrap().set_max_payload(512);
        m.to_vec().unwrap()
    };
    let whole = s.answer(&small(&[]), from);
    let size = whole.to_vec().unwrap().len();
    assert!((512 - 28 + 1..=512).contains(&size), "{size} bytes");
    let cookie = s.answer(&small(&[(COOKIE, &[6; 8])]), from);
    assert!(cookie.metadata.truncation && cookie.answers.is_empty());
    assert_eq!(&cookie_of(&cookie)[..8], &[6; 8]);
    assert_eq!(s.reuses(), 0, "too large with the cookie: answered in full");
    let again = s.answer(&small(&[]), from);
    assert_eq!(s.reuses(), 1);
    assert!(!again.metadata.truncation && again.answers == whole.answers);
}
