//! Answers kept by question against the real binary: a question asked again over UDP gets
//! the answer encoded the first time with its own id (hickory and dig alike), a reload
//! that changes the zone is answered anew, and kept answers are rate limited like any; a
//! forwarded answer is kept too, its TTLs counting down, for its own question only; dig's
//! cookie is answered from the kept answer, with a server cookie made for it.

use std::net::UdpSocket;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::assert_eventually;
use crate::dns::dig;
use crate::support::{App, DnsService, dns_service, free_port, spawn_dns_app};

const ZONE: &str = "$ORIGIN example.test.
$TTL 1h
@       IN SOA ns1 hostmaster ( 1 2h 15m 2w 5m )
        IN NS  ns1
ns1     IN A   192.0.2.53
www     IN A   192.0.2.10
*.wild  IN A   192.0.2.30
";

/// A dns service on `port` (UDP and TCP) serving [`ZONE`].
fn served(port: u16) -> DnsService {
    dns_service("dns", port)
        .tcp()
        .zone("example.test.zone", ZONE)
}

/// A query for `name`/A, RD set; with an OPT (DO set) when `dnssec_ok`.
fn query(id: u16, name: &str, edns: Option<bool>) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.queries
        .push(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    if let Some(dnssec_ok) = edns {
        let mut opt = Edns::new();
        opt.set_max_payload(1232);
        opt.set_dnssec_ok(dnssec_ok);
        m.edns = Some(opt);
    }
    m.to_vec().unwrap()
}

fn ask(socket: &UdpSocket, port: u16, packet: &[u8]) -> Message {
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    socket.send_to(packet, ("127.0.0.1", port)).unwrap();
    let mut buf = [0; 4096];
    let (n, _) = socket.recv_from(&mut buf).expect("an answer");
    Message::from_vec(&buf[..n]).unwrap()
}

fn addresses(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

fn reused(app: &App) -> f64 {
    app.metric(r#"weft_dns_answers_reused_total{service="dns"}"#)
        .unwrap_or(0.0)
}

#[test]
fn a_question_asked_again_gets_the_kept_answer_with_its_own_id_until_a_reload_changes_the_zone() {
    let port = free_port();
    let app = spawn_dns_app(served(port));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();

    for (id, edns) in [
        (100, None),
        (200, None),
        (300, Some(true)),
        (400, Some(true)),
    ] {
        let answer = ask(&socket, port, &query(id, "www.example.test.", edns));
        assert_eq!(answer.metadata.id, id, "each answer carries its query's id");
        assert_eq!(answer.metadata.message_type, MessageType::Response);
        assert!(answer.metadata.authoritative && answer.metadata.recursion_desired);
        assert_eq!(addresses(&answer), ["192.0.2.10"]);
        assert_eq!(answer.queries[0].name().to_ascii(), "www.example.test.");
        assert_eq!(
            answer.edns.as_ref().map(|e| e.flags().dnssec_ok),
            edns,
            "an OPT, with DO copied, only to a query with one"
        );
    }
    // The question's case is echoed, a wildcard's too; each spelling is its own question.
    for (id, name) in [(500, "WwW.example.test."), (501, "WwW.example.test.")] {
        let answer = ask(&socket, port, &query(id, name, None));
        assert_eq!(
            (answer.metadata.id, answer.queries[0].name().to_ascii()),
            (id, name.into())
        );
    }
    for id in [600, 601] {
        let answer = ask(&socket, port, &query(id, "A.Wild.example.test.", None));
        assert_eq!(answer.metadata.id, id);
        assert_eq!(answer.answers[0].name.to_ascii(), "A.Wild.example.test.");
        assert_eq!(addresses(&answer), ["192.0.2.30"]);
    }
    // dig, without its cookie.
    for _ in 0..2 {
        let short = dig(port, &["www.example.test", "A", "+nocookie", "+short"]);
        assert_eq!(short.trim(), "192.0.2.10");
    }
    assert_eventually!(
        reused(&app) >= 5.0,
        "the questions asked again were answered from the kept answers\n{}",
        app.curl("/metrics").unwrap_or_default()
    );

    let zone = app.dir.path().join("example.test.zone");
    std::fs::write(
        &zone,
        ZONE.replace("( 1 ", "( 2 ")
            .replace("192.0.2.10", "192.0.2.11"),
    )
    .unwrap();
    app.reload_by_signal("ok");
    let answer = ask(&socket, port, &query(700, "www.example.test.", None));
    assert_eq!(answer.metadata.id, 700);
    assert_eq!(
        addresses(&answer),
        ["192.0.2.11"],
        "the reloaded zone answers"
    );
    let answer = ask(&socket, port, &query(701, "www.example.test.", Some(true)));
    assert_eq!(addresses(&answer), ["192.0.2.11"]);
    let short = dig(port, &["www.example.test", "A", "+nocookie", "+short"]);
    assert_eq!(short.trim(), "192.0.2.11");
}

#[test]
fn kept_answers_are_rate_limited_and_slipped_like_any_other() {
    let port = free_port();
    let app =
        spawn_dns_app(served(port).rate_limit("responses_per_second = 5, burst = 10, slip = 2"));
    let flooder = UdpSocket::bind("127.0.0.1:0").unwrap();
    flooder
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let packet = query(1, "www.example.test.", None);
    let started = Instant::now();
    let (mut sent, mut full, mut truncated) = (0usize, 0usize, 0usize);
    let mut buf = [0; 4096];
    for _ in 0..5 {
        for _ in 0..20 {
            flooder.send_to(&packet, ("127.0.0.1", port)).unwrap();
            sent += 1;
        }
        while let Ok((n, _)) = flooder.recv_from(&mut buf) {
            let answer = Message::from_vec(&buf[..n]).unwrap();
            if answer.metadata.truncation && answer.answers.is_empty() {
                truncated += 1;
            } else if addresses(&answer) == ["192.0.2.10"] {
                full += 1;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = 10 + (5.0 * elapsed).ceil() as usize + 1;
    assert!(
        (10..=allowed).contains(&full),
        "{full} of {sent} answered in {elapsed:.2}s: the burst, then at most 5 a second"
    );
    let limited = sent - full;
    assert!(
        truncated.abs_diff(limited / 2) <= 1,
        "every second limited answer slips truncated: {truncated} of {limited}"
    );
    // Another /24 keeps its answers, from the same kept answer.
    let other = UdpSocket::bind("127.0.1.1:0").expect("all of 127/8 is loopback");
    let answer = ask(&other, port, &query(9, "www.example.test.", None));
    assert_eq!(
        (answer.metadata.id, addresses(&answer)),
        (9, vec!["192.0.2.10".to_owned()])
    );

    let metric = |action: &str| {
        app.metric(&format!(
            r#"weft_dns_rate_limited_total{{action="{action}",service="dns"}}"#
        ))
        .unwrap_or(0.0) as usize
    };
    assert_eventually!(
        metric("dropped") + metric("slipped") == limited && reused(&app) >= 9.0,
        "every limited answer counted, and the others came from the kept answer\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
}

#[test]
fn a_forwarded_answer_is_kept_for_its_own_question_with_its_ttl_counting_down() {
    let port = free_port();
    let (upstream, asked) = crate::dns::upstream();
    let app = spawn_dns_app(dns_service("dns", port).tcp().forward(upstream));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let name_of = |m: &Message| m.queries[0].name().to_ascii();
    for id in [1, 2, 3] {
        let answer = ask(&socket, port, &query(id, "a.example.", None));
        assert_eq!(
            (answer.metadata.id, name_of(&answer)),
            (id, "a.example.".into())
        );
        assert_eq!(addresses(&answer), ["198.51.100.80"]);
        assert!(!answer.metadata.authoritative && answer.metadata.recursion_available);
    }
    assert_eq!(asked.load(Ordering::SeqCst), 1, "asked upstream once");
    assert_eventually!(reused(&app) >= 1.0, "the third came from the kept answer");
    // The TTL counts down from the upstream's 60 as the kept bytes age.
    assert_eventually!(
        ask(&socket, port, &query(4, "a.example.", None)).answers[0].ttl < 60,
        "the kept answer's TTL counts down"
    );
    // A question over TCP is neither answered from nor kept under the key of the last
    // question over UDP.
    let b = ask(&socket, port, &query(5, "b.example.", None));
    assert_eq!(name_of(&b), "b.example.");
    for _ in 0..2 {
        let out = dig(port, &["c.example", "A", "+tcp", "+short"]);
        assert_eq!(out.trim(), "198.51.100.80");
    }
    for id in [6, 7] {
        let b = ask(&socket, port, &query(id, "b.example.", None));
        assert_eq!((b.metadata.id, name_of(&b)), (id, "b.example.".into()));
    }
}

/// The COOKIE of dig's output, in hex, if dig found it good.
fn good_cookie(out: &str) -> Option<String> {
    let line = out.lines().find(|l| l.starts_with("; COOKIE: "))?;
    let hex = line["; COOKIE: ".len()..].split_whitespace().next()?;
    line.contains("(good)").then(|| hex.to_owned())
}

#[test]
fn dig_with_its_cookie_gets_the_kept_answer_with_a_server_cookie_that_is_valid() {
    let port = free_port();
    let app = spawn_dns_app(served(port).cookies());
    let cookies = |result: &str| {
        app.metric(&format!(
            r#"weft_dns_cookies_total{{result="{result}",service="dns"}}"#
        ))
        .unwrap_or(0.0)
    };
    let ask = |args: &[&str]| {
        let mut all = vec!["www.example.test", "A"];
        all.extend_from_slice(args);
        let out = dig(port, &all);
        assert!(
            out.contains("status: NOERROR") && out.contains("192.0.2.10"),
            "{out}"
        );
        out
    };
    // The first is answered in full and kept; each next dig (a client cookie of its own)
    // gets the kept answer with its cookie echoed and a server cookie.
    let first = good_cookie(&ask(&["+cookie"])).expect("a good cookie");
    assert_eventually!(cookies("client") == 1.0, "the first cookie counted");
    let before = reused(&app);
    let second = good_cookie(&ask(&["+cookie"])).expect("a good cookie");
    assert_eq!(
        second.len(),
        48,
        "client cookie and a 16-byte server cookie"
    );
    assert_ne!(
        first[..16],
        second[..16],
        "each dig makes its own client cookie"
    );
    assert_eventually!(
        reused(&app) == before + 1.0 && cookies("client") == 2.0,
        "the second came from the kept answer\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    // The server cookie of a kept answer is this server's: presented back, it is valid.
    let out = ask(&[&format!("+cookie={second}")]);
    assert_eq!(
        good_cookie(&out).map(|c| c[..16].to_owned()),
        Some(second[..16].to_owned()),
        "{out}"
    );
    assert_eventually!(
        reused(&app) == before + 2.0 && cookies("valid") == 1.0,
        "presented back from a kept answer, and valid\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    // Without a cookie: the same kept answer, no COOKIE.
    let out = ask(&["+nocookie"]);
    assert!(!out.contains("; COOKIE:"), "{out}");
    // DO is part of the question kept: the first +dnssec is answered in full, the next
    // from its own kept answer, both with DO.
    for _ in 0..2 {
        let out = ask(&["+dnssec"]);
        assert!(
            out.contains("flags: do;") && good_cookie(&out).is_some(),
            "{out}"
        );
    }
    assert_eventually!(
        reused(&app) == before + 4.0,
        "+nocookie and the second +dnssec came from kept answers\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
}

/// A kept answer that ends at a CNAME to a name no zone here holds is not carried past
/// a reload that adds the zone holding it: the chain goes on there now.
#[test]
fn a_reload_adding_the_zone_a_kept_cname_leads_into_answers_anew() {
    let port = free_port();
    let zone = format!("{ZONE}away IN CNAME www.other.test.\n");
    let app = spawn_dns_app(
        dns_service("dns", port)
            .tcp()
            .zone("example.test.zone", zone),
    );
    for _ in 0..2 {
        let short = dig(port, &["away.example.test", "A", "+nocookie", "+short"]);
        assert_eq!(short.trim(), "www.other.test.");
    }
    assert_eventually!(
        reused(&app) >= 1.0,
        "the second was answered from the kept answer"
    );
    let other = "$ORIGIN other.test.\n$TTL 1h\n@ SOA ns1 hostmaster 1 2h 15m 2w 5m\n@ NS ns1\n\
                 ns1 A 192.0.2.54\nwww A 192.0.2.77\n";
    std::fs::write(app.dir.path().join("other.test.zone"), other).unwrap();
    let config = app.dir.path().join("weft.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let file = |name: &str| format!("{:?}", app.dir.path().join(name).display().to_string());
    let (one, both) = (
        file("example.test.zone"),
        format!("{}, {}", file("example.test.zone"), file("other.test.zone")),
    );
    std::fs::write(&config, text.replace(&one, &both)).unwrap();
    app.reload_by_signal("ok");
    let short = dig(port, &["away.example.test", "A", "+nocookie", "+short"]);
    assert_eq!(
        short.trim(),
        "www.other.test.\n192.0.2.77".trim(),
        "{short}"
    );
}
