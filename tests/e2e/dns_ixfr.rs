//! weft as a secondary brought up to date by IXFR (RFC 1995): from Knot DNS, which keeps
//! a zone's changes in its journal and serves them signed with a TSIG key, across a
//! restart of weft; and from a primary whose changes do not apply to the copy held, which
//! is then asked the whole zone.

use std::process::{Child, Command, Stdio};

use hickory_proto::op::Message;
use hickory_proto::rr::rdata::{A, NS};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::assert_eventually;
use crate::dns::dig;
use crate::dns_secondary::{
    SECRET, copy_holding, framed, refreshes, secondary, soa_record as soa, zone,
};
use crate::support::{App, free_port};

/// knotd serving `example.test.` from a file of its directory, its changes kept in its
/// journal (`zonefile-load: difference`: a zone file read again with a newer serial
/// becomes a change it serves by IXFR).
struct Knot {
    child: Child,
    dir: tempfile::TempDir,
}

impl Knot {
    /// Knot on `port` serving `text`, transferring it to 127.0.0.1 with the key and
    /// sending a signed NOTIFY to `notify` (weft's port) when it changes.
    fn start(port: u16, notify: u16, text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        std::fs::write(dir.path().join("example.test.zone"), text).unwrap();
        let conf = format!(
            "server:\n  rundir: \"{d}\"\n  listen: 127.0.0.1@{port}\n  udp-workers: 1\n  \
             tcp-workers: 1\n  background-workers: 1\n\
             log:\n  - target: \"{d}/knot.log\"\n    any: info\n\
             database:\n  storage: \"{d}\"\n\
             key:\n  - id: xfr.example.\n    algorithm: hmac-sha256\n    secret: {SECRET}\n\
             remote:\n  - id: weft\n    address: 127.0.0.1@{notify}\n    key: xfr.example.\n\
             acl:\n  - id: xfr\n    address: 127.0.0.1\n    key: xfr.example.\n    action: transfer\n\
             template:\n  - id: default\n    storage: \"{d}\"\n\
             zone:\n  - domain: example.test\n    file: \"{d}/example.test.zone\"\n    \
             zonefile-load: difference\n    zonefile-sync: -1\n    \
             journal-content: changes\n    acl: xfr\n    notify: weft\n"
        );
        std::fs::write(dir.path().join("knot.conf"), conf).unwrap();
        let child = Command::new(knot_binary("knotd"))
            .arg("-c")
            .arg(dir.path().join("knot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("knotd must be installed (scripts/test installs it)");
        let knot = Self { child, dir };
        assert_eventually!(
            dig(port, &["example.test", "SOA", "+short"]).contains("hostmaster"),
            "Knot serves the zone\n{}",
            knot.log()
        );
        knot
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("knot.log")).unwrap_or_default()
    }

    /// Writes `text` over its zone file and has it read it again: the difference becomes
    /// a change in its journal, and weft is sent a NOTIFY.
    fn reload_with(&self, text: &str) {
        std::fs::write(self.dir.path().join("example.test.zone"), text).unwrap();
        let out = Command::new(knot_binary("knotc"))
            .arg("-c")
            .arg(self.dir.path().join("knot.conf"))
            .args(["zone-reload", "example.test"])
            .output()
            .unwrap();
        assert!(out.status.success(), "knotc zone-reload: {out:?}");
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn knot_binary(name: &'static str) -> String {
    let sbin = format!("/usr/sbin/{name}");
    match std::path::Path::new(&sbin).exists() {
        true => sbin,
        false => name.to_owned(),
    }
}

/// `zone(serial, 1500)` with host5's A record gone, host6's text changed and `extra`.
fn changed(serial: u32, extra: &str) -> String {
    let text = zone(serial, 1500)
        .replace("host5 IN A 10.0.0.5\n", "")
        .replace("of host 6 to fill", "of host 6, changed, to fill");
    text + extra
}

#[test]
fn knot_s_changes_come_by_ixfr_signed_and_after_a_restart_from_the_copy_in_the_file() {
    let (ours, theirs) = (free_port(), free_port());
    let knot = Knot::start(theirs, ours, &zone(7, 1500));
    let kept = tempfile::tempdir().unwrap();
    let file = kept.path().join("example.test.zone");
    let primaries = format!(r#"["127.0.0.1:{theirs} xfr.example."]"#);
    let app = secondary(ours, &file, &primaries);
    assert_eventually!(
        dig(ours, &["host1499.example.test", "A", "+short"]).trim() == "10.0.5.219",
        "weft holds the zone, transferred whole (it had no copy)\n{}\n{}",
        app.log(),
        knot.log()
    );
    assert!(knot.log().contains("AXFR, outgoing"), "{}", knot.log());

    // Knot's zone changes: its signed NOTIFY brings weft to ask the changes, which are
    // applied to the copy held.
    knot.reload_with(&changed(8, "new IN A 192.0.2.99\n"));
    assert_eventually!(
        dig(ours, &["new.example.test", "A", "+short"]).trim() == "192.0.2.99",
        "weft took serial 8 from Knot\n{}\n{}",
        app.log(),
        knot.log()
    );
    assert!(
        knot.log().contains("IXFR, outgoing") && knot.log().contains("serial 7 -> 8"),
        "Knot sent its changes, not the zone\n{}",
        knot.log()
    );
    assert!(
        app.log().contains("zone transferred by IXFR") && app.log().contains("changed=4"),
        "{}",
        app.log()
    );
    for question in [
        ["host5.example.test", "A"],
        ["host5.example.test", "TXT"],
        ["host6.example.test", "TXT"],
        ["host1499.example.test", "A"],
        ["example.test", "SOA"],
    ] {
        let short = [question[0], question[1], "+short"];
        assert_eq!(dig(ours, &short), dig(theirs, &short), "{question:?}");
    }
    assert_eq!(refreshes(&app, "transferred"), 2.0);
    assert_eq!((kept_by(&app, "axfr"), kept_by(&app, "ixfr")), (1.0, 1.0));
    // The DNS page says what the last check brought, when the next comes and when the
    // copy expires (the SOA's refresh is two hours, its expire two weeks).
    let api: serde_json::Value = serde_json::from_str(&app.curl("/api/dns").unwrap()).unwrap();
    let zone = &api[0]["zones"][0];
    let brought = format!("IXFR from 127.0.0.1:{theirs} xfr.example.: 4 records changed");
    assert_eq!(zone["check"], brought.as_str(), "{api}");
    assert_eq!(zone["check_failed"], false, "{api}");
    let hours = |ms: &serde_json::Value| ms.as_i64().unwrap_or(0) / 3_600_000;
    assert!((1..=2).contains(&hours(&zone["next_check_in_ms"])), "{api}");
    assert_eq!(hours(&zone["expires_in_ms"]) / 24, 13, "{api}");
    // The change went into the copy's journal, not the copy (about 60 KB) written whole:
    // a few lines after it, marking the copy confirmed.
    let journal = file.with_extension("zone.journal");
    let written = copy_holding(&journal, "new.example.test. 3600 IN A 192.0.2.99\n");
    assert!(
        written.starts_with("; journal of zone example.test. after serial 7 of its copy\n")
            && written.contains(";; ixfr 7 8\n")
            && written.ends_with(";; end 8\n"),
        "{written}"
    );
    let copy = std::fs::read_to_string(&file).unwrap();
    assert!(
        copy.contains(" 7 7200 ") && copy.contains("host5.example.test. 3600 IN A"),
        "{copy}"
    );
    // A reload reads the copy with its journal: the zone served, unchanged.
    app.reload_by_signal("ok");
    assert!(
        app.log().contains("configuration reloaded: ") && !app.log().contains("changed dns"),
        "{}",
        app.log()
    );
    assert_eq!(
        app.metric(r#"weft_dns_zone_serial{service="dns",zone="example.test."}"#),
        Some(8.0)
    );
    drop(app);

    // While weft is down Knot moves on to serial 9; weft starts from the copy in its file
    // and its journal (serial 8) and asks the changes since it.
    knot.reload_with(&changed(
        9,
        "new IN A 192.0.2.99\nlater IN AAAA 2001:db8::9\n",
    ));
    let app = secondary(ours, &file, &primaries);
    assert_eventually!(
        dig(ours, &["later.example.test", "AAAA", "+short"]).trim() == "2001:db8::9",
        "weft took serial 9\n{}\n{}",
        app.log(),
        knot.log()
    );
    assert!(knot.log().contains("serial 8 -> 9"), "{}", knot.log());
    assert!(app.log().contains("changed=1"), "{}", app.log());
    assert_eq!(
        app.metric(r#"weft_dns_zone_serial{service="dns",zone="example.test."}"#),
        Some(9.0)
    );
}

/// `weft_dns_secondary_transfers_total{how}` of the `dns` service.
fn kept_by(app: &App, how: &str) -> f64 {
    let series = format!(r#"weft_dns_secondary_transfers_total{{how="{how}",service="dns"}}"#);
    app.metric(&series).unwrap_or(0.0)
}

/// The query framed next on `conn`: its id and type.
fn next_question(conn: &mut std::net::TcpStream) -> Option<(u16, RecordType)> {
    use std::io::Read;
    let mut len = [0u8; 2];
    conn.read_exact(&mut len).ok()?;
    let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
    conn.read_exact(&mut query).ok()?;
    let message = Message::from_vec(&query).ok()?;
    Some((message.metadata.id, message.queries.first()?.query_type()))
}

fn origin() -> Name {
    Name::from_ascii("example.test.").unwrap()
}

fn host(name: &str, last: u8) -> Record {
    let name = Name::from_ascii(name).unwrap();
    Record::from_rdata(name, 60, RData::A(A::new(192, 0, 2, last)))
}

/// How the primary of [`primary_at_9`] answers an IXFR.
#[derive(Clone, Copy)]
enum Ixfr {
    /// With changes that delete a record the copy does not hold.
    NotApplying,
    /// SERVFAIL, and the connection closed.
    Failing,
}

/// A primary at serial 9 answering an IXFR as `ixfr` says, and whose AXFR gives the zone
/// whole; the types it was asked, in order, come out of the channel.
fn primary_at_9(ixfr: Ixfr) -> (u16, std::sync::mpsc::Receiver<RecordType>) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (asked, heard) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            while let Some((id, qtype)) = next_question(&mut conn) {
                let _ = asked.send(qtype);
                if let (RecordType::IXFR, Ixfr::Failing) = (qtype, ixfr) {
                    let mut failed = framed(id, Vec::new());
                    failed[5] = (failed[5] & 0xf0) | 2;
                    let _ = conn.write_all(&failed);
                    break;
                }
                let records = match qtype {
                    RecordType::IXFR => vec![
                        soa(9),
                        soa(7),
                        host("ghost.example.test.", 1),
                        soa(9),
                        soa(9),
                    ],
                    RecordType::AXFR => vec![
                        soa(9),
                        Record::from_rdata(
                            origin(),
                            60,
                            RData::NS(NS(Name::from_ascii("ns1.example.test.").unwrap())),
                        ),
                        host("ns1.example.test.", 53),
                        host("whole.example.test.", 9),
                        soa(9),
                    ],
                    _ => vec![soa(9)],
                };
                if conn.write_all(&framed(id, records)).is_err() {
                    break;
                }
            }
        }
    });
    (port, heard)
}

/// weft holding a copy of `example.test.` at serial 7 in `file`, from a primary at
/// serial 9 answering its IXFR as `ixfr` says: once the zone whole is served, having asked
/// the primary the SOA, the IXFR, then (on a connection of its own) the SOA and the AXFR.
fn whole_zone_asked_after(ixfr: Ixfr, file: &std::path::Path) -> (u16, crate::support::App) {
    let ours = free_port();
    let (theirs, heard) = primary_at_9(ixfr);
    // A copy at serial 7, as weft wrote it after a transfer.
    std::fs::write(
        file,
        "; zone example.test. transferred from 127.0.0.1:53 at 0 (unix seconds)\n\
         example.test. 60 IN SOA example.test. example.test. 7 60 60 600 60\n\
         example.test. 60 IN NS ns1.example.test.\n\
         ns1.example.test. 60 IN A 192.0.2.53\n\
         old.example.test. 60 IN A 192.0.2.7\n",
    )
    .unwrap();
    let app = secondary(ours, file, &format!(r#"["127.0.0.1:{theirs}"]"#));
    assert_eventually!(
        dig(ours, &["whole.example.test", "A", "+short"]).trim() == "192.0.2.9",
        "the whole zone served\n{}",
        app.log()
    );
    let wait = std::time::Duration::from_secs(5);
    let asked: Vec<RecordType> = (0..4)
        .filter_map(|_| heard.recv_timeout(wait).ok())
        .collect();
    let whole = [
        RecordType::SOA,
        RecordType::IXFR,
        RecordType::SOA,
        RecordType::AXFR,
    ];
    assert_eq!(asked, whole);
    assert_eq!(refreshes(&app, "transferred"), 1.0);
    // Counted as what it was: the zone whole where an IXFR was asked.
    assert_eq!(kept_by(&app, "axfr_after_ixfr"), 1.0);
    assert_eq!(kept_by(&app, "ixfr") + kept_by(&app, "axfr"), 0.0);
    (ours, app)
}

#[test]
fn changes_that_do_not_apply_to_the_copy_held_are_refused_and_the_whole_zone_asked() {
    let kept = tempfile::tempdir().unwrap();
    let file = kept.path().join("example.test.zone");
    let (ours, app) = whole_zone_asked_after(Ixfr::NotApplying, &file);
    assert_eq!(dig(ours, &["old.example.test", "A", "+short"]).trim(), "");
    let log = app.log();
    assert!(
        log.contains("the changes the IXFR brought are refused")
            && log
                .contains("deletes a A record of ghost.example.test. that the copy does not hold"),
        "{log}"
    );
    copy_holding(&file, "whole.example.test. 60 IN A 192.0.2.9\n");
}

#[test]
fn an_ixfr_that_fails_has_the_zone_asked_whole_on_a_connection_of_its_own() {
    let kept = tempfile::tempdir().unwrap();
    let file = kept.path().join("example.test.zone");
    let (_, app) = whole_zone_asked_after(Ixfr::Failing, &file);
    let log = app.log();
    assert!(
        log.contains("the IXFR failed") && log.contains("answered the IXFR SERVFAIL"),
        "{log}"
    );
    assert_eq!(refreshes(&app, "failed"), 0.0);
}
