//! The `dns` kind keeps the protocol's rules, seen by `dig` against the real binary:
//! EDNS versions and the DO bit (RFC 6891, RFC 3225), opcodes it does not serve
//! (RFC 1035), TSIG with an unknown key (RFC 8945), CNAME loops, answers too large for
//! UDP fetched from the upstream over TCP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_proto::op::Message;
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{RData, Record};

use crate::dns::dig;
use crate::support::{App, DnsService, dns_service, free_port, spawn_dns_app};

const ZONE: &str = "$ORIGIN example.test.
$TTL 1h
@       IN SOA ns1 hostmaster ( 1 2h 15m 2w 5m )
        IN NS  ns1
ns1     IN A   192.0.2.53
www     IN A   192.0.2.10
loop1   IN CNAME loop2
loop2   IN CNAME loop1
";

/// weft serving [`ZONE`] on `port` (UDP and TCP), forwarding to `forward` if given.
fn dns_app(port: u16, forward: Option<SocketAddr>) -> App {
    let service = dns_service("dns", port)
        .tcp()
        .zone("example.test.zone", ZONE)
        .timeout("3s");
    spawn_dns_app(forward.into_iter().fold(service, DnsService::forward))
}

/// The `;; flags: ...;` part of dig's header line, e.g. `qr aa rd`.
fn flags(out: &str) -> &str {
    out.lines()
        .find_map(|l| l.strip_prefix(";; flags: "))
        .and_then(|l| l.split(';').next())
        .unwrap_or_else(|| panic!("no flags line\n{out}"))
}

#[test]
fn dig_edns_version_1_gets_badvers_with_an_opt_of_version_0_and_the_do_bit_echoed() {
    let port = free_port();
    let app = dns_app(port, None);
    for transport in ["+notcp", "+tcp"] {
        let out = dig(
            port,
            &[
                "www.example.test",
                "A",
                "+edns=1",
                "+noednsnegotiation",
                transport,
            ],
        );
        assert!(out.contains("status: BADVERS"), "{out}");
        assert!(out.contains("; EDNS: version: 0,"), "{out}");
        assert!(out.contains("ANSWER: 0,"), "{out}");

        let out = dig(port, &["www.example.test", "A", "+dnssec", transport]);
        assert!(out.contains("status: NOERROR"), "{out}");
        assert!(
            out.contains("; EDNS: version: 0, flags: do;"),
            "DO echoed\n{out}"
        );
        let out = dig(port, &["www.example.test", "A", "+nodnssec", transport]);
        assert!(out.contains("; EDNS: version: 0, flags:;"), "{out}");
    }
    assert_eq!(
        app.metric(r#"weft_dns_responses_total{rcode="BADVERS",service="dns"}"#),
        Some(2.0)
    );
}

/// (NOTIFY is served, and refused: see `dns_transfer`.) A query with an OPT record gets
/// one back, NOTIMP included (RFC 6891 section 6.1.1); one without, none.
#[test]
fn dig_with_an_opcode_not_served_gets_notimp_without_rd() {
    let port = free_port();
    let _app = dns_app(port, None);
    for (args, opt) in [
        (&["+opcode=status", "+header-only"][..], true),
        (&["+opcode=update", "example.test", "SOA", "+tcp"], true),
        (&["+opcode=15", "example.test", "SOA"], true),
        (&["+opcode=status", "+noedns", "example.test"], false),
    ] {
        let out = dig(port, args);
        assert!(out.contains("status: NOTIMP"), "{args:?}\n{out}");
        assert_eq!(flags(&out), "qr", "RD is not copied: {args:?}\n{out}");
        assert_eq!(out.contains("OPT PSEUDOSECTION"), opt, "{args:?}\n{out}");
    }
}

#[test]
fn dig_signing_with_an_unknown_tsig_key_gets_notauth_with_badkey() {
    let port = free_port();
    let app = dns_app(port, None);
    let key = "hmac-sha256:transfer-key:c2VjcmV0LXNoYXJlZC1ieS1ub2JvZHktaGVyZQ==";
    for transport in ["+notcp", "+tcp"] {
        let out = dig(port, &["-y", key, "www.example.test", "A", transport]);
        assert!(out.contains("status: NOTAUTH"), "{out}");
        assert!(out.contains("ANSWER: 0,"), "nothing answered\n{out}");
        let tsig = out
            .lines()
            .find(|l| l.starts_with("transfer-key.") && l.contains("TSIG"))
            .unwrap_or_else(|| panic!("a TSIG record named after the key\n{out}"));
        assert!(tsig.contains("hmac-sha256."), "the same algorithm: {tsig}");
        assert!(tsig.contains("BADKEY"), "{tsig}");
    }
    assert_eq!(
        app.metric(r#"weft_dns_responses_total{rcode="NOTAUTH",service="dns"}"#),
        Some(2.0)
    );
}

#[test]
fn dig_gets_a_cname_loop_with_each_record_once() {
    let port = free_port();
    let _app = dns_app(port, None);
    for transport in ["+notcp", "+tcp"] {
        let out = dig(
            port,
            &["loop1.example.test", "A", transport, "+noall", "+answer"],
        );
        let owners: Vec<&str> = out
            .lines()
            .filter(|l| l.contains("\tCNAME\t"))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(
            owners,
            ["loop1.example.test.", "loop2.example.test."],
            "{out}"
        );
    }
}

/// TXT records the truncating upstream answers with: about 2.9 KB.
const RECORDS: usize = 40;

/// A DNS server on one loopback port that answers every question over UDP with its
/// header and question only and TC set, and over TCP with [`RECORDS`] TXT records;
/// counts the queries each way.
fn truncating_upstream() -> (SocketAddr, Arc<[AtomicUsize; 2]>) {
    let (udp, tcp) = loop {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        if let Ok(udp) = UdpSocket::bind(tcp.local_addr().unwrap()) {
            break (udp, tcp);
        }
    };
    let addr = udp.local_addr().unwrap();
    let seen = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let full = |query: &Message| {
        let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
        answer.metadata.recursion_available = true;
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
    };
    let counts = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0; 4096];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            counts[0].fetch_add(1, Ordering::SeqCst);
            let mut truncated = full(&query).truncate();
            truncated.metadata.id = query.metadata.id;
            let _ = udp.send_to(&truncated.to_vec().unwrap(), from);
        }
    });
    let counts = seen.clone();
    std::thread::spawn(move || {
        for stream in tcp.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut len = [0; 2];
            let mut body = Vec::new();
            let read = stream.read_exact(&mut len).and_then(|()| {
                body.resize(usize::from(u16::from_be_bytes(len)), 0);
                stream.read_exact(&mut body)
            });
            let Some(query) = read.ok().and_then(|()| Message::from_vec(&body).ok()) else {
                continue;
            };
            counts[1].fetch_add(1, Ordering::SeqCst);
            let answer = full(&query).to_vec().unwrap();
            let _ = stream.write_all(&(answer.len() as u16).to_be_bytes());
            let _ = stream.write_all(&answer);
        }
    });
    (addr, seen)
}

#[test]
fn dig_gets_a_forwarded_answer_too_large_for_udp_whole_over_tcp_and_truncated_over_udp() {
    let (upstream, seen) = truncating_upstream();
    let port = free_port();
    let app = dns_app(port, Some(upstream));
    let txt = |out: &str| out.lines().filter(|l| l.contains("\tTXT\t")).count();

    let out = dig(port, &["big.elsewhere.test", "TXT", "+tcp"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(!flags(&out).contains("tc"), "{out}");
    assert_eq!(txt(&out), RECORDS, "the whole answer over TCP\n{out}");
    let asked = |i: usize| seen[i].load(Ordering::SeqCst);
    assert_eq!((asked(0), asked(1)), (1, 1), "asked again over TCP");

    let out = dig(port, &["big.elsewhere.test", "TXT", "+ignore"]);
    assert!(flags(&out).contains("tc"), "too large for UDP: TC\n{out}");
    assert_eq!(txt(&out), 0, "{out}");
    let out = dig(port, &["big.elsewhere.test", "TXT"]);
    assert_eq!(txt(&out), RECORDS, "dig retries over TCP on TC\n{out}");
    assert_eq!((asked(0), asked(1)), (1, 1), "from the cache");
    assert_eq!(
        app.metric(r#"weft_dns_cache_hits_total{service="dns"}"#),
        Some(3.0),
        "+ignore, then UDP and TCP of the last dig"
    );
    assert_eq!(
        app.metric(r#"weft_dns_upstream_truncated_total{service="dns"}"#),
        Some(1.0)
    );
}
