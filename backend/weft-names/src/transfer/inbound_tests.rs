//! Transfers in, without sockets: a transferred zone written and read back, and the
//! wake a NOTIFY sets.

use std::path::Path;

use super::*;
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
