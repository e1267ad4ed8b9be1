//! Transfers in, without sockets: a transferred zone written and read back, and the
//! wake a NOTIFY sets.

use std::path::Path;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::DNSClass;

use super::*;
use crate::transfer::ixfr::{Changes, apply};
use crate::zone::Zone;

/// Every record of `zone`, its SOA first, as a transfer sends them.
fn records_of(zone: &Zone) -> Vec<Record> {
    zone.owners()
        .iter()
        .flat_map(|owner| zone.records_at(owner).to_vec())
        .collect()
}

#[test]
fn a_transferred_zone_is_written_as_a_file_that_reads_back_the_same() {
    let file = Path::new("secondary.zone");
    let text = concat!(
        "$ORIGIN example.test.\n",
        "@ 3600 IN SOA ns1 hostmaster 7 3600 600 86400 300\n",
        "@ 3600 IN NS ns1\n",
        "@ 3600 IN MX 10 mail\n",
        "@ 3600 IN MX 20 mail.xn--bcher-kva.example.\n",
        "idn IN CNAME xn--bcher-kva.example.\n",
        "@ 3600 IN TXT \"v=spf1 -all\" \"a \\\"quoted\\\" ; string\"\n",
        "@ 3600 IN CAA 0 issue \"ca.example\"\n",
        "ns1 IN A 192.0.2.1\n",
        "ns1 IN AAAA 2001:db8::1\n",
        "www IN CNAME @\n",
        "_sip._udp IN SRV 10 20 5060 ns1\n",
        "old 60 IN DNAME new.example.\n",
        "odd\\032name IN TXT x\n",
        "b IN TYPE65000 \\# 3 abcdef\n",
        "sub IN NS ns.sub\n",
        "ns.sub IN A 192.0.2.9\n",
    );
    let zone = Zone::parse(file, text).unwrap();
    let records = records_of(&zone);
    assert_eq!(records[0].record_type(), RecordType::SOA, "the SOA first");
    let written = zone_text(&records, "transferred\nfrom 192.0.2.1:53").unwrap();
    assert!(written.starts_with("; transferred\n; from 192.0.2.1:53\n"));
    assert!(
        written.contains("ns1.example.test. 3600 IN A 192.0.2.1\n"),
        "{written}"
    );
    let again = Zone::parse(file, &written).unwrap_or_else(|e| panic!("{e}\n{written}"));
    assert_eq!(again, zone, "{written}");
    assert!(
        written.contains(" MX 20 mail.xn--bcher-kva.example.\n"),
        "{written}"
    );
    // Built from the records as they came, the zone is the one the text makes.
    assert_eq!(Zone::from_transfer(file, records.clone(), 3).unwrap(), zone);

    // A TTL with its top bit set is 0 (RFC 2181 section 8), not a file that fails.
    let mut odd = records.clone();
    odd[1].ttl = 1 << 31;
    let written = zone_text(&odd, "").unwrap();
    assert!(
        written.contains("\n 0 IN NS ns1.example.test.\n"),
        "{written}"
    );
    let read = Zone::parse(file, &written).unwrap();
    assert_eq!(Zone::from_transfer(file, odd, 1).unwrap(), read);

    // What a zone file could not hold is refused, the record's line named as the text
    // would have it.
    let refused = |change: &dyn Fn(&mut Record)| {
        let mut changed = records.clone();
        change(&mut changed[1]);
        let text_error = Zone::parse(file, &zone_text(&changed, "").unwrap()).unwrap_err();
        let error = Zone::from_transfer(file, changed, 1).unwrap_err();
        assert_eq!(error.line, text_error.line);
        error.message
    };
    let chaos = refused(&|r| r.dns_class = DNSClass::CH);
    assert!(chaos.contains("class CH is not supported"), "{chaos}");
    let meta = refused(&|r| {
        r.data = RData::Unknown {
            code: RecordType::from(128),
            rdata: hickory_proto::rr::rdata::NULL::with(vec![1]),
        }
    });
    assert!(meta.contains("meta or question type"), "{meta}");
    let pointer = refused(&|r| {
        r.data = RData::Unknown {
            code: RecordType::from(39),
            rdata: hickory_proto::rr::rdata::NULL::with(vec![0xc0, 0x0c]),
        }
    });
    assert!(pointer.contains("is not a domain name"), "{pointer}");
}

/// TXT and SRV are written as text, a zone file's reader's, not in the generic form:
/// every octet of a TXT string reads back as it came, whatever it is.
#[test]
fn txt_and_srv_are_written_as_text_and_read_back_the_same() {
    use hickory_proto::rr::rdata::{SRV, TXT};
    let file = Path::new("secondary.zone");
    let zone = Zone::parse(
        file,
        "$ORIGIN example.test.\n@ 3600 IN SOA ns1 hostmaster 7 3600 600 86400 300\n\
         @ 3600 IN NS ns1\nns1 IN A 192.0.2.1\n",
    )
    .unwrap();
    let mut records = records_of(&zone);
    let every_octet: Vec<u8> = (0..=255).collect();
    let strings = [
        b"v=spf1 -all".to_vec(),
        Vec::new(),
        every_octet[..128].to_vec(),
        every_octet[128..].to_vec(),
        b"\\\"; ()$@\t".to_vec(),
        vec![b'x'; 255],
    ];
    let owner = Name::from_ascii("txt.example.test.").unwrap();
    records.push(Record::from_rdata(
        owner.clone(),
        300,
        RData::TXT(TXT::from_bytes(strings.iter().map(Vec::as_slice).collect())),
    ));
    records.push(Record::from_rdata(
        Name::from_ascii("_sip._udp.example.test.").unwrap(),
        300,
        RData::SRV(SRV::new(
            10,
            20,
            5060,
            Name::from_ascii("ns1.example.test.").unwrap(),
        )),
    ));
    let written = zone_text(&records, "copy").unwrap();
    assert!(
        written.contains("txt.example.test. 300 IN TXT \"v=spf1 -all\" \"\" \"\\000\\001"),
        "{written}"
    );
    assert!(
        written.contains(" 300 IN SRV 10 20 5060 ns1.example.test.\n"),
        "{written}"
    );
    assert!(
        !written.contains("TYPE16") && !written.contains("TYPE33"),
        "{written}"
    );
    let again = Zone::parse(file, &written).unwrap_or_else(|e| panic!("{e}\n{written}"));
    assert_eq!(
        again,
        Zone::from_transfer(file, records, 1).unwrap(),
        "{written}"
    );
    let RData::TXT(txt) = &again.records_at(&LowerName::from(&owner))[0].data else {
        panic!("{written}")
    };
    let read: Vec<&[u8]> = txt.txt_data.iter().map(|s| &s[..]).collect();
    assert_eq!(read, strings.iter().map(Vec::as_slice).collect::<Vec<_>>());
}

#[test]
fn a_signed_zone_is_built_from_its_records_as_the_text_makes_it() {
    let file = Path::new("signed.zone");
    let zone = Zone::parse(file, crate::zone::proof_tests::SIGNED).unwrap();
    let records = records_of(&zone);
    let built = Zone::from_transfer(file, records.clone(), 2).unwrap();
    assert_eq!(built, zone);
    assert!(built.is_signed());
    // An SOA timer a zone file could not hold.
    let mut long = records;
    if let RData::SOA(soa) = &mut long[0].data {
        soa.expire = -1;
    }
    let error = Zone::from_transfer(file, long, 2).unwrap_err();
    assert!(
        error.message.contains("longer than the largest TTL"),
        "{}",
        error.message
    );
    assert_eq!(error.line, 2);
}

#[test]
fn a_signed_zone_reads_back_the_same() {
    let file = Path::new("signed.zone");
    let zone = Zone::parse(file, crate::zone::proof_tests::SIGNED).unwrap();
    assert!(zone.is_signed());
    let written = zone_text(&records_of(&zone), "copy").unwrap();
    let again = Zone::parse(file, &written).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, zone);
}

#[test]
fn a_notify_wakes_the_task_keeping_the_zone_once_and_only_while_it_listens() {
    let origin = Name::from_ascii("wake.test.").unwrap();
    assert!(!wake("inbound-tests", &origin), "nobody listens");
    let listening = listen("inbound-tests", &origin);
    assert!(wake(
        "inbound-tests",
        &Name::from_ascii("WAKE.test.").unwrap()
    ));
    assert!(!wake("another service", &origin));
    // Woken before it waits: the wait ends at once, and only once.
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    {
        let mut wait = Box::pin(listening.notified());
        assert!(wait.as_mut().poll(&mut cx).is_ready());
    }
    {
        let mut wait = Box::pin(listening.notified());
        assert!(wait.as_mut().poll(&mut cx).is_pending());
    }
    drop(listening);
    assert!(!wake("inbound-tests", &origin), "the task is gone");
}

/// A fetch of `example.test.` holding serial `have`, without a connection.
fn state(have: Option<u32>) -> State {
    let origin = Name::from_ascii("example.test.").unwrap();
    State::new(
        &origin,
        None,
        have.map(soa).as_ref(),
        Steps::none(),
        StepDetail::from_static("test"),
    )
}

fn soa(serial: u32) -> Record {
    let text = format!(
        "example.test. 60 IN SOA ns. hostmaster. {serial} 60 60 600 60\nexample.test. 60 IN NS ns.example.test.\n"
    );
    let zone = Zone::parse(Path::new("t"), &text).unwrap();
    zone.soa().clone()
}

fn a(name: &str) -> Record {
    let text = format!(
        "example.test. 60 IN SOA ns. hostmaster. 1 60 60 600 60\nexample.test. 60 IN NS ns.example.test.\n{name} 60 IN A 192.0.2.1\n"
    );
    let zone = Zone::parse(Path::new("t"), &text).unwrap();
    zone.records_at(&LowerName::new(&Name::from_ascii(name).unwrap()))[0].clone()
}

/// An answer to `state`'s last query with `records` and `rcode`, AA set.
fn answer(state: &State, records: Vec<Record>, rcode: ResponseCode) -> Vec<u8> {
    let mut message = Message::new(state.id, MessageType::Response, OpCode::Query);
    message.metadata.authoritative = true;
    message.metadata.response_code = rcode;
    message.answers = records;
    message.to_vec().unwrap()
}

fn done(next: Next) -> Result<Fetched, String> {
    match next {
        Next::Done(result) => result,
        Next::Wait => Err("waits".into()),
        Next::Ask(_) => Err("asks".into()),
    }
}

#[test]
fn a_primary_s_answers_are_taken_only_as_rfc_5936_says() {
    // Current: the copy's serial, or a primary behind it.
    let mut s = state(Some(7));
    s.ask(RecordType::SOA);
    assert_eq!(
        done(s.take(&answer(&s, vec![soa(7)], ResponseCode::NoError))),
        Ok(Fetched::Current(7))
    );
    // Half the serial space ahead is no newer (RFC 1982 §3.2): not transferred, or the
    // copy would flip between the two serials at each NOTIFY.
    let half = 7 + (1 << 31);
    let mut s = state(Some(7));
    s.ask(RecordType::SOA);
    assert_eq!(
        done(s.take(&answer(&s, vec![soa(half)], ResponseCode::NoError))),
        Ok(Fetched::Current(half))
    );
    let mut s = state(Some(7));
    s.ask(RecordType::SOA);
    let mut no_aa = Message::from_vec(&answer(&s, vec![soa(8)], ResponseCode::NoError)).unwrap();
    no_aa.metadata.authoritative = false;
    assert!(
        done(s.take(&no_aa.to_vec().unwrap()))
            .unwrap_err()
            .contains("AA not set")
    );
    let mut s = state(Some(7));
    s.ask(RecordType::SOA);
    let refused = answer(&s, Vec::new(), ResponseCode::Refused);
    assert!(
        done(s.take(&refused))
            .unwrap_err()
            .contains("answered the SOA query REFUSED")
    );

    // Newer: the AXFR is asked, over as many messages as it takes, the SOA first and last.
    let newer = |s: &mut State| {
        s.ask(RecordType::SOA);
        let asked = s.take(&answer(s, vec![soa(8)], ResponseCode::NoError));
        assert!(matches!(asked, Next::Ask(_)), "the AXFR asked");
    };
    let mut s = state(Some(7));
    newer(&mut s);
    let first = answer(
        &s,
        vec![soa(8), a("a.example.test.")],
        ResponseCode::NoError,
    );
    assert!(matches!(s.take(&first), Next::Wait));
    let last = answer(
        &s,
        vec![a("b.example.test."), soa(8)],
        ResponseCode::NoError,
    );
    let Ok(Fetched::Zone(records)) = done(s.take(&last)) else {
        panic!("the zone")
    };
    assert_eq!(records.len(), 3, "the SOA once, then the two records");

    for (messages, says) in [
        (
            vec![vec![soa(9), a("a.example.test.")]],
            "the transfer holds serial 9, where the SOA query answered 8",
        ),
        (
            vec![vec![a("a.example.test."), soa(8)]],
            "does not start with the SOA",
        ),
        (
            vec![vec![soa(8), a("a.example.test."), soa(9)]],
            "an SOA of serial 9 in a transfer of serial 8",
        ),
        (
            vec![vec![soa(8), soa(8), a("a.example.test.")]],
            "records after the closing SOA",
        ),
    ] {
        let mut s = state(Some(7));
        newer(&mut s);
        let mut next = Next::Wait;
        for records in messages {
            next = s.take(&answer(&s, records, ResponseCode::NoError));
        }
        assert!(done(next).unwrap_err().contains(says), "{says}");
    }
    // Another id, a truncated answer, a refusal mid-transfer.
    let mut s = state(None);
    newer(&mut s);
    let mut other = Message::from_vec(&answer(&s, vec![soa(8)], ResponseCode::NoError)).unwrap();
    other.metadata.id = s.id.wrapping_add(1);
    assert!(
        done(s.take(&other.to_vec().unwrap()))
            .unwrap_err()
            .contains("its id")
    );
    let mut s = state(None);
    newer(&mut s);
    let mut cut = Message::from_vec(&answer(&s, vec![soa(8)], ResponseCode::NoError)).unwrap();
    cut.metadata.truncation = true;
    assert!(
        done(s.take(&cut.to_vec().unwrap()))
            .unwrap_err()
            .contains("truncated")
    );
    let mut s = state(None);
    newer(&mut s);
    let notauth = answer(&s, Vec::new(), ResponseCode::NotAuth);
    assert!(
        done(s.take(&notauth))
            .unwrap_err()
            .contains("answered the AXFR NOTAUTH")
    );
}

/// The query in `next`, which asks one.
fn asked(next: &Next) -> Message {
    let Next::Ask(packet) = next else {
        panic!("a query asked")
    };
    Message::from_vec(packet).unwrap()
}

/// The zone of `names` (an A record each) at `serial`, its SOA and NS too.
fn zone_of(serial: u32, names: &[&str]) -> Zone {
    let mut text = format!(
        "example.test. 60 IN SOA ns. hostmaster. {serial} 60 60 600 60\nexample.test. 60 IN NS ns.example.test.\n"
    );
    for name in names {
        text.push_str(&format!("{name} 60 IN A 192.0.2.1\n"));
    }
    Zone::parse(Path::new("t"), &text).unwrap()
}

/// The owners of `records` other than the apex, sorted.
fn owners(records: &[Record]) -> Vec<String> {
    let mut names: Vec<String> = records
        .iter()
        .filter(|r| r.name.to_ascii() != "example.test.")
        .map(|r| r.name.to_ascii())
        .collect();
    names.sort();
    names
}

/// A fetch holding `have` that asked the SOA, was answered serial 9, and asked IXFR
/// with the SOA of `have` in its authority section (RFC 1995 section 3).
fn ixfr(have: &Zone) -> State {
    let mut s = State::new(
        have.origin(),
        None,
        Some(have.soa()),
        Steps::none(),
        StepDetail::from_static("test"),
    );
    s.ixfr = true;
    s.ask(RecordType::SOA);
    let next = s.take(&answer(&s, vec![soa(9)], ResponseCode::NoError));
    let query = asked(&next);
    assert_eq!(query.queries[0].query_type(), RecordType::IXFR);
    assert_eq!(query.authorities, vec![have.soa().clone()]);
    s
}

/// The changes `s` reads from `messages`, each an answer to its IXFR.
fn changes_of(s: &mut State, messages: Vec<Vec<Record>>) -> Result<Changes, String> {
    let mut next = Next::Wait;
    for records in messages {
        next = s.take(&answer(s, records, ResponseCode::NoError));
    }
    match done(next)? {
        Fetched::Changes(changes) => Ok(*changes),
        other => Err(format!("not changes: {other:?}")),
    }
}

/// Two versions' changes to the zone of a and b at 7: 7 to 8 deletes a and adds c, 8 to
/// 9 deletes c again and adds d.
fn two_versions() -> Vec<Record> {
    vec![
        soa(9),
        soa(7),
        a("a.example.test."),
        soa(8),
        a("c.example.test."),
        soa(8),
        a("c.example.test."),
        soa(9),
        a("d.example.test."),
        soa(9),
    ]
}

#[test]
fn an_ixfr_s_changes_are_read_version_by_version_over_any_split_into_messages() {
    let held = zone_of(7, &["a.example.test.", "b.example.test."]);
    let records = two_versions();
    // Whole, one record a message (the first SOA alone, as BIND's `one-answer` sends
    // it), and split after the second.
    for messages in [
        vec![records.clone()],
        records.iter().map(|r| vec![r.clone()]).collect(),
        vec![records[..2].to_vec(), records[2..].to_vec()],
    ] {
        let changes = changes_of(&mut ixfr(&held), messages).unwrap();
        assert_eq!(
            changes
                .steps
                .iter()
                .map(|c| (c.from, c.to))
                .collect::<Vec<_>>(),
            [(7, 8), (8, 9)]
        );
        assert_eq!((changes.len(), changes.soa.clone()), (4, soa(9)));
    }
    // The condensed form (one version from 7 to 9), and a version with no change but
    // its SOA.
    let condensed = vec![
        soa(9),
        soa(7),
        a("a.example.test."),
        soa(9),
        a("d.example.test."),
        soa(9),
    ];
    let changes = changes_of(&mut ixfr(&held), vec![condensed]).unwrap();
    assert_eq!((changes.steps.len(), changes.len()), (1, 2));
    let empty = vec![soa(9), soa(7), soa(9), soa(9)];
    assert!(
        changes_of(&mut ixfr(&held), vec![empty])
            .unwrap()
            .is_empty()
    );
}

#[test]
fn an_ixfr_s_changes_are_made_into_the_copy_held_and_refused_when_they_do_not_apply() {
    let held = zone_of(7, &["a.example.test.", "b.example.test."]);
    let changes = changes_of(&mut ixfr(&held), vec![two_versions()]).unwrap();
    let records = apply(&held, changes.clone()).unwrap();
    assert_eq!(records[0], soa(9), "their SOA first");
    assert_eq!(owners(&records), ["b.example.test.", "d.example.test."]);
    let built = Zone::from_transfer(Path::new("t"), records, 1).unwrap();
    assert_eq!(built.serial(), 9);

    // A record the copy does not hold deleted, changes from another serial, a record
    // deleted twice: the copy is left as it is.
    let other = zone_of(7, &["b.example.test."]);
    let why = apply(&other, changes.clone()).unwrap_err().0;
    assert!(
        why.contains("deletes a A record of a.example.test. that the copy does not hold"),
        "{why}"
    );
    let later = zone_of(8, &["a.example.test."]);
    let why = apply(&later, changes.clone()).unwrap_err().0;
    assert!(
        why.contains("a change from serial 7 where the copy is at 8"),
        "{why}"
    );
    let mut twice = changes.clone();
    twice.steps[1].deleted.push(a("a.example.test."));
    assert!(apply(&held, twice).unwrap_err().0.contains("does not hold"));
    // Names compare without case.
    let mut upper = changes.clone();
    upper.steps[0].deleted[0] = a("A.EXAMPLE.TEST.");
    assert_eq!(
        owners(&apply(&held, upper).unwrap()),
        ["b.example.test.", "d.example.test."]
    );
    // A record added that the copy holds replaces it (its TTL, say), once.
    let mut longer = a("b.example.test.");
    longer.ttl = 3600;
    let mut replaced = changes;
    replaced.steps[0].added.push(longer);
    let records = apply(&held, replaced).unwrap();
    assert_eq!(owners(&records), ["b.example.test.", "d.example.test."]);
    assert!(records.iter().any(|r| r.ttl == 3600));
}

#[test]
fn an_ixfr_answered_whole_or_not_served_gives_the_zone_whole() {
    let held = zone_of(7, &["a.example.test.", "b.example.test."]);
    // Answered with the zone whole (RFC 1995 section 4): taken as an AXFR's.
    let mut s = ixfr(&held);
    let whole = vec![soa(9), a("x.example.test."), soa(9)];
    let Ok(Fetched::Zone(records)) = done(s.take(&answer(&s, whole, ResponseCode::NoError))) else {
        panic!("the zone")
    };
    assert_eq!(owners(&records), ["x.example.test."]);

    // Not served (NOTIMP, FORMERR, REFUSED): the AXFR asked on the same connection.
    for rcode in [
        ResponseCode::NotImp,
        ResponseCode::FormErr,
        ResponseCode::Refused,
    ] {
        let mut s = ixfr(&held);
        let next = s.take(&answer(&s, Vec::new(), rcode));
        assert_eq!(asked(&next).queries[0].query_type(), RecordType::AXFR);
        let whole = vec![soa(9), a("x.example.test."), soa(9)];
        assert!(matches!(
            done(s.take(&answer(&s, whole, ResponseCode::NoError))),
            Ok(Fetched::Zone(_))
        ));
    }
    // Any other error ends the fetch, named (the task asks the zone whole then).
    let mut s = ixfr(&held);
    let failed = done(s.take(&answer(&s, Vec::new(), ResponseCode::ServFail)));
    assert!(failed.unwrap_err().contains("answered the IXFR SERVFAIL"));
    assert_eq!(s.asked, Some(RecordType::IXFR));
}

#[test]
fn an_ixfr_whose_versions_do_not_follow_on_or_go_past_the_primary_s_is_refused() {
    let held = zone_of(7, &["a.example.test."]);
    for (records, says) in [
        (
            vec![soa(9), soa(7), soa(8), soa(7), soa(9)],
            "a change from serial 7 after one to 8",
        ),
        (
            vec![soa(9), soa(7), soa(6)],
            "a change from serial 7 to 6, which is not newer",
        ),
        (
            vec![soa(9), soa(7), soa(7 + (1 << 31))],
            "which is not newer",
        ),
        (
            vec![soa(9), soa(7), soa(11)],
            "a change to serial 11, past the primary's 9",
        ),
        (
            vec![soa(9), soa(7), soa(9), soa(9), a("a.example.test.")],
            "records after the closing SOA",
        ),
    ] {
        let why = changes_of(&mut ixfr(&held), vec![records]).unwrap_err();
        assert!(why.contains(says), "{says}: {why}");
    }
}

#[test]
fn every_record_of_an_ixfr_counts_toward_max_records_its_soas_too() {
    let held = zone_of(7, &["a.example.test."]);
    let mut s = ixfr(&held);
    s.max_records = 5;
    // Versions without a change, SOAs only: 7 to 8 to 9 is five records after the
    // first.
    let soas = vec![soa(9), soa(7), soa(8), soa(8), soa(9), soa(9)];
    assert!(changes_of(&mut s, vec![soas.clone()]).is_ok());
    let mut s = ixfr(&held);
    s.max_records = 4;
    let why = changes_of(&mut s, vec![soas]).unwrap_err();
    assert!(why.contains("more than 4 records"), "{why}");
}
