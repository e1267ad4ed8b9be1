//! Responses by kind, against the real binary: the rate limit keeps a budget per kind of
//! answer (an NXDOMAIN flood from a prefix does not starve its real answers), and an
//! upstream's failure answers are counted by upstream and code.

use std::net::{SocketAddr, UdpSocket};

use hickory_proto::op::{Message, OpCode, ResponseCode};

use crate::dns::{burst, dig};
use crate::support::{dns_service, free_port, spawn_dns_app};

const ZONE: &str = "$ORIGIN example.test.
$TTL 1h
@       IN SOA ns1 hostmaster ( 1 2h 15m 2w 5m )
        IN NS  ns1
ns1     IN A   192.0.2.53
www     IN A   192.0.2.10
";

#[test]
fn an_nxdomain_flood_spends_its_own_budget_not_the_prefixes_answers() {
    let port = free_port();
    let app = spawn_dns_app(
        dns_service("dns", port)
            .tcp()
            .zone("example.test.zone", ZONE)
            .rate_limit("responses_per_second = 1, burst = 3, slip = 0"),
    );
    let missing: Vec<String> = (0..20).map(|i| format!("n{i}.example.test.")).collect();
    let answered = burst(port, missing.iter().map(String::as_str));
    assert!(answered <= 4, "{answered} of 20 NXDOMAIN answered");
    let www = vec!["www.example.test.".to_owned(); 3];
    assert_eq!(
        burst(port, www.iter().map(String::as_str)),
        3,
        "the prefix's answers have a budget of their own"
    );
    let limited = |kind: &str| {
        app.metric(&format!(
            r#"weft_dns_rate_limited_kinds_total{{kind="{kind}",service="dns"}}"#
        ))
        .unwrap_or(0.0)
    };
    assert!(limited("nxdomain") >= 16.0, "{}", limited("nxdomain"));
    assert_eq!(limited("answer"), 0.0);
}

/// An upstream on loopback answering every query with `rcode`.
fn failing_upstream(rcode: ResponseCode) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0; 4096];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut answer = Message::response(query.metadata.id, OpCode::Query);
            answer.metadata.response_code = rcode;
            answer.queries = query.queries.clone();
            let _ = socket.send_to(&answer.to_vec().unwrap(), from);
        }
    });
    addr
}

#[test]
fn upstream_failure_answers_are_counted_by_upstream_and_code() {
    let port = free_port();
    let refusing = failing_upstream(ResponseCode::Refused);
    let failing = failing_upstream(ResponseCode::ServFail);
    let app = spawn_dns_app(dns_service("fwd", port).forward(refusing).forward(failing));
    let out = dig(port, &["name.example", "A"]);
    assert!(out.contains("status: SERVFAIL"), "{out}");
    let count = |upstream: SocketAddr, rcode: &str| {
        app.metric(&format!(
            r#"weft_dns_upstream_failures_total{{rcode="{rcode}",service="fwd",upstream="{upstream}"}}"#
        ))
        .unwrap_or(0.0)
    };
    assert_eq!(
        (count(refusing, "REFUSED"), count(failing, "SERVFAIL")),
        (1.0, 1.0),
        "{}",
        app.curl("/metrics").unwrap_or_default()
    );
    assert_eq!(count(refusing, "SERVFAIL"), 0.0);
}
