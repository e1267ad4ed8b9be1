use std::path::Path;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, RecordType};

use super::{Catalog, Zone};

const EXAMPLE: &str = include_str!("../../testdata/example.test.zone");

fn example() -> Zone {
    Zone::parse(Path::new("example.test.zone"), EXAMPLE).unwrap()
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn error(text: &str) -> (usize, String) {
    let e = Zone::parse(Path::new("bad.zone"), text).unwrap_err();
    assert!(e.to_string().starts_with(&format!("bad.zone:{}: ", e.line)));
    (e.line, e.message)
}

// Three lines, so errors in what follows are on line 4 on.
const HEAD: &str = "$ORIGIN example.test.\n@ 60 SOA ns hostmaster 1 2 3 4 5\n@ 60 NS ns\n";

#[test]
fn the_example_zone_parses_with_origin_ttls_and_relative_names() {
    let zone = example();
    assert_eq!(zone.origin(), &name("example.test."));
    let www = zone.lookup(&name("WWW.Example.Test."), RecordType::A);
    assert_eq!(www.rcode, ResponseCode::NoError);
    assert_eq!(www.answers.len(), 1);
    assert_eq!(
        www.answers[0].name.to_string(),
        "WWW.Example.Test.",
        "owned by the name as asked, in its case (as NSD answers)"
    );
    assert_eq!(www.answers[0].ttl, 300, "an explicit TTL");
    let mail = zone.lookup(&name("mail.example.test."), RecordType::A);
    assert_eq!(mail.answers[0].ttl, 3600, "$TTL 1h");
    let mx = zone.lookup(&name("example.test."), RecordType::MX);
    let RData::MX(mx) = &mx.answers[0].data else {
        panic!("an MX")
    };
    assert_eq!(
        (mx.preference, &mx.exchange),
        (10, &name("mail.example.test."))
    );
    let txt = zone.lookup(&name("txt.example.test."), RecordType::TXT);
    let RData::TXT(txt) = &txt.answers[0].data else {
        panic!("a TXT")
    };
    let strings: Vec<&[u8]> = txt.txt_data.iter().map(|s| &s[..]).collect();
    assert_eq!(strings, [&b"v=spf1 -all"[..], b"second string"]);
    let srv = zone.lookup(&name("_sip._tcp.example.test."), RecordType::SRV);
    assert_eq!(
        srv.answers[0].data.to_string(),
        "10 60 5060 www.example.test."
    );
}

#[test]
fn cnames_are_followed_inside_the_zone_and_left_to_the_client_outside() {
    let zone = example();
    let chain = zone.lookup(&name("chain.example.test."), RecordType::A);
    let types: Vec<_> = chain.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types, [RecordType::CNAME, RecordType::CNAME, RecordType::A]);
    assert_eq!(chain.rcode, ResponseCode::NoError);

    let cname_itself = zone.lookup(&name("alias.example.test."), RecordType::CNAME);
    assert_eq!(cname_itself.answers.len(), 1);

    let away = zone.lookup(&name("away.example.test."), RecordType::A);
    assert_eq!(away.answers.len(), 1);
    assert!(away.authorities.is_empty());

    let dangling = zone.lookup(&name("dangling.example.test."), RecordType::A);
    assert_eq!(dangling.rcode, ResponseCode::NXDomain);
    assert_eq!(
        dangling.answers.len(),
        1,
        "the CNAME, then NXDOMAIN for its target"
    );

    let looped = zone.lookup(&name("loop1.example.test."), RecordType::A);
    let owners: Vec<String> = looped.answers.iter().map(|r| r.name.to_string()).collect();
    assert_eq!(
        owners,
        ["loop1.example.test.", "loop2.example.test."],
        "a loop: each CNAME once"
    );
    assert_eq!(looped.rcode, ResponseCode::NoError);
}

#[test]
fn a_cname_chain_is_followed_at_most_max_cname_chain_links() {
    let mut text = HEAD.to_owned();
    for i in 0..20 {
        text.push_str(&format!("c{i} CNAME c{}\n", i + 1));
    }
    text.push_str("c20 A 192.0.2.1\n");
    let zone = Zone::parse(Path::new("long.zone"), &text).unwrap();
    let long = zone.lookup(&name("c0.example.test."), RecordType::A);
    assert_eq!(long.answers.len(), super::MAX_CNAME_CHAIN);
    assert!(
        long.answers
            .iter()
            .all(|r| r.record_type() == RecordType::CNAME)
    );
    let short = zone.lookup(&name("c14.example.test."), RecordType::A);
    assert_eq!(short.answers.len(), 7, "six CNAMEs, then the A");
}

#[test]
fn missing_names_are_nxdomain_and_missing_types_nodata_both_with_the_soa() {
    let zone = example();
    let nx = zone.lookup(&name("nope.example.test."), RecordType::A);
    assert_eq!(nx.rcode, ResponseCode::NXDomain);
    assert!(nx.answers.is_empty());
    assert_eq!(nx.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(nx.authorities[0].ttl, 300, "min(SOA TTL, SOA minimum)");

    let nodata = zone.lookup(&name("mail.example.test."), RecordType::AAAA);
    assert_eq!(nodata.rcode, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);

    let empty_non_terminal = zone.lookup(&name("b.example.test."), RecordType::A);
    assert_eq!(empty_non_terminal.rcode, ResponseCode::NoError);
}

#[test]
fn the_catalog_picks_the_longest_origin() {
    let mut catalog = Catalog::default();
    catalog.add(example()).unwrap();
    let sub = "$ORIGIN sub.example.test.\n$TTL 60\n@ SOA ns hostmaster 1 2 3 4 5\n@ NS ns\nwww A 192.0.2.1\n";
    catalog
        .add(Zone::parse(Path::new("sub.zone"), sub).unwrap())
        .unwrap();
    let origin = |n: &str| catalog.find(&name(n)).map(|z| z.origin().to_string());
    assert_eq!(
        origin("www.sub.example.test."),
        Some("sub.example.test.".into())
    );
    assert_eq!(origin("www.example.test."), Some("example.test.".into()));
    assert_eq!(origin("www.other.test."), None);
    let again = catalog.add(example()).unwrap_err().to_string();
    assert!(again.contains("defined twice"), "{again}");
}

#[test]
fn a_catalog_s_clones_and_a_zone_kept_across_a_reload_share_its_records() {
    let mut catalog = Catalog::default();
    catalog.add(example()).unwrap();
    // A clone for each reactor that runs the service.
    let clone = catalog.clone();
    assert!(std::sync::Arc::ptr_eq(
        &catalog.zones()[0],
        &clone.zones()[0]
    ));
    // A zone kept across a reload goes into the new catalog as it is.
    let mut next = Catalog::default();
    next.add(catalog.zones()[0].clone()).unwrap();
    assert!(std::sync::Arc::ptr_eq(
        &catalog.zones()[0],
        &next.zones()[0]
    ));
}

#[test]
fn catalogs_are_equal_when_they_share_their_zones_and_a_zone_read_again_unchanged_is_shared() {
    let catalog = |zone: Zone| {
        let mut c = Catalog::default();
        c.add(zone).unwrap();
        c
    };
    let running = catalog(example());
    // Read again: the same records, but not the zone in service, so not equal (comparing
    // never walks records).
    let mut again = catalog(example());
    assert_ne!(again, running);
    again.share_unchanged(&running);
    assert_eq!(again, running);
    assert!(std::sync::Arc::ptr_eq(
        &again.zones()[0],
        &running.zones()[0]
    ));
    // A zone that changed stays the one read.
    let edited = EXAMPLE.replace("192.0.2.10", "192.0.2.99");
    assert_ne!(edited, EXAMPLE);
    let mut changed = catalog(Zone::parse(Path::new("example.test.zone"), &edited).unwrap());
    changed.share_unchanged(&running);
    assert_ne!(changed, running);
    // So does one of the same records from another file.
    let mut elsewhere = catalog(Zone::parse(Path::new("copy.zone"), EXAMPLE).unwrap());
    elsewhere.share_unchanged(&running);
    assert_ne!(elsewhere, running);
}

#[test]
fn errors_name_the_line_and_what_to_do() {
    let at = |extra: &str| error(&format!("{HEAD}{extra}"));
    // A record whose data is longer than RDLENGTH can say, and an RRset no message can
    // carry: nothing could answer or transfer them.
    let long_text = format!("\"{}\" ", "b".repeat(255)).repeat(300);
    let (line, message) = at(&format!("www A 192.0.2.1\na TXT {long_text}\n"));
    assert_eq!(line, 5, "{message}");
    assert!(message.contains("at most 65,535 bytes"), "{message}");
    let string = format!("\"{}\"", "c".repeat(255));
    let set: String = (0..300)
        .map(|i| format!("t TXT {string} \"{i}\"\n"))
        .collect();
    let (line, message) = at(&set);
    assert!((4..304).contains(&line), "{line}: {message}");
    assert!(
        message.contains("the TXT records of t.example.test."),
        "{message}"
    );
    assert!(
        message.contains("more than a DNS message can carry"),
        "{message}"
    );
    // Large sets that fit are kept.
    let fits: String = (0..200)
        .map(|i| format!("t TXT {string} \"{i}\"\n"))
        .collect();
    Zone::parse(Path::new("ok.zone"), &format!("{HEAD}{fits}")).unwrap();
    assert_eq!(at("www A 300.1.1.1\n").0, 4);
    assert!(at("www A 300.1.1.1\n").1.contains("not an IPv4 address"));
    assert!(at("www A\n").1.contains("takes 1 field"));
    assert!(at("www NULL \"x\"\n").1.contains("not supported"));
    assert!(at("www BOGUS x\n").1.contains("not a record type"));
    // A DNAME's generic form must spell a name, uncompressed; never a meta type.
    let dname = at("d TYPE39 \\# 2 c00c\n").1;
    assert!(dname.contains("not a domain name"), "{dname}");
    assert!(at("d TYPE41 \\# 0\n").1.contains("meta or question type"));
    assert!(at("d TYPE255 \\# 0\n").1.contains("meta or question type"));
    assert!(at("www CH A 192.0.2.1\n").1.contains("only IN"));
    assert!(
        at("www.other.test. A 192.0.2.1\n")
            .1
            .contains("outside the zone")
    );
    assert!(
        at("www CNAME a\nwww A 192.0.2.1\n")
            .1
            .contains("CNAME must be alone")
    );
    assert_eq!(at("www CNAME a\nwww A 192.0.2.1\n").0, 5);
    assert!(at("@ SOA a b 1 2 3 4 5\n").1.contains("second SOA"));
    assert!(at("x MX ten mail\n").1.contains("preference"));
    // An NS or MX naming an alias (RFC 2181 §10.3), wherever the CNAME is in the file.
    let (line, message) = at("ns2 CNAME www\n@ NS ns2\nwww A 192.0.2.1\n");
    assert_eq!(line, 5, "{message}");
    assert!(message.contains("is an alias"), "{message}");
    assert!(
        at("@ MX 10 mail\nmail CNAME www\nwww A 192.0.2.1\n")
            .1
            .contains("is an alias")
    );
    // One naming a name outside the zone is not looked into.
    Zone::parse(
        Path::new("ok.zone"),
        &format!("{HEAD}@ MX 10 mail.elsewhere.test.\n"),
    )
    .unwrap();
    assert!(at("*.w NS ns\n").1.contains("cannot hold NS"));
    assert!(
        at("$GENERATE 5-1 h$ A 192.0.2.$\n")
            .1
            .contains("must go up")
    );
    assert!(
        at("$GENERATE 0-70000 h$ A 192.0.2.1\n")
            .1
            .contains("more than 65536")
    );
    assert_eq!(
        at("$GENERATE 1-3 h$ A 192.0.2.${254}\n").0,
        4,
        "the line of the $GENERATE"
    );
    // Each line within its bound, five of them are past the zone's.
    let five: String = (0..5)
        .map(|i| format!("$GENERATE 0-65535 h{i}-$ A 192.0.2.1\n"))
        .collect();
    let (line, message) = at(&five);
    assert_eq!(line, 8, "the line that went past: {message}");
    assert!(
        message.contains("more than 262144 records in this zone"),
        "{message}"
    );
    assert!(at("x SRV 1 2 port t\n").1.contains("port"));

    assert!(error("www A 192.0.2.1\n").1.contains("no $ORIGIN"));
    assert!(
        error("$ORIGIN a.test.\nwww 60 A 192.0.2.1\n")
            .1
            .contains("no SOA")
    );
    assert!(
        error("$ORIGIN a.test.\nwww 60 A 192.0.2.1\n@ 60 SOA a b 1 2 3 4 5\n")
            .1
            .contains("must come first")
    );
    assert_eq!(
        error("$ORIGIN a.test.\n@ SOA a b (\n 1 2\n 3 4 5\n@ NS a\n").0,
        2
    );
    // No NS at the apex: an indented NS line belongs to the owner above it.
    let (line, message) =
        error("$ORIGIN a.test.\n$TTL 60\n@ SOA a b 1 2 3 4 5\nwww A 192.0.2.1\n  NS a\n");
    assert_eq!(line, 3, "the SOA's line: {message}");
    assert!(message.contains("no NS record at its apex"), "{message}");
}

#[test]
fn a_record_without_any_ttl_takes_the_soa_minimum_only_for_the_soa() {
    let (line, message) = error("$ORIGIN a.test.\nwww A 192.0.2.1\n@ SOA a b 1 2 3 4 5\n");
    assert_eq!(line, 2);
    assert!(message.contains("$TTL"), "{message}");
    let zone = Zone::parse(
        Path::new("ok.zone"),
        "$ORIGIN a.test.\n@ SOA a b 1 2 3 4 5\n@ NS a\nwww A 192.0.2.1\n",
    )
    .unwrap();
    let www = zone.lookup(&name("www.a.test."), RecordType::A);
    assert_eq!(www.answers[0].ttl, 5, "the previous record's TTL");
}

const EDGE: &str = include_str!("../../testdata/edge.test.zone");

fn edge() -> Zone {
    Zone::parse(Path::new("edge.test.zone"), EDGE).unwrap()
}

fn texts(records: &[hickory_proto::rr::Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect()
}

#[test]
fn wildcards_answer_missing_names_only_with_the_asked_name_as_owner() {
    let zone = edge();
    let x = zone.lookup(&name("X.edge.test."), RecordType::A);
    assert_eq!(texts(&x.answers), ["X.edge.test. A 192.0.2.1"]);
    let exists = zone.lookup(&name("www.edge.test."), RecordType::MX);
    assert!(exists.answers.is_empty() && exists.rcode == ResponseCode::NoError);
    let ent = zone.lookup(&name("b.edge.test."), RecordType::A);
    assert!(ent.answers.is_empty() && ent.rcode == ResponseCode::NoError);
    let under_ent = zone.lookup(&name("c.b.edge.test."), RecordType::A);
    assert_eq!(under_ent.rcode, ResponseCode::NXDomain);
    let nodata = zone.lookup(&name("q.empty.edge.test."), RecordType::A);
    assert!(nodata.answers.is_empty() && nodata.rcode == ResponseCode::NoError);
    assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);
}

#[test]
fn a_cut_refers_and_keeps_ds_for_the_parent() {
    let zone = edge();
    let referral = zone.lookup(&name("a.b.sub.edge.test."), RecordType::A);
    assert!(!referral.authoritative);
    assert_eq!(referral.authorities.len(), 3);
    assert_eq!(
        texts(&referral.additionals),
        [
            "ns1.sub.edge.test. A 192.0.2.200",
            "ns.other.edge.test. A 192.0.2.201"
        ]
    );
    let ds = zone.lookup(&name("sub.edge.test."), RecordType::DS);
    assert!(ds.authoritative);
    assert_eq!(ds.answers[0].record_type(), RecordType::DS);
}

#[test]
fn a_cname_s_signatures_and_nsec_record_stand_beside_it() {
    let rrsig = "RRSIG CNAME 8 3 60 20270101000000 20260101000000 12345 example.test. AAAA";
    let nsec = "NSEC zz.example.test. CNAME RRSIG NSEC";
    for order in [
        format!("www CNAME mail\nwww {rrsig}\nwww {nsec}\n"),
        format!("www {rrsig}\nwww {nsec}\nwww CNAME mail\n"),
    ] {
        let zone = Zone::parse(
            Path::new("signed.zone"),
            &format!("{HEAD}mail A 192.0.2.25\n{order}"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let sigs = zone.lookup(&name("www.example.test."), RecordType::RRSIG);
        assert_eq!(sigs.answers.len(), 1, "{order}");
        let a = zone.lookup(&name("www.example.test."), RecordType::A);
        let types: Vec<_> = a.answers.iter().map(|r| r.record_type()).collect();
        assert_eq!(types, [RecordType::CNAME, RecordType::A], "{order}");
    }
    // ANY gets one RRset of data, not the signature written first.
    let zone = Zone::parse(
        Path::new("signed.zone"),
        &format!(
            "{HEAD}mail {}\nmail A 192.0.2.25\n",
            rrsig.replace("CNAME", "A")
        ),
    )
    .unwrap();
    let any = zone.lookup(&name("mail.example.test."), RecordType::ANY);
    let types: Vec<_> = any.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types, [RecordType::A]);
    // Anything else beside a CNAME is still refused, whichever comes first.
    let (_, message) = error(&format!("{HEAD}www {rrsig}\nwww CNAME a\nwww TXT x\n"));
    assert!(message.contains("CNAME must be alone"), "{message}");
}

#[test]
fn only_regular_files_inside_the_zone_s_directory_are_included() {
    let root = tempfile::tempdir().unwrap();
    let zones = root.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    let secret = root.path().join("secret");
    std::fs::write(&secret, "root:$6$hash:20228:0:99999:7:::\n").unwrap();
    std::os::unix::fs::symlink(&secret, zones.join("link.inc")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", zones.join("zero.inc")).unwrap();
    let top = zones.join("top.zone");
    let include = |path: &str| {
        Zone::parse(&top, &format!("{HEAD}$INCLUDE {path}\n")).map_err(|e| e.to_string())
    };
    for path in [
        secret.to_str().unwrap(),
        "../secret",
        "link.inc",
        "zero.inc",
        "/dev/zero",
    ] {
        let e = include(path).unwrap_err();
        assert!(
            e.contains("is outside") && e.contains("directory"),
            "{path}: {e}"
        );
        assert!(
            !e.contains("hash"),
            "{path}: the file's text is not quoted: {e}"
        );
    }
    // A zone file named without a directory confines its includes to the working one.
    let relative = Zone::parse(
        Path::new("relative.zone"),
        &format!("{HEAD}$INCLUDE {}\n", secret.display()),
    )
    .unwrap_err()
    .to_string();
    assert!(relative.contains("is outside"), "{relative}");
    let fifo = zones.join("pipe.inc");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.unwrap().success());
    let e = include("pipe.inc").unwrap_err();
    assert!(e.contains("not a regular file"), "{e}");
    let e = Zone::load(Path::new("/dev/zero")).unwrap_err().to_string();
    assert!(e.contains("not a regular file"), "{e}");
    std::fs::create_dir(zones.join("inc")).unwrap();
    std::fs::write(zones.join("inc/hosts"), "host A 192.0.2.7\n").unwrap();
    let zone = include("inc/hosts").unwrap();
    let host = zone.lookup(&name("host.example.test."), RecordType::A);
    assert_eq!(host.answers.len(), 1);
}

#[test]
fn a_zone_s_files_together_are_read_to_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    let big = "; ".to_owned() + &"x".repeat(64 << 20) + "\n";
    std::fs::write(dir.path().join("big.inc"), big).unwrap();
    let top = dir.path().join("top.zone");
    let e = Zone::parse(&top, &format!("{HEAD}{}", "$INCLUDE big.inc\n".repeat(5))).unwrap_err();
    assert!(e.message.contains("more than 256 MiB"), "{e}");
    assert_eq!(
        e.line, 7,
        "the fourth include, past 256 MiB with the top file: {e}"
    );
}

#[test]
fn includes_nest_to_a_bound_and_never_in_a_loop() {
    let dir = tempfile::tempdir().unwrap();
    let file = |n: usize| dir.path().join(format!("f{n}.zone"));
    for n in 0..12 {
        std::fs::write(file(n), format!("$INCLUDE f{}.zone\n", n + 1)).unwrap();
    }
    std::fs::write(file(12), "www A 192.0.2.1\n").unwrap();
    let deep = Zone::parse(
        &dir.path().join("top.zone"),
        &format!("{HEAD}$INCLUDE f0.zone\n"),
    )
    .unwrap_err();
    assert!(deep.message.contains("nest deeper than 8"), "{deep}");

    std::fs::write(file(0), "$INCLUDE f1.zone\n").unwrap();
    std::fs::write(file(1), "\n$INCLUDE f0.zone\n").unwrap();
    let looped = Zone::parse(
        &dir.path().join("top.zone"),
        &format!("{HEAD}$INCLUDE f0.zone\n"),
    )
    .unwrap_err();
    assert_eq!((looped.file.clone(), looped.line), (file(1), 2), "{looped}");
    assert!(looped.message.contains("include loop"), "{looped}");

    std::fs::write(file(0), "www A 192.0.2.9\n").unwrap();
    let origin = Zone::parse(
        &dir.path().join("top.zone"),
        &format!("{HEAD}$INCLUDE f0.zone sub.example.test.\nafter A 192.0.2.2\n"),
    )
    .unwrap();
    let www = origin.lookup(&name("www.sub.example.test."), RecordType::A);
    assert_eq!(www.answers.len(), 1);
    let after = origin.lookup(&name("after.example.test."), RecordType::A);
    assert_eq!(
        after.answers.len(),
        1,
        "the origin is the including file's again"
    );
}

#[test]
fn the_generic_form_reads_known_types_as_themselves() {
    let zone = Zone::parse(
        Path::new("g.zone"),
        &format!("{HEAD}a TYPE1 \\# 4 c0000201\nb A \\# 4 C0 00 02 02\nc TYPE999 \\# 0\n"),
    )
    .unwrap();
    let a = zone.lookup(&name("a.example.test."), RecordType::A);
    assert!(matches!(a.answers[0].data, RData::A(_)), "{:?}", a.answers);
    let b = zone.lookup(&name("b.example.test."), RecordType::A);
    assert_eq!(b.answers[0].data.to_string(), "192.0.2.2");
    let (_, wrong) = error(&format!("{HEAD}a A \\# 3 c00002\n"));
    assert!(wrong.contains("not a valid A"), "{wrong}");
    let (_, length) = error(&format!("{HEAD}a A \\# 5 c0000201\n"));
    assert!(length.contains("says 5 bytes"), "{length}");
}

#[test]
fn escapes_are_read_as_rfc_1035_says_in_strings_and_names() {
    let text = format!(
        "{HEAD}@ NS ns\nns A 192.0.2.1\n\
         t1 TXT \"c\\065d\" \"v=DKIM1\\059 k=rsa\" \"q\\\"q\"\n\
         t2 TXT unquoted\\ word\n\
         \\097b A 192.0.2.2\n\
         foo\\ bar A 192.0.2.3\n\
         foo* A 192.0.2.4\n\
         dot\\.ted A 192.0.2.5\n\
         nul\\000x A 192.0.2.6\n"
    );
    let zone = Zone::parse(Path::new("escapes.zone"), &text).unwrap();
    let strings = |owner: &str| match &zone
        .lookup(&name(&format!("{owner}.example.test.")), RecordType::TXT)
        .answers[0]
        .data
    {
        RData::TXT(txt) => txt.txt_data.iter().map(|s| s.to_vec()).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    let expected: [&[u8]; 3] = [b"cAd", b"v=DKIM1; k=rsa", b"q\"q"];
    assert_eq!(strings("t1"), expected);
    assert_eq!(strings("t2"), [b"unquoted word"]);
    let owner = |labels: &[&[u8]]| {
        let origin = name("example.test.");
        Name::from_labels(labels.iter().copied().chain(origin.iter())).unwrap()
    };
    for (labels, address) in [
        (&[&b"ab"[..]][..], "192.0.2.2"),
        (&[b"foo bar"], "192.0.2.3"),
        (&[b"foo*"], "192.0.2.4"),
        (&[b"dot.ted"], "192.0.2.5"),
        (&[b"nul\0x"], "192.0.2.6"),
    ] {
        let found = zone.lookup(&owner(labels), RecordType::A);
        assert_eq!(found.answers.len(), 1, "{labels:?}");
        assert_eq!(found.answers[0].data.to_string(), address);
    }
    // An escaped octet must be three decimal digits up to 255, in names and strings.
    for bad in ["x\\256 A 192.0.2.9", "x TXT \"\\25\""] {
        let (line, message) = error(&format!("{HEAD}{bad}\n"));
        assert_eq!(line, 4, "{message}");
        assert!(message.contains("is not an escaped octet"), "{message}");
    }
}

#[test]
fn the_records_of_one_set_are_served_with_one_ttl_the_lowest() {
    let text = format!(
        "{HEAD}@ NS ns\nns A 192.0.2.1\nfoo 20 A 192.0.2.2\nfoo 10 A 192.0.2.3\nfoo 30 TXT x\n"
    );
    let zone = Zone::parse(Path::new("ttls.zone"), &text).unwrap();
    let a = zone.lookup(&name("foo.example.test."), RecordType::A);
    let ttls: Vec<u32> = a.answers.iter().map(|r| r.ttl).collect();
    assert_eq!(ttls, [10, 10], "RFC 2181 section 5.2");
    let txt = zone.lookup(&name("foo.example.test."), RecordType::TXT);
    assert_eq!(txt.answers[0].ttl, 30, "another set keeps its own");
}
