//! The journal written and read back: entries made into the zone as their IXFRs were,
//! an entry cut short left out, and journals of another copy or zone left out whole.

use std::path::Path;

use hickory_proto::rr::rdata::{A, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record};

use super::*;

const COPY: &str = "$ORIGIN example.test.\n\
    @ 3600 IN SOA ns1 hostmaster 7 3600 600 86400 300\n\
    @ 3600 IN NS ns1\n\
    ns1 IN A 192.0.2.1\n\
    www 300 IN A 192.0.2.10\n\
    www 300 IN TXT \"old\"\n";

fn name(n: &str) -> Name {
    Name::from_ascii(n).unwrap()
}

fn soa(serial: u32) -> Record {
    let data = SOA::new(
        name("ns1.example.test."),
        name("hostmaster.example.test."),
        serial,
        3600,
        600,
        86400,
        300,
    );
    Record::from_rdata(name("example.test."), 3600, RData::SOA(data))
}

fn a(owner: &str, last: u8) -> Record {
    Record::from_rdata(name(owner), 300, RData::A(A::new(192, 0, 2, last)))
}

fn txt(owner: &str, text: &[u8]) -> Record {
    Record::from_rdata(name(owner), 300, RData::TXT(TXT::from_bytes(vec![text])))
}

/// Two IXFRs: 7 to 9 in two steps, then 9 to 10.
fn changes() -> [Changes; 2] {
    let mut one = Change::starting_at(7);
    one.to = 8;
    one.deleted = vec![a("www.example.test.", 10)];
    one.added = vec![a("www.example.test.", 11), a("new.example.test.", 1)];
    let mut two = Change::starting_at(8);
    two.to = 9;
    two.deleted = vec![txt("www.example.test.", b"old")];
    two.added = vec![txt("www.example.test.", b"new \"quoted\" \\ \x00\xff")];
    let mut three = Change::starting_at(9);
    three.to = 10;
    three.deleted = vec![a("new.example.test.", 1)];
    [
        Changes {
            soa: soa(9),
            steps: vec![one, two],
        },
        Changes {
            soa: soa(10),
            steps: vec![three],
        },
    ]
}

#[test]
fn entries_read_back_make_the_zone_their_transfers_made() {
    let file = Path::new("example.test.zone");
    let copy = Zone::parse(file, COPY).unwrap();
    let [first, second] = changes();
    let origin = copy.origin().clone();
    let mut text = header(&origin, 7);
    text.push_str(&entry(7, &first).unwrap());
    text.push_str(&entry(9, &second).unwrap());
    assert!(text.contains(";; ixfr 7 9\n;; deleted 7 8\n"), "{text}");

    let served = ixfr::make(&copy, first.clone(), file, 1).unwrap();
    let served = ixfr::make(&served, second.clone(), file, 1).unwrap();
    let journal = path_of(file);
    assert_eq!(journal, Path::new("example.test.zone.journal"));
    let (read, note) = replay(copy.clone(), &journal, &text);
    assert_eq!(note, None);
    assert_eq!(read, served, "{text}");
    assert_eq!(read.serial(), 10);
    assert_eq!(
        state(&text, &origin),
        State::Journal {
            base: 7,
            last: 10,
            len: text.len()
        }
    );

    // The second entry cut short anywhere: the first is read, and the length of the
    // whole part is where an append goes on.
    let whole = header(&origin, 7).len() + entry(7, &first).unwrap().len();
    let once = ixfr::make(&copy, first, file, 1).unwrap();
    for cut in [whole + 1, whole + 20, text.len() - 1] {
        let torn = &text[..cut];
        let (read, note) = replay(copy.clone(), &journal, torn);
        let note = note.unwrap_or_default();
        assert!(
            note.contains("an entry cut short, left out"),
            "cut at {cut}: {note}"
        );
        assert_eq!(read, once, "cut at {cut}");
        assert_eq!(
            state(torn, &origin),
            State::Journal {
                base: 7,
                last: 9,
                len: whole
            }
        );
    }
}

#[test]
fn a_journal_of_another_copy_or_zone_or_changes_that_do_not_apply_are_left_out() {
    let file = Path::new("example.test.zone");
    let copy = Zone::parse(file, COPY).unwrap();
    let origin = copy.origin().clone();
    let journal = path_of(file);
    let [first, second] = changes();

    // After serial 6: the copy was written whole since.
    let mut text = header(&origin, 6);
    text.push_str(&entry(7, &first).unwrap());
    let (read, note) = replay(copy.clone(), &journal, &text);
    assert_eq!(read, copy);
    assert!(
        note.unwrap()
            .contains("follows serial 6 of the copy, which is at 7")
    );

    // Another zone's, or no journal at all.
    for other in [
        header(&name("other.test."), 7),
        "www IN A 192.0.2.1\n".into(),
    ] {
        let (read, note) = replay(copy.clone(), &journal, &other);
        assert_eq!(read, copy);
        assert!(
            note.unwrap()
                .contains("is not a journal of zone example.test.")
        );
        assert_eq!(state(&other, &origin), State::Foreign);
    }

    // The second entry does not follow on from the first: the zone after the first.
    let mut text = header(&origin, 7);
    text.push_str(&entry(7, &first).unwrap());
    let mut stray = second;
    stray.steps[0].from = 8;
    text.push_str(&entry(8, &stray).unwrap());
    let (read, note) = replay(copy.clone(), &journal, &text);
    assert_eq!(read.serial(), 9);
    let note = note.unwrap();
    assert!(
        note.contains("the change to serial 10 does not make the zone")
            && note.contains("served at serial 9"),
        "{note}"
    );

    // Markers out of order are a broken journal: the copy alone.
    let broken = format!("{};; added 7 8\n;; end 8\n", header(&origin, 7));
    let (read, note) = replay(copy.clone(), &journal, &broken);
    assert_eq!(read, copy);
    assert!(
        note.unwrap()
            .contains("line 2: text outside an entry; what follows is left out")
    );
}

/// Changes the zone is built again for (a wildcard) read back as the zone served: its
/// file the copy's, not the journal's.
#[test]
fn an_entry_the_zone_is_built_again_for_reads_back_as_the_zone_served() {
    let file = Path::new("example.test.zone");
    let copy = Zone::parse(file, COPY).unwrap();
    let mut step = Change::starting_at(7);
    step.to = 8;
    step.added = vec![a("*.example.test.", 7)];
    let changes = Changes {
        soa: soa(8),
        steps: vec![step],
    };
    let mut text = header(copy.origin(), 7);
    text.push_str(&entry(7, &changes).unwrap());
    let served = ixfr::make(&copy, changes, file, 1).unwrap();
    let (read, note) = replay(copy, &path_of(file), &text);
    assert_eq!(note, None);
    assert_eq!(read.file(), file);
    assert_eq!(read, served);
}

/// An entry whose end line came through but not all of its records (a disk that kept
/// the one write and not the other) leaves the entries before it.
#[test]
fn an_entry_that_does_not_read_leaves_those_before_it() {
    let file = Path::new("example.test.zone");
    let copy = Zone::parse(file, COPY).unwrap();
    let origin = copy.origin().clone();
    let [first, second] = changes();
    let mut text = header(&origin, 7);
    text.push_str(&entry(7, &first).unwrap());
    let second = entry(9, &second).unwrap();
    text.push_str(&second.replacen("new.example.test.", "new.example.test. \0\0\0", 1));
    let (read, note) = replay(copy.clone(), &path_of(file), &text);
    assert_eq!(read, ixfr::make(&copy, first.clone(), file, 1).unwrap());
    let note = note.unwrap();
    // The line named is the journal's own.
    let bad = text.lines().position(|l| l.contains('\0')).unwrap() + 1;
    assert!(
        note.contains("the entry at line")
            && note.contains(&format!("example.test.zone.journal:{bad}"))
            && note.contains("served at serial 9"),
        "{note}"
    );

    // Text after the entries that is not one (a disk's garbage): those before it kept.
    let mut text = header(&origin, 7);
    text.push_str(&entry(7, &first).unwrap());
    text.push_str("garbage line here\nfoo. 3600 IN A 1.2.3.4\n;; end 99\n");
    let (read, note) = replay(copy.clone(), &path_of(file), &text);
    assert_eq!(read.serial(), 9);
    assert!(
        note.unwrap()
            .contains("text outside an entry; what follows is left out")
    );
    assert_eq!(
        state(&text, &origin),
        State::Journal {
            base: 7,
            last: 9,
            len: text.find("garbage").unwrap()
        }
    );
    // An empty journal (made, the process killed before it was written): the copy.
    assert_eq!(replay(copy.clone(), &path_of(file), ""), (copy, None));
}

#[test]
fn a_copy_s_serial_is_read_from_its_first_lines() {
    let head = "; zone example.test. transferred from 192.0.2.1:53 at 1 (unix seconds)\n\
                example.test. 3600 IN SOA ns1.example.test. h.example.test. 2026120701 3600 600 86400 300\n\
                \x20300 IN NS ns1.example.test.\n";
    assert_eq!(copy_serial(head), Some(2026120701));
    assert_eq!(copy_serial("; only a comment\n"), None);
    assert_eq!(copy_serial("example.test. 3600 IN NS ns1.\n"), None);
}
