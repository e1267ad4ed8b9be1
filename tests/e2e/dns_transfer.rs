//! Zone transfers, NOTIFY and zone reloads of the `dns` kind against the real binary, with
//! `dig` and with hickory messages over std sockets: AXFR to an allowed peer and REFUSED to
//! the others (counted, while other clients go on getting answers), a 20,000-record zone
//! over many messages to a reader that pauses, IXFR, NOTIFY after a reload that changes a
//! serial, and a zone file edited to garbage that keeps its old zone while another zone
//! reloads.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::assert_eventually;
use crate::dns::dig;
use crate::support::{App, dns_service, free_port, spawn_app_with, spawn_dns_app};

const ZONE: &str = "$ORIGIN example.test.
$TTL 1h
@       IN SOA ns1 hostmaster ( 1 2h 15m 2w 5m )
        IN NS  ns1
ns1     IN A   192.0.2.53
www     IN A   192.0.2.10
mail    IN MX  10 www
";

/// A query for `name`/`qtype`; an IXFR carries `serial` in its authority section.
fn query(id: u16, name: &str, qtype: RecordType, serial: Option<u32>) -> Vec<u8> {
    let name = Name::from_ascii(name).unwrap();
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.queries.push(Query::query(name.clone(), qtype));
    if let Some(serial) = serial {
        let soa = SOA::new(name.clone(), name.clone(), serial, 0, 0, 0, 0);
        m.authorities
            .push(Record::from_rdata(name, 0, RData::SOA(soa)));
    }
    m.to_vec().unwrap()
}

fn udp_exchange(port: u16, packet: &[u8]) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket.send_to(packet, ("127.0.0.1", port)).unwrap();
    let mut buf = [0; 65_535];
    let n = socket.recv(&mut buf).expect("a UDP answer");
    Message::from_vec(&buf[..n]).unwrap()
}

fn tcp_connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn send_frame(s: &mut TcpStream, packet: &[u8]) {
    let mut framed = u16::try_from(packet.len()).unwrap().to_be_bytes().to_vec();
    framed.extend_from_slice(packet);
    s.write_all(&framed).unwrap();
}

/// One DNS message off a TCP stream, with its size.
fn read_frame(s: &mut TcpStream) -> (Message, usize) {
    let mut len = [0; 2];
    s.read_exact(&mut len).expect("a framed message");
    let mut body = vec![0; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut body).unwrap();
    (Message::from_vec(&body).unwrap(), body.len())
}

/// The messages of a transfer over TCP until the closing SOA (the second SOA seen).
fn transfer(s: &mut TcpStream) -> Vec<Message> {
    transfer_rest(s, 0)
}

/// The rest of a transfer over TCP whose messages read so far held `soas` SOA records.
fn transfer_rest(s: &mut TcpStream, mut soas: usize) -> Vec<Message> {
    let mut messages = Vec::new();
    while soas < 2 {
        let (m, len) = read_frame(s);
        assert!(len <= 65_535);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
        soas += m
            .answers
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA)
            .count();
        messages.push(m);
    }
    messages
}

/// The records of dig's AXFR output, in order, as (owner, type).
fn dig_records(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_owned(), f[3].to_owned())
        })
        .collect()
}

fn transfers(app: &App, result: &str) -> Option<f64> {
    app.metric(&format!(
        "weft_dns_transfers_total{{result=\"{result}\",service=\"dns\"}}"
    ))
}

/// A service allowing transfers to 127.0.0.1, and a TCP connection to it that was
/// sent one.
fn transfer_allowed_to_a_connection() -> (App, TcpStream) {
    let port = free_port();
    let app = spawn_dns_app(
        dns_service("dns", port)
            .tcp()
            .zone("example.test.zone", ZONE)
            .key("allow_transfer", r#"["127.0.0.1"]"#),
    );
    let mut s = tcp_connect(port);
    send_frame(&mut s, &query(1, "example.test.", RecordType::AXFR, None));
    assert!(!transfer(&mut s).is_empty(), "allowed to start with");
    (app, s)
}

/// A TCP connection kept open across a reload (or a transfer, which puts its zone in
/// service as a reload does) is answered by what the reload put in force from its next
/// question on: a revoked `allow_transfer` refuses its next AXFR, and the zone edited
/// answers it, where the connection was answered by the settings it was accepted under
/// for as long as it kept asking.
#[test]
fn a_tcp_connection_open_across_a_reload_is_answered_by_the_new_zone_and_transfer_rules() {
    let (app, mut s) = transfer_allowed_to_a_connection();
    let www = |s: &mut TcpStream, id: u16| {
        send_frame(s, &query(id, "www.example.test.", RecordType::A, None));
        let (answer, _) = read_frame(s);
        answer.answers.iter().find_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
    };
    assert_eq!(www(&mut s, 2).as_deref(), Some("192.0.2.10"));

    let edited = ZONE
        .replace("( 1 2h", "( 2 2h")
        .replace("192.0.2.10", "192.0.2.11");
    std::fs::write(app.dir.path().join("example.test.zone"), edited).unwrap();
    app.edit_config(|text| {
        let revoked = text.replace(r#"allow_transfer = ["127.0.0.1"]"#, "allow_transfer = []");
        assert_ne!(revoked, text);
        revoked
    });
    app.reload_by_signal("ok");

    assert_eq!(
        www(&mut s, 3).as_deref(),
        Some("192.0.2.11"),
        "the same connection is answered by the zone the reload put in service"
    );
    send_frame(&mut s, &query(4, "example.test.", RecordType::AXFR, None));
    let (refused, _) = read_frame(&mut s);
    assert_eq!(
        (refused.metadata.id, refused.metadata.response_code),
        (4, ResponseCode::Refused),
        "a transfer the reload revoked is refused on a connection open since before it"
    );
    assert!(refused.answers.is_empty());
}

/// Reloads that fail, rolled back, leave the server in force where it was: a later
/// reload that commits still moves the connections open since before them. (The
/// service remembered the servers those failed reloads started, and after two of them
/// the one in force was forgotten, so the next reload's connections stayed behind.)
#[test]
fn a_tcp_connection_open_across_failed_reloads_moves_with_the_reload_that_commits() {
    let (app, mut s) = transfer_allowed_to_a_connection();
    // Two reloads that change the service and fail on a port another program holds.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().port();
    let original = std::fs::read_to_string(app.config_path()).unwrap();
    for serial in [2, 3] {
        std::fs::write(
            app.dir.path().join("example.test.zone"),
            ZONE.replace("( 1 2h", &format!("( {serial} 2h")),
        )
        .unwrap();
        app.edit_config(|_| {
            format!(
                "{original}\n[[service]]\nname = \"blocked\"\nkind = \"echo\"\n\
                 listen = \"tcp:{taken}:interface=127.0.0.1\"\n"
            )
        });
        app.reload_by_signal("failed");
    }
    app.edit_config(|_| {
        original.replace(r#"allow_transfer = ["127.0.0.1"]"#, "allow_transfer = []")
    });
    app.reload_by_signal("ok");
    send_frame(&mut s, &query(2, "example.test.", RecordType::AXFR, None));
    let (refused, _) = read_frame(&mut s);
    assert_eq!(
        (refused.metadata.id, refused.metadata.response_code),
        (2, ResponseCode::Refused),
        "the reload that committed revoked the transfer on this connection too"
    );
    drop(held);
}

#[test]
fn axfr_goes_whole_to_an_allowed_peer_and_is_refused_and_counted_for_the_others() {
    let port = free_port();
    let app = spawn_dns_app(
        dns_service("dns", port)
            .tcp()
            .zone("example.test.zone", ZONE)
            .key("allow_transfer", r#"["127.0.0.1", "198.51.100.0/24"]"#),
    );

    let out = dig(port, &["example.test", "AXFR"]);
    let records = dig_records(&out);
    assert_eq!(records.len(), 6, "SOA, NS, 3 more, SOA\n{out}");
    assert_eq!(records[0], ("example.test.".into(), "SOA".into()), "{out}");
    assert_eq!(records[5], ("example.test.".into(), "SOA".into()), "{out}");
    let mut middle: Vec<String> = records[1..5]
        .iter()
        .map(|(n, t)| format!("{n} {t}"))
        .collect();
    middle.sort();
    assert_eq!(
        middle,
        [
            "example.test. NS",
            "mail.example.test. MX",
            "ns1.example.test. A",
            "www.example.test. A"
        ]
    );
    assert_eventually!(transfers(&app, "complete") == Some(1.0), "counted");

    // From 127.0.0.2, which is not listed: REFUSED, counted, and nothing of the zone.
    let refused = Command::new("dig")
        .args(["@127.0.0.1", "-b", "127.0.0.2", "-p", &port.to_string()])
        .args(["+time=3", "+tries=1", "example.test", "AXFR"])
        .output()
        .unwrap();
    let refused = String::from_utf8_lossy(&refused.stdout);
    assert!(refused.contains("Transfer failed"), "{refused}");
    assert!(!refused.contains("192.0.2.10"), "{refused}");
    assert_eventually!(
        transfers(&app, "refused") == Some(1.0),
        "the refusal counted"
    );
    assert_eq!(
        app.metric(r#"weft_dns_responses_total{rcode="REFUSED",service="dns"}"#),
        Some(1.0)
    );
    assert_eventually!(
        app.log()
            .lines()
            .any(|l| l.contains("a zone transfer not allowed") && l.contains("127.0.0.2")),
        "the refusal logged, naming the peer\n{}",
        app.log()
    );
    // Other clients keep getting answers.
    assert_eq!(
        dig(port, &["www.example.test", "A", "+short"]).trim(),
        "192.0.2.10"
    );

    // A second client library: AXFR over UDP is not defined (RFC 5936 section 4.2): NOTIMP.
    let udp = udp_exchange(port, &query(7, "example.test.", RecordType::AXFR, None));
    assert_eq!(udp.metadata.response_code, ResponseCode::NotImp);
    assert!(udp.answers.is_empty());
    // A name that is not a zone's origin: NOTAUTH.
    let mut s = tcp_connect(port);
    send_frame(
        &mut s,
        &query(8, "www.example.test.", RecordType::AXFR, None),
    );
    assert_eq!(
        read_frame(&mut s).0.metadata.response_code,
        ResponseCode::NotAuth
    );
    // The zone over TCP, then an ordinary query on the same connection.
    send_frame(&mut s, &query(9, "example.test.", RecordType::AXFR, None));
    let messages = transfer(&mut s);
    assert!(
        messages
            .iter()
            .all(|m| m.metadata.id == 9 && m.metadata.authoritative)
    );
    send_frame(&mut s, &query(10, "www.example.test.", RecordType::A, None));
    let (answer, _) = read_frame(&mut s);
    assert_eq!((answer.metadata.id, answer.answers.len()), (10, 1));
    // A NOTIFY to a primary-only server: REFUSED (as NSD answers one it takes no NOTIFY
    // for), counted.
    let out = dig(port, &["+opcode=notify", "example.test", "SOA"]);
    assert!(out.contains("opcode: NOTIFY, status: REFUSED"), "{out}");
    let mut notify = Message::new(11, MessageType::Query, OpCode::Notify);
    notify.queries.push(Query::query(
        Name::from_ascii("example.test.").unwrap(),
        RecordType::SOA,
    ));
    let refused = udp_exchange(port, &notify.to_vec().unwrap());
    assert_eq!(
        (refused.metadata.op_code, refused.metadata.response_code),
        (OpCode::Notify, ResponseCode::Refused)
    );
    assert_eventually!(
        app.metric(r#"weft_dns_notifies_total{result="received_refused",service="dns"}"#)
            == Some(2.0),
        "both NOTIFYs counted"
    );
    assert_eq!(transfers(&app, "udp"), Some(1.0));
    assert_eq!(transfers(&app, "not_authoritative"), Some(1.0));
    assert_eq!(transfers(&app, "complete"), Some(2.0));
}

#[test]
fn ixfr_gets_the_soa_when_current_and_the_whole_zone_when_behind() {
    let port = free_port();
    let app = spawn_dns_app(
        dns_service("dns", port)
            .tcp()
            .zone("example.test.zone", ZONE)
            .key("allow_transfer", r#""127.0.0.1""#),
    );
    // dig's IXFR=N puts serial N in the query's authority section.
    let current = dig_records(&dig(port, &["example.test", "IXFR=1"]));
    assert_eq!(
        current,
        [("example.test.".into(), "SOA".into())],
        "up to date: the SOA alone"
    );
    let behind = dig(port, &["example.test", "IXFR=0"]);
    let records = dig_records(&behind);
    assert_eq!(records.len(), 6, "the whole zone, as AXFR\n{behind}");
    assert_eq!((&*records[0].1, &*records[5].1), ("SOA", "SOA"));

    // Over UDP: the SOA alone, with TC when the client is behind (RFC 1995 section 2).
    let soa = udp_exchange(port, &query(3, "example.test.", RecordType::IXFR, Some(0)));
    assert!(soa.metadata.truncation, "{soa:?}");
    assert_eq!(soa.answers.len(), 1);
    let soa = udp_exchange(port, &query(4, "example.test.", RecordType::IXFR, Some(1)));
    assert!(!soa.metadata.truncation);
    assert_eq!(soa.answers[0].record_type(), RecordType::SOA);
    assert_eventually!(transfers(&app, "up_to_date") == Some(2.0), "counted");
    assert_eq!(transfers(&app, "truncated"), Some(1.0));
    assert_eq!(transfers(&app, "complete"), Some(1.0));
}

/// A zone of `n` A records besides its SOA and NS, with `serial`.
fn big_zone(n: usize, serial: u32) -> String {
    let mut text = format!(
        "$ORIGIN big.test.\n$TTL 300\n@ SOA ns hostmaster {serial} 1h 15m 1w 5m\n@ NS ns\n"
    );
    for i in 0..n {
        writeln!(
            text,
            "host{i} A 10.{}.{}.{}",
            i >> 16,
            (i >> 8) & 255,
            i & 255
        )
        .unwrap();
    }
    text
}

#[test]
fn a_20000_record_zone_goes_over_many_messages_to_a_reader_that_pauses_while_others_get_answers() {
    let port = free_port();
    let app = spawn_dns_app(
        dns_service("dns", port)
            .tcp()
            .zone("big.test.zone", big_zone(20_000, 7))
            .key("allow_transfer", r#"["127.0.0.0/8"]"#),
    );
    let mut slow = tcp_connect(port);
    send_frame(&mut slow, &query(1, "big.test.", RecordType::AXFR, None));
    let (first, _) = read_frame(&mut slow);
    assert_eq!(first.answers[0].record_type(), RecordType::SOA);
    // The reader pauses: the server waits on it and serves everyone else meanwhile.
    for _ in 0..3 {
        assert_eq!(
            dig(port, &["host19999.big.test", "A", "+short"]).trim(),
            "10.0.78.31"
        );
    }
    let mut messages = vec![first];
    messages.extend(transfer_rest(&mut slow, 1));
    assert!(messages.len() > 10, "{} messages", messages.len());
    let records: Vec<&Record> = messages.iter().flat_map(|m| &m.answers).collect();
    assert_eq!(records.len(), 20_000 + 3, "every record, the SOA twice");
    assert_eq!(records.last().unwrap().record_type(), RecordType::SOA);

    // dig agrees, and says how many messages.
    let out = dig(port, &["big.test", "AXFR"]);
    let size = out
        .lines()
        .find(|l| l.starts_with(";; XFR size:"))
        .unwrap_or_else(|| panic!("{}", &out[out.len().saturating_sub(500)..]));
    assert!(size.contains("20003 records"), "{size}");
    assert_eventually!(transfers(&app, "complete") == Some(2.0), "both counted");
}

/// How many 2 KB records make a transfer larger than what a loopback connection's
/// buffers take in: the sender's kernel buffer can grow to `tcp_wmem`'s maximum (4 MiB
/// by default; the receiver's is kept small by the test), and weft buffers a little
/// more. At least 5,000 (10 MB).
fn wide_zone_records() -> usize {
    let wmem_max = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|t| t.split_whitespace().nth(2)?.parse::<usize>().ok())
        .unwrap_or(4 << 20);
    ((wmem_max + (6 << 20)) / 2048).max(5_000)
}

/// A zone of `n` TXT records of 2 KB each (see [`wide_zone_records`]).
fn wide_zone(n: usize) -> String {
    let mut zone =
        String::from("$ORIGIN big.test.\n$TTL 300\n@ SOA ns hostmaster 7 1h 15m 1w 5m\n@ NS ns\n");
    let text = format!("\"{}\" ", "x".repeat(250)).repeat(8);
    for i in 0..n {
        writeln!(zone, "t{i} TXT {text}").unwrap();
    }
    zone
}

#[test]
fn sigterm_lets_a_zone_transfer_under_way_go_out_whole_before_exiting() {
    let n = wide_zone_records();
    let port = free_port();
    let mut app = spawn_dns_app(
        dns_service("dns", port)
            .tcp()
            .zone("big.test.zone", wide_zone(n))
            .key("allow_transfer", r#"["127.0.0.0/8"]"#),
    );
    // A secondary with a small receive buffer that stops reading after the first
    // message: the transfer waits on it, well short of its end.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    let mut slow: TcpStream = socket.into();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    send_frame(&mut slow, &query(1, "big.test.", RecordType::AXFR, None));
    let (first, _) = read_frame(&mut slow);
    assert_eq!(first.answers[0].record_type(), RecordType::SOA);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        transfers(&app, "complete").unwrap_or(0.0),
        0.0,
        "the transfer is under way"
    );

    app.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    // The rest comes, to the closing SOA, and then the connection closes.
    let mut messages = vec![first];
    messages.extend(transfer_rest(&mut slow, 1));
    let records: Vec<&Record> = messages.iter().flat_map(|m| &m.answers).collect();
    assert_eq!(records.len(), n + 3, "every record, the SOA twice");
    assert_eq!(
        slow.read(&mut [0; 16]).unwrap(),
        0,
        "closed after the transfer"
    );
    // Timed from the transfer's end, not the signal: reading and decoding the zone here
    // takes what this machine gives it. The drain deadline is far longer.
    app.exits_cleanly_within(std::time::Instant::now(), Duration::from_secs(5));
}

#[test]
fn a_secondary_that_half_closes_after_asking_gets_the_whole_zone() {
    let n = wide_zone_records();
    let port = free_port();
    let app = spawn_dns_app(
        dns_service("dns", port)
            .tcp()
            .zone("big.test.zone", wide_zone(n))
            .key("allow_transfer", r#"["127.0.0.0/8"]"#),
    );
    let mut s = tcp_connect(port);
    send_frame(&mut s, &query(1, "big.test.", RecordType::AXFR, None));
    // Done asking (RFC 7766 §6.2.4): the answer is still owed.
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let messages = transfer(&mut s);
    let records: Vec<&Record> = messages.iter().flat_map(|m| &m.answers).collect();
    assert_eq!(records.len(), n + 3, "every record, the SOA twice");
    assert_eq!(
        s.read(&mut [0; 16]).unwrap(),
        0,
        "closed after the transfer"
    );
    assert_eventually!(transfers(&app, "complete") == Some(1.0), "counted whole");
}

/// A DNS server's side of NOTIFY in the test: a UDP socket.
fn next_notify(socket: &UdpSocket) -> (Message, SocketAddr) {
    let mut buf = [0; 4096];
    let (n, from) = socket.recv_from(&mut buf).expect("a NOTIFY");
    (Message::from_vec(&buf[..n]).unwrap(), from)
}

fn serial_of(m: &Message) -> u32 {
    match m.answers.first().map(|r| &r.data) {
        Some(RData::SOA(soa)) => soa.serial,
        other => panic!("no SOA in the NOTIFY: {other:?}"),
    }
}

#[test]
fn a_reload_that_changes_a_serial_sends_notify_again_until_acknowledged_and_one_that_does_not_sends_none()
 {
    let secondary = UdpSocket::bind("127.0.0.1:0").unwrap();
    secondary
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let peer = secondary.local_addr().unwrap();
    let port = free_port();
    let app = spawn_dns_app(
        dns_service("dns", port)
            .tcp()
            .zone("example.test.zone", ZONE)
            .key("notify", &format!(r#"["{peer}"]"#)),
    );
    let zone = app.dir.path().join("example.test.zone");

    // The same serial (the file rewritten as it was): nothing is sent.
    std::fs::write(&zone, ZONE).unwrap();
    app.reload_by_signal("ok");
    // Changed under the same serial: nothing is sent either (a secondary asking would
    // find nothing new), but the log says the serial should have been raised.
    std::fs::write(&zone, ZONE.replace("192.0.2.10", "192.0.2.12")).unwrap();
    app.reload_by_signal("ok");
    assert!(
        app.log()
            .contains("the zone changed but its serial did not"),
        "{}",
        app.log()
    );
    // A new serial.
    std::fs::write(
        &zone,
        ZONE.replace("( 1 ", "( 2 ")
            .replace("192.0.2.10", "192.0.2.11"),
    )
    .unwrap();
    app.reload_by_signal("ok");
    let (notify, from) = next_notify(&secondary);
    assert_eq!(
        serial_of(&notify),
        2,
        "the first NOTIFY is for the changed serial"
    );
    assert_eq!(notify.metadata.op_code, OpCode::Notify);
    assert!(notify.metadata.authoritative);
    assert_eq!(notify.queries[0].name().to_ascii(), "example.test.");
    assert_eq!(notify.queries[0].query_type(), RecordType::SOA);
    // Unanswered, it comes again; answered, it stops and is counted.
    let (again, again_from) = next_notify(&secondary);
    assert_eq!((again.metadata.id, again_from), (notify.metadata.id, from));
    let mut ack = Message::new(notify.metadata.id, MessageType::Response, OpCode::Notify);
    ack.queries = notify.queries.clone();
    secondary.send_to(&ack.to_vec().unwrap(), from).unwrap();
    assert_eventually!(
        app.metric(r#"weft_dns_notifies_total{result="acknowledged",service="dns"}"#) == Some(1.0),
        "acknowledged\n{}",
        app.log()
    );
    assert_eq!(
        dig(port, &["www.example.test", "A", "+short"]).trim(),
        "192.0.2.11"
    );
    assert_eq!(
        app.metric(r#"weft_dns_zone_reloads_total{result="unchanged",service="dns"}"#),
        Some(1.0)
    );
    assert_eq!(
        app.metric(r#"weft_dns_zone_reloads_total{result="changed",service="dns"}"#),
        Some(2.0)
    );
    // A serial that went back (2 to 1) is served, and said to be a mistake: every
    // secondary keeps its copy of 2.
    assert!(!app.log().contains("serial went back"));
    std::fs::write(&zone, ZONE.replace("192.0.2.10", "192.0.2.13")).unwrap();
    app.reload_by_signal("ok");
    assert_eventually!(
        app.log().contains("the zone's serial went back"),
        "{}",
        app.log()
    );
}

/// With two reactors, a NOTIFY to each of several peers at once leaves from a port of its
/// own, so each acknowledgement reaches the NOTIFY it answers. (Bound with the reactors'
/// `SO_REUSEPORT`, every NOTIFY port would share the one port the first got, and the kernel
/// would hand each peer's answer to whichever of those sockets its address hashes to.)
#[test]
fn notifies_to_several_peers_from_two_reactors_are_each_acknowledged() {
    const PEERS: usize = 6;
    let secondaries: Vec<UdpSocket> = (0..PEERS)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            s
        })
        .collect();
    let peers: Vec<String> = secondaries
        .iter()
        .map(|s| format!("\"{}\"", s.local_addr().unwrap()))
        .collect();
    let port = free_port();
    let service = dns_service("dns", port)
        .zone("example.test.zone", ZONE)
        .key("notify", &format!("[{}]", peers.join(", ")));
    let app = spawn_app_with(|dir| format!("{}\n[gateway]\nreactors = 2\n", service.toml(dir)));
    std::fs::write(
        app.dir.path().join("example.test.zone"),
        ZONE.replace("( 1 ", "( 2 "),
    )
    .unwrap();
    app.reload_by_signal("ok");
    // Each secondary acknowledges every NOTIFY it gets, for three seconds.
    let acked: Vec<usize> = std::thread::scope(|scope| {
        let threads: Vec<_> = secondaries
            .iter()
            .map(|socket| {
                scope.spawn(move || {
                    let mut seen = std::collections::BTreeSet::new();
                    let until = std::time::Instant::now() + Duration::from_secs(3);
                    let mut buf = [0; 4096];
                    while std::time::Instant::now() < until {
                        let Ok((n, from)) = socket.recv_from(&mut buf) else {
                            continue;
                        };
                        let notify = Message::from_vec(&buf[..n]).unwrap();
                        let mut ack =
                            Message::new(notify.metadata.id, MessageType::Response, OpCode::Notify);
                        ack.queries = notify.queries.clone();
                        socket.send_to(&ack.to_vec().unwrap(), from).unwrap();
                        seen.insert((notify.metadata.id, from));
                    }
                    seen.len()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert!(
        acked.iter().all(|&n| n >= 1),
        "every peer got a NOTIFY: {acked:?}"
    );
    let sent: usize = acked.iter().sum();
    assert_eventually!(
        app.metric(r#"weft_dns_notifies_total{result="acknowledged",service="dns"}"#)
            == Some(sent as f64),
        "each of the {sent} NOTIFYs acknowledged: {:?}\n{}",
        app.metric(r#"weft_dns_notifies_total{result="acknowledged",service="dns"}"#),
        app.log()
    );
    assert!(
        !app.log().contains("does not answer the NOTIFY"),
        "no answer reached another NOTIFY's port\n{}",
        app.log()
    );
}

const OTHER: &str = "$ORIGIN other.test.
$TTL 1h
@       IN SOA ns1 hostmaster ( 1 2h 15m 2w 5m )
        IN NS  ns1
ns1     IN A   192.0.2.53
www     IN A   192.0.2.20
";

#[test]
fn a_zone_edited_to_garbage_keeps_its_old_answers_and_is_named_by_file_and_line_while_another_zone_reloads()
 {
    let port = free_port();
    let app = spawn_dns_app(
        dns_service("dns", port)
            .tcp()
            .zone("example.test.zone", ZONE)
            .zone("other.test.zone", OTHER),
    );
    let broken = app.dir.path().join("example.test.zone");
    std::fs::write(&broken, ZONE.replace("192.0.2.10", "192.0.2.999")).unwrap();
    let other = app.dir.path().join("other.test.zone");
    std::fs::write(&other, OTHER.replace("192.0.2.20", "192.0.2.21")).unwrap();

    app.reload_by_signal("ok");
    assert_eq!(
        dig(port, &["www.example.test", "A", "+short"]).trim(),
        "192.0.2.10",
        "the broken zone keeps serving its old version"
    );
    assert_eq!(
        dig(port, &["www.other.test", "A", "+short", "+tcp"]).trim(),
        "192.0.2.21",
        "the other zone is reloaded"
    );
    let at = format!("{}:6:", broken.display());
    assert!(
        app.log().contains(&at),
        "the log names the file and line\n{}",
        app.log()
    );
    assert_eventually!(
        app.metric(r#"weft_dns_zone_reloads_total{result="failed",service="dns"}"#) == Some(1.0),
        "counted"
    );

    // The reload action says the same in its answer.
    let reply = app.reload_by_post();
    assert_eq!(reply.status, 200, "{reply:?}");
    let answer: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains(&at) && message.contains("keeps serving serial 1"),
        "{message}"
    );

    // `weft check` refuses the file outright.
    let check = crate::support::weft_check([app.config_path()]);
    assert_eq!(check.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&check.stderr).contains(&at),
        "{check:?}"
    );

    // Fixed, it is served new.
    std::fs::write(&broken, ZONE.replace("192.0.2.10", "192.0.2.12")).unwrap();
    app.reload_by_signal("ok");
    assert_eq!(
        dig(port, &["www.example.test", "A", "+short"]).trim(),
        "192.0.2.12"
    );
}

/// A zone file that no longer loads, or one put back as it was, changes nothing the
/// service serves: the reload leaves the service running as it is (its kept answers,
/// cache and listeners), where it used to start it again.
#[test]
fn a_reload_where_only_a_zone_file_broke_or_came_back_as_it_was_leaves_the_service_as_it_is() {
    let port = free_port();
    let app = spawn_dns_app(dns_service("dns", port).zone("example.test.zone", ZONE));
    let file = app.dir.path().join("example.test.zone");
    let message = |app: &App| {
        let reply = app.reload_by_post();
        assert_eq!(reply.status, 200, "{reply:?}");
        let answer: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        answer["message"].as_str().unwrap().to_owned()
    };
    let changed = |message: &str| message.split("; ").any(|p| p.starts_with("changed"));
    std::fs::write(&file, ZONE.replace("192.0.2.10", "192.0.2.999")).unwrap();
    let broke = message(&app);
    assert!(
        !changed(&broke) && broke.contains("keeps serving"),
        "{broke}"
    );
    std::fs::write(&file, ZONE).unwrap();
    let back = message(&app);
    assert!(!changed(&back), "{back}");
    assert_eq!(
        dig(port, &["www.example.test", "A", "+short"]).trim(),
        "192.0.2.10"
    );
}

/// A reload keeps a zone that served and no longer loads; a zone file that never loaded
/// has nothing to keep, so the reload is refused as `weft check` refuses it.
#[test]
fn a_reload_adding_a_zone_file_that_does_not_load_is_refused_and_changes_nothing() {
    let port = free_port();
    let app = spawn_dns_app(dns_service("dns", port).zone("example.test.zone", ZONE));
    let broken = app.dir.path().join("other.test.zone");
    std::fs::write(&broken, OTHER.replace("IN SOA", "IN SOAP")).unwrap();
    let at = format!("{}:", broken.display());

    // A zone file added to the running service.
    let original = std::fs::read_to_string(app.config_path()).unwrap();
    app.edit_config(|text| text.replace("zones = [", &format!("zones = [{broken:?}, ")));
    assert_eq!(
        crate::support::weft_check([app.config_path()])
            .status
            .code(),
        Some(1)
    );
    app.reload_by_signal("failed");
    assert_eq!(
        dig(port, &["www.example.test", "A", "+short"]).trim(),
        "192.0.2.10",
        "the running zone still answers"
    );
    let reply = app.reload_by_post();
    assert_eq!(reply.status, 409, "{reply:?}");
    let answer: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "{}: service \"dns\": {at}",
            app.config_path().display()
        )),
        "the reload is refused, naming the service and the file: {message}"
    );

    // A new service whose only zone does not load: it is not started.
    let second = free_port();
    std::fs::write(app.config_path(), &original).unwrap();
    app.edit_config(|text| {
        format!(
            "{text}\n[[service]]\nname = \"added\"\nkind = \"dns\"\n\
             listen = \"udp:{second}:interface=127.0.0.1\"\nzones = [{broken:?}]\n"
        )
    });
    app.reload_by_signal("failed");
    assert!(
        app.log().contains(&format!("service \"added\": {at}")),
        "{}",
        app.log()
    );
    let probe = std::net::UdpSocket::bind(("127.0.0.1", second));
    assert!(probe.is_ok(), "the added service's port was not taken");
    drop(probe);
    assert_eq!(
        app.metric(r#"weft_dns_zone_reloads_total{result="failed",service="dns"}"#)
            .unwrap_or(0.0),
        0.0,
        "a refused reload counts no zone reload"
    );

    // Fixed, the reload adds it.
    std::fs::write(&broken, OTHER).unwrap();
    app.reload_by_signal("ok");
    assert_eq!(
        dig(second, &["www.other.test", "A", "+short"]).trim(),
        "192.0.2.20"
    );
}

/// A zone file added for an origin whose own file no longer loads (its zone kept in
/// service) is refused, as `weft check` refuses two files of one origin: no reload serves
/// one of them by the order of the files.
#[test]
fn a_reload_adding_a_second_file_for_a_kept_zone_is_refused_and_changes_nothing() {
    let port = free_port();
    let app = spawn_dns_app(dns_service("dns", port).zone("example.test.zone", ZONE));
    let first = app.dir.path().join("example.test.zone");
    std::fs::write(&first, ZONE.replace("192.0.2.10", "192.0.2.999")).unwrap();
    let second = app.dir.path().join("again.zone");
    std::fs::write(&second, ZONE.replace("192.0.2.10", "192.0.2.77")).unwrap();
    // Before the kept zone's file and after it: either order is refused.
    for zones in [
        format!("zones = [{second:?}, {first:?}]"),
        format!("zones = [{first:?}, {second:?}]"),
    ] {
        let original = std::fs::read_to_string(app.config_path()).unwrap();
        app.edit_config(|text| text.replace(&format!("zones = [{first:?}]"), &zones));
        app.reload_by_signal("failed");
        let reply = app.reload_by_post();
        assert_eq!(reply.status, 409, "{reply:?}");
        let answer: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        let message = answer["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!(
                "{}: service \"dns\": zone example.test. is defined twice",
                app.config_path().display()
            )),
            "{message}"
        );
        assert_eq!(
            dig(port, &["www.example.test", "A", "+short"]).trim(),
            "192.0.2.10",
            "the running zone still answers"
        );
        std::fs::write(app.config_path(), original).unwrap();
    }
    assert_eq!(
        app.metric(r#"weft_dns_zone_reloads_total{result="failed",service="dns"}"#)
            .unwrap_or(0.0),
        0.0,
        "a refused reload counts no zone reload"
    );
}

#[test]
fn weft_check_names_a_bad_allow_transfer_or_notify_entry_by_its_key() {
    let dir = tempfile::tempdir().unwrap();
    for (keys, expected) in [
        (
            r#"allow_transfer = ["10.0.0.0/40"]"#,
            r#"service[0].allow_transfer: "10.0.0.0/40" is not an IP address or a CIDR block"#,
        ),
        (
            r#"notify = "secondary.example""#,
            r#"service[0].notify: "secondary.example" is not a peer address"#,
        ),
    ] {
        let config = dir.path().join("weft.toml");
        std::fs::write(
            &config,
            format!(
                "[[service]]\nname = \"dns\"\nkind = \"dns\"\nlisten = \"udp:5353\"\nforward = \"127.0.0.1\"\n{keys}\n"
            ),
        )
        .unwrap();
        let out = crate::support::weft_check([&config]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("weft.toml:6:") && err.contains(expected),
            "{err}"
        );
    }
}

#[test]
fn a_reload_that_fails_after_its_zones_were_read_counts_no_zone_reload() {
    let port = free_port();
    let app = spawn_dns_app(dns_service("dns", port).zone("example.test.zone", ZONE));
    let file = app.dir.path().join("example.test.zone");
    std::fs::write(&file, ZONE.replace("192.0.2.10", "192.0.2.999")).unwrap();
    // A service on a port another process holds: the reload fails at the bind, after the
    // zone files were read.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().port();
    let original = std::fs::read_to_string(app.config_path()).unwrap();
    app.edit_config(|text| {
        format!(
            "{text}\n[[service]]\nname = \"late\"\nkind = \"echo\"\nlisten = \"tcp:{taken}:interface=127.0.0.1\"\n"
        )
    });
    let reply = app.reload_by_post();
    assert_eq!(reply.status, 409, "{reply:?}");
    assert!(reply.body.contains("late"), "{reply:?}");
    let failed = r#"weft_dns_zone_reloads_total{result="failed",service="dns"}"#;
    assert_eq!(
        app.metric(failed).unwrap_or(0.0),
        0.0,
        "a reload that failed counts no zone reload"
    );
    // The broken file is still said to be broken, as not applied.
    let warned = |says: &str| {
        app.log()
            .lines()
            .filter(|l| l.contains("a zone file did not load") && l.contains(says))
            .count()
    };
    assert_eq!(
        warned("the reload failed, so nothing changed"),
        1,
        "{}",
        app.log()
    );
    assert_eq!(warned("keeps serving"), 0, "{}", app.log());
    // Applied, the same broken file is counted and logged once.
    std::fs::write(app.config_path(), original).unwrap();
    let reply = app.reload_by_post();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.body.contains("keeps serving serial 1"), "{reply:?}");
    assert_eq!(app.metric(failed), Some(1.0));
    assert_eq!(warned("keeps serving serial 1"), 1, "{}", app.log());
    assert_eq!(
        dig(port, &["www.example.test", "A", "+short"]).trim(),
        "192.0.2.10"
    );
}
