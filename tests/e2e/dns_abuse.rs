//! Abuse resistance against the real binary: a UDP flood from one /24 is rate limited
//! (dropped, every second one slipped truncated) and counted while another prefix, TCP
//! and a client with a valid server cookie keep their answers; the amplification of a
//! large TXT flood with and without the limit; the per-peer TCP connection cap.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::EdnsOption;
use socket2::{Domain, Socket, Type};

use crate::assert_eventually;
use crate::dns::dig;
use crate::dns_edns::{cookie, cookie_option, exchange, query, zone};
use crate::support::{DnsService, dns_service, free_port, spawn_app_with, spawn_dns_app};

/// What a flood brought back.
#[derive(Debug, Default)]
struct Flood {
    sent: usize,
    bytes_out: usize,
    bytes_in: usize,
    /// Answers with records.
    full: usize,
    /// Answers truncated, without records.
    truncated: usize,
    received: usize,
    /// The last BADCOOKIE answer.
    badcookie: Option<Message>,
}

/// Sends `packet` `n` times from `socket` to `port`, in bursts of 20 (so the client's
/// receive buffer holds every answer of a burst), reading what comes back.
fn flood(socket: &UdpSocket, port: u16, packet: &[u8], n: usize) -> Flood {
    let mut out = Flood::default();
    let mut buf = [0; 65535];
    socket
        .set_read_timeout(Some(Duration::from_millis(30)))
        .unwrap();
    while out.sent < n {
        for _ in 0..20.min(n - out.sent) {
            out.bytes_out += socket.send_to(packet, ("127.0.0.1", port)).unwrap();
            out.sent += 1;
        }
        while let Ok((len, _)) = socket.recv_from(&mut buf) {
            let answer = Message::from_vec(&buf[..len]).unwrap();
            out.bytes_in += len;
            out.received += 1;
            if answer.metadata.response_code == ResponseCode::BADCOOKIE {
                out.badcookie = Some(answer);
            } else if answer.metadata.truncation && answer.answers.is_empty() {
                out.truncated += 1;
            } else if !answer.answers.is_empty() {
                out.full += 1;
            }
        }
    }
    out
}

/// A query for www.example.test./A with `options` in its OPT, encoded.
fn www(options: &[EdnsOption]) -> Vec<u8> {
    query(1, "www.example.test.", RecordType::A, options)
        .to_vec()
        .unwrap()
}

fn bound(ip: &str) -> UdpSocket {
    UdpSocket::bind((ip, 0)).expect("all of 127/8 is loopback")
}

/// A dns service named `name` on `port` (UDP and TCP) serving [`zone`].
fn service(name: &str, port: u16) -> DnsService {
    dns_service(name, port)
        .tcp()
        .zone("example.test.zone", zone())
}

#[test]
fn a_flood_from_one_prefix_is_limited_and_slipped_while_other_clients_keep_their_answers() {
    let port = free_port();
    let app = spawn_dns_app(
        service("dns", port)
            .cookies()
            .rate_limit("responses_per_second = 5, burst = 10, slip = 2"),
    );

    // A client learns its server cookie before the flood (one of the prefix's burst).
    let holder = bound("127.0.0.1");
    let learned = exchange(&holder, port, &www(&[cookie_option(&[7; 8])]))
        .and_then(|m| cookie(&m))
        .expect("a server cookie");

    let flooder = bound("127.0.0.1");
    let other = bound("127.0.1.1");
    let started = Instant::now();
    let mut others = 0;
    let mut result = Flood::default();
    for _ in 0..10 {
        let burst = flood(&flooder, port, &www(&[]), 20);
        result.sent += burst.sent;
        result.full += burst.full;
        result.truncated += burst.truncated;
        result.received += burst.received;
        let answer = exchange(&other, port, &www(&[]));
        others += usize::from(answer.is_some_and(|m| m.answers.len() == 1));
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(
        others, 10,
        "another /24 gets every answer (its burst is 10)"
    );
    // Nine responses of the burst were left, and 5 per second come back.
    let allowed = 9 + (5.0 * elapsed).ceil() as usize + 1;
    assert!(
        result.full <= allowed,
        "{result:?} in {elapsed:.2}s: at most {allowed} answered"
    );
    let limited = result.sent - result.full;
    assert!(
        result.truncated.abs_diff(limited / 2) <= 1,
        "every second limited answer slips: {result:?}"
    );
    assert_eq!(
        result.received,
        result.full + result.truncated,
        "the rest dropped"
    );

    // The limited prefix still gets answers: over TCP, and with its valid server cookie.
    let tcp = dig(port, &["www.example.test", "A", "+tcp", "+short"]);
    assert_eq!(tcp.trim(), "192.0.2.10");
    for _ in 0..5 {
        let answer = exchange(&holder, port, &www(&[cookie_option(&learned)]))
            .expect("a client with a valid cookie is not limited");
        assert_eq!(answer.answers.len(), 1);
    }
    // A client cookie alone is slipped as BADCOOKIE with a server cookie, which then works.
    let newcomer = bound("127.0.0.1");
    let badcookie = flood(&newcomer, port, &www(&[cookie_option(&[9; 8])]), 20)
        .badcookie
        .expect("a BADCOOKIE slip");
    assert!(badcookie.answers.is_empty() && !badcookie.metadata.truncation);
    let fresh = cookie(&badcookie).unwrap();
    let answer = exchange(&newcomer, port, &www(&[cookie_option(&fresh)]))
        .expect("answered with the cookie it learned");
    assert_eq!(answer.answers.len(), 1);

    let metric = |action: &str| {
        app.metric(&format!(
            r#"weft_dns_rate_limited_total{{action="{action}",service="dns"}}"#
        ))
        .unwrap_or(0.0) as usize
    };
    assert_eventually!(
        metric("slipped") > result.truncated && metric("dropped") + metric("slipped") >= limited,
        "dropped and slipped answers counted: {result:?}\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
}

#[test]
fn amplification_of_a_large_txt_flood_with_and_without_the_rate_limit() {
    let (open, limited) = (free_port(), free_port());
    let _app = spawn_app_with(|dir| {
        let limited = service("limited", limited).rate_limit("responses_per_second = 10");
        service("open", open).toml(dir) + &limited.toml(dir)
    });
    let txt = query(1, "txt.example.test.", RecordType::TXT, &[])
        .to_vec()
        .unwrap();
    let mut factors = Vec::new();
    for port in [open, limited] {
        let result = flood(&bound("127.0.0.1"), port, &txt, 500);
        let factor = result.bytes_in as f64 / result.bytes_out as f64;
        eprintln!(
            "port {port}: {} queries, {} bytes out, {} answers, {} bytes back: {factor:.2}x",
            result.sent, result.bytes_out, result.received, result.bytes_in
        );
        factors.push(factor);
    }
    assert!(factors[0] > 15.0, "an open server amplifies: {factors:?}");
    assert!(factors[1] < 2.0, "the limited one barely does: {factors:?}");
}

/// Sends one framed query over `stream` and reads the answer, if the server answers.
fn tcp_query(stream: &mut TcpStream) -> Option<Message> {
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let packet = query(2, "www.example.test.", RecordType::A, &[])
        .to_vec()
        .unwrap();
    let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&packet);
    stream.write_all(&framed).ok()?;
    let mut len = [0; 2];
    stream.read_exact(&mut len).ok()?;
    let mut answer = vec![0; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut answer).ok()?;
    Message::from_vec(&answer).ok()
}

#[test]
fn dns_tcp_connections_per_peer_are_capped_and_counted() {
    let port = free_port();
    let app = spawn_dns_app(service("dns", port).key("max_connections_per_peer", "2"));
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(server).unwrap())
        .collect();
    for stream in &mut held {
        assert!(tcp_query(stream).is_some());
    }
    let mut third = TcpStream::connect(server).unwrap();
    assert!(tcp_query(&mut third).is_none(), "the third is refused");
    assert_eventually!(
        app.metric(r#"weft_refused_total{reason="limit_peer",service="dns"}"#) == Some(1.0),
        "the refusal is counted\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    // Another peer is not affected.
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 1, 1], 0)).into())
        .unwrap();
    socket.connect(&server.into()).unwrap();
    let mut elsewhere: TcpStream = socket.into();
    assert!(tcp_query(&mut elsewhere).is_some());
    drop(held.pop());
    assert_eventually!(
        tcp_query(&mut TcpStream::connect(server).unwrap()).is_some(),
        "a slot frees when a connection closes"
    );
}

#[test]
fn pipelined_tcp_queries_for_large_answers_wait_for_the_client_to_read() {
    // 800 TXT records of 60 bytes: an answer of about 58 KB per 35-byte question.
    let mut text = zone();
    for i in 0..800 {
        text.push_str(&format!("huge IN TXT \"{i:03} {}\"\n", "z".repeat(56)));
    }
    let port = free_port();
    let app = spawn_dns_app(
        dns_service("dns", port)
            .tcp()
            .zone("example.test.zone", text),
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let asked = 1000u16;
    let mut questions = Vec::new();
    for id in 0..asked {
        let packet = query(id, "huge.example.test.", RecordType::TXT, &[])
            .to_vec()
            .unwrap();
        questions.extend_from_slice(&(packet.len() as u16).to_be_bytes());
        questions.extend_from_slice(&packet);
    }
    let before = app.rss_kib();
    stream.write_all(&questions).unwrap();
    // Answered all at once, the questions would hold about 58 MB of answers for a
    // client that is not reading; they wait for it instead.
    let mut grown = 0;
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        grown = grown.max(app.rss_kib().saturating_sub(before));
    }
    assert!(grown < 24 * 1024, "{grown} KiB held for one connection");
    // Nothing is lost: every question gets its whole answer, in order.
    for id in 0..asked {
        let mut len = [0; 2];
        stream.read_exact(&mut len).unwrap();
        let mut answer = vec![0; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut answer).unwrap();
        // The header says it all: the id, no TC, every record (decoding 800 records a
        // thousand times would be this test's whole time).
        assert_eq!(u16::from_be_bytes([answer[0], answer[1]]), id);
        assert_eq!(answer[2] & 0x02, 0, "answer {id} truncated");
        assert_eq!(
            u16::from_be_bytes([answer[6], answer[7]]),
            800,
            "answer {id}"
        );
        if id + 1 == asked {
            assert_eq!(Message::from_vec(&answer).unwrap().answers.len(), 800);
        }
    }
}

#[test]
fn a_question_trickled_a_byte_at_a_time_is_cut_off_at_the_idle_timeout() {
    let port = free_port();
    let app = spawn_dns_app(service("dns", port).key("idle_timeout", "\"1s\""));
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let question = www(&[]);
    let mut framed = (question.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&question);
    // A byte every 400 ms: always in time for the idle timeout, never a whole question.
    let started = Instant::now();
    let mut sent = 0;
    for byte in &framed {
        if stream.write_all(std::slice::from_ref(byte)).is_err() {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(400));
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    assert!(sent < framed.len(), "the whole question went in");
    let mut rest = Vec::new();
    let closed = stream.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the trickle went on for {:?} ({closed:?})",
        started.elapsed()
    );
    assert_eventually!(
        app.metric(r#"weft_errors_total{kind="bad_frame",service="dns"}"#) >= Some(1.0),
        "the cut is counted\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
}
