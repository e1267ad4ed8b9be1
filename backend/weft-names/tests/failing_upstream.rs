//! Upstreams that fail a query (REFUSED, SERVFAIL) on loopback: the forwarder asks the
//! next one at once instead of passing the failure on, and answers SERVFAIL only when
//! every upstream failed.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record};
use weft::Reactor;

use support::{EXAMPLE, a, serve, udp_ask, zone};
use weft_test_support::run_with_client;

/// An upstream on a loopback UDP port answering every query with `rcode` (with an A
/// record when it is NOERROR), and how many queries it received.
fn upstream(rcode: ResponseCode) -> (SocketAddr, Arc<AtomicUsize>) {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = udp.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counts = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0; 4096];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            counts.fetch_add(1, Ordering::SeqCst);
            let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
            answer.metadata.response_code = rcode;
            answer.queries = query.queries.clone();
            if rcode == ResponseCode::NoError {
                answer.answers.push(Record::from_rdata(
                    query.queries[0].name().clone(),
                    60,
                    RData::A(A::new(198, 51, 100, 9)),
                ));
            }
            let _ = udp.send_to(&answer.to_vec().unwrap(), from);
        }
    });
    (addr, seen)
}

#[test]
fn a_refusing_upstream_is_passed_over_for_the_next_one() {
    let (refusing, refused) = upstream(ResponseCode::Refused);
    let (working, answered) = upstream(ResponseCode::NoError);
    let reactor = Reactor::new().unwrap();
    let mut config = zone(EXAMPLE);
    config.forward = vec![refusing, working];
    config.timeout = Duration::from_secs(3);
    let (server, udp, _) = serve(&reactor, "dns", config);
    run_with_client(&reactor, move || {
        let r = udp_ask(udp, 1, "www.elsewhere.test.");
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(a(&r), ["198.51.100.9"]);
        let r = udp_ask(udp, 2, "other.elsewhere.test.");
        assert_eq!(a(&r), ["198.51.100.9"]);
        assert_eq!(
            refused.load(Ordering::SeqCst),
            1,
            "the refusing upstream is not asked first again"
        );
        assert_eq!(answered.load(Ordering::SeqCst), 2);
    });
    assert_eq!(server.upstream_in_flight(), 0);
}

#[test]
fn when_every_upstream_fails_the_client_gets_servfail() {
    let (refusing, refused) = upstream(ResponseCode::Refused);
    let (failing, failed) = upstream(ResponseCode::ServFail);
    let reactor = Reactor::new().unwrap();
    let mut config = zone(EXAMPLE);
    config.forward = vec![refusing, failing];
    config.timeout = Duration::from_secs(3);
    let (server, udp, _) = serve(&reactor, "dns", config);
    let check = server.clone();
    run_with_client(&reactor, move || {
        let r = udp_ask(udp, 1, "www.elsewhere.test.");
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(
            (
                refused.load(Ordering::SeqCst),
                failed.load(Ordering::SeqCst)
            ),
            (1, 1),
            "both were asked"
        );
    });
    assert_eq!(check.cached(), 0);
    assert_eq!(check.upstream_in_flight(), 0);
}
