//! The DNS service on real loopback sockets: UDP, TCP, and forwarding to a second
//! server on loopback.

mod support;

use std::net::UdpSocket;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use weft::{ListenOptions, Reactor};
use weft_names::{ServiceMetrics, listen};

use support::{EXAMPLE, a, addr, tcp_ask, udp_ask, zone};
use weft_test_support::run_with_client;

const ELSEWHERE: &str = "$ORIGIN elsewhere.test.\n$TTL 60\n@ SOA ns hostmaster 1 2 3 4 5\n@ NS ns\nwww A 198.51.100.80\n";

#[test]
fn zones_over_udp_and_tcp_and_forwarding_to_a_loopback_upstream() {
    let reactor = Reactor::new().unwrap();
    let endpoints = ["udp:0:interface=127.0.0.1".to_owned()];
    let (_, upstream) = listen(
        &reactor,
        "upstream",
        &endpoints,
        &ListenOptions::default(),
        zone(ELSEWHERE),
        ServiceMetrics::detached("upstream"),
    )
    .unwrap();
    let upstream = addr(&upstream[0]);
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();

    let mut config = zone(EXAMPLE);
    config.forward = vec![upstream];
    // Long enough that an upstream on this same reactor answers in time however busy the
    // machine; the stuck service below times out on purpose.
    config.timeout = Duration::from_secs(5);
    let front = [
        "udp:0:interface=127.0.0.1".to_owned(),
        "tcp:0:interface=127.0.0.1".to_owned(),
    ];
    let (server, bound) = listen(
        &reactor,
        "dns",
        &front,
        &ListenOptions::default(),
        config,
        ServiceMetrics::detached("dns"),
    )
    .unwrap();
    let (udp, tcp) = (addr(&bound[0]), addr(&bound[1]));

    let mut stuck = zone(EXAMPLE);
    stuck.forward = vec![silent.local_addr().unwrap()];
    stuck.timeout = Duration::from_millis(200);
    let (_, stuck) = listen(
        &reactor,
        "stuck",
        &endpoints,
        &ListenOptions::default(),
        stuck,
        ServiceMetrics::detached("stuck"),
    )
    .unwrap();
    let stuck = addr(&stuck[0]);

    run_with_client(&reactor, move || {
        let r = udp_ask(udp, 1, "www.example.test.");
        assert_eq!((r.metadata.id, a(&r)), (1, vec!["192.0.2.10".to_owned()]));
        assert!(r.metadata.authoritative);
        let r = tcp_ask(tcp, 2, "chain.example.test.");
        assert_eq!(a(&r), ["192.0.2.10"]);

        let r = udp_ask(udp, 3, "www.elsewhere.test.");
        assert_eq!(a(&r), ["198.51.100.80"], "forwarded");
        assert!(!r.metadata.authoritative && r.metadata.recursion_available);
        let r = tcp_ask(tcp, 4, "www.elsewhere.test.");
        assert_eq!(
            (r.metadata.id, a(&r)),
            (4, vec!["198.51.100.80".to_owned()])
        );
        let r = udp_ask(udp, 5, "nope.elsewhere.test.");
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);

        let r = udp_ask(stuck, 6, "www.elsewhere.test.");
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    });
    let counts = server.metrics().counts();
    assert_eq!((counts.cache_hits, counts.cache_misses), (1, 2));
}
