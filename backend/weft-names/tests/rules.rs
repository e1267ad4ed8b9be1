//! The protocol rules a DNS server must keep, each checked with hickory-built packets
//! over real UDP and TCP sockets: EDNS versions (RFC 6891), opcodes it does not serve
//! (RFC 1035), TSIG with a key it does not know (RFC 8945), the DO bit (RFC 3225), and
//! CNAME loops in a zone.

mod support;

use std::net::SocketAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::TSIG;
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError, make_tsig_record};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use weft::Reactor;

use support::{EXAMPLE, message, serve, tcp_exchange, udp_exchange, zone};
use weft_test_support::run_with_client;

/// Runs the example zone on UDP and TCP and hands `client` both addresses.
fn with_example(client: impl FnOnce(SocketAddr, SocketAddr) + Send + 'static) {
    with_zone(EXAMPLE.to_owned(), client);
}

fn with_zone(text: String, client: impl FnOnce(SocketAddr, SocketAddr) + Send + 'static) {
    let reactor = Reactor::new().unwrap();
    let (_server, udp, tcp) = serve(&reactor, "dns", zone(&text));
    run_with_client(&reactor, move || client(udp, tcp));
}

fn with_edns(mut m: Message, version: u8, dnssec_ok: bool) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(1232)
        .set_version(version)
        .set_dnssec_ok(dnssec_ok);
    m.edns = Some(edns);
    m
}

/// Both transports' answers to `m`.
fn both(udp: SocketAddr, tcp: SocketAddr, m: &Message) -> [Message; 2] {
    let packet = m.to_vec().unwrap();
    [udp_exchange(udp, &packet), tcp_exchange(tcp, &packet)]
}

#[test]
fn an_edns_version_above_0_gets_badvers_with_an_opt_of_version_0_and_no_answer() {
    with_example(|udp, tcp| {
        for version in [1, 255] {
            let q = with_edns(
                message(41, "www.example.test.", RecordType::A),
                version,
                false,
            );
            for r in both(udp, tcp, &q) {
                assert_eq!(r.metadata.id, 41);
                assert_eq!(r.metadata.message_type, MessageType::Response);
                // 16 is BADVERS in a response to a query (BADSIG is its TSIG-error twin).
                assert_eq!(
                    u16::from(r.metadata.response_code),
                    u16::from(ResponseCode::BADVERS),
                    "extended rcode 16: upper bits in the OPT"
                );
                let opt = r.edns.as_ref().expect("an OPT in the response");
                assert_eq!(opt.version(), 0, "the version this server speaks");
                assert_eq!(opt.rcode_high(), 1);
                assert!(r.answers.is_empty() && r.authorities.is_empty());
            }
        }
        let v0 = with_edns(message(42, "www.example.test.", RecordType::A), 0, false);
        for r in both(udp, tcp, &v0) {
            assert_eq!(r.metadata.response_code, ResponseCode::NoError);
            assert_eq!(r.answers.len(), 1, "version 0 is answered");
        }
    });
}

/// An opcode not served gets NOTIMP: RD not copied, no question, and an OPT record when
/// the query had one (RFC 6891 section 6.1.1).
#[test]
fn notimp_for_an_opcode_not_served_does_not_copy_rd() {
    with_example(|udp, tcp| {
        // NOTIFY is a primary's business: it is refused (see the transfer tests).
        for op_code in [OpCode::Status, OpCode::Update, OpCode::Unknown(15)] {
            let mut q = message(51, "example.test.", RecordType::SOA);
            q.metadata.op_code = op_code;
            let header_only = {
                let mut h = q.clone();
                h.queries.clear();
                h
            };
            let with_opt = with_edns(q.clone(), 0, true);
            for query in [q, header_only, with_opt] {
                let opt = query.edns.is_some();
                for r in both(udp, tcp, &query) {
                    assert_eq!(r.metadata.id, 51);
                    assert_eq!(r.metadata.op_code, op_code, "the opcode is copied");
                    assert_eq!(r.metadata.response_code, ResponseCode::NotImp);
                    assert!(
                        !r.metadata.recursion_desired,
                        "RD is not copied: {op_code:?}"
                    );
                    assert!(r.queries.is_empty(), "no question");
                    assert_eq!(r.edns.is_some(), opt, "an OPT for an OPT: {op_code:?}");
                }
            }
        }
    });
}

/// A TSIG record for key `key` that no server knows, signing query `id`.
fn tsig(key: &str, id: u16) -> Record<TSIG> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    make_tsig_record(
        Name::from_ascii(key).unwrap(),
        TSIG::new(
            TsigAlgorithm::HmacSha256,
            now,
            300,
            vec![0xab; 32],
            id,
            None,
            Vec::new(),
        ),
    )
}

/// The TSIG record of a response: the message's signature, or the last additional record
/// (where hickory leaves it when it does not verify signatures).
fn tsig_of(r: &Message) -> (Name, TSIG) {
    if let Some(sig) = &r.signature {
        return (sig.name.clone(), sig.data.clone());
    }
    match r.additionals.last() {
        Some(Record {
            name,
            data: RData::TSIG(t),
            ..
        }) => (name.clone(), t.clone()),
        other => panic!("no TSIG record last in the response: {other:?}"),
    }
}

#[test]
fn a_tsig_signed_query_for_an_unknown_key_gets_notauth_with_badkey_unsigned() {
    with_example(|udp, tcp| {
        for edns in [false, true] {
            let mut q = message(61, "www.example.test.", RecordType::A);
            if edns {
                q = with_edns(q, 0, false);
            }
            q.signature = Some(Box::new(tsig("transfer-key.", 61)));
            for r in both(udp, tcp, &q) {
                assert_eq!(r.metadata.id, 61);
                assert_eq!(r.metadata.response_code, ResponseCode::NotAuth);
                assert!(
                    r.answers.is_empty(),
                    "nothing is answered to an unverified query"
                );
                assert_eq!(r.queries.len(), 1);
                assert_eq!(
                    r.edns.is_some(),
                    edns,
                    "an OPT exactly when the query had one"
                );
                let (name, t) = tsig_of(&r);
                assert_eq!(name, Name::from_ascii("transfer-key.").unwrap());
                assert_eq!(
                    t.algorithm,
                    TsigAlgorithm::HmacSha256,
                    "the query's algorithm"
                );
                assert_eq!(t.error, Some(TsigError::BadKey));
                assert!(t.mac.is_empty(), "unsigned: an empty MAC");
                assert_eq!(t.oid, 61, "the original id");
            }
        }

        // RFC 8945 section 5.2: a TSIG that is not the last record, or a second one, is
        // FORMERR.
        let mut before_opt = with_edns(message(62, "www.example.test.", RecordType::A), 0, false);
        before_opt
            .additionals
            .push(tsig("transfer-key.", 62).into_record_of_rdata());
        let mut twice = message(63, "www.example.test.", RecordType::A);
        twice
            .additionals
            .push(tsig("transfer-key.", 63).into_record_of_rdata());
        twice.signature = Some(Box::new(tsig("transfer-key.", 63)));
        for q in [before_opt, twice] {
            for r in both(udp, tcp, &q) {
                assert_eq!(r.metadata.response_code, ResponseCode::FormErr, "{q:?}");
            }
        }
    });
}

#[test]
fn the_do_bit_of_the_query_is_copied_into_the_opt_of_the_response() {
    with_example(|udp, tcp| {
        for dnssec_ok in [true, false] {
            let questions = [
                ("www.example.test.", ResponseCode::NoError),
                ("nope.example.test.", ResponseCode::NXDomain),
                ("www.elsewhere.test.", ResponseCode::Refused),
            ];
            for (name, rcode) in questions {
                let q = with_edns(message(71, name, RecordType::A), 0, dnssec_ok);
                for r in both(udp, tcp, &q) {
                    assert_eq!(r.metadata.response_code, rcode);
                    let opt = r.edns.expect("an OPT in the response");
                    assert_eq!(opt.flags().dnssec_ok, dnssec_ok, "{name}");
                }
            }
            let badvers = with_edns(
                message(72, "www.example.test.", RecordType::A),
                1,
                dnssec_ok,
            );
            for r in both(udp, tcp, &badvers) {
                assert_eq!(r.edns.unwrap().flags().dnssec_ok, dnssec_ok, "BADVERS too");
            }
        }
    });
}

#[test]
fn a_cname_loop_is_answered_with_each_record_once() {
    let text = format!("{EXAMPLE}into IN CNAME loop1\n");
    with_zone(text, |udp, tcp| {
        let owners =
            |r: &Message| -> Vec<String> { r.answers.iter().map(|a| a.name.to_string()).collect() };
        for r in both(udp, tcp, &message(81, "loop1.example.test.", RecordType::A)) {
            assert_eq!(r.metadata.response_code, ResponseCode::NoError);
            assert_eq!(owners(&r), ["loop1.example.test.", "loop2.example.test."]);
        }
        for r in both(udp, tcp, &message(82, "into.example.test.", RecordType::A)) {
            assert_eq!(
                owners(&r),
                [
                    "into.example.test.",
                    "loop1.example.test.",
                    "loop2.example.test."
                ]
            );
            assert!(
                r.answers
                    .iter()
                    .all(|a| a.record_type() == RecordType::CNAME)
            );
        }
    });
}
