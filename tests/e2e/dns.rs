//! The `dns` kind: `dig` against the real binary, zones and forwarding to a second DNS
//! server on loopback, then the counters on `/metrics`; `weft check` on a bad zone.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::assert_eventually;
use crate::support::{dns_service, free_port, spawn_dns_app};

pub(crate) const ZONE: &str = "$ORIGIN example.test.
$TTL 1h
@       IN SOA ns1 hostmaster ( 1 2h 15m 2w 5m )
        IN NS  ns1
ns1     IN A   192.0.2.53
www     IN A   192.0.2.10
chain   IN CNAME www
";

/// A DNS server on a loopback UDP port answering every question with one A record
/// (198.51.100.80, TTL 60), counting the queries it gets.
pub(crate) fn upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        let mut buf = [0; 4096];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            seen.fetch_add(1, Ordering::SeqCst);
            let mut answer = Message::response(query.metadata.id, OpCode::Query);
            answer.metadata.recursion_available = true;
            answer.queries = query.queries.clone();
            if let Some(q) = query.queries.first() {
                answer.answers.push(Record::from_rdata(
                    q.name().clone(),
                    60,
                    RData::A(A::new(198, 51, 100, 80)),
                ));
            }
            let _ = socket.send_to(&answer.to_vec().unwrap(), from);
        }
    });
    (addr, count)
}

/// A plain query (no EDNS) for `name`'s A records, encoded.
pub(crate) fn plain(id: u16, name: &str) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.queries
        .push(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

/// Sends a plain query for each of `names` from one socket at once; how many were
/// answered before half a second passed without an answer.
pub(crate) fn burst<'a>(port: u16, names: impl IntoIterator<Item = &'a str>) -> usize {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (id, name) in names.into_iter().enumerate() {
        socket
            .send_to(&plain(id as u16, name), ("127.0.0.1", port))
            .unwrap();
    }
    socket
        .set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0; 1024];
    let mut answered = 0;
    while socket.recv_from(&mut buf).is_ok() {
        answered += 1;
    }
    answered
}

/// `dig @127.0.0.1 -p PORT ARGS`, its standard output.
pub(crate) fn dig(port: u16, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg("@127.0.0.1")
        .args(["-p", &port.to_string(), "+time=3", "+tries=1"])
        .args(args)
        .output()
        .expect("dig must be installed (scripts/test installs dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn short(port: u16, args: &[&str]) -> Vec<String> {
    let mut all = args.to_vec();
    all.push("+short");
    dig(port, &all).lines().map(str::to_owned).collect()
}

#[test]
fn dig_gets_zone_answers_over_udp_and_tcp_and_forwarded_answers_once_upstream() {
    let (upstream, upstream_queries) = upstream();
    let port = free_port();
    let app = spawn_dns_app(
        dns_service("dns", port)
            .tcp()
            .zone("example.test.zone", ZONE)
            .forward(upstream)
            .timeout("1s"),
    );

    assert_eq!(short(port, &["www.example.test", "A"]), ["192.0.2.10"]);
    assert_eq!(
        short(port, &["www.example.test", "A", "+tcp"]),
        ["192.0.2.10"]
    );
    assert_eq!(
        short(port, &["chain.example.test", "A"]),
        ["www.example.test.", "192.0.2.10"]
    );
    let nx = dig(port, &["nope.example.test", "A"]);
    assert!(
        nx.contains("status: NXDOMAIN") && nx.contains(" aa"),
        "{nx}"
    );
    assert!(
        nx.contains("IN\tSOA"),
        "the SOA in the authority section\n{nx}"
    );

    assert_eq!(short(port, &["www.elsewhere.test", "A"]), ["198.51.100.80"]);
    assert_eq!(
        short(port, &["WWW.elsewhere.test", "A", "+tcp"]),
        ["198.51.100.80"]
    );
    assert_eq!(
        upstream_queries.load(Ordering::SeqCst),
        1,
        "the second answer came from the cache"
    );

    assert_eventually!(
        app.metric(r#"weft_dns_cache_hits_total{service="dns"}"#) == Some(1.0),
        "cache hits counted\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    assert_eq!(
        app.metric(r#"weft_dns_queries_total{qtype="A",service="dns"}"#),
        Some(6.0)
    );
    assert_eq!(
        app.metric(r#"weft_dns_responses_total{rcode="NXDOMAIN",service="dns"}"#),
        Some(1.0)
    );
    assert_eq!(
        app.metric(r#"weft_dns_responses_total{rcode="NOERROR",service="dns"}"#),
        Some(5.0)
    );
    assert_eq!(
        app.metric(r#"weft_dns_cache_misses_total{service="dns"}"#),
        Some(1.0)
    );
    assert_eq!(
        app.metric(r#"weft_dns_upstream_timeouts_total{service="dns"}"#),
        Some(0.0)
    );
}

#[test]
fn a_silent_upstream_gets_the_client_servfail_at_the_timeout() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let port = free_port();
    let app = spawn_dns_app(
        dns_service("resolver", port)
            .forward(silent_addr)
            .timeout("300ms"),
    );
    let out = dig(port, &["stuck.elsewhere.test", "A"]);
    assert!(out.contains("status: SERVFAIL"), "{out}");
    assert_eventually!(
        app.metric(r#"weft_dns_upstream_timeouts_total{service="resolver"}"#) == Some(1.0),
        "the timeout counted"
    );
    drop(silent);
}

#[test]
fn weft_check_names_the_zone_file_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let zone = dir.path().join("bad.zone");
    std::fs::write(&zone, format!("{ZONE}mail IN A 300.0.0.1\n")).unwrap();
    let config = dir.path().join("weft.toml");
    std::fs::write(
        &config,
        format!(
            "[[service]]\nname = \"dns\"\nkind = \"dns\"\nlisten = \"udp:5353\"\nzones = [\"{}\"]\n",
            zone.display()
        ),
    )
    .unwrap();
    let out = crate::support::weft_check([&config]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains(&format!(
            "{}:8: service[0].zones: \"300.0.0.1\" is not an IPv4 address",
            zone.display()
        )),
        "{err}"
    );
}
