//! A zone changed in place by an IXFR's changes is the zone built again from its records
//! after them.

use std::path::Path;

use hickory_proto::rr::{LowerName, Record};

use super::*;
use crate::zone::Zone;

const FILE: &str = "example.test.zone";

/// A zone of every kind of place a change can land: an apex with text, hosts, an alias,
/// a mail name, a wildcard, a delegation with its glue, and names below an empty
/// non-terminal.
const HELD: &str = "$ORIGIN example.test.\n\
    @ 300 IN SOA ns1 hostmaster 7 60 60 600 60\n\
    @ 300 IN NS ns1\n\
    @ 300 IN TXT \"apex\"\n\
    ns1 300 IN A 192.0.2.1\n\
    www 300 IN A 192.0.2.2\n\
    www 300 IN TXT \"www\"\n\
    alias 300 IN CNAME www\n\
    mail 300 IN MX 10 www\n\
    *.wild 300 IN A 192.0.2.3\n\
    sub 300 IN NS ns.sub\n\
    ns.sub 300 IN A 192.0.2.4\n\
    a.b.c 300 IN A 192.0.2.5\n\
    a 300 IN TXT \"above\"\n\
    b.a 300 IN A 192.0.2.6\n\
    MiXed 300 IN A 192.0.2.7\n\
    MiXed 300 IN MX 10 WWW\n";

/// Records a change may add: new names and old, other TTLs, an MX naming an alias, one
/// at an alias, at a wildcard, below the delegation.
const ADDABLE: &str = "$ORIGIN example.test.\n\
    @ 300 IN SOA ns1 hostmaster 7 60 60 600 60\n\
    @ 300 IN NS ns1\n\
    @ 60 IN TXT \"apex again\"\n\
    www 60 IN A 192.0.2.9\n\
    www 300 IN AAAA 2001:db8::9\n\
    new 300 IN A 192.0.2.10\n\
    x.y.new2 300 IN TXT \"deep\"\n\
    b.c 300 IN TXT \"was empty\"\n\
    a.b.c 600 IN A 192.0.2.11\n\
    mail 300 IN MX 20 ns1\n\
    mx2 300 IN MX 10 alias\n\
    q 300 IN SRV 0 0 53 ns1\n\
    q 300 IN CAA 0 issue \"ca.example\"\n\
    *.wild 300 IN TXT \"wild\"\n\
    deep.sub 300 IN A 192.0.2.12\n\
    ns1 300 IN AAAA 2001:db8::1\n\
    alias 300 IN TXT \"beside a CNAME\"\n\
    www 60 IN A 192.0.2.2\n\
    mixed 600 IN A 192.0.2.7\n\
    MIXED 300 IN TXT \"MiXed\"\n\
    B.A 300 IN AAAA 2001:db8::6\n\
    a 300 IN TXT \"top bit\"\n";

fn zone(text: &str) -> Zone {
    Zone::parse(Path::new(FILE), text).unwrap()
}

/// Every record of `zone` but its SOA.
fn records(zone: &Zone) -> Vec<Record> {
    zone.records()
        .filter(|r| r.record_type() != RecordType::SOA)
        .cloned()
        .collect()
}

fn soa(serial: u32) -> Record {
    let text = HELD.replace(" 7 60 60", &format!(" {serial} 60 60"));
    zone(&text).soa().clone()
}

/// A change of `most` records at most, each from `from`.
fn pick(from: &[Record], most: usize) -> Vec<Record> {
    (0..fastrand::usize(0..=most))
        .map(|_| from[fastrand::usize(..from.len())].clone())
        .collect()
}

/// Each owner's records, in order, with their TTLs (records compare without them).
fn exactly(z: &Zone) -> Vec<(LowerName, Vec<(u32, String)>)> {
    let mut all: Vec<(LowerName, Vec<(u32, String)>)> = z
        .owners()
        .iter()
        .map(|o| {
            let at = z.records_at(o).iter();
            (o.clone(), at.map(|r| (r.ttl, r.data.to_string())).collect())
        })
        .collect();
    all.sort();
    all
}

#[test]
fn a_zone_changed_in_place_is_the_zone_built_again_from_its_records() {
    let mut addable = records(&zone(ADDABLE));
    // A TTL with its top bit set comes only by a transfer (a file refuses it).
    for record in &mut addable {
        if record.data.to_string().contains("top bit") {
            record.ttl = 1 << 31;
        }
    }
    let (mut in_place, mut refused) = (0, 0);
    fastrand::seed(7);
    let mut held = zone(HELD);
    let mut serial = 7;
    for round in 0..3000 {
        // Now and then back to the zone of the file; else on from the last change, so a
        // zone changed in place is changed again.
        if round % 25 == 0 {
            held = zone(HELD);
            serial = 7;
        }
        // One to three versions a transfer, each deleting what the copy (or a version
        // before) holds and adding from the pool.
        let mut steps = Vec::new();
        let mut deletable = records(&held);
        for step in 0..fastrand::u32(1..=3) {
            let mut deleted = pick(&deletable, 3);
            deleted.dedup();
            let added = pick(&addable, 4);
            deletable.extend(added.iter().cloned());
            steps.push(Change {
                from: serial + step,
                to: serial + step + 1,
                deleted,
                added,
            });
        }
        let to = serial + u32::try_from(steps.len()).unwrap();
        let changes = Changes {
            soa: soa(to),
            steps,
        };
        let before = (held.clone(), exactly(&held));
        let Ok(net) = net(&held, changes.clone()) else {
            continue; // a record deleted twice
        };
        let Some(changed) = held.changed(&net.soa, &net.removed, &net.added) else {
            continue;
        };
        in_place += 1;
        assert_eq!(
            (&before.0, &before.1),
            (&held, &exactly(&held)),
            "the zone held is left as it was"
        );
        let built = Zone::from_transfer(Path::new(FILE), apply(&held, changes.clone()).unwrap(), 1);
        match (built, changed) {
            (Ok(built), Ok(changed)) => {
                assert_eq!(built, changed, "{changes:?}");
                // Records compare without their TTL: each owner's, in order, with it.
                assert_eq!(exactly(&built), exactly(&changed), "{changes:?}");
                // The next transfer changes this one.
                held = changed;
                serial = to;
            }
            (Err(_), Err(_)) => refused += 1,
            (built, changed) => panic!(
                "built {:?}\nchanged {:?}\n{changes:?}",
                built.map(|z| z.len()),
                changed.map(|z| z.len())
            ),
        }
    }
    assert!(in_place > 500, "{in_place} changed in place");
    assert!(refused > 10, "{refused} refused both ways");
}

#[test]
fn a_change_that_reaches_past_its_owners_is_left_to_the_build() {
    let held = zone(HELD);
    let addable = records(&zone(ADDABLE));
    let at = |name: &str| {
        addable
            .iter()
            .find(|r| r.name.to_ascii() == name)
            .cloned()
            .unwrap()
    };
    let no_removal = std::collections::HashSet::new();
    for (added, why) in [
        (at("*.wild.example.test."), "a wildcard"),
        (at("deep.sub.example.test."), "below a delegation"),
        (records(&held)[0].clone(), "an NS record"),
    ] {
        let changed = held.changed(&soa(8), &no_removal, &[added]);
        assert!(changed.is_none(), "{why}");
    }
    let plain = held.changed(&soa(8), &no_removal, &[at("new.example.test.")]);
    assert_eq!(plain.unwrap().unwrap().serial(), 8);
}
