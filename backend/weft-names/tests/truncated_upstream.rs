//! Forwarding an answer too large for UDP: a real upstream on loopback that truncates
//! over UDP (TC) and answers in full over TCP, and clients asking over both.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{RData, Record, RecordType};
use weft::Reactor;

use support::{EXAMPLE, message, serve, tcp_exchange, udp_exchange, zone};
use weft_test_support::run_with_client;

const BIG: &str = "big.elsewhere.test.";
/// TXT records in the answer to [`BIG`]: about 2.9 KB, more than any UDP answer here.
const RECORDS: usize = 40;

/// Queries an upstream received, by transport.
#[derive(Default)]
struct Seen {
    udp: AtomicUsize,
    tcp: AtomicUsize,
}

/// The upstream's full answer to `query`.
fn full_answer(query: &Message) -> Message {
    let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
    answer.metadata.recursion_available = true;
    answer.metadata.recursion_desired = query.metadata.recursion_desired;
    answer.queries = query.queries.clone();
    if let Some(q) = query.queries.first() {
        for i in 0..RECORDS {
            answer.answers.push(Record::from_rdata(
                q.name().clone(),
                300,
                RData::TXT(TXT::new(vec![format!("{i:02} {}", "x".repeat(58))])),
            ));
        }
    }
    answer
}

/// An upstream on one loopback port: over UDP it answers with the header and question
/// only and TC set, as a server does when the answer does not fit; over TCP it answers
/// with the bytes `tcp` makes of the query (unless it is `None`, when nothing listens
/// there).
fn upstream(tcp: Option<fn(&Message) -> Vec<u8>>) -> (SocketAddr, Arc<Seen>) {
    let (udp, listener) = loop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        if let Ok(udp) = UdpSocket::bind(listener.local_addr().unwrap()) {
            break (udp, listener);
        }
    };
    let addr = udp.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let counts = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0; 4096];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            counts.udp.fetch_add(1, Ordering::SeqCst);
            let mut truncated = full_answer(&query).truncate();
            truncated.metadata.id = query.metadata.id;
            let _ = udp.send_to(&truncated.to_vec().unwrap(), from);
        }
    });
    if let Some(answer) = tcp {
        let counts = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut len = [0; 2];
                if stream.read_exact(&mut len).is_err() {
                    continue;
                }
                let mut body = vec![0; usize::from(u16::from_be_bytes(len))];
                if stream.read_exact(&mut body).is_err() {
                    continue;
                }
                let Ok(query) = Message::from_vec(&body) else {
                    continue;
                };
                counts.tcp.fetch_add(1, Ordering::SeqCst);
                let answer = answer(&query);
                let _ = stream.write_all(&(answer.len() as u16).to_be_bytes());
                let _ = stream.write_all(&answer);
            }
        });
    } else {
        drop(listener);
    }
    (addr, seen)
}

fn txt_count(r: &Message) -> usize {
    r.answers
        .iter()
        .filter(|a| a.record_type() == RecordType::TXT)
        .count()
}

fn big(id: u16, edns: bool) -> Vec<u8> {
    let mut q = message(id, BIG, RecordType::TXT);
    if edns {
        let mut opt = Edns::new();
        opt.set_max_payload(4096);
        q.edns = Some(opt);
    }
    q.to_vec().unwrap()
}

#[test]
fn a_truncated_upstream_answer_is_asked_again_over_tcp_and_tcp_clients_get_it_whole() {
    let (upstream, seen) = upstream(Some(|q| full_answer(q).to_vec().unwrap()));
    let reactor = Reactor::new().unwrap();
    let mut config = zone(EXAMPLE);
    config.forward = vec![upstream];
    config.timeout = Duration::from_secs(3);
    let (server, udp, tcp) = serve(&reactor, "dns", config);
    let check = server.clone();
    run_with_client(&reactor, move || {
        let r = tcp_exchange(tcp, &big(1, false));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(
            !r.metadata.truncation,
            "a TCP client never gets a truncated answer"
        );
        assert_eq!(txt_count(&r), RECORDS);
        assert_eq!(seen.udp.load(Ordering::SeqCst), 1);
        assert_eq!(seen.tcp.load(Ordering::SeqCst), 1, "asked again over TCP");

        for (id, edns) in [(2, false), (3, true)] {
            let r = udp_exchange(udp, &big(id, edns));
            assert_eq!(r.metadata.id, id);
            assert!(
                r.metadata.truncation,
                "too big for UDP: TC, so the client uses TCP"
            );
            assert!(r.answers.is_empty());
        }
        let r = tcp_exchange(tcp, &big(4, false));
        assert!(!r.metadata.truncation);
        assert_eq!(txt_count(&r), RECORDS);
        assert_eq!(
            (
                seen.udp.load(Ordering::SeqCst),
                seen.tcp.load(Ordering::SeqCst)
            ),
            (1, 1),
            "the whole answer was cached"
        );
    });
    let counts = check.metrics().counts();
    assert_eq!((counts.cache_hits, counts.cache_misses), (3, 1));
    assert_eq!(check.upstream_in_flight(), 0);
}

#[test]
fn a_truncated_answer_is_never_cached_nor_replayed_when_tcp_cannot_fetch_it() {
    let (upstream, seen) = upstream(None);
    let reactor = Reactor::new().unwrap();
    let mut config = zone(EXAMPLE);
    config.forward = vec![upstream];
    config.timeout = Duration::from_secs(3);
    let (server, udp, tcp) = serve(&reactor, "dns", config);
    let check = server.clone();
    run_with_client(&reactor, move || {
        let r = udp_exchange(udp, &big(1, true));
        assert_eq!(
            (r.metadata.response_code, r.metadata.truncation),
            (ResponseCode::ServFail, false),
            "the answer could not be fetched whole"
        );
        let r = tcp_exchange(tcp, &big(2, false));
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
        assert!(!r.metadata.truncation);
        assert_eq!(
            seen.udp.load(Ordering::SeqCst),
            2,
            "nothing was cached: asked upstream again"
        );
    });
    assert_eq!(check.cached(), 0);
    assert_eq!(check.upstream_in_flight(), 0);
}

/// Over TCP as over UDP, what is no answer to the question asked fails it (SERVFAIL,
/// never an empty NOERROR) and is counted by why: a query where the answer should be (an
/// echo service where the upstream should be) or bytes that are no message (`malformed`),
/// an answer to another id (`id`) or to another question (`question`).
#[test]
fn what_is_no_answer_over_tcp_fails_the_question_and_is_counted() {
    use weft_names::Mismatch;
    let echo: fn(&Message) -> Vec<u8> = |query| query.to_vec().unwrap();
    let garbage: fn(&Message) -> Vec<u8> = |_| b"\x00\x01garbage".to_vec();
    let other_id: fn(&Message) -> Vec<u8> = |query| {
        let mut answer = full_answer(query);
        answer.metadata.id = query.metadata.id.wrapping_add(1);
        answer.to_vec().unwrap()
    };
    let other_question: fn(&Message) -> Vec<u8> = |query| {
        let mut other = query.clone();
        other.queries[0].set_query_type(RecordType::A);
        full_answer(&other).to_vec().unwrap()
    };
    for (answer, why) in [
        (echo, Mismatch::Malformed),
        (garbage, Mismatch::Malformed),
        (other_id, Mismatch::Id),
        (other_question, Mismatch::Question),
    ] {
        let (upstream, seen) = upstream(Some(answer));
        let reactor = Reactor::new().unwrap();
        let mut config = zone(EXAMPLE);
        config.forward = vec![upstream];
        config.timeout = Duration::from_secs(3);
        let (server, udp, _) = serve(&reactor, "dns", config);
        let check = server.clone();
        run_with_client(&reactor, move || {
            let r = udp_exchange(udp, &big(1, true));
            assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
            assert_eq!(seen.tcp.load(Ordering::SeqCst), 1);
        });
        assert_eq!(check.metrics().mismatched(why), 1, "{why:?}");
        assert_eq!(check.cached(), 0);
        drop(reactor);
    }
}
