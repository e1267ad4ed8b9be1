//! EDNS against the real binary: an OPT in every answer to a query with one (zone,
//! forwarded, cached, REFUSED, NXDOMAIN, SERVFAIL, FORMERR, truncated), unknown options
//! ignored, DO copied and passed upstream, NSID, and DNS cookies; with `dig` and with
//! hickory-proto messages over sockets.

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::assert_eventually;
use crate::dns::dig;
use crate::support::{App, dns_service, free_port, spawn_app_with};

/// The zone of these tests: `big` holds about 2.9 KB of TXT, `txt` about 1.1 KB.
pub(crate) fn zone() -> String {
    let mut zone = String::from(
        "$ORIGIN example.test.\n$TTL 1h\n@ IN SOA ns1 hostmaster ( 1 2h 15m 2w 5m )\n\
         @ IN NS ns1\nns1 IN A 192.0.2.53\nwww IN A 192.0.2.10\n",
    );
    for i in 0..40 {
        zone.push_str(&format!("big IN TXT \"{i:02} {}\"\n", "x".repeat(60)));
    }
    for i in 0..15 {
        zone.push_str(&format!("txt IN TXT \"{i:02} {}\"\n", "y".repeat(60)));
    }
    zone
}

/// A query for `name`/`qtype` with an OPT of payload 1232 carrying `options`.
pub(crate) fn query(id: u16, name: &str, qtype: RecordType, options: &[EdnsOption]) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.queries
        .push(Query::query(Name::from_ascii(name).unwrap(), qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    for option in options {
        edns.options_mut().insert(option.clone());
    }
    m.edns = Some(edns);
    m
}

/// Sends `packet` to `port` on 127.0.0.1 over UDP from `socket`; the answer, if one comes
/// within a second.
pub(crate) fn exchange(socket: &UdpSocket, port: u16, packet: &[u8]) -> Option<Message> {
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    socket.send_to(packet, ("127.0.0.1", port)).unwrap();
    let mut buf = [0; 65535];
    let (n, _) = socket.recv_from(&mut buf).ok()?;
    Some(Message::from_vec(&buf[..n]).unwrap())
}

/// `message` sent over UDP from an ephemeral port; its answer.
pub(crate) fn ask(port: u16, message: &Message) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    exchange(&socket, port, &message.to_vec().unwrap()).expect("an answer")
}

/// The COOKIE option's bytes of `message`'s OPT.
pub(crate) fn cookie(message: &Message) -> Option<Vec<u8>> {
    match message.edns.as_ref()?.option(10.into())? {
        EdnsOption::Unknown(10, data) => Some(data.clone()),
        _ => None,
    }
}

pub(crate) fn cookie_option(bytes: &[u8]) -> EdnsOption {
    EdnsOption::Unknown(10, bytes.to_vec())
}

/// An upstream on loopback: answers one A record, except to names under `silent.`;
/// records whether the queries it got had DO set.
fn upstream() -> (SocketAddr, Arc<Mutex<Vec<bool>>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let dos = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0; 4096];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let q = query.queries[0].clone();
            dos.lock()
                .unwrap()
                .push(query.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok));
            if q.name().to_ascii().ends_with("silent.") {
                continue;
            }
            let mut answer = Message::response(query.metadata.id, OpCode::Query);
            answer.metadata.recursion_available = true;
            answer.queries = query.queries.clone();
            answer.answers.push(Record::from_rdata(
                q.name().clone(),
                60,
                RData::A(A::new(198, 51, 100, 80)),
            ));
            let _ = socket.send_to(&answer.to_vec().unwrap(), from);
        }
    });
    (addr, seen)
}

struct Servers {
    app: App,
    /// Zones, NSID and cookies.
    auth: u16,
    /// Forwarding to [`upstream`], 300 ms timeout.
    fwd: u16,
    upstream_do: Arc<Mutex<Vec<bool>>>,
}

fn servers() -> Servers {
    let (auth, fwd) = (free_port(), free_port());
    let (upstream, upstream_do) = upstream();
    let app = spawn_app_with(|dir| {
        let auth = dns_service("auth", auth)
            .tcp()
            .zone("example.test.zone", zone())
            .key("nsid", r#""weft-ns-1""#)
            .cookies();
        let fwd = dns_service("fwd", fwd).forward(upstream).timeout("300ms");
        auth.toml(dir) + &fwd.toml(dir)
    });
    Servers {
        app,
        auth,
        fwd,
        upstream_do,
    }
}

/// The OPT of `answer`: present, our size, version 0, and nothing but our options (NSID,
/// COOKIE, and an Extended DNS Error where the answer refuses or fails).
fn assert_our_opt(answer: &Message, what: &str) {
    let edns = answer
        .edns
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: no OPT in {answer:?}"));
    assert_eq!(edns.max_payload(), 1232, "{what}");
    assert_eq!(edns.version(), 0, "{what}");
    for (code, _) in edns.options().as_ref() {
        assert!(
            matches!(u16::from(*code), 3 | 10 | 15),
            "{what}: option {code:?} is not ours"
        );
    }
}

#[test]
fn every_answer_to_an_edns_query_has_our_opt_and_unknown_options_are_not_echoed() {
    let s = servers();
    let unknown = EdnsOption::Unknown(65_001, b"echo me".to_vec());
    let asked =
        |port, name: &str, qtype| ask(port, &query(9, name, qtype, std::slice::from_ref(&unknown)));

    let zone = asked(s.auth, "www.example.test.", RecordType::A);
    assert_eq!(
        (zone.metadata.response_code, zone.answers.len()),
        (ResponseCode::NoError, 1)
    );
    assert_our_opt(&zone, "zone");
    let nx = asked(s.auth, "nope.example.test.", RecordType::A);
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert_our_opt(&nx, "NXDOMAIN");
    let refused = asked(s.auth, "www.elsewhere.test.", RecordType::A);
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert_our_opt(&refused, "REFUSED");
    let mut chaos = query(9, "version.bind.", RecordType::TXT, &[]);
    chaos.queries[0].set_query_class(DNSClass::CH);
    let refused = ask(s.auth, &chaos);
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert_our_opt(&refused, "REFUSED for a class");
    let big = asked(s.auth, "big.example.test.", RecordType::TXT);
    assert!(big.metadata.truncation && big.answers.is_empty(), "{big:?}");
    assert_our_opt(&big, "truncated");
    let mut two = query(9, "www.example.test.", RecordType::A, &[]);
    two.queries.push(two.queries[0].clone());
    let formerr = ask(s.auth, &two);
    assert_eq!(formerr.metadata.response_code, ResponseCode::FormErr);
    assert_our_opt(&formerr, "FORMERR");

    let forwarded = asked(s.fwd, "www.elsewhere.test.", RecordType::A);
    assert_eq!(forwarded.answers.len(), 1);
    assert_our_opt(&forwarded, "forwarded");
    let cached = asked(s.fwd, "www.elsewhere.test.", RecordType::A);
    assert_eq!(cached.answers.len(), 1);
    assert_our_opt(&cached, "cached");
    assert_eventually!(
        s.app.metric(r#"weft_dns_cache_hits_total{service="fwd"}"#) == Some(1.0),
        "the second came from the cache"
    );
    let servfail = asked(s.fwd, "www.silent.", RecordType::A);
    assert_eq!(servfail.metadata.response_code, ResponseCode::ServFail);
    assert_our_opt(&servfail, "SERVFAIL");

    // And with dig: the OPT pseudosection on a REFUSED answer, DO copied.
    let out = dig(s.auth, &["www.elsewhere.test", "A", "+dnssec"]);
    assert!(out.contains("status: REFUSED"), "{out}");
    assert!(
        out.contains("; EDNS: version: 0, flags: do; udp: 1232"),
        "{out}"
    );
}

#[test]
fn do_is_copied_and_forwarded_queries_carry_it_upstream() {
    let s = servers();
    let mut q = query(3, "do.elsewhere.test.", RecordType::A, &[]);
    q.edns.as_mut().unwrap().set_dnssec_ok(true);
    let answer = ask(s.fwd, &q);
    assert_eq!(answer.answers.len(), 1);
    assert!(answer.edns.as_ref().unwrap().flags().dnssec_ok);
    assert_eq!(*s.upstream_do.lock().unwrap(), [true], "DO went upstream");
    let plain = ask(s.auth, &query(4, "www.example.test.", RecordType::A, &[]));
    assert!(!plain.edns.as_ref().unwrap().flags().dnssec_ok);
}

#[test]
fn dig_nsid_gets_the_server_id_only_when_it_asks() {
    let s = servers();
    let out = dig(s.auth, &["www.example.test", "A", "+nsid"]);
    assert!(
        out.contains("NSID: ") && out.contains("(\"weft-ns-1\")"),
        "{out}"
    );
    let out = dig(s.auth, &["www.example.test", "A"]);
    assert!(!out.contains("NSID"), "{out}");
    // Not configured on the other service: nothing.
    let out = dig(s.fwd, &["www.elsewhere.test", "A", "+nsid"]);
    assert!(
        out.contains("status: NOERROR") && !out.contains("NSID"),
        "{out}"
    );
}

/// The COOKIE line of dig's output: the cookie in hex, and whether dig found it good.
fn dig_cookie(out: &str) -> (String, bool) {
    let line = out
        .lines()
        .find(|l| l.starts_with("; COOKIE: "))
        .unwrap_or_else(|| panic!("no COOKIE in\n{out}"));
    let hex = line["; COOKIE: ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    (hex, line.contains("(good)"))
}

#[test]
fn dig_cookie_learns_a_server_cookie_and_presenting_it_is_valid() {
    let s = servers();
    let out = dig(s.auth, &["www.example.test", "A", "+cookie"]);
    let (first, good) = dig_cookie(&out);
    assert!(good, "{out}");
    assert_eq!(
        first.len(),
        48,
        "client cookie and a 16-byte server cookie: {out}"
    );
    let out = dig(
        s.auth,
        &["www.example.test", "A", &format!("+cookie={first}")],
    );
    let (second, good) = dig_cookie(&out);
    assert!(good && out.contains("status: NOERROR"), "{out}");
    assert_eq!(first[..16], second[..16], "the same client cookie");
    let metric = |result: &str| {
        s.app.metric(&format!(
            r#"weft_dns_cookies_total{{result="{result}",service="auth"}}"#
        ))
    };
    assert_eventually!(
        metric("client") == Some(1.0) && metric("valid") == Some(1.0),
        "one learned, one presented back and valid\n{}",
        s.app.curl("/metrics").unwrap_or_default()
    );

    // With hickory: a server cookie from another client's address, or altered, is not
    // valid, but the answer is normal and carries a fresh one (RFC 7873 section 5.2.4).
    let client = [0x11; 8];
    let learned = cookie(&ask(
        s.auth,
        &query(
            5,
            "www.example.test.",
            RecordType::A,
            &[cookie_option(&client)],
        ),
    ))
    .unwrap();
    assert_eq!((learned.len(), &learned[..8]), (24, &client[..]));
    let mut forged = learned.clone();
    forged[23] ^= 0xff;
    let answer = ask(
        s.auth,
        &query(
            6,
            "www.example.test.",
            RecordType::A,
            &[cookie_option(&forged)],
        ),
    );
    assert_eq!(
        (answer.metadata.response_code, answer.answers.len()),
        (ResponseCode::NoError, 1)
    );
    assert_ne!(cookie(&answer).unwrap(), forged);
    assert_eventually!(metric("invalid") == Some(1.0), "the forged cookie counted");

    // RFC 7873 §5.4: a COOKIE option and no question asks for a server cookie alone,
    // and gets one with NOERROR.
    let mut only = query(
        7,
        "www.example.test.",
        RecordType::A,
        &[cookie_option(&client)],
    );
    only.queries.clear();
    let answer = ask(s.auth, &only);
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.queries.is_empty() && answer.answers.is_empty());
    let given = cookie(&answer).expect("a server cookie");
    assert_eq!((given.len(), &given[..8]), (24, &client[..]));
}

#[test]
fn a_malformed_cookie_gets_formerr_with_an_opt() {
    let s = servers();
    for len in [5, 12, 41] {
        let answer = ask(
            s.auth,
            &query(
                8,
                "www.example.test.",
                RecordType::A,
                &[cookie_option(&vec![1; len])],
            ),
        );
        assert_eq!(
            answer.metadata.response_code,
            ResponseCode::FormErr,
            "{len} bytes"
        );
        assert_eq!(answer.metadata.id, 8);
        assert_our_opt(&answer, "FORMERR");
        assert_eq!(cookie(&answer), None);
    }
    assert_eventually!(
        s.app
            .metric(r#"weft_dns_responses_total{rcode="FORMERR",service="auth"}"#)
            == Some(3.0),
        "counted"
    );
    // Cookies are read only where they are on: elsewhere the option is ignored.
    let answer = ask(
        s.fwd,
        &query(
            8,
            "www.elsewhere.test.",
            RecordType::A,
            &[cookie_option(&[1; 12])],
        ),
    );
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(cookie(&answer), None);
}

#[test]
fn check_and_run_refuse_bad_nsid_cookies_and_rate_limit_values_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let dns = |keys: &str| {
        format!(
            "[[service]]\nname = \"dns\"\nkind = \"dns\"\nlisten = \"udp:{}\"\nforward = \"127.0.0.1\"\n{keys}\n",
            free_port()
        )
    };
    crate::check::both_refuse(
        dir.path(),
        &dns(&format!("nsid = \"{}\"", "n".repeat(129))),
        &["weft.toml:6:8: service[0].nsid: must be 1 to 128 bytes, got 129"],
    );
    crate::check::both_refuse(
        dir.path(),
        &dns("rate_limit = { slip = 11 }"),
        &["service[0].rate_limit.slip: must be between 0 and 10, got 11"],
    );
    crate::check::both_refuse(
        dir.path(),
        &dns("rate_limit = { responses_per_second = 0 }"),
        &["service[0].rate_limit.responses_per_second: must be between 1 and 1000000"],
    );
    crate::check::both_refuse(dir.path(), &dns("cookies = 1"), &["service[0].cookies"]);
}
