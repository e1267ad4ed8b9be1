//! Forwarding through a fake link: the cache, coalescing, DO upstream, bounds, a silent
//! upstream, answers that do not match, and truncated answers asked again over TCP.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::tests::*;
use super::*;
use crate::forward::UPSTREAM_LABEL;

#[test]
fn forwarded_answers_are_cached_for_their_ttl_on_the_clock() {
    let h = harness(EXAMPLE, true);
    let q = query(100, "WWW.Elsewhere.Test.", RecordType::A);
    assert_eq!(h.send(&q, Via::Udp), Outcome::Forwarded);
    let up = h.upstream_query();
    assert_ne!(up.metadata.id, 100, "upstream ids are our own");
    assert!(h.inbox.borrow().is_empty());
    h.upstream_answers(&up, 60);
    let r = h.inbox.borrow_mut().pop().unwrap();
    assert_eq!(r.metadata.id, 100);
    assert!(r.metadata.recursion_available && !r.metadata.authoritative);
    assert_eq!(r.answers[0].ttl, 60);

    h.clock.advance(Duration::from_secs(45));
    assert_eq!(
        h.send(&query(101, "www.elsewhere.test.", RecordType::A), Via::Udp),
        Outcome::FromCache
    );
    let r = h.inbox.borrow_mut().pop().unwrap();
    assert_eq!((r.metadata.id, r.answers[0].ttl), (101, 15));

    h.clock.advance(Duration::from_secs(15));
    assert_eq!(h.send(&q, Via::Udp), Outcome::Forwarded, "expired");
    assert_eq!(h.wire.0.borrow().len(), 2);
    let counts = h.server.metrics().counts();
    assert_eq!((counts.cache_hits, counts.cache_misses), (1, 2));
}

#[test]
fn an_answer_asked_with_checking_disabled_is_neither_cached_nor_shared() {
    let h = harness(EXAMPLE, true);
    let mut unchecked = query(1, "signed.elsewhere.test.", RecordType::A);
    unchecked.metadata.checking_disabled = true;
    assert_eq!(h.send(&unchecked, Via::Udp), Outcome::Forwarded);
    // A client that wants checked data asks the same while the CD query is out: it is
    // not joined to it.
    let checked = query(2, "signed.elsewhere.test.", RecordType::A);
    assert_eq!(h.send(&checked, Via::Udp), Outcome::Forwarded);
    assert_eq!(h.wire.0.borrow().len(), 2, "each went upstream on its own");
    let sent: Vec<Message> = h
        .wire
        .0
        .borrow()
        .iter()
        .map(|(p, ..)| Message::from_vec(p).unwrap())
        .collect();
    assert!(sent[0].metadata.checking_disabled && !sent[1].metadata.checking_disabled);
    h.upstream_answers(&sent[0], 60);
    assert_eq!(h.inbox.borrow_mut().pop().unwrap().metadata.id, 1);
    // The CD answer was not cached: the checked client's own query is still out, and a
    // new checked question goes upstream too.
    assert_eq!(
        h.send(&query(3, "signed.elsewhere.test.", RecordType::A), Via::Udp),
        Outcome::Forwarded
    );
    h.upstream_answers(&sent[1], 60);
    assert_eq!(
        h.inbox
            .borrow()
            .iter()
            .map(|m| m.metadata.id)
            .collect::<Vec<_>>(),
        [2, 3],
        "the checked answer goes to both checked clients"
    );
}

#[test]
fn the_same_question_from_many_clients_goes_upstream_once() {
    let h = harness(EXAMPLE, true);
    for id in 1..=3 {
        assert_eq!(
            h.send(&query(id, "api.elsewhere.test.", RecordType::A), Via::Udp),
            Outcome::Forwarded
        );
    }
    assert_eq!(h.wire.0.borrow().len(), 1);
    assert_eq!(h.server.upstream_in_flight(), 1);
    h.upstream_answers(&h.upstream_query(), 30);
    let ids: Vec<u16> = h.inbox.borrow().iter().map(|m| m.metadata.id).collect();
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(h.server.upstream_in_flight(), 0);
}

#[test]
fn forwarded_queries_carry_do_and_a_client_without_it_gets_no_signatures() {
    let h = harness(EXAMPLE, true);
    let ask = |id, dnssec_ok| {
        let mut q = query(id, "signed.elsewhere.test.", RecordType::A);
        let mut edns = Edns::new();
        edns.set_dnssec_ok(dnssec_ok);
        q.edns = Some(edns);
        h.send(&q, Via::Udp)
    };
    assert_eq!(ask(5, false), Outcome::Forwarded);
    let up = h.upstream_query();
    assert!(up.edns.as_ref().unwrap().flags().dnssec_ok, "DO upstream");
    let mut answer = a_answer(&up, 60);
    let rrsig = RData::Unknown {
        code: RecordType::RRSIG,
        rdata: hickory_proto::rr::rdata::NULL::with(vec![1; 24]),
    };
    let name = up.queries[0].name().clone();
    answer.answers.push(Record::from_rdata(name, 60, rrsig));
    h.upstream_sends(&answer).unwrap();
    let plain = h.inbox.borrow_mut().pop().unwrap();
    assert_eq!(plain.answers.len(), 1, "RFC 4035 section 3.2.1");
    assert_eq!(ask(6, true), Outcome::FromCache);
    let signed = h.inbox.borrow_mut().pop().unwrap();
    assert_eq!(signed.answers.len(), 2);
    assert!(signed.edns.unwrap().flags().dnssec_ok);
}

#[test]
fn distinct_questions_out_at_once_are_bounded_and_the_refusals_counted() {
    let h = harness(EXAMPLE, true);
    let max = crate::forward::MAX_IN_FLIGHT;
    for i in 0..max {
        let q = query(1, &format!("q{i}.elsewhere.test."), RecordType::A);
        assert_eq!(h.send_from(&q, Via::Udp, client(i)), Outcome::Forwarded);
    }
    assert_eq!(h.server.upstream_in_flight(), max);
    let over = query(2, "one.more.test.", RecordType::A);
    assert_eq!(h.send(&over, Via::Udp), Outcome::Answered);
    let r = h.inbox.borrow_mut().pop().expect("SERVFAIL at once");
    assert_eq!(
        (r.metadata.id, r.metadata.response_code),
        (2, ResponseCode::ServFail)
    );
    assert_eq!(
        h.server.metrics().forward_refusals(crate::Busy::InFlight),
        1
    );
    assert_eq!(h.wire.0.borrow().len(), max, "nothing more went upstream");
    h.clock.advance(Duration::from_secs(2));
    assert_eq!(h.server.upstream_in_flight(), 0);
    assert_eq!(h.send(&over, Via::Udp), Outcome::Forwarded, "room again");
}

/// The `n`th of many clients, each of its own address, none 127.0.0.1.
fn client(n: usize) -> SocketAddr {
    let n = u32::try_from(n).unwrap() + 1;
    SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + n), 40000))
}

#[test]
fn one_address_gets_its_share_of_the_questions_out_and_no_more() {
    let h = harness(EXAMPLE, true);
    let share = crate::forward::MAX_WAITING_PER_CLIENT as usize;
    let greedy: SocketAddr = "[2001:db8::1]:40000".parse().unwrap();
    // Distinct questions, then a question already out: both fill the one share.
    for i in 0..share - 1 {
        let q = query(1, &format!("g{i}.elsewhere.test."), RecordType::A);
        assert_eq!(h.send_from(&q, Via::Udp, greedy), Outcome::Forwarded);
    }
    let again = query(2, "g0.elsewhere.test.", RecordType::A);
    assert_eq!(h.send_from(&again, Via::Tcp, greedy), Outcome::Forwarded);
    // The same /64 is the same share, over either transport.
    let neighbour: SocketAddr = "[2001:db8::2]:5353".parse().unwrap();
    for (from, via) in [(greedy, Via::Udp), (neighbour, Via::Tcp)] {
        let over = query(3, "g-over.elsewhere.test.", RecordType::A);
        assert_eq!(h.send_from(&over, via, from), Outcome::Answered);
        let r = h.inbox.borrow_mut().pop().expect("SERVFAIL at once");
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    }
    assert_eq!(h.server.metrics().forward_refusals(crate::Busy::Client), 2);
    assert_eq!(h.server.upstream_in_flight(), share - 1);
    // Everyone else is asked for as before.
    let other: SocketAddr = "[2001:db8:0:1::1]:40000".parse().unwrap();
    let q = query(4, "other.elsewhere.test.", RecordType::A);
    assert_eq!(h.send_from(&q, Via::Udp, other), Outcome::Forwarded);
    assert_eq!(h.send(&q, Via::Udp), Outcome::Forwarded);
    // Answered (here: timed out), the share is free again.
    h.clock.advance(Duration::from_secs(2));
    assert_eq!(h.server.upstream_in_flight(), 0);
    let q = query(5, "g-over.elsewhere.test.", RecordType::A);
    assert_eq!(h.send_from(&q, Via::Udp, neighbour), Outcome::Forwarded);
}

#[test]
fn clients_waiting_on_upstreams_are_bounded_over_all_questions() {
    let h = harness(EXAMPLE, true);
    let (max, per_question) = (crate::forward::MAX_WAITING, 256);
    for i in 0..max / per_question {
        for id in 0..per_question {
            let q = query(id as u16, &format!("w{i}.elsewhere.test."), RecordType::A);
            let from = client(i * per_question + id);
            assert_eq!(h.send_from(&q, Via::Udp, from), Outcome::Forwarded);
        }
    }
    // Room for another question and for another client on one of these, but not for
    // another client in all.
    for name in ["w0.elsewhere.test.", "fresh.elsewhere.test."] {
        assert_eq!(
            h.send(&query(7, name, RecordType::A), Via::Udp),
            Outcome::Answered
        );
        let r = h.inbox.borrow_mut().pop().expect("SERVFAIL at once");
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    }
    assert_eq!(h.server.metrics().forward_refusals(crate::Busy::Waiters), 2);
    h.clock.advance(Duration::from_secs(2));
    assert_eq!(
        h.send(&query(8, "fresh.elsewhere.test.", RecordType::A), Via::Udp),
        Outcome::Forwarded,
        "room again once they are answered"
    );
}

#[test]
fn a_silent_upstream_is_a_pending_deferred_then_servfail_at_the_timeout() {
    let h = harness(EXAMPLE, true);
    h.send(&query(42, "slow.elsewhere.test.", RecordType::A), Via::Udp);
    let pending: Vec<_> = weft::defer::pending()
        .into_iter()
        .filter(|p| p.label == Some(UPSTREAM_LABEL))
        .collect();
    assert_eq!(
        pending.len(),
        1,
        "the upstream query is visible while it waits"
    );
    assert!(
        pending[0].site.to_string().contains("forward.rs"),
        "{}",
        pending[0].site
    );

    h.clock.advance(Duration::from_millis(1999));
    assert!(h.inbox.borrow().is_empty());
    h.clock.advance(Duration::from_millis(1));
    let r = h.inbox.borrow_mut().pop().expect("SERVFAIL at the timeout");
    assert_eq!(
        (r.metadata.id, r.metadata.response_code),
        (42, ResponseCode::ServFail)
    );
    assert_eq!(h.server.metrics().counts().upstream_timeouts, 1);
    assert_eq!(h.server.upstream_in_flight(), 0);
    assert!(
        weft::defer::pending()
            .iter()
            .all(|p| p.label != Some(UPSTREAM_LABEL))
    );

    // A late answer finds nothing to fire.
    let late = h.upstream_query();
    let mut answer = Message::response(late.metadata.id, OpCode::Query);
    answer.queries = late.queries.clone();
    let why = h.upstream_sends(&answer).unwrap_err();
    assert!(why.contains("after its query was given up"), "{why}");
    assert_eq!(h.server.metrics().mismatched(crate::Mismatch::Late), 1);
}

#[test]
fn answers_from_strangers_wrong_ids_ports_or_other_questions_are_dropped_and_counted() {
    let h = harness(EXAMPLE, true);
    h.send(&query(1, "x.elsewhere.test.", RecordType::A), Via::Udp);
    let up = h.upstream_query();
    let port = h.port_of(up.metadata.id);
    let mut answer = Message::response(up.metadata.id, OpCode::Query);
    answer.queries = up.queries.clone();
    let bytes = answer.to_vec().unwrap();
    let upstream: SocketAddr = UPSTREAM.parse().unwrap();
    let stranger: SocketAddr = "127.0.0.1:9999".parse().unwrap();
    assert!(h.server.upstream_received(&bytes, stranger, port).is_err());

    let mut wrong_id = answer.clone();
    wrong_id.metadata.id = up.metadata.id.wrapping_add(1);
    let wrong_id = wrong_id.to_vec().unwrap();
    assert!(
        h.server
            .upstream_received(&wrong_id, upstream, port)
            .is_err()
    );
    assert!(
        h.server
            .upstream_received(&bytes, upstream, port + 1)
            .is_err(),
        "the right id on another local port"
    );

    let mut other = answer.clone();
    other.queries = vec![Query::query(
        Name::from_ascii("evil.test.").unwrap(),
        RecordType::A,
    )];
    let other = other.to_vec().unwrap();
    assert!(h.server.upstream_received(&other, upstream, port).is_err());
    assert!(h.server.upstream_received(b"junk", upstream, port).is_err());
    // The query itself sent back (an echo service where an upstream should be): not an
    // answer at all, malformed rather than one to another question.
    let echoed = up.to_vec().unwrap();
    assert!(h.server.upstream_received(&echoed, upstream, port).is_err());
    assert!(
        h.inbox.borrow().is_empty(),
        "still waiting for the real answer"
    );
    let m = h.server.metrics();
    assert_eq!(m.counts().dropped, 6);
    for (why, n) in [
        (crate::Mismatch::Source, 1),
        (crate::Mismatch::Id, 1),
        (crate::Mismatch::Port, 1),
        (crate::Mismatch::Question, 1),
        (crate::Mismatch::Malformed, 2),
    ] {
        assert_eq!(m.mismatched(why), n, "{why:?}");
    }

    h.server.upstream_received(&bytes, upstream, port).unwrap();
    assert_eq!(h.inbox.borrow().len(), 1);
}

#[test]
fn every_upstream_query_has_its_own_random_id() {
    let h = harness(EXAMPLE, true);
    for i in 0..200u16 {
        h.send(
            &query(i, &format!("n{i}.elsewhere.test."), RecordType::A),
            Via::Udp,
        );
    }
    let ids: std::collections::HashSet<[u8; 2]> = h
        .wire
        .0
        .borrow()
        .iter()
        .map(|(p, ..)| [p[0], p[1]])
        .collect();
    assert!(ids.len() > 190, "{} distinct ids of 200", ids.len());
}

#[test]
fn a_truncated_upstream_answer_is_asked_again_over_tcp_and_only_the_whole_one_replayed() {
    let h = harness(EXAMPLE, true);
    h.send(&query(1, "big.elsewhere.test.", RecordType::A), Via::Tcp);
    h.send(&query(2, "big.elsewhere.test.", RecordType::A), Via::Udp);
    let up = h.upstream_query();
    let mut truncated = Message::response(up.metadata.id, OpCode::Query);
    truncated.queries = up.queries.clone();
    truncated.metadata.truncation = true;
    let upstream = UPSTREAM.parse().unwrap();
    h.upstream_sends(&truncated).unwrap();
    h.upstream_sends(&truncated).unwrap();
    assert!(
        h.inbox.borrow().is_empty(),
        "a truncated answer is not replayed"
    );
    assert_eq!(
        h.wire.1.borrow().len(),
        1,
        "one TCP exchange, to the upstream that truncated"
    );
    assert_eq!(h.wire.1.borrow()[0].to, upstream);
    assert_eq!(
        h.wire.1.borrow()[0].packet,
        h.wire.0.borrow()[0].0,
        "the same query"
    );
    assert_eq!(h.server.metrics().counts().upstream_truncated, 1);

    h.tcp_answers(Ok(a_answer(&up, 60).to_vec().unwrap()));
    let ids: Vec<(u16, bool, usize)> = h
        .inbox
        .borrow()
        .iter()
        .map(|m| (m.metadata.id, m.metadata.truncation, m.answers.len()))
        .collect();
    assert_eq!(ids, [(1, false, 1), (2, false, 1)]);
    assert!(
        h.wire.1.borrow()[0].abandoned.get(),
        "the connection closes"
    );
    assert_eq!(h.server.cached(), 1);
}

#[test]
fn when_tcp_brings_no_whole_answer_clients_get_servfail_and_nothing_is_cached() {
    let h = harness(EXAMPLE, true);
    let truncate = |h: &Harness| {
        let up = h.upstream_query();
        let mut truncated = a_answer(&up, 60);
        truncated.metadata.truncation = true;
        h.upstream_sends(&truncated).unwrap();
        up
    };
    let servfail = |h: &Harness, id: u16| {
        let r = h.inbox.borrow_mut().pop().expect("an answer");
        assert_eq!(
            (
                r.metadata.id,
                r.metadata.response_code,
                r.metadata.truncation
            ),
            (id, ResponseCode::ServFail, false)
        );
    };

    h.send(&query(1, "a.elsewhere.test.", RecordType::A), Via::Tcp);
    truncate(&h);
    h.tcp_answers(Err("connection refused".into()));
    servfail(&h, 1);

    h.send(&query(2, "b.elsewhere.test.", RecordType::A), Via::Tcp);
    let up = truncate(&h);
    let mut again = a_answer(&up, 60);
    again.metadata.truncation = true;
    h.tcp_answers(Ok(again.to_vec().unwrap()));
    servfail(&h, 2);

    h.send(&query(3, "c.elsewhere.test.", RecordType::A), Via::Udp);
    truncate(&h);
    h.clock.advance(Duration::from_secs(2));
    servfail(&h, 3);
    assert!(
        h.wire.1.borrow()[2].abandoned.get(),
        "the timeout ends the TCP exchange"
    );
    h.tcp_answers(Err("late".into()));
    assert!(h.inbox.borrow().is_empty(), "nothing after the timeout");

    assert_eq!(h.server.cached(), 0);
    assert_eq!(h.server.upstream_in_flight(), 0);
}

#[test]
fn questions_asked_again_over_tcp_at_once_are_bounded_and_the_refusals_counted() {
    let h = harness(EXAMPLE, true);
    for i in 0..=crate::forward::MAX_OVER_TCP {
        let id = u16::try_from(i).unwrap();
        h.send(
            &query(id, &format!("q{i}.elsewhere.test."), RecordType::A),
            Via::Udp,
        );
        let mut truncated = a_answer(&h.upstream_query(), 60);
        truncated.metadata.truncation = true;
        h.upstream_sends(&truncated).unwrap();
    }
    assert_eq!(h.wire.1.borrow().len(), crate::forward::MAX_OVER_TCP);
    let r = h
        .inbox
        .borrow_mut()
        .pop()
        .expect("the one beyond the bound");
    assert_eq!(
        (r.metadata.id as usize, r.metadata.response_code),
        (crate::forward::MAX_OVER_TCP, ResponseCode::ServFail)
    );
    assert_eq!(h.server.metrics().forward_refusals(crate::Busy::Tcp), 1);

    // One finishes; its place is free again.
    h.tcp_answers(Err("refused".into()));
    h.inbox.borrow_mut().clear();
    h.send(
        &query(999, "again.elsewhere.test.", RecordType::A),
        Via::Udp,
    );
    let mut truncated = a_answer(&h.upstream_query(), 60);
    truncated.metadata.truncation = true;
    h.upstream_sends(&truncated).unwrap();
    assert_eq!(h.wire.1.borrow().len(), crate::forward::MAX_OVER_TCP + 1);
    assert!(h.inbox.borrow().is_empty());
}
