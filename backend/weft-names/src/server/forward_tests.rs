//! Forwarding without sockets: which upstream is asked when, TTL bounds, negative
//! caching and stale answers, on a fake clock.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::tests::{EXAMPLE, Harness, a_answer, harness_with, query};
use super::*;
use crate::upstream::Selection;

const FIRST: &str = "127.0.0.1:5301";
const SECOND: &str = "127.0.0.1:5302";

impl Harness {
    /// The upstreams the queries went to, in order.
    fn sent_to(&self) -> Vec<SocketAddr> {
        self.wire.0.borrow().iter().map(|(_, to, _)| *to).collect()
    }

    /// The query sent last, decoded, and where it went.
    fn last_query(&self) -> (Message, SocketAddr) {
        let (packet, to, _) = self.wire.0.borrow().last().cloned().unwrap();
        (Message::from_vec(&packet).unwrap(), to)
    }

    /// `answer` arrives from `from` on the port its query left from.
    fn answer_from(&self, answer: &Message, from: &str) {
        let port = self.port_of(answer.metadata.id);
        self.server
            .upstream_received(&answer.to_vec().unwrap(), from.parse().unwrap(), port)
            .unwrap();
    }

    fn pop(&self) -> Message {
        self.inbox.borrow_mut().pop().expect("an answer")
    }
}

fn addr(a: &str) -> SocketAddr {
    a.parse().unwrap()
}

#[test]
fn sequential_asks_the_next_upstream_when_the_first_is_silent_then_the_live_one_first() {
    let h = harness_with(EXAMPLE, &[FIRST, SECOND], ForwardOptions::default());
    h.send(&query(1, "a.elsewhere.test.", RecordType::A), Via::Udp);
    assert_eq!(h.sent_to(), [addr(FIRST)], "one upstream at a time");
    h.clock.advance(Duration::from_millis(399));
    assert_eq!(h.sent_to().len(), 1);
    h.clock.advance(Duration::from_millis(1));
    assert_eq!(
        h.sent_to(),
        [addr(FIRST), addr(SECOND)],
        "the next on the try's timeout"
    );
    let (up, _) = h.last_query();
    h.clock.advance(Duration::from_millis(20));
    h.answer_from(&a_answer(&up, 60), SECOND);
    assert_eq!(h.pop().metadata.response_code, ResponseCode::NoError);

    for i in 0..20u16 {
        h.send(
            &query(i, &format!("n{i}.elsewhere.test."), RecordType::A),
            Via::Udp,
        );
        let (up, to) = h.last_query();
        assert_eq!(to, addr(SECOND), "the one that answers goes first now");
        h.clock.advance(Duration::from_millis(5));
        h.answer_from(&a_answer(&up, 60), SECOND);
    }
    let at_first = h.sent_to().iter().filter(|a| **a == addr(FIRST)).count();
    assert_eq!(at_first, 1, "the silent upstream was asked once");
}

/// RFC 2181 section 9: an answer whose NS set and addresses do not fit a UDP client's
/// buffer goes without them, not truncated, fresh and from the cache alike.
#[test]
fn a_forwarded_answer_too_big_for_udp_loses_its_extra_sections_rather_than_set_tc() {
    let h = harness_with(EXAMPLE, &[FIRST], ForwardOptions::default());
    h.send(&query(1, "big.elsewhere.test.", RecordType::A), Via::Udp);
    let (up, _) = h.last_query();
    let mut answer = a_answer(&up, 60);
    let zone = Name::from_ascii("elsewhere.test.").unwrap();
    for i in 0..40 {
        let ns = Name::from_ascii(format!("ns{i}.elsewhere.test.")).unwrap();
        answer.authorities.push(Record::from_rdata(
            zone.clone(),
            60,
            RData::NS(hickory_proto::rr::rdata::NS(ns.clone())),
        ));
        answer.additionals.push(Record::from_rdata(
            ns,
            60,
            RData::A(hickory_proto::rr::rdata::A::new(192, 0, 2, 1)),
        ));
    }
    // The NS set's signature goes with it (a DO client gets it otherwise).
    let mut rrsig = Record::from_rdata(zone.clone(), 60, RData::A(A::new(192, 0, 2, 1)));
    rrsig.data = RData::Unknown {
        code: RecordType::RRSIG,
        rdata: hickory_proto::rr::rdata::NULL::with(vec![0, 2, 8, 2, 0, 0, 0, 60]),
    };
    answer.authorities.push(rrsig);
    h.answer_from(&answer, FIRST);
    for round in ["fresh", "cached"] {
        let r = h.pop();
        assert!(!r.metadata.truncation, "{round}: no TC");
        assert_eq!(r.answers.len(), 1, "{round}");
        assert!(
            r.authorities.is_empty() && r.additionals.is_empty(),
            "{round}"
        );
        h.send(&query(2, "big.elsewhere.test.", RecordType::A), Via::Udp);
    }
    // Over TCP it goes whole.
    h.send(&query(3, "big.elsewhere.test.", RecordType::A), Via::Tcp);
    let r = h.pop();
    assert_eq!((r.authorities.len(), r.additionals.len()), (40, 40));

    // A CNAME chain ending in NODATA keeps its SOA (RFC 2308), losing only the NS set.
    h.send(
        &query(5, "nodata.elsewhere.test.", RecordType::AAAA),
        Via::Udp,
    );
    let (up, _) = h.last_query();
    let mut answer = Message::response(up.metadata.id, OpCode::Query);
    answer.queries = up.queries.clone();
    let target = Name::from_ascii("t.elsewhere.test.").unwrap();
    answer.answers.push(Record::from_rdata(
        Name::from_ascii("nodata.elsewhere.test.").unwrap(),
        60,
        RData::CNAME(hickory_proto::rr::rdata::CNAME(target)),
    ));
    let soa = SOA::new(Name::root(), Name::root(), 1, 2, 3, 4, 120);
    answer
        .authorities
        .push(Record::from_rdata(zone.clone(), 60, RData::SOA(soa)));
    for i in 0..40 {
        let ns = Name::from_ascii(format!("ns{i}.elsewhere.test.")).unwrap();
        answer.authorities.push(Record::from_rdata(
            zone.clone(),
            60,
            RData::NS(hickory_proto::rr::rdata::NS(ns)),
        ));
    }
    h.answer_from(&answer, FIRST);
    let r = h.pop();
    assert!(!r.metadata.truncation);
    let kinds: Vec<RecordType> = r.authorities.iter().map(Record::record_type).collect();
    assert_eq!(kinds, [RecordType::SOA], "the SOA stays, the NS set goes");

    // A wildcard answer's proof is part of it: without room for it, TC (RFC 4035
    // section 3.1.1).
    // So for a DO client, which is sent RRSIGs.
    let mut signed = query(6, "big.elsewhere.test.", RecordType::A);
    let mut edns = hickory_proto::op::Edns::new();
    edns.set_max_payload(512).set_dnssec_ok(true);
    signed.edns = Some(edns);
    h.send(&signed, Via::Udp);
    let r = h.pop();
    assert!(!r.metadata.truncation && r.authorities.is_empty(), "{r:?}");

    let mut asked = query(4, "w.elsewhere.test.", RecordType::A);
    let mut edns = hickory_proto::op::Edns::new();
    edns.set_max_payload(1232).set_dnssec_ok(true);
    asked.edns = Some(edns);
    h.send(&asked, Via::Udp);
    let (up, _) = h.last_query();
    let mut answer = a_answer(&up, 60);
    for i in 0..60 {
        let mut nsec = Record::from_rdata(
            Name::from_ascii(format!("n{i}.elsewhere.test.")).unwrap(),
            60,
            RData::A(hickory_proto::rr::rdata::A::new(192, 0, 2, 1)),
        );
        nsec.data = RData::Unknown {
            code: RecordType::NSEC,
            rdata: hickory_proto::rr::rdata::NULL::with(vec![0; 8]),
        };
        answer.authorities.push(nsec);
    }
    h.answer_from(&answer, FIRST);
    assert!(
        h.pop().metadata.truncation,
        "TC rather than an answer without its proof"
    );
}

#[test]
fn a_late_answer_from_the_first_upstream_is_still_taken() {
    let h = harness_with(EXAMPLE, &[FIRST, SECOND], ForwardOptions::default());
    h.send(&query(1, "slow.elsewhere.test.", RecordType::A), Via::Udp);
    let (first, _) = h.last_query();
    h.clock.advance(Duration::from_millis(400));
    assert_eq!(h.sent_to().len(), 2);
    h.answer_from(&a_answer(&first, 60), FIRST);
    assert_eq!(h.pop().answers.len(), 1);
    assert_eq!(h.server.upstream_in_flight(), 0);
}

#[test]
fn parallel_asks_every_upstream_at_once_each_with_its_own_id() {
    let options = ForwardOptions {
        selection: Selection::Parallel,
        ..ForwardOptions::default()
    };
    let h = harness_with(EXAMPLE, &[FIRST, SECOND], options);
    h.send(&query(1, "p.elsewhere.test.", RecordType::A), Via::Udp);
    assert_eq!(h.sent_to(), [addr(FIRST), addr(SECOND)]);
    let wire = h.wire.0.borrow();
    assert_ne!(
        wire[0].0[..2],
        wire[1].0[..2],
        "a new id per upstream query"
    );
    assert_ne!(wire[0].2, wire[1].2, "and its own port");
}

#[test]
fn answered_ttls_are_raised_to_min_ttl_and_lowered_to_max_ttl() {
    let options = ForwardOptions {
        min_ttl: 60,
        max_ttl: 600,
        ..ForwardOptions::default()
    };
    let h = harness_with(EXAMPLE, &[FIRST], options);
    for (name, ttl, want) in [
        ("low.elsewhere.test.", 5, 60),
        ("high.elsewhere.test.", 86_400, 600),
    ] {
        h.send(&query(1, name, RecordType::A), Via::Udp);
        let (up, _) = h.last_query();
        h.answer_from(&a_answer(&up, ttl), FIRST);
        assert_eq!(h.pop().answers[0].ttl, want, "{name}");
        h.clock.advance(Duration::from_secs(10));
        h.send(&query(2, name, RecordType::A), Via::Udp);
        assert_eq!(h.pop().answers[0].ttl, want - 10, "{name} from the cache");
    }
}

#[test]
fn an_nxdomain_answers_every_type_of_the_name_from_the_cache() {
    let h = harness_with(EXAMPLE, &[FIRST], ForwardOptions::default());
    h.send(&query(1, "gone.elsewhere.test.", RecordType::A), Via::Udp);
    let (up, _) = h.last_query();
    h.answer_from(&nxdomain(&up, "elsewhere.test."), FIRST);
    assert_eq!(h.pop().metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        h.send(&query(2, "gone.elsewhere.test.", RecordType::MX), Via::Udp),
        Outcome::FromCache
    );
    let r = h.pop();
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(r.authorities[0].ttl, 300, "min(SOA TTL, SOA MINIMUM)");
    assert_eq!(h.sent_to().len(), 1);
}

/// A cached answer is owned by the name as the client asking now spelled it, not as the
/// client whose question filled the cache did (its random case, 0x20, is its own), in
/// the answer and in a negative answer's SOA alike.
#[test]
fn answers_from_the_cache_carry_the_case_the_client_asked_in() {
    let h = harness_with(EXAMPLE, &[FIRST], ForwardOptions::default());
    h.send(&query(1, "CaSe.ElseWhere.TEST.", RecordType::A), Via::Udp);
    let (up, _) = h.last_query();
    h.answer_from(&a_answer(&up, 300), FIRST);
    assert!(
        h.pop().answers[0]
            .name
            .eq_case(&name("CaSe.ElseWhere.TEST."))
    );
    for (id, asked) in [(2, "case.elsewhere.test."), (3, "CASE.ELSEWHERE.TEST.")] {
        assert_eq!(
            h.send(&query(id, asked, RecordType::A), Via::Udp),
            Outcome::FromCache
        );
        let r = h.pop();
        assert!(r.answers[0].name.eq_case(&name(asked)), "{asked}: {r:?}");
    }

    h.send(&query(4, "NX.eLsewhere.test.", RecordType::A), Via::Udp);
    let (up, _) = h.last_query();
    h.answer_from(&nxdomain(&up, "eLsewhere.test."), FIRST);
    h.pop();
    h.send(&query(5, "nx.elsewhere.test.", RecordType::A), Via::Udp);
    let r = h.pop();
    assert!(
        r.authorities[0].name.eq_case(&name("elsewhere.test.")),
        "{r:?}"
    );
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

/// NXDOMAIN for upstream query `up`, with the SOA of `zone` (TTL 900, MINIMUM 300).
fn nxdomain(up: &Message, zone: &str) -> Message {
    let mut nx = Message::response(up.metadata.id, OpCode::Query);
    nx.metadata.response_code = ResponseCode::NXDomain;
    nx.queries = up.queries.clone();
    let soa = SOA::new(Name::root(), Name::root(), 1, 2, 3, 4, 300);
    nx.authorities
        .push(Record::from_rdata(name(zone), 900, RData::SOA(soa)));
    nx
}

#[test]
fn with_serve_stale_an_expired_answer_is_served_with_ttl_30_when_no_upstream_answers() {
    let options = ForwardOptions {
        serve_stale: Some(Duration::from_secs(86_400)),
        ..ForwardOptions::default()
    };
    let h = harness_with(EXAMPLE, &[FIRST], options);
    h.send(&query(1, "s.elsewhere.test.", RecordType::A), Via::Udp);
    let (up, _) = h.last_query();
    h.answer_from(&a_answer(&up, 60), FIRST);
    h.pop();
    h.clock.advance(Duration::from_secs(61));
    assert_eq!(
        h.send(&query(2, "s.elsewhere.test.", RecordType::A), Via::Udp),
        Outcome::Forwarded,
        "expired: asked upstream first"
    );
    h.clock.advance(Duration::from_secs(2));
    let r = h.pop();
    assert_eq!(
        (r.metadata.id, r.metadata.response_code),
        (2, ResponseCode::NoError)
    );
    assert_eq!(r.answers[0].ttl, 30);
    assert_eq!(h.server.metrics().stale_answers(), 1);
    // RFC 8767 section 5: for 30 s after that failure the stale answer comes at once,
    // no upstream asked; then the upstreams are asked again.
    let asked = h.sent_to().len();
    h.clock.advance(Duration::from_secs(29));
    assert_eq!(
        h.send(&query(3, "s.elsewhere.test.", RecordType::A), Via::Udp),
        Outcome::FromCache
    );
    let r = h.pop();
    assert_eq!((r.metadata.id, r.answers[0].ttl), (3, 30));
    assert_eq!(h.sent_to().len(), asked, "no upstream asked");
    assert_eq!(h.server.metrics().stale_answers(), 2);
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(
        h.send(&query(4, "s.elsewhere.test.", RecordType::A), Via::Udp),
        Outcome::Forwarded,
        "30 s on, asked upstream again"
    );
    assert_eq!(h.sent_to().len(), asked + 1);

    let plain = harness_with(EXAMPLE, &[FIRST], ForwardOptions::default());
    plain.send(&query(1, "s.elsewhere.test.", RecordType::A), Via::Udp);
    let (up, _) = plain.last_query();
    plain.answer_from(&a_answer(&up, 60), FIRST);
    plain.pop();
    plain.clock.advance(Duration::from_secs(61));
    plain.send(&query(2, "s.elsewhere.test.", RecordType::A), Via::Udp);
    plain.clock.advance(Duration::from_secs(2));
    assert_eq!(
        plain.pop().metadata.response_code,
        ResponseCode::ServFail,
        "off by default"
    );
}

/// An answer to `question` with no records and `rcode`.
fn failure(question: &Message, rcode: ResponseCode) -> Message {
    let mut answer = Message::response(question.metadata.id, OpCode::Query);
    answer.metadata.response_code = rcode;
    answer.queries = question.queries.clone();
    answer
}

#[test]
fn sequential_asks_the_next_upstream_at_once_when_one_refuses_and_does_not_prefer_it() {
    let h = harness_with(EXAMPLE, &[FIRST, SECOND], ForwardOptions::default());
    h.send(&query(1, "r.elsewhere.test.", RecordType::A), Via::Udp);
    let (up, _) = h.last_query();
    h.clock.advance(Duration::from_millis(1));
    h.answer_from(&failure(&up, ResponseCode::Refused), FIRST);
    assert!(h.inbox.borrow().is_empty(), "a refusal is not an answer");
    assert_eq!(
        h.sent_to(),
        [addr(FIRST), addr(SECOND)],
        "the next asked at once, not on the try's timeout"
    );
    let (up, _) = h.last_query();
    h.clock.advance(Duration::from_millis(30));
    h.answer_from(&a_answer(&up, 60), SECOND);
    let r = h.pop();
    assert_eq!(
        (r.metadata.response_code, r.answers.len()),
        (ResponseCode::NoError, 1)
    );

    h.send(&query(2, "r2.elsewhere.test.", RecordType::A), Via::Udp);
    assert_eq!(
        h.last_query().1,
        addr(SECOND),
        "the fast refusal did not rank the refusing upstream first"
    );
}

#[test]
fn parallel_waits_past_a_refusal_for_a_real_answer() {
    let options = ForwardOptions {
        selection: Selection::Parallel,
        ..ForwardOptions::default()
    };
    let h = harness_with(EXAMPLE, &[FIRST, SECOND], options);
    h.send(&query(1, "pr.elsewhere.test.", RecordType::A), Via::Udp);
    let (to_first, to_second) = {
        let wire = h.wire.0.borrow();
        let decode = |i: usize| Message::from_vec(&wire[i].0).unwrap();
        (decode(0), decode(1))
    };
    h.clock.advance(Duration::from_millis(1));
    h.answer_from(&failure(&to_first, ResponseCode::Refused), FIRST);
    assert!(
        h.inbox.borrow().is_empty(),
        "the fastest failure does not win"
    );
    h.clock.advance(Duration::from_millis(20));
    h.answer_from(&a_answer(&to_second, 60), SECOND);
    let r = h.pop();
    assert_eq!(
        (r.metadata.response_code, r.answers.len()),
        (ResponseCode::NoError, 1)
    );
    assert_eq!(h.server.upstream_in_flight(), 0);
}

#[test]
fn when_every_upstream_fails_clients_get_servfail_and_nothing_is_cached() {
    let h = harness_with(EXAMPLE, &[FIRST, SECOND], ForwardOptions::default());
    h.send(&query(1, "f.elsewhere.test.", RecordType::A), Via::Udp);
    let (up, _) = h.last_query();
    h.answer_from(&failure(&up, ResponseCode::ServFail), FIRST);
    assert!(h.inbox.borrow().is_empty(), "the second is still to ask");
    let (up, to) = h.last_query();
    assert_eq!(to, addr(SECOND));
    h.answer_from(&failure(&up, ResponseCode::Refused), SECOND);
    let r = h.pop();
    assert_eq!(
        (r.metadata.id, r.metadata.response_code),
        (1, ResponseCode::ServFail),
        "SERVFAIL, not the upstream's REFUSED"
    );
    assert_eq!(h.server.upstream_in_flight(), 0);
    assert_eq!(
        h.send(&query(2, "f.elsewhere.test.", RecordType::A), Via::Udp),
        Outcome::Forwarded,
        "a failure is not cached"
    );
}

#[test]
fn an_answer_of_rfc_1035_names_kept_opaque_is_servfail_not_passed_on_corrupt() {
    use hickory_proto::rr::rdata::NULL;
    let h = harness_with(EXAMPLE, &[FIRST], ForwardOptions::default());
    let mb = RecordType::Unknown(7);
    h.send(&query(1, "box.elsewhere.test.", mb), Via::Udp);
    let (up, _) = h.last_query();
    let mut answer = up.clone();
    answer.metadata.message_type = hickory_proto::op::MessageType::Response;
    // A mailbox name compressed against the question: a pointer to offset 12.
    answer.answers.push(Record::from_rdata(
        name("box.elsewhere.test."),
        60,
        RData::Unknown {
            code: mb,
            rdata: NULL::with(vec![0xC0, 0x0C]),
        },
    ));
    h.answer_from(&answer, FIRST);
    let r = h.pop();
    assert_eq!(
        (r.metadata.response_code, r.answers.len()),
        (ResponseCode::ServFail, 0)
    );
    assert_eq!(
        h.send(&query(2, "box.elsewhere.test.", mb), Via::Udp),
        Outcome::Forwarded,
        "nothing cached"
    );
}

#[test]
fn a_failure_other_than_a_timeout_counts_no_upstream_still_out_as_timed_out() {
    let options = ForwardOptions {
        selection: Selection::Parallel,
        ..ForwardOptions::default()
    };
    let h = harness_with(EXAMPLE, &[FIRST, SECOND], options);
    h.send(&query(1, "t.elsewhere.test.", RecordType::A), Via::Udp);
    let to_first = Message::from_vec(&h.wire.0.borrow()[0].0).unwrap();
    let mut truncated = a_answer(&to_first, 60);
    truncated.metadata.truncation = true;
    h.answer_from(&truncated, FIRST);
    h.tcp_answers(Err("connection refused".into()));
    assert_eq!(h.pop().metadata.response_code, ResponseCode::ServFail);

    let timeouts: Vec<(SocketAddr, u64)> = h
        .server
        .metrics()
        .figures()
        .read()
        .upstreams
        .iter()
        .map(|u| (u.addr, u.timeouts))
        .collect();
    assert_eq!(
        timeouts,
        [(addr(FIRST), 0), (addr(SECOND), 0)],
        "the second upstream, not yet answered when TCP failed, did not time out"
    );
}

/// A question no upstream answered is answered SERVFAIL, and its chain ends failed with
/// the timeout (the inspector lists it among the failed), not succeeded because its last
/// step answered; nor is that an unhandled failure.
#[test]
fn a_question_no_upstream_answered_ends_its_chain_failed_and_handled() {
    let recorder = weft::testing::RecordingObserver::new();
    weft::observe::set_observer(Some(recorder.clone()));
    let h = harness_with(EXAMPLE, &[FIRST], ForwardOptions::default());
    h.send(&query(1, "t.elsewhere.test.", RecordType::A), Via::Udp);
    h.clock.advance(Duration::from_secs(10));
    assert_eq!(h.pop().metadata.response_code, ResponseCode::ServFail);
    let events = recorder.events();
    weft::observe::set_observer(None);
    let settled: Vec<&String> = events.iter().filter(|e| e.contains("Settled")).collect();
    assert_eq!(settled.len(), 1, "{events:#?}");
    assert!(
        settled[0].contains("Failed") && settled[0].contains("TimeoutError"),
        "{settled:?}"
    );
    assert!(
        !events.iter().any(|e| e.contains("Unhandled")),
        "{events:#?}"
    );
}

/// A question outside the zones without RD is refused, cached or not: REFUSED with Not
/// Authoritative (RFC 8914 section 4.21), never forwarded, and never answered from the
/// cache, which would tell a prober what this service's clients looked up.
#[test]
fn a_question_without_recursion_desired_is_refused_cached_or_not() {
    let h = harness_with(EXAMPLE, &[FIRST], ForwardOptions::default());
    let mut probe = query(1, "a.elsewhere.test.", RecordType::A);
    probe.metadata.recursion_desired = false;
    let mut edns = hickory_proto::op::Edns::new();
    edns.set_max_payload(1232);
    probe.edns = Some(edns);
    let refused = |h: &Harness| {
        let refused = h.pop();
        assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
        let options = refused.edns.as_ref().expect("an OPT").options().as_ref();
        assert!(
            options.iter().any(|(code, _)| u16::from(*code) == 15),
            "an Extended DNS Error: {options:?}"
        );
    };
    assert_eq!(h.send(&probe, Via::Udp), Outcome::Refused);
    assert!(h.sent_to().is_empty(), "not forwarded");
    refused(&h);

    h.send(&query(2, "a.elsewhere.test.", RecordType::A), Via::Udp);
    let (up, _) = h.last_query();
    h.answer_from(&a_answer(&up, 300), FIRST);
    assert_eq!(h.pop().answers.len(), 1);
    for via in [Via::Udp, Via::Tcp] {
        probe.metadata.id += 1;
        assert_eq!(h.send(&probe, via), Outcome::Refused, "cached: {via:?}");
        refused(&h);
    }
    assert_eq!(h.sent_to().len(), 1, "the one RD question's");
    // The zones answer it still.
    let mut zone = query(9, "www.example.test.", RecordType::A);
    zone.metadata.recursion_desired = false;
    assert_eq!(h.send(&zone, Via::Udp), Outcome::Answered);
    assert!(h.pop().metadata.authoritative);
}
