//! [`Catalog::lookup`]: a CNAME chain across the zones of one service (RFC 1034 section
//! 4.3.2 step 3a), each record once and at most eight CNAMEs in all, and DS at a child's
//! apex from the parent that delegates it.

use std::path::Path;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, Record, RecordType};

use super::{Catalog, Zone};

/// A zone at `origin` with an SOA, an NS and the lines of `rest`.
fn zone(origin: &str, rest: &str) -> Zone {
    let text = format!("$ORIGIN {origin}\n$TTL 60\n@ SOA ns hostmaster 1 2 3 4 5\n@ NS ns\n{rest}");
    Zone::parse(Path::new("z.zone"), &text).unwrap_or_else(|e| panic!("{e}"))
}

fn catalog(zones: Vec<Zone>) -> Catalog {
    let mut catalog = Catalog::default();
    for zone in zones {
        catalog.add(zone).unwrap();
    }
    catalog
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

/// Each record as `owner TYPE`.
fn said(section: &[Record]) -> Vec<String> {
    section
        .iter()
        .map(|r| format!("{} {}", r.name, r.record_type()))
        .collect()
}

#[test]
fn a_chain_goes_on_into_another_zone_of_the_service_and_says_so() {
    let zones = catalog(vec![
        zone("a.test.", "x CNAME y.b.test.\nlocal A 192.0.2.1\n"),
        zone("b.test.", "y A 192.0.2.2\n"),
    ]);
    let (answer, alone) = zones
        .lookup(&name("x.a.test."), RecordType::A, false)
        .unwrap();
    assert_eq!(said(&answer.answers), ["x.a.test. CNAME", "y.b.test. A"]);
    assert!(answer.authoritative && answer.authorities.is_empty());
    assert!(
        !alone,
        "an answer through two zones is not kept across reloads"
    );
    let (_, alone) = zones
        .lookup(&name("local.a.test."), RecordType::A, false)
        .unwrap();
    assert!(alone);
    // Asked for the CNAME itself, it is the answer.
    let (cname, _) = zones
        .lookup(&name("x.a.test."), RecordType::CNAME, false)
        .unwrap();
    assert_eq!(said(&cname.answers), ["x.a.test. CNAME"]);
}

#[test]
fn a_loop_across_zones_is_answered_with_each_record_once() {
    let zones = catalog(vec![
        zone("a.test.", "x CNAME y.b.test.\n"),
        zone("b.test.", "y CNAME x.a.test.\n"),
    ]);
    let (answer, _) = zones
        .lookup(&name("x.a.test."), RecordType::A, false)
        .unwrap();
    assert_eq!(
        said(&answer.answers),
        ["x.a.test. CNAME", "y.b.test. CNAME"]
    );
}

#[test]
fn a_chain_across_zones_holds_at_most_eight_cnames() {
    // Seven in the first zone, then as many as it takes in the second.
    let first: String = (1..7)
        .map(|i| format!("c{i} CNAME c{}\n", i + 1))
        .chain(["c7 CNAME d1.b.test.\n".to_owned()])
        .collect();
    let second: String = (1..9).map(|i| format!("d{i} CNAME d{}\n", i + 1)).collect();
    let zones = catalog(vec![zone("a.test.", &first), zone("b.test.", &second)]);
    let (answer, _) = zones
        .lookup(&name("c1.a.test."), RecordType::A, false)
        .unwrap();
    assert_eq!(answer.answers.len(), 8, "{:?}", said(&answer.answers));
}

/// A served child that its parent does not delegate (no NS at the cut) still answers
/// its names: the parent hands the chain off rather than denying the name itself.
#[test]
fn a_chain_into_a_served_child_is_the_child_s_to_answer_delegated_or_not() {
    for cut in ["", "c NS ns.c\nns.c A 192.0.2.9\n"] {
        let zones = catalog(vec![
            zone(
                "a.test.",
                &format!("x CNAME nope.c.a.test.\ny CNAME www.c.a.test.\n{cut}"),
            ),
            zone("c.a.test.", "www A 192.0.2.3\n"),
        ]);
        let (nx, _) = zones
            .lookup(&name("x.a.test."), RecordType::A, false)
            .unwrap();
        assert_eq!(nx.rcode, ResponseCode::NXDomain, "{cut:?}");
        assert_eq!(
            said(&nx.authorities),
            ["c.a.test. SOA"],
            "one SOA, the child's: {cut:?}"
        );
        let (www, _) = zones
            .lookup(&name("y.a.test."), RecordType::A, false)
            .unwrap();
        assert_eq!(
            said(&www.answers),
            ["y.a.test. CNAME", "www.c.a.test. A"],
            "{cut:?}"
        );
        assert!(
            www.authorities.is_empty(),
            "no referral left behind: {cut:?}"
        );
    }
}

/// A DS reached through a CNAME is the parent's too (RFC 4035 section 3.1.4.1).
#[test]
fn a_ds_reached_through_a_cname_is_answered_by_the_parent() {
    let ds = "c DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF\n";
    let zones = catalog(vec![
        zone("other.test.", "alias CNAME c.a.test.\n"),
        zone("a.test.", &format!("c NS ns.c\nns.c A 192.0.2.9\n{ds}")),
        zone("c.a.test.", "www A 192.0.2.3\n"),
    ]);
    let (answer, _) = zones
        .lookup(&name("alias.other.test."), RecordType::DS, false)
        .unwrap();
    assert_eq!(
        said(&answer.answers),
        ["alias.other.test. CNAME", "c.a.test. DS"]
    );
}

/// The zone a chain goes on in may refer it further: the answer is the first zone's
/// (AA, for the name asked) with that referral after the CNAME.
#[test]
fn a_chain_that_meets_a_referral_in_the_next_zone_keeps_the_first_zone_s_aa() {
    let zones = catalog(vec![
        zone("a.test.", "x CNAME www.d.b.test.\n"),
        zone("b.test.", "d NS ns.d\nns.d A 192.0.2.8\n"),
    ]);
    let (answer, alone) = zones
        .lookup(&name("x.a.test."), RecordType::A, false)
        .unwrap();
    assert_eq!(said(&answer.answers), ["x.a.test. CNAME"]);
    assert!(answer.authoritative, "the CNAME is the first zone's own");
    assert_eq!(answer.rcode, ResponseCode::NoError);
    assert_eq!(said(&answer.authorities), ["d.b.test. NS"]);
    assert_eq!(said(&answer.additionals), ["ns.d.b.test. A"]);
    assert!(!alone);
}

/// A signed zone whose wildcard CNAME leads out to b.test, which leads back to a name
/// a.test does not hold. Its NSEC chain, in canonical order: the apex, `*.w`, `y`.
const SIGNED_A: &str = "\
$ORIGIN a.test.
@ 60 SOA ns hostmaster 1 2 3 4 5
@ 60 RRSIG SOA 13 2 60 20300101000000 20240101000000 1 a.test. AAAA
@ 60 NS ns.b.test.
@ 60 RRSIG NS 13 2 60 20300101000000 20240101000000 1 a.test. AAAA
@ 60 NSEC *.w.a.test. NS SOA RRSIG NSEC
@ 60 RRSIG NSEC 13 2 60 20300101000000 20240101000000 1 a.test. AAAA
*.w 60 CNAME z.b.test.
*.w 60 RRSIG CNAME 13 3 60 20300101000000 20240101000000 1 a.test. AAAA
*.w 60 NSEC y.a.test. CNAME RRSIG NSEC
*.w 60 RRSIG NSEC 13 3 60 20300101000000 20240101000000 1 a.test. AAAA
y 60 A 192.0.2.1
y 60 RRSIG A 13 3 60 20300101000000 20240101000000 1 a.test. AAAA
y 60 NSEC a.test. A RRSIG NSEC
y 60 RRSIG NSEC 13 3 60 20300101000000 20240101000000 1 a.test. AAAA
";

/// A chain out of a signed zone and back into it, ending in a denial: the NSEC that
/// proved the first hop's wildcard expansion also covers the missing name at the end,
/// and goes in once, with its RRSIG once (RFC 2181 section 5).
#[test]
fn a_proof_two_hops_of_a_chain_give_goes_in_once() {
    let signed = Zone::parse(Path::new("a.zone"), SIGNED_A).unwrap_or_else(|e| panic!("{e}"));
    let zones = catalog(vec![signed, zone("b.test.", "z CNAME x.a.test.\n")]);
    let (answer, alone) = zones
        .lookup(&name("q.w.a.test."), RecordType::A, true)
        .unwrap();
    assert!(!alone);
    assert_eq!(answer.rcode, ResponseCode::NXDomain);
    assert_eq!(
        said(&answer.answers),
        ["q.w.a.test. CNAME", "q.w.a.test. RRSIG", "z.b.test. CNAME"]
    );
    // `x.a.test` falls between `*.w` and `y` (the proof of q.w's expansion), `*.a.test`
    // between the apex and `*.w`.
    assert_eq!(
        said(&answer.authorities),
        [
            "*.w.a.test. NSEC",
            "*.w.a.test. RRSIG",
            "a.test. SOA",
            "a.test. RRSIG",
            "a.test. NSEC",
            "a.test. RRSIG"
        ]
    );
}
