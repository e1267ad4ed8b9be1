//! Where weft's answers differ from NSD's and Knot's, against the real binary: answers
//! that refuse or fail say why in an Extended DNS Error (RFC 8914) to EDNS queries only
//! (dig and hickory), and a server that forwards sets RA on every answer, its errors
//! included, where NSD (which never recurses) sets it on none.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::EdnsOption;

use crate::dns::dig;
use crate::dns_edns::{exchange, query};
use crate::support::{dns_service, free_port, spawn_app_with};

const ZONE: &str = "$ORIGIN example.test.
$TTL 1h
@       IN SOA ns1 hostmaster ( 1 2h 15m 2w 5m )
        IN NS  ns1
ns1     IN A   192.0.2.53
www     IN A   192.0.2.10
";

/// The INFO-CODE of `message`'s Extended DNS Error, if it has one.
fn ede(message: &Message) -> Option<u16> {
    match message.edns.as_ref()?.option(15.into())? {
        EdnsOption::Unknown(15, data) => Some(u16::from_be_bytes([data[0], data[1]])),
        _ => None,
    }
}

/// `message` over TCP to `port`; the first answer.
fn over_tcp(port: u16, message: &Message) -> Message {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let packet = message.to_vec().unwrap();
    let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&packet);
    s.write_all(&framed).unwrap();
    let mut len = [0; 2];
    s.read_exact(&mut len).unwrap();
    let mut answer = vec![0; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut answer).unwrap();
    Message::from_vec(&answer).unwrap()
}

#[test]
fn refusals_and_failures_carry_an_extended_dns_error_to_edns_queries_only() {
    let (auth, fwd) = (free_port(), free_port());
    // An upstream that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let upstream = silent.local_addr().unwrap();
    let _app = spawn_app_with(|dir| {
        let auth = dns_service("auth", auth)
            .tcp()
            .zone("example.test.zone", ZONE)
            .key("allow_transfer", r#"["192.0.2.1"]"#);
        let fwd = dns_service("fwd", fwd).forward(upstream).timeout("300ms");
        auth.toml(dir) + &fwd.toml(dir)
    });

    // Outside the zones, nothing forwarded: 20, Not Authoritative.
    let out = dig(auth, &["www.elsewhere.test", "A"]);
    assert!(out.contains("status: REFUSED"), "{out}");
    assert!(out.contains("EDE: 20 (Not Authoritative)"), "{out}");
    let out = dig(auth, &["www.elsewhere.test", "A", "+noedns"]);
    assert!(
        out.contains("status: REFUSED") && !out.contains("EDE"),
        "{out}"
    );
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let refused = exchange(
        &socket,
        auth,
        &query(1, "www.elsewhere.test.", RecordType::A, &[])
            .to_vec()
            .unwrap(),
    )
    .expect("an answer");
    assert_eq!(
        (refused.metadata.response_code, ede(&refused)),
        (ResponseCode::Refused, Some(20))
    );
    // An answer from the zone has none.
    let www = dig(auth, &["www.example.test", "A"]);
    assert!(
        www.contains("status: NOERROR") && !www.contains("EDE"),
        "{www}"
    );

    // A transfer from a peer not allowed: 18, Prohibited.
    let axfr = over_tcp(auth, &query(2, "example.test.", RecordType::AXFR, &[]));
    assert_eq!(
        (axfr.metadata.response_code, ede(&axfr)),
        (ResponseCode::Refused, Some(18))
    );

    // No upstream answered: 22, No Reachable Authority.
    let out = dig(fwd, &["name.example", "A"]);
    assert!(out.contains("status: SERVFAIL"), "{out}");
    assert!(out.contains("EDE: 22 (No Reachable Authority)"), "{out}");
    let failed = exchange(
        &socket,
        fwd,
        &query(3, "other.example.", RecordType::A, &[])
            .to_vec()
            .unwrap(),
    )
    .expect("an answer");
    assert_eq!(
        (failed.metadata.response_code, ede(&failed)),
        (ResponseCode::ServFail, Some(22))
    );
    drop(silent);
}

#[test]
fn a_forwarding_server_sets_ra_on_every_answer_and_an_authoritative_one_on_none() {
    let (auth, fwd) = (free_port(), free_port());
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let upstream = silent.local_addr().unwrap();
    let _app = spawn_app_with(|dir| {
        let auth = dns_service("auth", auth).zone("example.test.zone", ZONE);
        let both = dns_service("both", fwd)
            .zone("example.test.zone", ZONE)
            .forward(upstream)
            .timeout("300ms");
        auth.toml(dir) + &both.toml(dir)
    });
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let www = query(1, "www.example.test.", RecordType::A, &[])
        .to_vec()
        .unwrap();
    // Two questions: FORMERR.
    let mut two = www.clone();
    two[5] = 2;
    for (port, ra) in [(auth, false), (fwd, true)] {
        let answer = exchange(&socket, port, &www).expect("an answer");
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert_eq!(answer.metadata.recursion_available, ra, "a zone answer");
        let formerr = exchange(&socket, port, &two).expect("an answer");
        assert_eq!(formerr.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(formerr.metadata.recursion_available, ra, "FORMERR");
        // A NOTIFY for a zone it is no secondary of: REFUSED, flagged alike.
        let mut notify = query(2, "example.test.", RecordType::SOA, &[]);
        notify.metadata.op_code = hickory_proto::op::OpCode::Notify;
        let refused = exchange(&socket, port, &notify.to_vec().unwrap()).expect("an answer");
        assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
        assert_eq!(refused.metadata.recursion_available, ra, "a NOTIFY refused");
        let flags = dig(port, &["www.example.test", "A"]);
        assert_eq!(
            flags.contains(" ra;") || flags.contains(" ra "),
            ra,
            "{flags}"
        );
    }
    drop(silent);
}
