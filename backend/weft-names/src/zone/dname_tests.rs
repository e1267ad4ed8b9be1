//! DNAME (RFC 6672): a name below one is answered with the DNAME and a CNAME synthesized
//! to the same name below its target, followed as a CNAME is; the loader keeps a DNAME's
//! subtree empty.

use std::path::Path;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::{Catalog, Zone};

const ZONE: &str = "\
$ORIGIN example.test.
@ 60 SOA ns hostmaster 1 2 3 4 5
@ 60 NS ns
ns 60 A 192.0.2.1
old 300 DNAME new.example.test.
old 60 TXT \"moved\"
www.new 60 A 192.0.2.2
ext 120 DNAME example.net.
loop 60 DNAME a.loop2.example.test.
loop2 60 DNAME loop.example.test.
";

fn zone(text: &str) -> Result<Zone, String> {
    Zone::parse(Path::new("d.zone"), text).map_err(|e| e.to_string())
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

/// Each record as `owner TYPE`, a CNAME with its target.
fn said(section: &[Record]) -> Vec<String> {
    section
        .iter()
        .map(|r| match &r.data {
            RData::CNAME(c) => format!("{} CNAME {}", r.name, c.0),
            _ => format!("{} {}", r.name, r.record_type()),
        })
        .collect()
}

#[test]
fn a_name_below_a_dname_gets_the_dname_and_a_synthesized_cname_followed_in_the_zone() {
    let zone = zone(ZONE).unwrap();
    let answer = zone.lookup(&name("WWW.old.example.test."), RecordType::A);
    assert_eq!(answer.rcode, ResponseCode::NoError);
    assert_eq!(
        said(&answer.answers),
        [
            "old.example.test. DNAME",
            "WWW.old.example.test. CNAME WWW.new.example.test.",
            "WWW.new.example.test. A"
        ]
    );
    // (The labels asked keep their case in the name made from them, as NSD writes it.)
    assert_eq!(answer.answers[1].ttl, 300, "the DNAME's TTL");
    assert!(answer.authoritative);

    // A missing name below the target: the DNAME, the CNAME, and NXDOMAIN for it.
    let missing = zone.lookup(&name("nope.old.example.test."), RecordType::A);
    assert_eq!(missing.rcode, ResponseCode::NXDomain);
    assert_eq!(
        said(&missing.answers),
        [
            "old.example.test. DNAME",
            "nope.old.example.test. CNAME nope.new.example.test."
        ]
    );
    assert_eq!(said(&missing.authorities), ["example.test. SOA"]);

    // A target outside the zone: the client's resolver follows the CNAME.
    let out = zone.lookup(&name("a.b.ext.example.test."), RecordType::AAAA);
    assert_eq!(
        said(&out.answers),
        [
            "ext.example.test. DNAME",
            "a.b.ext.example.test. CNAME a.b.example.net."
        ]
    );
}

#[test]
fn the_dname_s_own_name_is_answered_as_any_name_and_a_cname_question_is_not_followed() {
    let zone = zone(ZONE).unwrap();
    let own = zone.lookup(&name("old.example.test."), RecordType::DNAME);
    assert_eq!(said(&own.answers), ["old.example.test. DNAME"]);
    let txt = zone.lookup(&name("old.example.test."), RecordType::TXT);
    assert_eq!(said(&txt.answers), ["old.example.test. TXT"]);
    let nodata = zone.lookup(&name("old.example.test."), RecordType::A);
    assert!(nodata.answers.is_empty());
    assert_eq!(nodata.rcode, ResponseCode::NoError);
    let cname = zone.lookup(&name("www.old.example.test."), RecordType::CNAME);
    assert_eq!(
        said(&cname.answers),
        [
            "old.example.test. DNAME",
            "www.old.example.test. CNAME www.new.example.test."
        ]
    );
}

#[test]
fn dnames_that_lead_into_each_other_end_and_a_name_made_too_long_is_yxdomain() {
    let zone = zone(ZONE).unwrap();
    // x.loop -> x.a.loop2 -> x.a.loop -> x.a.a.loop2 ...: each link a new name, ended by
    // the chain's bound.
    let looped = zone.lookup(&name("x.loop.example.test."), RecordType::A);
    assert!(
        looped.answers.len() <= 2 * super::MAX_CNAME_CHAIN + 2,
        "{looped:?}"
    );
    assert_eq!(looped.rcode, ResponseCode::NoError);
    // A DNAME whose target is below itself: one link, not eight.
    let below = self::zone(&format!("{ZONE}below 60 DNAME y.below.example.test.\n")).unwrap();
    let answer = below.lookup(&name("a.below.example.test."), RecordType::A);
    assert_eq!(
        said(&answer.answers),
        [
            "below.example.test. DNAME",
            "a.below.example.test. CNAME a.y.below.example.test."
        ]
    );
    // The same DNAME written twice, in two cases, is one record.
    let twice = self::zone(&format!("{ZONE}old 300 DNAME NEW.Example.Test.\n")).unwrap();
    let own = twice.lookup(&name("old.example.test."), RecordType::DNAME);
    assert_eq!(said(&own.answers), ["old.example.test. DNAME"]);
    // RFC 6672 section 2.2: a synthesized name over 255 bytes is YXDOMAIN.
    let label = |c: &str| vec![c.repeat(63); 3].join(".");
    let far = self::zone(&format!("{ZONE}far 60 DNAME {}.example.net.\n", label("b"))).unwrap();
    let long = format!("{}.far.example.test.", label("a"));
    let answer = far.lookup(&name(&long), RecordType::A);
    assert_eq!(answer.rcode, ResponseCode::YXDomain);
    assert_eq!(said(&answer.answers), ["far.example.test. DNAME"]);
}

#[test]
fn a_dname_s_subtree_holds_nothing_and_it_stands_alone_as_rfc_6672_asks() {
    let below = zone(&format!("{ZONE}x.old 60 A 192.0.2.9\n")).unwrap_err();
    assert!(
        below.contains("old.example.test. has a DNAME, and x.old.example.test. below it"),
        "{below}"
    );
    let two = zone(&format!("{ZONE}old 300 DNAME other.example.test.\n")).unwrap_err();
    assert!(two.contains("two DNAME records"), "{two}");
    let cname = zone(&format!("{ZONE}old 60 CNAME www.new\n")).unwrap_err();
    assert!(cname.contains("a CNAME must be alone"), "{cname}");
    let wild = zone(&format!("{ZONE}*.w 60 DNAME new.example.test.\n")).unwrap_err();
    assert!(
        wild.contains("is a wildcard: it cannot hold DNAME"),
        "{wild}"
    );
    // The generic form is the same record.
    let generic = zone(&format!(
        "{}d 60 TYPE39 \\# 13 06746172676574047465737400\n",
        &ZONE[..ZONE.find("old").unwrap()]
    ))
    .unwrap();
    let answer = generic.lookup(&name("x.d.example.test."), RecordType::A);
    assert_eq!(
        said(&answer.answers),
        [
            "d.example.test. DNAME",
            "x.d.example.test. CNAME x.target.test."
        ]
    );
}

#[test]
fn a_chain_through_a_dname_goes_on_into_another_zone_of_the_service() {
    let mut catalog = Catalog::default();
    catalog.add(zone(ZONE).unwrap()).unwrap();
    catalog
        .add(zone("$ORIGIN example.net.\n@ 60 SOA ns hostmaster 1 2 3 4 5\n@ 60 NS ns\nwww.b 60 A 192.0.2.7\n").unwrap())
        .unwrap();
    let (answer, alone) = catalog
        .lookup(&name("www.b.ext.example.test."), RecordType::A, false)
        .unwrap();
    assert!(!alone);
    assert_eq!(
        said(&answer.answers),
        [
            "ext.example.test. DNAME",
            "www.b.ext.example.test. CNAME www.b.example.net.",
            "www.b.example.net. A"
        ]
    );
}
