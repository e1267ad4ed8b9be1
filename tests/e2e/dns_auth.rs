//! The `dns` kind as an authoritative server, against the real binary with `dig` and
//! hickory-proto messages over real sockets: wildcards and the closest-encloser rules
//! (RFC 4592), empty non-terminals, delegations with and without glue, the additional
//! section, `ANY` (RFC 8482), the record types beyond RFC 1035, and `$INCLUDE`.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};

use crate::dns::dig;
use crate::support::{App, dns_service, free_port, spawn_app_with, spawn_dns_app};

/// The zone of edge cases, shared with the unit tests and the comparison with NSD.
pub(crate) const EDGE: &str = include_str!("../../backend/weft-names/testdata/edge.test.zone");

/// weft serving [`EDGE`] on `port`, UDP and TCP.
pub(crate) fn edge_app(port: u16) -> App {
    spawn_dns_app(dns_service("dns", port).tcp().zone("edge.test.zone", EDGE))
}

/// The query packet for `name`/`qtype`, id 0x4242, without RD.
pub(crate) fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut query = Message::new(0x4242, MessageType::Query, OpCode::Query);
    query
        .queries
        .push(Query::query(Name::from_ascii(name).unwrap(), qtype));
    query.to_vec().unwrap()
}

/// The question `name`/`qtype` to the server on `port`, over TCP or UDP, answered.
pub(crate) fn ask(port: u16, name: &str, qtype: RecordType, tcp: bool) -> Message {
    let packet = query(name, qtype);
    let answer = if tcp {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&(packet.len() as u16).to_be_bytes()).unwrap();
        s.write_all(&packet).unwrap();
        let mut len = [0; 2];
        s.read_exact(&mut len).unwrap();
        let mut body = vec![0; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut body).unwrap();
        body
    } else {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.send_to(&packet, ("127.0.0.1", port)).unwrap();
        let mut buf = vec![0; 65_535];
        let n = s.recv(&mut buf).unwrap();
        buf.truncate(n);
        buf
    };
    let message = Message::from_vec(&answer).unwrap();
    assert_eq!(message.metadata.id, 0x4242);
    message
}

/// Each record of `section` as `owner TYPE rdata`.
fn rrs(section: &[Record]) -> Vec<String> {
    section
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect()
}

/// `dig +short` for `name`/`qtype`, its lines.
fn short(port: u16, name: &str, qtype: &str) -> Vec<String> {
    dig(port, &[name, qtype, "+short"])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_wildcard_answers_for_missing_names_only_with_the_name_as_owner() {
    let port = free_port();
    let _app = edge_app(port);
    let udp = |name: &str, qtype| ask(port, name, qtype, false);

    let x = udp("x.edge.test.", RecordType::A);
    assert!(x.metadata.authoritative);
    assert_eq!(rrs(&x.answers), ["x.edge.test. A 192.0.2.1"]);
    assert_eq!(short(port, "deep.x.edge.test", "TXT"), ["\"wild\""]);
    assert_eq!(
        rrs(&udp("*.edge.test.", RecordType::A).answers),
        ["*.edge.test. A 192.0.2.1"],
        "the wildcard's own name, asked for"
    );

    // A name that exists is never matched by the wildcard, whatever the type.
    assert_eq!(short(port, "www.edge.test", "TXT"), ["\"www\""]);
    let www_mx = udp("www.edge.test.", RecordType::MX);
    assert_eq!(www_mx.metadata.response_code, ResponseCode::NoError);
    assert!(www_mx.answers.is_empty(), "NODATA, not the wildcard");
    assert_eq!(www_mx.authorities[0].record_type(), RecordType::SOA);

    // Nor is an empty non-terminal (b exists through a.b), nor what is below it.
    let ent = udp("b.edge.test.", RecordType::A);
    assert_eq!(ent.metadata.response_code, ResponseCode::NoError);
    assert!(ent.answers.is_empty(), "{:?}", rrs(&ent.answers));
    let below = udp("c.b.edge.test.", RecordType::A);
    assert_eq!(below.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(below.authorities[0].record_type(), RecordType::SOA);

    // NODATA at a wildcard that lacks the type.
    let nodata = udp("q.empty.edge.test.", RecordType::A);
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(short(port, "q.empty.edge.test", "TXT"), ["\"only txt\""]);

    // A CNAME at a wildcard, and CNAMEs pointing to wildcard-covered names.
    assert_eq!(
        rrs(&udp("foo.apps.edge.test.", RecordType::A).answers),
        [
            "foo.apps.edge.test. CNAME www.edge.test.",
            "www.edge.test. A 192.0.2.10"
        ]
    );
    assert_eq!(
        rrs(&udp("toapp.edge.test.", RecordType::A).answers),
        [
            "toapp.edge.test. CNAME x.apps.edge.test.",
            "x.apps.edge.test. CNAME www.edge.test.",
            "www.edge.test. A 192.0.2.10"
        ]
    );
    let towild = ask(port, "towild.edge.test.", RecordType::A, true);
    assert_eq!(
        rrs(&towild.answers),
        [
            "towild.edge.test. CNAME foo.wild.edge.test.",
            "foo.wild.edge.test. A 192.0.2.7"
        ]
    );
    assert_eq!(
        short(port, "towild.edge.test", "A"),
        ["foo.wild.edge.test.", "192.0.2.7"]
    );
}

#[test]
fn names_at_and_below_a_cut_get_referrals_with_glue_and_ds_belongs_to_the_parent() {
    let port = free_port();
    let _app = edge_app(port);
    let udp = |name: &str, qtype| ask(port, name, qtype, false);
    let sub_ns = [
        "sub.edge.test. NS ns1.sub.edge.test.",
        "sub.edge.test. NS ns.other.edge.test.",
        "sub.edge.test. NS ns.elsewhere.test.",
    ];
    // Glue at or below the cut, and the zone's address for an in-zone target outside it;
    // nothing for the target in another zone.
    let glue = [
        "ns1.sub.edge.test. A 192.0.2.200",
        "ns.other.edge.test. A 192.0.2.201",
    ];
    for (name, qtype) in [
        ("www.sub.edge.test.", RecordType::A),
        ("sub.edge.test.", RecordType::NS),
        ("sub.edge.test.", RecordType::A),
        ("sub.edge.test.", RecordType::ANY),
        ("ns1.sub.edge.test.", RecordType::A),
    ] {
        let referral = udp(name, qtype);
        assert_eq!(referral.metadata.response_code, ResponseCode::NoError);
        assert!(!referral.metadata.authoritative, "{name} {qtype}: AA clear");
        assert!(referral.answers.is_empty(), "{name} {qtype}");
        assert_eq!(rrs(&referral.authorities), sub_ns, "{name} {qtype}");
        assert_eq!(rrs(&referral.additionals), glue, "{name} {qtype}");
    }
    let out = dig(port, &["www.sub.edge.test", "A"]);
    assert!(out.contains("flags: qr rd;"), "{out}");

    let without_glue = udp("x.noglue.edge.test.", RecordType::A);
    assert!(!without_glue.metadata.authoritative);
    assert_eq!(
        rrs(&without_glue.authorities),
        ["noglue.edge.test. NS ns.elsewhere.test."]
    );
    assert!(without_glue.additionals.is_empty());

    let ds = udp("sub.edge.test.", RecordType::DS);
    assert!(ds.metadata.authoritative, "the parent's DS set");
    assert_eq!(ds.answers.len(), 1);
    assert_eq!(ds.answers[0].record_type(), RecordType::DS);
    let no_ds = udp("noglue.edge.test.", RecordType::DS);
    assert!(no_ds.metadata.authoritative);
    assert!(no_ds.answers.is_empty());
    assert_eq!(no_ds.authorities[0].record_type(), RecordType::SOA);

    // This zone's CNAME into a delegation: the CNAME with authority, then the referral.
    let tosub = udp("tosub.edge.test.", RecordType::A);
    assert!(tosub.metadata.authoritative);
    assert_eq!(
        rrs(&tosub.answers),
        ["tosub.edge.test. CNAME www.sub.edge.test."]
    );
    assert_eq!(rrs(&tosub.authorities), sub_ns);
}

#[test]
fn ns_mx_and_srv_answers_carry_the_in_zone_addresses_of_their_targets() {
    let port = free_port();
    let _app = edge_app(port);
    let udp = |name: &str, qtype| ask(port, name, qtype, false);

    let ns = udp("edge.test.", RecordType::NS);
    assert_eq!(
        rrs(&ns.additionals),
        [
            "ns1.edge.test. A 192.0.2.53",
            "ns1.edge.test. AAAA 2001:db8::53"
        ]
    );
    let mx = udp("edge.test.", RecordType::MX);
    assert_eq!(rrs(&mx.additionals), ["mail.edge.test. A 192.0.2.25"]);
    assert!(
        mx.authorities.is_empty(),
        "no NS set with a positive answer"
    );
    let srv = udp("_sip._tcp.edge.test.", RecordType::SRV);
    assert_eq!(rrs(&srv.additionals), ["www.edge.test. A 192.0.2.10"]);
    let wild_target = udp("mxwild.edge.test.", RecordType::MX);
    assert_eq!(
        rrs(&wild_target.additionals),
        ["host.wild.edge.test. A 192.0.2.7"],
        "a target covered by a wildcard"
    );
    let from_wildcard = udp("foo.mx.edge.test.", RecordType::MX);
    assert_eq!(
        rrs(&from_wildcard.answers),
        ["foo.mx.edge.test. MX 5 mail.edge.test."]
    );
    assert_eq!(
        rrs(&from_wildcard.additionals),
        ["mail.edge.test. A 192.0.2.25"]
    );
    let delegated_target = udp("mxsub.edge.test.", RecordType::MX);
    assert!(
        delegated_target.additionals.is_empty(),
        "a target below a cut is the child zone's"
    );
    let out = dig(port, &["edge.test", "MX"]);
    let additional = out
        .split(";; ADDITIONAL SECTION:")
        .nth(1)
        .unwrap_or_else(|| panic!("an additional section\n{out}"));
    assert!(
        additional.contains("mail.edge.test.") && additional.contains("192.0.2.25"),
        "{out}"
    );
}

#[test]
fn any_gets_one_rrset_over_udp_and_tcp() {
    let port = free_port();
    let _app = edge_app(port);
    for tcp in [false, true] {
        let any = |name: &str| ask(port, name, RecordType::ANY, tcp);
        assert_eq!(
            rrs(&any("mixed.edge.test.").answers),
            ["mixed.edge.test. A 192.0.2.30"],
            "one RRset, the first of the name (tcp: {tcp})"
        );
        let apex = any("edge.test.");
        assert_eq!(apex.answers.len(), 1);
        assert_eq!(apex.answers[0].record_type(), RecordType::SOA);
        assert_eq!(
            rrs(&any("nope.edge.test.").answers),
            ["nope.edge.test. A 192.0.2.1"],
            "one RRset of the wildcard"
        );
        assert_eq!(
            rrs(&any("foo.apps.edge.test.").answers),
            ["foo.apps.edge.test. CNAME www.edge.test."],
            "a CNAME is an answer to ANY, not followed"
        );
        let ent = any("b.edge.test.");
        assert!(ent.answers.is_empty() && ent.metadata.response_code == ResponseCode::NoError);
    }
    assert_eq!(
        short(port, "mixed.edge.test", "ANY"),
        ["192.0.2.30"],
        "dig's ANY"
    );
}

#[test]
fn every_record_type_of_the_zone_file_is_served_as_written() {
    let port = free_port();
    let _app = edge_app(port);
    // What dig prints for each (the same as NSD prints for this zone).
    let expected = [
        ("CAA", "0 issue \"ca.example.net\""),
        (
            "SSHFP",
            "4 2 E6C1A25BC3FD9A4EC8A0C4AE3E1B8F2D7A90E1F2C3B4A5968778695A 4B3C2D1E",
        ),
        (
            "TLSA",
            "3 1 1 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF01234567 89ABCDEF",
        ),
        (
            "NAPTR",
            "100 10 \"S\" \"SIP+D2U\" \"\" _sip._udp.edge.test.",
        ),
        ("HINFO", "\"PC\" \"Unix\""),
        ("DS", "60485 5 1 2BB183AF5F22588179A53B0A98631FAD1A292118"),
        ("NSEC", "www.edge.test. A HINFO TXT RRSIG NSEC"),
        ("SVCB", "1 svc.edge.test. alpn=\"h2,h3\" port=8443"),
        ("HTTPS", "1 . alpn=\"h2\""),
        ("TYPE65534", "\\# 4 0A000001"),
    ];
    for (qtype, rdata) in expected {
        assert_eq!(
            short(port, "types.edge.test", qtype),
            [rdata],
            "{qtype}, over UDP"
        );
    }
    let dnskey = short(port, "types.edge.test", "DNSKEY");
    assert_eq!(dnskey.len(), 1);
    assert!(
        dnskey[0].starts_with("257 3 8 AwEAAagAIKlVZrpC6Ia7"),
        "{dnskey:?}"
    );
    assert!(dnskey[0].ends_with(" QxA+Uk1ihz0="), "{dnskey:?}");
    let rrsig = short(port, "types.edge.test", "RRSIG");
    assert_eq!(rrsig.len(), 1);
    assert!(
        rrsig[0].starts_with("A 8 2 3600 20300101000000 20240101000000 12345 edge.test. oJB1W6WN"),
        "{rrsig:?}"
    );
    // The second client decodes the same records from the wire.
    let caa = ask(port, "types.edge.test.", RecordType::CAA, true);
    assert_eq!(
        rrs(&caa.answers),
        ["types.edge.test. CAA 0 issue \"ca.example.net\""]
    );
    let naptr = ask(port, "types.edge.test.", RecordType::NAPTR, false);
    assert_eq!(naptr.answers.len(), 1);
    assert!(
        naptr.answers[0]
            .data
            .to_string()
            .ends_with("_sip._udp.edge.test.")
    );
}

/// `weft check` on a configuration serving the zone file `zone`: its exit code and
/// standard error.
fn check(zone: &Path) -> (Option<i32>, String) {
    let config = zone.with_file_name("weft.toml");
    std::fs::write(
        &config,
        format!(
            "[[service]]\nname = \"dns\"\nkind = \"dns\"\nlisten = \"udp:5353\"\nzones = [\"{}\"]\n",
            zone.display()
        ),
    )
    .unwrap();
    let out = crate::support::weft_check([&config]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const INCLUDING: &str = "$ORIGIN example.test.
$TTL 1h
@       IN SOA ns1 hostmaster ( 1 2h 15m 2w 5m )
        IN NS  ns1
ns1     IN A   192.0.2.53
$INCLUDE inc/hosts.zone hosts.example.test.
after   IN A   192.0.2.60
$GENERATE 1-3/2 host-$ IN A 192.0.2.${100}
";

#[test]
fn include_reads_a_file_beside_the_zone_with_its_own_origin_and_generate_makes_records() {
    let port = free_port();
    let _app = spawn_app_with(|dir| {
        let zones = dir.join("zones");
        std::fs::create_dir_all(zones.join("inc")).unwrap();
        std::fs::write(zones.join("example.test.zone"), INCLUDING).unwrap();
        std::fs::write(
            zones.join("inc/hosts.zone"),
            "www IN A 192.0.2.77\n@ IN TXT \"hosts\"\n",
        )
        .unwrap();
        dns_service("dns", port)
            .zone_file(&zones.join("example.test.zone"))
            .toml(dir)
    });
    assert_eq!(short(port, "www.hosts.example.test", "A"), ["192.0.2.77"]);
    assert_eq!(short(port, "hosts.example.test", "TXT"), ["\"hosts\""]);
    assert_eq!(
        short(port, "after.example.test", "A"),
        ["192.0.2.60"],
        "the including file's origin again after the include"
    );
    assert_eq!(short(port, "host-3.example.test", "A"), ["192.0.2.103"]);
    let skipped = ask(port, "host-2.example.test.", RecordType::A, false);
    assert_eq!(skipped.metadata.response_code, ResponseCode::NXDomain);
    let www = ask(port, "www.hosts.example.test.", RecordType::A, false);
    assert!(www.metadata.authoritative);
}

#[test]
fn weft_check_names_the_included_file_and_its_line_and_refuses_an_include_loop() {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    std::fs::create_dir_all(zones.join("inc")).unwrap();
    let zone = zones.join("example.test.zone");
    std::fs::write(&zone, INCLUDING).unwrap();
    let included = zones.join("inc/hosts.zone");
    std::fs::write(&included, "www IN A 192.0.2.77\nmail IN A 300.0.0.1\n").unwrap();
    let (code, err) = check(&zone);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{}:2: service[0].zones: \"300.0.0.1\" is not an IPv4 address",
            included.display()
        )),
        "{err}"
    );

    std::fs::write(&included, "$INCLUDE ../example.test.zone\n").unwrap();
    let (code, err) = check(&zone);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{}:1: service[0].zones: $INCLUDE",
            included.display()
        )) && err.contains("an include loop"),
        "{err}"
    );

    std::fs::remove_file(&included).unwrap();
    let (code, err) = check(&zone);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{}:6: service[0].zones: $INCLUDE inc/hosts.zone: cannot read",
            zone.display()
        )),
        "{err}"
    );
}
