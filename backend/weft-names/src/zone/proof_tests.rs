//! DNSSEC in answers (`proof.rs`): which signatures and proofs an answer to a DO query
//! carries from a signed zone, and none without DO. The signatures here are not real (a
//! validator's check of the whole is the end-to-end test `dns_dnssec`, with zones signed
//! by dnssec-signzone and answers validated by delv); the records they sign are.

use std::path::Path;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, Record, RecordType};

use super::proof::covered;
use super::{Catalog, Zone};

/// A zone signed NSEC-style: the apex, `www` with an A, a wildcard under `apps`, an
/// empty non-terminal `empty` above `deep.empty`, and `sub` delegated without a DS.
pub(crate) const SIGNED: &str = "\
$ORIGIN example.test.
@ 300 SOA ns hostmaster 1 3600 600 86400 60
@ 300 RRSIG SOA 13 2 300 20300101000000 20240101000000 1 example.test. AAAA
@ 300 NS ns
@ 300 RRSIG NS 13 2 300 20300101000000 20240101000000 1 example.test. AAAA
@ 300 NSEC *.apps.example.test. NS SOA RRSIG NSEC
@ 300 RRSIG NSEC 13 2 300 20300101000000 20240101000000 1 example.test. AAAA
*.apps 300 A 192.0.2.20
*.apps 300 RRSIG A 13 3 300 20300101000000 20240101000000 1 example.test. AAAA
*.apps 300 NSEC deep.empty.example.test. A RRSIG NSEC
*.apps 300 RRSIG NSEC 13 3 300 20300101000000 20240101000000 1 example.test. AAAA
deep.empty 300 TXT x
deep.empty 300 RRSIG TXT 13 4 300 20300101000000 20240101000000 1 example.test. AAAA
deep.empty 300 NSEC ns.example.test. TXT RRSIG NSEC
deep.empty 300 RRSIG NSEC 13 4 300 20300101000000 20240101000000 1 example.test. AAAA
ns 300 A 192.0.2.1
ns 300 RRSIG A 13 3 300 20300101000000 20240101000000 1 example.test. AAAA
ns 300 NSEC sub.example.test. A RRSIG NSEC
ns 300 RRSIG NSEC 13 3 300 20300101000000 20240101000000 1 example.test. AAAA
sub 300 NS ns.sub
sub 300 NSEC www.example.test. NS RRSIG NSEC
sub 300 RRSIG NSEC 13 3 300 20300101000000 20240101000000 1 example.test. AAAA
ns.sub 300 A 192.0.2.30
www 300 A 192.0.2.10
www 300 RRSIG A 13 3 300 20300101000000 20240101000000 1 example.test. AAAA
www 300 NSEC example.test. A RRSIG NSEC
www 300 RRSIG NSEC 13 3 300 20300101000000 20240101000000 1 example.test. AAAA
";

fn zone() -> Zone {
    Zone::parse(Path::new("signed.zone"), SIGNED).unwrap_or_else(|e| panic!("{e}"))
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

/// Each record as `owner TYPE` (`owner RRSIG(TYPE)` for a signature), lower-cased.
fn said(section: &[Record]) -> Vec<String> {
    section
        .iter()
        .map(|r| {
            let owner = LowerName::new(&r.name);
            match covered(r) {
                Some(t) => format!("{owner} RRSIG({t}) ttl {}", r.ttl),
                None => format!("{owner} {} ttl {}", r.record_type(), r.ttl),
            }
        })
        .collect()
}

#[test]
fn without_do_an_answer_from_a_signed_zone_carries_no_dnssec_records() {
    let zone = zone();
    let a = zone.lookup(&name("www.example.test."), RecordType::A);
    assert_eq!(said(&a.answers), ["www.example.test. A ttl 300"]);
    let nx = zone.lookup(&name("nope.example.test."), RecordType::A);
    assert_eq!(said(&nx.authorities), ["example.test. SOA ttl 60"]);
}

#[test]
fn with_do_an_rrset_comes_with_its_signatures_and_a_wildcard_s_with_the_proof_it_had_to() {
    let zone = zone();
    let a = zone.lookup_dnssec(&name("www.example.test."), RecordType::A);
    assert_eq!(
        said(&a.answers),
        [
            "www.example.test. A ttl 300",
            "www.example.test. RRSIG(A) ttl 300"
        ]
    );
    assert!(a.authorities.is_empty());
    // The wildcard's signature answers with the name asked as its owner; the NSEC that
    // covers that name proves it does not exist itself (RFC 4035 section 3.1.3.3).
    let wild = zone.lookup_dnssec(&name("X.apps.example.test."), RecordType::A);
    assert_eq!(
        said(&wild.answers),
        [
            "x.apps.example.test. A ttl 300",
            "x.apps.example.test. RRSIG(A) ttl 300"
        ]
    );
    assert_eq!(
        wild.answers[1].name,
        name("X.apps.example.test."),
        "the case asked"
    );
    assert_eq!(
        said(&wild.authorities),
        [
            "*.apps.example.test. NSEC ttl 300",
            "*.apps.example.test. RRSIG(NSEC) ttl 300"
        ]
    );
    // The NS target's address in the additional section is signed too (RFC 4035
    // section 3.1.1).
    let ns = zone.lookup_dnssec(&name("example.test."), RecordType::NS);
    assert_eq!(
        said(&ns.additionals),
        [
            "ns.example.test. A ttl 300",
            "ns.example.test. RRSIG(A) ttl 300"
        ]
    );
}

#[test]
fn with_do_a_denial_comes_with_the_signed_soa_and_the_nsec_records_that_prove_it() {
    let zone = zone();
    let soa = [
        "example.test. SOA ttl 60",
        "example.test. RRSIG(SOA) ttl 60",
    ];
    let with = |rest: &[&str]| -> Vec<String> {
        soa.iter().chain(rest).map(|s| (*s).to_owned()).collect()
    };
    // NODATA: the name's own NSEC, whose bitmap lacks the type.
    let nodata = zone.lookup_dnssec(&name("www.example.test."), RecordType::TXT);
    assert_eq!(nodata.rcode, ResponseCode::NoError);
    assert_eq!(
        said(&nodata.authorities),
        with(&[
            "www.example.test. NSEC ttl 300",
            "www.example.test. RRSIG(NSEC) ttl 300"
        ])
    );
    // An empty non-terminal has no NSEC: the one whose span covers it proves it holds
    // nothing.
    let empty = zone.lookup_dnssec(&name("empty.example.test."), RecordType::A);
    assert_eq!(
        said(&empty.authorities),
        with(&[
            "*.apps.example.test. NSEC ttl 300",
            "*.apps.example.test. RRSIG(NSEC) ttl 300"
        ])
    );
    // NXDOMAIN: the NSEC covering the name (in canonical order `nope` comes after
    // `deep.empty`, whose last label is `empty`) and the one covering the wildcard at
    // its closest encloser (the apex's, which spans from the apex to *.apps).
    let nx = zone.lookup_dnssec(&name("nope.example.test."), RecordType::A);
    assert_eq!(nx.rcode, ResponseCode::NXDomain);
    assert_eq!(
        said(&nx.authorities),
        with(&[
            "deep.empty.example.test. NSEC ttl 300",
            "deep.empty.example.test. RRSIG(NSEC) ttl 300",
            "example.test. NSEC ttl 300",
            "example.test. RRSIG(NSEC) ttl 300"
        ])
    );
    // A wildcard without the type: that the name is not there, and that the wildcard
    // has no such RRset.
    let wild = zone.lookup_dnssec(&name("x.apps.example.test."), RecordType::TXT);
    assert_eq!(
        said(&wild.authorities),
        with(&[
            "*.apps.example.test. NSEC ttl 300",
            "*.apps.example.test. RRSIG(NSEC) ttl 300"
        ])
    );
}

#[test]
fn with_do_a_referral_proves_its_cut_has_no_ds() {
    let zone = zone();
    let referral = zone.lookup_dnssec(&name("a.sub.example.test."), RecordType::A);
    assert!(!referral.authoritative);
    assert_eq!(
        said(&referral.authorities),
        [
            "sub.example.test. NS ttl 300",
            "sub.example.test. NSEC ttl 300",
            "sub.example.test. RRSIG(NSEC) ttl 300"
        ]
    );
    assert_eq!(
        said(&referral.additionals),
        ["ns.sub.example.test. A ttl 300"]
    );
    let ds = zone.lookup_dnssec(&name("sub.example.test."), RecordType::DS);
    assert_eq!(
        said(&ds.authorities),
        [
            "example.test. SOA ttl 60",
            "example.test. RRSIG(SOA) ttl 60",
            "sub.example.test. NSEC ttl 300",
            "sub.example.test. RRSIG(NSEC) ttl 300"
        ]
    );
    // A DS at the cut goes with the referral, signed.
    let text = format!(
        "{SIGNED}sub 300 DS 1 13 2 {}\nsub 300 RRSIG DS 13 3 300 20300101000000 20240101000000 1 example.test. AAAA\n",
        "AB".repeat(32)
    );
    let zone = Zone::parse(Path::new("signed.zone"), &text).unwrap();
    let referral = zone.lookup_dnssec(&name("a.sub.example.test."), RecordType::A);
    assert_eq!(
        said(&referral.authorities),
        [
            "sub.example.test. NS ttl 300",
            "sub.example.test. DS ttl 300",
            "sub.example.test. RRSIG(DS) ttl 300"
        ]
    );
}

/// RFC 5155 appendix A: the zone `example`, salt aabbccdd, 12 iterations.
/// The apex of a signed zone `example.` whose NSEC3PARAM is `param`, on line 5.
fn nsec3_apex(param: &str) -> String {
    format!(
        "$ORIGIN example.\n@ 300 SOA ns hostmaster 1 3600 600 86400 60\n@ 300 NS ns\n\
         @ 300 RRSIG SOA 13 1 300 20300101000000 20240101000000 1 example. AAAA\n\
         @ 300 NSEC3PARAM {param}\n"
    )
}

#[test]
fn nsec3_hashes_are_those_of_rfc_5155() {
    let hashes = [
        ("example.", "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom"),
        ("a.example.", "35mthgpgcu1qg68fab165klnsnk3dpvl"),
        ("ai.example.", "gjeqe526plbf1g8mklp59enfd789njgi"),
        ("x.w.example.", "b4um86eghhds6nea196smvmlo4ors995"),
    ];
    let mut text = nsec3_apex("1 0 12 aabbccdd");
    for (owner, hash) in hashes {
        // Owners in upper case, as signers write them.
        let upper = hash.to_uppercase();
        text.push_str(&format!("{upper} 300 NSEC3 1 0 12 aabbccdd {upper} A\n"));
        if owner != "example." {
            text.push_str(&format!("{owner} 300 A 192.0.2.1\n"));
        }
    }
    let zone = Zone::parse(Path::new("nsec3.zone"), &text).unwrap_or_else(|e| panic!("{e}"));
    for (owner, hash) in hashes {
        let nodata = zone.lookup_dnssec(&name(owner), RecordType::MX);
        let proof = nodata
            .authorities
            .iter()
            .find(|r| r.record_type() == RecordType::NSEC3)
            .unwrap_or_else(|| panic!("no NSEC3 for {owner}: {:?}", said(&nodata.authorities)));
        // Served lower-cased, as NSD and Knot serve them.
        assert_eq!(proof.name.to_ascii(), format!("{hash}.example."), "{owner}");
    }
}

#[test]
fn a_zone_asking_more_nsec3_iterations_than_validators_accept_is_refused() {
    let text = nsec3_apex("1 0 151 -");
    let error = Zone::parse(Path::new("nsec3.zone"), &text).unwrap_err();
    assert_eq!(error.line, 5, "the NSEC3PARAM's line");
    assert!(
        error.message.contains("asks 151 iterations"),
        "{}",
        error.message
    );
    let fine = text.replace(" 151 ", " 150 ");
    Zone::parse(Path::new("nsec3.zone"), &fine).unwrap();
}

/// An NSEC3PARAM no NSEC3 record matches (a half-made or hand-edited zone) leaves the
/// zone without a chain: its denials go unproved, and `check` is told why.
#[test]
fn an_nsec3param_without_its_records_proves_nothing_and_says_so() {
    let text = nsec3_apex("1 0 0 -");
    let zone = Zone::parse(Path::new("nsec3.zone"), &text).unwrap();
    let nx = zone.lookup_dnssec(&name("nope.example."), RecordType::A);
    assert_eq!(nx.rcode, ResponseCode::NXDomain);
    assert_eq!(
        said(&nx.authorities),
        ["example. SOA ttl 60", "example. RRSIG(SOA) ttl 60"]
    );
    let why = zone.denial_missing().unwrap();
    assert!(why.contains("no NSEC3 records of its NSEC3PARAM"), "{why}");
    // NSEC3 records and no NSEC3PARAM: the chain is not used, and said to be so.
    let hash = "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom";
    let text = text.replace(
        "@ 300 NSEC3PARAM 1 0 0 -\n",
        &format!("{hash} 300 NSEC3 1 0 0 - {hash} NS SOA RRSIG\n"),
    );
    let zone = Zone::parse(Path::new("nsec3.zone"), &text).unwrap();
    let why = zone.denial_missing().unwrap();
    assert!(why.contains("no NSEC3PARAM"), "{why}");
    // Its owner is no name of the zone to a query (RFC 5155 section 7.2.8).
    let hashed = zone.lookup(&name(&format!("{hash}.example.")), RecordType::NSEC3);
    assert_eq!(hashed.rcode, ResponseCode::NXDomain);
}

#[test]
fn a_ds_at_a_zone_s_apex_is_answered_by_the_parent_that_delegates_it() {
    let parent = |cut: &str| {
        let text = format!(
            "$ORIGIN example.test.\n$TTL 60\n@ SOA ns hostmaster 1 2 3 4 5\n@ NS ns\n{cut}"
        );
        Zone::parse(Path::new("parent.zone"), &text).unwrap()
    };
    let child = "$ORIGIN sub.example.test.\n$TTL 60\n@ SOA ns hostmaster 1 2 3 4 5\n@ NS ns\n";
    let child = Zone::parse(Path::new("child.zone"), child).unwrap();
    for (cut, answers) in [
        ("sub NS ns.sub\n", "example.test."),
        ("", "sub.example.test."),
    ] {
        let mut catalog = Catalog::default();
        catalog.add(parent(cut)).unwrap();
        catalog.add(child.clone()).unwrap();
        let origin = |n: &str, t| {
            catalog
                .find_for(&name(n), t)
                .map(|z| z.origin().to_string())
        };
        // RFC 4035 section 3.1.4.1; a parent that does not delegate the name would deny it.
        assert_eq!(
            origin("SUB.example.test.", RecordType::DS).as_deref(),
            Some(answers),
            "{cut:?}"
        );
        assert_eq!(
            origin("www.sub.example.test.", RecordType::DS).as_deref(),
            Some("sub.example.test.")
        );
        assert_eq!(
            origin("sub.example.test.", RecordType::A).as_deref(),
            Some("sub.example.test.")
        );
        assert_eq!(
            origin("example.test.", RecordType::DS).as_deref(),
            Some("example.test.")
        );
    }
}

/// Two reads of one signed file are equal zones: a reload compares them to keep a zone
/// that did not change (and the answers kept from it) in service. Of the signatures that
/// expire together, the one the zone names is the same each time, though its records
/// are in a hash map whose order differs from map to map.
#[test]
fn a_signed_zone_read_twice_is_the_same_zone() {
    let first = zone();
    for _ in 0..16 {
        assert_eq!(zone(), first);
    }
    let (_, owner, rtype) = first.first_expiry().unwrap();
    assert_eq!(
        (owner.to_ascii(), rtype),
        ("example.test.".to_owned(), RecordType::NS),
        "the first in canonical order, then by type"
    );
}
