//! Forwarding that is safe and fast, against the real binary: random source ports and
//! ids per upstream query, spoofed answers dropped and counted, truncated answers asked
//! again over one kept TCP connection, sequential upstream selection, TTL bounds,
//! negative caching and serve-stale. Upstreams are std sockets on threads; clients are
//! `dig` and hickory messages over std sockets.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::assert_eventually;
use crate::dns::dig;
use crate::support::{App, DnsService, dns_service, free_port, spawn_dns_app};

/// What a test upstream saw and how it behaves, shared with its threads.
#[derive(Default)]
struct Upstream {
    /// The source port and id of each UDP query, in order.
    udp: Mutex<Vec<(u16, u16)>>,
    /// TCP connections accepted, and queries over them.
    tcp_connections: AtomicUsize,
    tcp_queries: AtomicUsize,
    /// Stops answering (still counting) while set.
    silent: AtomicBool,
}

impl Upstream {
    fn udp_queries(&self) -> usize {
        self.udp.lock().unwrap().len()
    }
}

/// The answer to `query`: NXDOMAIN with an SOA (TTL 600, MINIMUM 120) for names starting
/// with `gone`; otherwise one A record, TTL 5 for names starting with `short`, 100000
/// for `long`, 1 for `brief`, else 60; for names starting with `poison`, records besides
/// that answer nothing asked ([`poison`]).
fn answer(query: &Message) -> Message {
    let mut answer = Message::response(query.metadata.id, OpCode::Query);
    answer.metadata.recursion_available = true;
    answer.queries = query.queries.clone();
    let Some(q) = query.queries.first() else {
        return answer;
    };
    let name = q.name().to_ascii();
    if name.starts_with("gone") {
        nxdomain(&mut answer, "elsewhere.test.");
        return answer;
    }
    let ttl = match name.split('.').next().unwrap_or("") {
        n if n.starts_with("short") => 5,
        n if n.starts_with("long") => 100_000,
        n if n.starts_with("brief") => 1,
        _ => 60,
    };
    answer.answers.push(Record::from_rdata(
        q.name().clone(),
        ttl,
        RData::A(A::new(198, 51, 100, 80)),
    ));
    if name.starts_with("poison") {
        poison(&mut answer);
    }
    if name.starts_with("into") {
        // A CNAME into the service's own zone, with the upstream's idea of the target.
        let target = Name::from_ascii("www.example.test.").unwrap();
        answer.answers[0] = Record::from_rdata(
            q.name().clone(),
            60,
            RData::CNAME(hickory_proto::rr::rdata::CNAME(target.clone())),
        );
        if name.starts_with("intonx") {
            // The upstream says the target does not exist, with a zone's SOA above it
            // (so the answer is cached for its MINIMUM).
            nxdomain(&mut answer, "test.");
        } else {
            answer.answers.push(Record::from_rdata(
                target,
                60,
                RData::A(A::new(203, 0, 113, 66)),
            ));
        }
    }
    answer
}

/// Makes `answer` NXDOMAIN with the SOA of `zone` (TTL 600, MINIMUM 120).
fn nxdomain(answer: &mut Message, zone: &str) {
    answer.metadata.response_code = ResponseCode::NXDomain;
    let soa = SOA::new(Name::root(), Name::root(), 1, 2, 3, 4, 120);
    answer.authorities.push(Record::from_rdata(
        Name::from_ascii(zone).unwrap(),
        600,
        RData::SOA(soa),
    ));
}

/// What a poisoning upstream adds to an answer: an address for another name, one for a
/// name of the service's own zone `example.test`, a delegation of that zone and of
/// `bank.test` to its own server, and that server's address.
fn poison(answer: &mut Message) {
    let name = |s: &str| Name::from_ascii(s).unwrap();
    let a = |owner: &str| Record::from_rdata(name(owner), 86400, RData::A(A::new(203, 0, 113, 66)));
    let ns = |owner: &str| {
        Record::from_rdata(
            name(owner),
            86400,
            RData::NS(hickory_proto::rr::rdata::NS(name("ns.attacker.test."))),
        )
    };
    answer.answers.push(a("www.bank.test."));
    answer.answers.push(a("www.example.test."));
    answer.authorities.push(ns("example.test."));
    answer.authorities.push(ns("bank.test."));
    answer.additionals.push(a("ns.attacker.test."));
}

/// A DNS server on one loopback port (UDP, and TCP on the same port) answering with
/// [`answer`]; over UDP with the header and question only and TC set when `truncate`,
/// never for names starting with `hang`, 200 ms late for names starting with `slow` and
/// 2 s late for those starting with `late`.
/// Over TCP each connection takes any number of framed queries, and answers those for
/// names starting with `late` 2 s late too.
fn upstream(truncate: bool) -> (SocketAddr, Arc<Upstream>) {
    let (udp, tcp) = loop {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        if let Ok(udp) = UdpSocket::bind(tcp.local_addr().unwrap()) {
            break (udp, tcp);
        }
    };
    let addr = udp.local_addr().unwrap();
    let state = Arc::new(Upstream::default());
    let seen = state.clone();
    std::thread::spawn(move || {
        let mut buf = [0; 4096];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            seen.udp
                .lock()
                .unwrap()
                .push((from.port(), query.metadata.id));
            let name = query
                .queries
                .first()
                .map(|q| q.name().to_ascii())
                .unwrap_or_default();
            if seen.silent.load(Ordering::SeqCst) || name.starts_with("hang") {
                continue;
            }
            let mut reply = answer(&query);
            if truncate {
                reply.answers.clear();
                reply.authorities.clear();
                reply.metadata.truncation = true;
            }
            let reply = reply.to_vec().unwrap();
            let delay = match &name {
                n if n.starts_with("slow") => Some(Duration::from_millis(200)),
                n if n.starts_with("late") => Some(Duration::from_secs(2)),
                _ => None,
            };
            if let Some(delay) = delay {
                let udp = udp.try_clone().unwrap();
                std::thread::spawn(move || {
                    std::thread::sleep(delay);
                    let _ = udp.send_to(&reply, from);
                });
                continue;
            }
            let _ = udp.send_to(&reply, from);
        }
    });
    let seen = state.clone();
    std::thread::spawn(move || {
        for stream in tcp.incoming() {
            let Ok(mut stream) = stream else { continue };
            seen.tcp_connections.fetch_add(1, Ordering::SeqCst);
            let seen = seen.clone();
            std::thread::spawn(move || {
                loop {
                    let mut len = [0; 2];
                    if stream.read_exact(&mut len).is_err() {
                        return;
                    }
                    let mut body = vec![0; usize::from(u16::from_be_bytes(len))];
                    if stream.read_exact(&mut body).is_err() {
                        return;
                    }
                    let Ok(query) = Message::from_vec(&body) else {
                        return;
                    };
                    seen.tcp_queries.fetch_add(1, Ordering::SeqCst);
                    if query
                        .queries
                        .first()
                        .is_some_and(|q| q.name().to_ascii().starts_with("late"))
                    {
                        std::thread::sleep(Duration::from_secs(2));
                    }
                    let reply = answer(&query).to_vec().unwrap();
                    let _ = stream.write_all(&(reply.len() as u16).to_be_bytes());
                    let _ = stream.write_all(&reply);
                }
            });
        }
    });
    (addr, state)
}

/// A dns service on `port` (UDP and TCP) forwarding to `upstreams`.
fn forwarder(port: u16, upstreams: &[SocketAddr]) -> DnsService {
    let service = dns_service("dns", port).tcp();
    upstreams.iter().copied().fold(service, DnsService::forward)
}

/// Asks `name`/`qtype` over UDP with a hickory message; the answer.
fn ask(port: u16, id: u16, name: &str, qtype: RecordType) -> Message {
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query
        .queries
        .push(Query::query(Name::from_ascii(name).unwrap(), qtype));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket
        .send_to(&query.to_vec().unwrap(), ("127.0.0.1", port))
        .unwrap();
    let mut buf = [0; 4096];
    let n = socket.recv(&mut buf).expect("an answer in time");
    let answer = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(answer.metadata.id, id);
    answer
}

fn addresses(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            _ => None,
        })
        .collect()
}

/// `dig +noall +answer`: the TTL of its first answer record.
fn dig_ttl(port: u16, name: &str) -> u32 {
    let out = dig(port, &[name, "A", "+noall", "+answer"]);
    let line = out
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no answer\n{out}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn upstream_queries_leave_from_random_ports_with_random_ids() {
    let (up, seen) = upstream(false);
    let port = free_port();
    // Above the kernel's ephemeral ports (to 60999): weft draws them, not the system.
    let app = spawn_dns_app(forwarder(port, &[up]).key("forward_ports", "\"61000-65535\""));
    let queries = 400;
    for i in 0..queries {
        let r = ask(port, i, &format!("n{i}.elsewhere.test."), RecordType::A);
        assert_eq!(addresses(&r), ["198.51.100.80"]);
    }
    assert!(
        dig(port, &["dig.elsewhere.test", "A"]).contains("198.51.100.80"),
        "dig gets forwarded answers too"
    );
    let udp = seen.udp.lock().unwrap();
    assert_eq!(udp.len(), usize::from(queries) + 1);
    let ports: HashSet<u16> = udp.iter().map(|(p, _)| *p).collect();
    let ids: HashSet<u16> = udp.iter().map(|(_, id)| *id).collect();
    // 16 ports take queries at once, each retired after 16: even if the last 16 stopped
    // one short of it (240 queries), the other 161 retired at least 10 of them.
    assert!(
        ports.len() >= 26,
        "{} distinct source ports for {} queries: {ports:?}",
        ports.len(),
        udp.len()
    );
    assert!(ids.len() >= 390, "{} distinct ids", ids.len());
    assert!(
        ports.iter().all(|p| (61_000..=65_535).contains(p)),
        "every port from forward_ports, none from the kernel's own range: {ports:?}"
    );
    // The ports are the service's own client sockets, not listeners: the log announces the
    // service's UDP and TCP listeners on its port, and so do the live feed and history.
    let log = app.log();
    let announced: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" listening ") && l.contains("service=dns"))
        .collect();
    let own = format!("local=127.0.0.1:{port}");
    assert!(
        announced.len() == 2 && announced.iter().all(|l| l.ends_with(&own)),
        "{announced:#?}"
    );
    // History commits about once a second.
    let started = || -> usize {
        let events: serde_json::Value =
            serde_json::from_str(&app.curl("/api/events?limit=1000").unwrap_or_default())
                .unwrap_or_default();
        events.as_array().map_or(0, |events| {
            events
                .iter()
                .filter(|e| e["type"] == "listener_started" && e["data"]["service"] == "dns")
                .count()
        })
    };
    assert_eventually!(started() == 2, "{} listener_started events", started());
    // A port retired after its share closes as done with, not as a service that stopped
    // (an alert on `service_stopped` would fire on every forwarded question otherwise).
    let closed = |reason: &str| {
        app.metric(&format!(
            r#"weft_connections_closed_total{{reason="{reason}",service="dns",transport="udp"}}"#
        ))
        .unwrap_or(0.0)
    };
    assert_eventually!(
        closed("done") >= 10.0,
        "retired ports closed: {}",
        closed("done")
    );
    assert_eq!(closed("service_stopped"), 0.0);
}

#[test]
fn spoofed_answers_are_dropped_and_counted_and_the_real_answer_gets_through() {
    // Before the real answer, the upstream's address sends one with a wrong id, one for
    // another question, and the right answer to the port the previous query left from;
    // a second socket sends the right answer from another port.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
    let up = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0; 4096];
        let mut previous: Option<SocketAddr> = None;
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let real = answer(&query);
            let mut spoof = real.clone();
            spoof.answers[0].data = RData::A(A::new(6, 6, 6, 6));
            let mut wrong_id = spoof.clone();
            wrong_id.metadata.id = query.metadata.id.wrapping_add(1);
            let mut wrong_question = spoof.clone();
            wrong_question.queries[0] =
                Query::query(Name::from_ascii("evil.test.").unwrap(), RecordType::A);
            for m in [&wrong_id, &wrong_question] {
                let _ = socket.send_to(&m.to_vec().unwrap(), from);
            }
            let _ = other.send_to(&spoof.to_vec().unwrap(), from);
            if let Some(p) = previous.filter(|p| *p != from) {
                let _ = socket.send_to(&spoof.to_vec().unwrap(), p);
            }
            previous = Some(from);
            std::thread::sleep(Duration::from_millis(20));
            let _ = socket.send_to(&real.to_vec().unwrap(), from);
        }
    });
    let port = free_port();
    let app = spawn_dns_app(forwarder(port, &[up]));
    for i in 0..10 {
        let r = ask(port, i, &format!("s{i}.elsewhere.test."), RecordType::A);
        assert_eq!(
            addresses(&r),
            ["198.51.100.80"],
            "never the spoofed address"
        );
    }
    let out = dig(port, &["s0.elsewhere.test", "A", "+short"]);
    assert_eq!(out.trim(), "198.51.100.80");
    let mismatched = |reason: &str| {
        app.metric(&format!(
            r#"weft_dns_upstream_mismatched_total{{reason="{reason}",service="dns"}}"#
        ))
    };
    assert_eventually!(
        mismatched("source") == Some(10.0),
        "{:?}",
        mismatched("source")
    );
    assert_eq!(mismatched("question"), Some(10.0));
    // A wrong id matches no query out, or (rarely) another one's id: then its port differs.
    let id_or_port = mismatched("id").unwrap_or(0.0) + mismatched("port").unwrap_or(0.0);
    assert!(id_or_port >= 10.0, "{id_or_port}");
    assert!(
        mismatched("port") >= Some(1.0),
        "an answer on another of our ports"
    );
}

#[test]
fn truncated_answers_are_asked_again_over_one_kept_tcp_connection() {
    let (up, seen) = upstream(true);
    let port = free_port();
    let app = spawn_dns_app(forwarder(port, &[up]));
    for (i, name) in ["first.elsewhere.test.", "second.elsewhere.test."]
        .iter()
        .enumerate()
    {
        let r = ask(port, i as u16, name, RecordType::A);
        assert_eq!(
            addresses(&r),
            ["198.51.100.80"],
            "the whole answer, from TCP"
        );
        assert!(!r.metadata.truncation);
    }
    assert_eq!(seen.tcp_queries.load(Ordering::SeqCst), 2);
    assert_eq!(
        seen.tcp_connections.load(Ordering::SeqCst),
        1,
        "the second question reused the first's connection"
    );
    assert_eq!(
        app.metric(r#"weft_dns_upstream_tcp_reused_total{service="dns"}"#),
        Some(1.0)
    );
}

#[test]
fn sequential_selection_skips_a_silent_upstream_then_asks_the_live_one_first() {
    let (silent, quiet) = upstream(false);
    quiet.silent.store(true, Ordering::SeqCst);
    let (live, _) = upstream(false);
    let port = free_port();
    let app = spawn_dns_app(forwarder(port, &[silent, live]).timeout("3s"));
    let out = dig(port, &["first.elsewhere.test", "A", "+short"]);
    assert_eq!(out.trim(), "198.51.100.80", "the second upstream answered");
    for i in 0..10 {
        let r = ask(port, i, &format!("q{i}.elsewhere.test."), RecordType::A);
        assert_eq!(addresses(&r), ["198.51.100.80"]);
    }
    assert_eq!(quiet.udp_queries(), 1, "the silent upstream was asked once");
    let series = |name: &str, up: SocketAddr| {
        app.metric(&format!(r#"{name}{{service="dns",upstream="{up}"}}"#))
    };
    assert_eq!(
        series("weft_dns_upstream_try_timeouts_total", silent),
        Some(1.0)
    );
    assert_eq!(series("weft_dns_upstream_queries_total", live), Some(11.0));
    let srtt = series("weft_dns_upstream_srtt_seconds", live).unwrap();
    assert!(srtt > 0.0 && srtt < 0.1, "{srtt}");
    let penalised = series("weft_dns_upstream_srtt_seconds", silent).unwrap();
    assert!(penalised > srtt, "{penalised} vs {srtt}");
    assert!(series("weft_dns_upstream_try_timeout_seconds", live).unwrap() >= 0.1);
}

#[test]
fn parallel_selection_asks_every_upstream_at_once() {
    let (a, seen_a) = upstream(false);
    let (b, seen_b) = upstream(false);
    let port = free_port();
    let _app = spawn_dns_app(forwarder(port, &[a, b]).key("upstream_selection", r#""parallel""#));
    let r = ask(port, 1, "p.elsewhere.test.", RecordType::A);
    assert_eq!(addresses(&r), ["198.51.100.80"]);
    assert_eventually!(
        seen_a.udp_queries() == 1 && seen_b.udp_queries() == 1,
        "both asked"
    );
}

#[test]
fn answered_ttls_are_raised_to_min_ttl_and_lowered_to_max_ttl() {
    let (up, _) = upstream(false);
    let port = free_port();
    let _app = spawn_dns_app(
        forwarder(port, &[up])
            .key("min_ttl", r#""1m""#)
            .key("max_ttl", r#""1h""#),
    );
    assert_eq!(dig_ttl(port, "short.elsewhere.test"), 60);
    assert_eq!(dig_ttl(port, "long.elsewhere.test"), 3600);
    assert_eq!(dig_ttl(port, "plain.elsewhere.test"), 60);
    let r = ask(port, 1, "long.elsewhere.test.", RecordType::A);
    assert!(
        r.answers[0].ttl <= 3600 && r.answers[0].ttl >= 3598,
        "from the cache"
    );
}

#[test]
fn an_nxdomain_is_cached_for_the_soa_minimum_and_answers_every_type_of_the_name() {
    let (up, seen) = upstream(false);
    let port = free_port();
    let app = spawn_dns_app(forwarder(port, &[up]));
    let first = ask(port, 9, "gone.elsewhere.test.", RecordType::A);
    assert_eq!(first.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        first.authorities[0].ttl, 120,
        "the first answer's SOA says min(SOA TTL, MINIMUM), as the cached ones do"
    );
    for (id, qtype) in [
        (1, RecordType::AAAA),
        (2, RecordType::MX),
        (3, RecordType::A),
    ] {
        let r = ask(port, id, "gone.elsewhere.test.", qtype);
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        let ttl = r.authorities[0].ttl;
        assert!(
            ttl <= 120 && ttl > 100,
            "min(SOA TTL 600, MINIMUM 120): {ttl}"
        );
    }
    assert_eq!(seen.udp_queries(), 1, "answered from the cache, every type");
    assert_eq!(
        app.metric(r#"weft_dns_cache_hits_total{service="dns"}"#),
        Some(3.0)
    );
}

#[test]
fn with_serve_stale_an_expired_answer_is_served_with_ttl_30_when_the_upstream_goes_silent() {
    let (up, seen) = upstream(false);
    let port = free_port();
    let app = spawn_dns_app(
        forwarder(port, &[up])
            .key("serve_stale", r#""1h""#)
            .timeout("300ms"),
    );
    let r = ask(port, 1, "brief.elsewhere.test.", RecordType::A);
    assert_eq!(r.answers[0].ttl, 1);
    seen.silent.store(true, Ordering::SeqCst);
    // The TTL is one second; nothing but waiting expires it in the real binary.
    std::thread::sleep(Duration::from_millis(1100));
    let r = ask(port, 2, "brief.elsewhere.test.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&r), ["198.51.100.80"]);
    assert_eq!(r.answers[0].ttl, 30, "a stale answer's TTL (RFC 8767)");
    assert_eq!(seen.udp_queries(), 2, "the upstream was asked first");
    assert_eq!(
        app.metric(r#"weft_dns_stale_answers_total{service="dns"}"#),
        Some(1.0)
    );
    let out = dig(port, &["brief.elsewhere.test", "A"]);
    assert!(
        out.contains("status: NOERROR") && out.contains("EDE: 3 (Stale Answer)"),
        "a stale answer says so in an Extended DNS Error (RFC 8914)\n{out}"
    );
    let out = dig(port, &["never.elsewhere.test", "A"]);
    assert!(
        out.contains("status: SERVFAIL"),
        "nothing stale to serve\n{out}"
    );
    assert!(out.contains("EDE: 22 (No Reachable Authority)"), "{out}");
}

#[test]
fn weft_check_refuses_bad_forwarding_keys_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weft.toml");
    std::fs::write(
        &config,
        "[[service]]\nname = \"dns\"\nkind = \"dns\"\nlisten = \"udp:5353\"\nforward = \"127.0.0.1\"\nupstream_selection = \"random\"\nmin_ttl = \"2h\"\n",
    )
    .unwrap();
    let out = crate::support::weft_check([&config]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "weft.toml:6:22: service[0].upstream_selection: \"random\" is not a selection"
        ),
        "{err}"
    );
}

/// `query` framed for TCP.
fn framed(query: &Message) -> Vec<u8> {
    let packet = query.to_vec().unwrap();
    let mut out = (packet.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&packet);
    out
}

/// A query for `name`/A with id `id`.
fn question(id: u16, name: &str) -> Message {
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query
        .queries
        .push(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    query
}

#[test]
fn a_tcp_client_that_half_closes_after_asking_still_gets_its_answers() {
    let (up, _seen) = upstream(false);
    let port = free_port();
    let _app = spawn_dns_app(forwarder(port, &[up]));
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut asked = Vec::new();
    for id in 1..=3 {
        asked.extend(framed(&question(id, &format!("slow{id}.test."))));
    }
    stream.write_all(&asked).unwrap();
    // RFC 7766 §6.2.4: the client is done asking, not done listening.
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut ids = Vec::new();
    for _ in 1..=3 {
        let mut len = [0; 2];
        stream
            .read_exact(&mut len)
            .expect("an answer after the half-close");
        let mut body = vec![0; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut body).unwrap();
        let answer = Message::from_vec(&body).unwrap();
        assert_eq!(addresses(&answer), ["198.51.100.80"], "{answer:?}");
        ids.push(answer.metadata.id);
    }
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3]);
    // Then the server closes its side too.
    assert_eq!(stream.read(&mut [0; 16]).unwrap(), 0);
}

#[test]
fn one_pipelining_tcp_connection_cannot_take_every_forwarding_slot() {
    let (up, _seen) = upstream(false);
    let port = free_port();
    let _app = spawn_dns_app(forwarder(port, &[up]));
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    // More questions than the service has forwarding slots (4096), none ever answered
    // upstream, written from a thread (the server stops reading them).
    let mut writer = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        for id in 0..5000u16 {
            if writer
                .write_all(&framed(&question(id, &format!("hang{id}.test."))))
                .is_err()
            {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    // Another client's question is forwarded and answered all the same.
    let answer = ask(port, 7, "bystander.test.", RecordType::A);
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&answer), ["198.51.100.80"], "{answer:?}");
    drop(stream);
}

#[test]
fn a_tcp_client_waiting_on_a_slow_upstream_is_not_idle() {
    let (up, _seen) = upstream(false);
    let port = free_port();
    let _app = spawn_dns_app(
        forwarder(port, &[up])
            .timeout("5s")
            .key("idle_timeout", "\"1s\""),
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(&framed(&question(9, "late.test.")))
        .unwrap();
    // The answer comes 2 s later, past the idle timeout: the question was pending.
    let mut len = [0; 2];
    stream
        .read_exact(&mut len)
        .expect("the answer, not a close");
    let mut body = vec![0; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut body).unwrap();
    let answer = Message::from_vec(&body).unwrap();
    assert_eq!(addresses(&answer), ["198.51.100.80"]);
    // With nothing pending, the idle timeout holds again.
    let idle = std::time::Instant::now();
    assert_eq!(stream.read(&mut [0; 16]).unwrap(), 0);
    assert!(
        idle.elapsed() < Duration::from_secs(3),
        "{:?}",
        idle.elapsed()
    );
}

/// Asks `name` over UDP from a socket of its own, which waits up to 8 s for the answer.
fn ask_from_udp(port: u16, id: u16, name: &str) -> UdpSocket {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    udp.send_to(&question(id, name).to_vec().unwrap(), ("127.0.0.1", port))
        .unwrap();
    udp
}

/// The answer on `udp` is the upstream's address for question `id` (`what` says which
/// answer it is, if none comes).
fn expect_address(app: &App, udp: &UdpSocket, id: u16, what: &str) {
    let mut buf = [0; 4096];
    let n = udp
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("{what}: {e}\n{}", app.log()));
    let answer = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(
        (answer.metadata.id, addresses(&answer)),
        (id, vec!["198.51.100.80".to_owned()])
    );
}

#[test]
fn sigterm_answers_the_questions_waiting_on_an_upstream_before_exiting() {
    let (up, seen) = upstream(false);
    let port = free_port();
    let mut app = spawn_dns_app(forwarder(port, &[up]).timeout("5s"));
    // One question over UDP, one over TCP, both answered by the upstream 2 s late.
    let udp = ask_from_udp(port, 4, "late4.test.");
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    tcp.write_all(&framed(&question(5, "late5.test."))).unwrap();
    assert_eventually!(seen.udp_queries() == 2, "both questions are upstream");

    let sent = std::time::Instant::now();
    app.signal("TERM");
    expect_address(&app, &udp, 4, "the UDP answer, sent during the drain");
    let mut len = [0; 2];
    tcp.read_exact(&mut len)
        .expect("the TCP answer, not a close");
    let mut body = vec![0; usize::from(u16::from_be_bytes(len))];
    tcp.read_exact(&mut body).unwrap();
    let answer = Message::from_vec(&body).unwrap();
    assert_eq!(
        (answer.metadata.id, addresses(&answer)),
        (5, vec!["198.51.100.80".to_owned()])
    );
    // Then the connection closes, and weft exits once nothing is owed.
    assert_eq!(tcp.read(&mut [0; 16]).unwrap(), 0);
    app.exits_cleanly_within(sent, Duration::from_secs(5));
}

#[test]
fn a_reload_that_removes_the_service_still_answers_the_questions_waiting_on_an_upstream() {
    let (up, seen) = upstream(false);
    let port = free_port();
    let app = spawn_dns_app(forwarder(port, &[up]).timeout("5s"));
    let udp = ask_from_udp(port, 7, "late7.test.");
    assert_eventually!(seen.udp_queries() == 1, "the question is upstream");

    // The service goes, with its listeners: nothing but the question holds it.
    app.edit_config(|text| {
        let (head, dns) = text.split_once("\n[[service]]\nname = \"dns\"").unwrap();
        let rest = dns.find("\n[[").map_or("", |i| &dns[i..]);
        format!("{head}{rest}")
    });
    app.reload_by_signal("ok");
    expect_address(&app, &udp, 7, "the answer, after the service went");
}

/// The service's own zone the upstream's CNAMEs lead into (`www.example.test` is 192.0.2.10).
const EXAMPLE_ZONE: &str = "$ORIGIN example.test.\n$TTL 1h\n\
    @ IN SOA ns1 hostmaster 1 2h 15m 2w 5m\n@ IN NS ns1\nns1 IN A 192.0.2.53\n\
    www IN A 192.0.2.10\n";

/// A cached answer whose CNAME led into one of the service's zones was completed from it;
/// once a reload takes the zone away it is forgotten, not sent as a bare CNAME until its
/// TTL runs out: the question goes upstream again.
#[test]
fn a_reload_that_removes_a_zone_forgets_the_answers_whose_chain_led_into_it() {
    let (up, seen) = upstream(false);
    let port = free_port();
    let app = spawn_dns_app(forwarder(port, &[up]).zone("example.test.zone", EXAMPLE_ZONE));
    let r = ask(port, 1, "into.elsewhere.test.", RecordType::A);
    assert_eq!(addresses(&r), ["192.0.2.10"], "completed from the zone");
    assert_eq!(seen.udp_queries(), 1);

    app.edit_config(|text| {
        let start = text.find("zones = [").expect("the zones line");
        let end = start + text[start..].find('\n').unwrap();
        format!("{}zones = []{}", &text[..start], &text[end..])
    });
    app.reload_by_signal("ok");
    let r = ask(port, 2, "into.elsewhere.test.", RecordType::A);
    assert_eq!(
        addresses(&r),
        ["203.0.113.66"],
        "asked again: the upstream's answer whole\n{r:?}"
    );
    assert_eq!(seen.udp_queries(), 2);
}

#[test]
fn sigterm_lets_a_question_go_on_over_tcp_when_its_truncated_answer_comes_during_the_drain() {
    // The truncated UDP answer comes 2 s after the question, after SIGTERM: the TCP
    // connection it calls for is opened during the drain.
    let (up, seen) = upstream(true);
    let port = free_port();
    let mut app = spawn_dns_app(forwarder(port, &[up]).timeout("10s"));
    let udp = ask_from_udp(port, 8, "late8.test.");
    assert_eventually!(seen.udp_queries() == 1, "the question is upstream");
    let sent = std::time::Instant::now();
    app.signal("TERM");
    expect_address(
        &app,
        &udp,
        8,
        "the whole answer, over a connection opened in the drain",
    );
    assert_eq!(seen.tcp_queries.load(Ordering::SeqCst), 1);
    app.exits_cleanly_within(sent, Duration::from_secs(7));
}

#[test]
fn sigterm_lets_a_question_asked_again_over_tcp_finish_on_its_upstream_connection() {
    // Truncated over UDP, so asked again over TCP, where the upstream answers 2 s late.
    let (up, seen) = upstream(true);
    let port = free_port();
    let mut app = spawn_dns_app(forwarder(port, &[up]).timeout("10s"));
    let udp = ask_from_udp(port, 6, "late6.test.");
    assert_eventually!(
        seen.tcp_queries.load(Ordering::SeqCst) == 1,
        "the question is on the upstream's TCP connection"
    );

    let sent = std::time::Instant::now();
    app.signal("TERM");
    // The whole answer, not the truncated one: it has the address.
    expect_address(
        &app,
        &udp,
        6,
        "the whole answer, from TCP, sent during the drain",
    );
    app.exits_cleanly_within(sent, Duration::from_secs(5));
}

/// One client asking for names no upstream answers, hundreds a second: every question
/// gets its SERVFAIL and is counted, and neither the SERVFAIL lines nor the inspector's
/// stall warnings about the questions out come one a question (a burst of 20 a second
/// each, the rest counted on the next line as `suppressed`).
#[test]
fn a_flood_of_questions_no_upstream_answers_is_answered_and_counted_but_logged_within_budget() {
    let (up, _seen) = upstream(false);
    let port = free_port();
    let service = forwarder(port, &[up]).timeout("600ms");
    let app = crate::support::spawn_app_with(|dir| {
        format!("[inspect]\nstall_after = \"200ms\"\n{}", service.toml(dir))
    });
    let n = 300;
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for id in 0..n {
        let q = question(id, &format!("hang{id}.dead.test."));
        udp.send_to(&q.to_vec().unwrap(), ("127.0.0.1", port))
            .unwrap();
        // Paced a little, so none is lost in the socket buffers on the way.
        if id % 50 == 49 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let mut buf = [0; 4096];
    for got in 0..n {
        let len = udp
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("{got} of {n} answered: {e}\n{}", app.log()));
        let answer = Message::from_vec(&buf[..len]).unwrap();
        assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    }
    let timeouts = r#"weft_dns_upstream_timeouts_total{service="dns"}"#;
    assert_eventually!(
        app.metric(timeouts) == Some(f64::from(n)),
        "{:?}",
        app.metric(timeouts)
    );
    let log = app.log();
    let lines = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    let servfail = lines("no upstream answered in time; answering SERVFAIL");
    assert!(
        log.lines()
            .any(|l| l.contains("answering SERVFAIL") && l.contains(" name=hang")),
        "the name as a zone writes it, not quoted and escaped again\n{log}"
    );
    let stalled = lines("detector=stalled");
    assert!(
        (1..=60).contains(&servfail),
        "{servfail} SERVFAIL lines for {n} questions"
    );
    assert!(
        (1..=60).contains(&stalled),
        "{stalled} stall lines for {n} questions"
    );
}

/// An upstream answer's records that answer nothing asked, or are of a name in the
/// service's own zone, are left out of the answer and the cache and counted (RFC 2181
/// section 5.4.1): a poisoning upstream gets none of them to a client.
#[test]
fn records_an_upstream_adds_beyond_the_question_are_left_out_and_counted() {
    let (up, _) = upstream(false);
    let port = free_port();
    let app = spawn_dns_app(forwarder(port, &[up]).zone("example.test.zone", EXAMPLE_ZONE));
    for round in ["from the upstream", "from the cache"] {
        let r = ask(port, 7, "poison.elsewhere.test.", RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{round}");
        let owners: Vec<String> = r
            .answers
            .iter()
            .chain(&r.authorities)
            .chain(&r.additionals)
            .map(|r| r.name.to_ascii())
            .collect();
        assert_eq!(owners, ["poison.elsewhere.test."], "{round}: {r:?}");
        assert_eq!(addresses(&r), ["198.51.100.80"], "{round}");
    }
    assert_eq!(
        app.metric(r#"weft_dns_upstream_records_scrubbed_total{service="dns"}"#),
        Some(5.0)
    );
    assert!(
        app.log().contains("left out"),
        "the scrubbed answer is logged\n{}",
        app.log()
    );
    assert_eq!(
        dig(port, &["www.example.test", "A", "+short"]).trim(),
        "192.0.2.10",
        "the zone answers for itself"
    );
    // A clean answer loses nothing.
    let r = ask(port, 8, "clean.elsewhere.test.", RecordType::A);
    assert_eq!(addresses(&r), ["198.51.100.80"]);
    assert_eq!(
        app.metric(r#"weft_dns_upstream_records_scrubbed_total{service="dns"}"#),
        Some(5.0)
    );
    // A CNAME into the zone is followed there, in the zone's words, not the upstream's,
    // from the cache as well.
    for round in ["from the upstream", "from the cache"] {
        let r = ask(port, 9, "into.elsewhere.test.", RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{round}");
        assert_eq!(addresses(&r), ["192.0.2.10"], "{round}: {r:?}");
        assert_eq!(r.answers[0].record_type(), RecordType::CNAME, "{round}");
    }
    // Where the upstream says the target does not exist and the zone says it does, the
    // client gets the zone's word, and it is counted so, from the cache too.
    let nxdomains = || {
        app.metric(r#"weft_dns_responses_total{rcode="NXDOMAIN",service="dns"}"#)
            .unwrap_or(0.0)
    };
    let before = nxdomains();
    for round in ["from the upstream", "from the cache"] {
        let r = ask(port, 10, "intonx.elsewhere.test.", RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{round}");
        assert_eq!(addresses(&r), ["192.0.2.10"], "{round}: {r:?}");
    }
    assert_eq!(nxdomains(), before, "counted as sent");
}

/// `dig +norec` for a name outside the zones is refused with Not Authoritative, before
/// and after the name is cached, over UDP and TCP, and never goes upstream.
#[test]
fn a_question_without_recursion_desired_is_refused_and_not_forwarded() {
    let (up, seen) = upstream(false);
    let port = free_port();
    let _app = spawn_dns_app(forwarder(port, &[up]));
    let refused = |extra: &[&str]| {
        let mut args = vec!["snoop.elsewhere.test", "A", "+norec"];
        args.extend_from_slice(extra);
        let out = dig(port, &args);
        assert!(out.contains("status: REFUSED"), "{out}");
        assert!(out.contains("EDE: 20 (Not Authoritative)"), "{out}");
    };
    refused(&[]);
    assert_eq!(seen.udp_queries(), 0, "not forwarded");
    let out = dig(port, &["snoop.elsewhere.test", "A"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    refused(&[]);
    refused(&["+tcp"]);
    assert_eq!(seen.udp_queries(), 1, "only the question with RD");
}

/// The ports a forwarding service asks its upstreams from close with the gateway at
/// SIGTERM as `shutdown`, as its listening port does: not `service_stopped`, which says a
/// reload removed the service.
#[test]
fn a_forwarder_s_upstream_ports_close_as_shutdown_at_sigterm() {
    let (up, _seen) = upstream(false);
    let port = free_port();
    let mut app = spawn_dns_app(forwarder(port, &[up]));
    let r = ask(port, 1, "www.elsewhere.test.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(app.signal_and_wait("TERM").code(), Some(0), "{}", app.log());
    let reasons: Vec<(String, Option<String>)> = crate::support::query(&app.db, async |c| {
        sqlx::query_as("SELECT transport, close_reason FROM connections WHERE service = 'dns'")
            .fetch_all(c)
            .await
            .unwrap()
    });
    assert!(
        reasons.len() > 1,
        "the port and its upstream ports: {reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .all(|(_, r)| r.as_deref() == Some("shutdown")),
        "{reasons:?}"
    );
}
