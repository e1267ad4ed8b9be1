//! weft as a secondary (RFC 1034 section 4.3.5, RFC 5936, RFC 1996) of NSD, the reference
//! primary: the zone is transferred with a TSIG key, over many messages, and answered as
//! NSD answers it; a new serial comes at once with NSD's signed NOTIFY; the copy is kept
//! in its file and served from it after a restart, with the primary gone.

use crate::assert_eventually;
use crate::dns::dig;
use crate::dns_nsd::{Nsd, nsd_with};
use crate::support::{App, dns_service, free_port, spawn_dns_app};

/// A key as `tsig-keygen` writes one: 32 bytes of base64.
pub(crate) const SECRET: &str = "bWFkZSBmb3IgdGhlIHRlc3Qgb2YgVFNJRyBpbiB3ZWZ0";

/// A zone of `hosts` names at `serial`, enough for a transfer of several messages; its
/// refresh (two hours) is longer than any test.
pub(crate) fn zone(serial: u32, hosts: usize) -> String {
    let mut text = format!(
        "$ORIGIN example.test.\n$TTL 1h\n@ IN SOA ns1 hostmaster {serial} 2h 15m 2w 5m\n\
         @ IN NS ns1\nns1 IN A 192.0.2.53\n@ IN MX 10 mail\nmail IN AAAA 2001:db8::25\n\
         www IN CNAME @\n@ IN TXT \"v=spf1 -all\" \"a \\\"quoted\\\" ; part\"\n\
         sub IN NS ns.sub\nns.sub IN A 192.0.2.54\n*.wild IN A 192.0.2.55\n"
    );
    for i in 0..hosts {
        text.push_str(&format!("host{i} IN A 10.0.{}.{}\n", i / 256, i % 256));
        text.push_str(&format!(
            "host{i} IN TXT \"a record of host {i} to fill the zone\"\n"
        ));
    }
    text
}

/// NSD serving `zone(7, hosts)`, transferring it to 127.0.0.1 with the key, and
/// sending a signed NOTIFY to `notify` (weft's port) when it changes.
fn primary(port: u16, notify: u16, hosts: usize) -> Nsd {
    let clauses = format!(
        "key:\n  name: xfr.example.\n  algorithm: hmac-sha256\n  secret: \"{SECRET}\"\n\
         zone:\n  name: example.test\n  zonefile: primary.zone\n  \
         provide-xfr: 127.0.0.1 xfr.example.\n  notify: 127.0.0.1@{notify} xfr.example.\n"
    );
    nsd_with(
        port,
        "example.test",
        &[("primary.zone", &zone(7, hosts))],
        &clauses,
    )
}

/// weft on `port`, a secondary of `example.test.` from `primaries`, kept in `file`.
pub(crate) fn secondary(port: u16, file: &std::path::Path, primaries: &str) -> App {
    spawn_dns_app(
        dns_service("dns", port)
            .tcp()
            .key(
                "tsig_keys",
                &format!(r#"[{{ name = "xfr.example.", algorithm = "hmac-sha256", secret = "{SECRET}" }}]"#),
            )
            .key(
                "secondary",
                &format!(
                    r#"[{{ zone = "example.test.", file = {:?}, primaries = {primaries} }}]"#,
                    file.display().to_string()
                ),
            ),
    )
}

/// The copy in `file` once it holds `line`: a zone transferred is served first, then
/// written.
pub(crate) fn copy_holding(file: &std::path::Path, line: &str) -> String {
    assert_eventually!(
        std::fs::read_to_string(file).is_ok_and(|copy| copy.contains(line)),
        "{} holds {line:?}",
        file.display()
    );
    std::fs::read_to_string(file).unwrap()
}

pub(crate) fn refreshes(app: &App, result: &str) -> f64 {
    let series =
        format!(r#"weft_dns_secondary_refreshes_total{{result="{result}",service="dns"}}"#);
    app.metric(&series).unwrap_or(0.0)
}

/// The answer section, rcode and flags of `question` as `port` answers it, without the
/// id, the section counts and timing: what two servers answering alike have the same
/// (NSD adds the apex NS to the authority section, which weft leaves out: see
/// `dns_nsd`).
fn answer(port: u16, question: &[&str]) -> String {
    let mut args = question.to_vec();
    args.extend(["+norec", "+noall", "+answer", "+comments"]);
    dig(port, &args)
        .lines()
        .filter(|l| !l.contains("id:") && !l.starts_with(";; Query time") && !l.contains("COOKIE"))
        .map(|l| l.split("; QUERY").next().unwrap_or(l).replace('\t', " "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn weft_transfers_a_zone_from_nsd_with_its_key_and_takes_nsd_s_signed_notify_of_a_new_serial() {
    let (ours, theirs) = (free_port(), free_port());
    let nsd = primary(theirs, ours, 1500);
    let kept = tempfile::tempdir().unwrap();
    let file = kept.path().join("copies/example.test.zone");
    let app = secondary(
        ours,
        &file,
        &format!(r#"["127.0.0.1:{theirs} xfr.example."]"#),
    );
    assert_eventually!(
        dig(ours, &["host1499.example.test", "A", "+short"]).trim() == "10.0.5.219",
        "weft serves the zone it transferred with the key, its last host included\n{}\n{}",
        app.log(),
        nsd.log()
    );
    // Answered as NSD answers it: authoritative data, a CNAME, a wildcard, a referral,
    // a name that is not there, quoted text.
    for question in [
        &["example.test", "SOA"][..],
        &["www.example.test", "A"],
        &["x.wild.example.test", "A"],
        &["example.test", "TXT"],
        &["mail.example.test", "AAAA"],
        &["host17.example.test", "TXT"],
    ] {
        assert_eq!(
            answer(ours, question),
            answer(theirs, question),
            "{question:?}"
        );
    }
    for question in [
        &["a.sub.example.test", "A"][..],
        &["nothere.example.test", "A"],
    ] {
        let out = dig(ours, &[question[0], question[1], "+norec"]);
        let nsd_out = dig(theirs, &[question[0], question[1], "+norec"]);
        let status = |o: &str| {
            o.lines()
                .find(|l| l.contains("status:"))
                .map(|l| l.split(", id").next().unwrap_or("").to_owned())
        };
        assert_eq!(
            status(&out),
            status(&nsd_out),
            "{question:?}\n{out}\n{nsd_out}"
        );
    }
    assert_eq!(refreshes(&app, "transferred"), 1.0);
    // The DNS page says where the zone comes from.
    let api: serde_json::Value = serde_json::from_str(&app.curl("/api/dns").unwrap()).unwrap();
    let shown = &api[0]["zones"][0];
    let primary = format!("127.0.0.1:{theirs} xfr.example.");
    assert_eq!(shown["primaries"][0], primary.as_str(), "{api}");
    let figures = (shown["served"].as_bool(), shown["serial"].as_u64());
    assert_eq!(figures, (Some(true), Some(7)), "{api}");
    let copy = copy_holding(&file, "host1499.example.test. 3600 IN A 10.0.5.219\n");
    assert!(
        copy.starts_with("; zone example.test. transferred from 127.0.0.1:"),
        "{copy:.200}"
    );
    assert!(copy.contains("host1499.example.test. 3600 IN A 10.0.5.219\n"));

    // NSD's zone changes: its NOTIFY, signed, brings weft to transfer at once (the SOA's
    // refresh would wait two hours).
    nsd.reload_with("primary.zone", &(zone(8, 1500) + "new IN A 192.0.2.99\n"));
    assert_eventually!(
        dig(ours, &["new.example.test", "A", "+short"]).trim() == "192.0.2.99",
        "weft took NSD's NOTIFY and transferred serial 8\n{}\n{}",
        app.log(),
        nsd.log()
    );
    assert!(dig(ours, &["example.test", "SOA", "+short"]).contains(" 8 7200 900 1209600 300"));
    assert_eq!(
        app.metric(r#"weft_dns_notifies_total{result="received_accepted",service="dns"}"#),
        Some(1.0)
    );
    assert_eq!(refreshes(&app, "transferred"), 2.0);
    assert_eq!(
        app.metric(r#"weft_dns_zone_serial{service="dns",zone="example.test."}"#),
        Some(8.0)
    );
    // A NOTIFY not signed with the primary's key is refused, and checks nothing.
    let out = dig(ours, &["+opcode=notify", "example.test", "SOA"]);
    assert!(out.contains("status: REFUSED"), "{out}");
    assert_eq!(
        app.metric(r#"weft_dns_notifies_total{result="received_refused",service="dns"}"#),
        Some(1.0)
    );
}

#[test]
fn the_copy_is_served_from_its_file_after_a_restart_with_the_primary_gone_and_a_wrong_key_transfers_nothing()
 {
    let (ours, theirs) = (free_port(), free_port());
    let kept = tempfile::tempdir().unwrap();
    let file = kept.path().join("example.test.zone");
    {
        let nsd = primary(theirs, ours, 10);
        let app = secondary(
            ours,
            &file,
            &format!(r#"["127.0.0.1:{theirs} xfr.example."]"#),
        );
        assert_eventually!(
            dig(ours, &["host9.example.test", "A", "+short"]).trim() == "10.0.0.9",
            "transferred\n{}\n{}",
            app.log(),
            nsd.log()
        );
        copy_holding(&file, "host9.example.test. 3600 IN A 10.0.0.9\n");
    }
    // NSD is gone; the copy is served from its file, and the failed checks are counted.
    let app = secondary(
        ours,
        &file,
        &format!(r#"["127.0.0.1:{theirs} xfr.example."]"#),
    );
    assert_eq!(
        dig(ours, &["host9.example.test", "A", "+short"]).trim(),
        "10.0.0.9"
    );
    assert_eventually!(refreshes(&app, "failed") >= 1.0, "a failed check counted");
    assert!(
        app.log().contains("the zone was not refreshed: 127.0.0.1:"),
        "{}",
        app.log()
    );
    // The reason alone, after the primary's address (not the endpoint string again).
    let log = app.log();
    let reason = format!("127.0.0.1:{theirs} xfr.example.: cannot connect: connection refused");
    assert!(log.contains(&reason), "{log}");
    drop(app);

    // A primary whose key does not match: nothing is transferred, the reason is logged.
    let other = free_port();
    let clauses = "key:\n  name: xfr.example.\n  algorithm: hmac-sha256\n  \
         secret: \"c29tZSBvdGhlciBzZWNyZXQgb2YgdGhpcnR5LXR3byBi\"\n\
         zone:\n  name: example.test\n  zonefile: primary.zone\n  provide-xfr: 127.0.0.1 xfr.example.\n";
    let _nsd = nsd_with(
        other,
        "example.test",
        &[("primary.zone", &zone(7, 10))],
        clauses,
    );
    let fresh = kept.path().join("fresh.zone");
    let app = secondary(
        ours,
        &fresh,
        &format!(r#"["127.0.0.1:{other} xfr.example."]"#),
    );
    assert_eventually!(refreshes(&app, "failed") >= 1.0, "a failed check counted");
    assert!(!fresh.exists(), "nothing written");
    // Its names get SERVFAIL, Not Ready (RFC 8914), as NSD and BIND answer a zone they
    // have no copy of.
    let out = dig(ours, &["host9.example.test", "A"]);
    assert!(
        out.contains("status: SERVFAIL") && out.contains("EDE: 14 (Not Ready)"),
        "{out}"
    );
    let api: serde_json::Value = serde_json::from_str(&app.curl("/api/dns").unwrap()).unwrap();
    let shown = &api[0]["zones"][0];
    assert_eq!(shown["served"], false, "{api}");
    // The page says the last check failed, and why.
    assert_eq!(shown["check_failed"], true, "{api}");
    let check = shown["check"].as_str().unwrap_or_default();
    assert!(
        check.starts_with(&format!("failed: 127.0.0.1:{other} xfr.example.: ")),
        "{api}"
    );
    assert!(
        app.log().contains("TSIG") || app.log().contains("NOTAUTH"),
        "{}",
        app.log()
    );
}

/// The SOA of `example.test.` at `serial`.
pub(crate) fn soa_record(serial: u32) -> hickory_proto::rr::Record {
    use hickory_proto::rr::{Name, RData, Record, rdata::SOA};
    let origin = Name::from_ascii("example.test.").unwrap();
    let soa = SOA::new(origin.clone(), origin.clone(), serial, 60, 60, 600, 60);
    Record::from_rdata(origin, 60, RData::SOA(soa))
}

/// An authoritative answer with id `id` holding `records`, framed for TCP.
pub(crate) fn framed(id: u16, records: Vec<hickory_proto::rr::Record>) -> Vec<u8> {
    use hickory_proto::op::{Message, MessageType, OpCode};
    let mut m = Message::new(id, MessageType::Response, OpCode::Query);
    m.metadata.authoritative = true;
    m.answers = records;
    let mut bytes = m.to_vec().unwrap();
    // hickory marks a message past 512 bytes truncated; over TCP it is whole.
    bytes[2] &= !0x02;
    let mut out = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
    out.extend(bytes);
    out
}

/// The id of the next query framed on `conn`, if one comes.
fn next_query(conn: &mut std::net::TcpStream) -> Option<u16> {
    use std::io::Read;
    let mut len = [0u8; 2];
    conn.read_exact(&mut len).ok()?;
    let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
    conn.read_exact(&mut query).ok()?;
    Some(u16::from_be_bytes([*query.first()?, *query.get(1)?]))
}

/// A primary that answers the SOA query with serial 75, then sends the first message of
/// the AXFR and holds the rest; when it began and when its connection closed are
/// reported on the channel.
fn slow_primary() -> (u16, std::sync::mpsc::Receiver<&'static str>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (events, heard) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        let Some(id) = next_query(&mut conn) else {
            return;
        };
        conn.write_all(&framed(id, vec![soa_record(75)])).unwrap();
        let Some(id) = next_query(&mut conn) else {
            return;
        };
        conn.write_all(&framed(id, vec![soa_record(75)])).unwrap();
        let _ = events.send("axfr begun");
        // Held: the next read ends when the secondary closes the connection.
        let mut rest = [0u8; 1];
        let closed = conn.read(&mut rest).map_or(true, |n| n == 0);
        let _ = events.send(if closed { "closed" } else { "sent more" });
    });
    (port, heard)
}

#[test]
fn a_transfer_under_way_from_a_primary_a_reload_removes_is_dropped_and_never_served() {
    let (ours, theirs) = (free_port(), free_port());
    let (slow, heard) = slow_primary();
    let kept = tempfile::tempdir().unwrap();
    let file = kept.path().join("example.test.zone");
    let app = secondary(ours, &file, &format!(r#"["127.0.0.1:{slow}"]"#));
    let wait = std::time::Duration::from_secs(10);
    assert_eq!(heard.recv_timeout(wait), Ok("axfr begun"), "{}", app.log());

    // The primary changes to NSD while the slow one holds its transfer: the transfer is
    // dropped (its connection closed), NSD's serial 7 is served, and so it stays.
    let _nsd = primary(theirs, ours, 10);
    let config = std::fs::read_to_string(app.config_path()).unwrap();
    let moved = config.replace(
        &format!("127.0.0.1:{slow}"),
        &format!("127.0.0.1:{theirs} xfr.example."),
    );
    std::fs::write(app.config_path(), moved).unwrap();
    app.reload_by_signal("ok");
    assert_eq!(
        heard.recv_timeout(wait),
        Ok("closed"),
        "the slow transfer's connection closed\n{}",
        app.log()
    );
    assert_eventually!(
        dig(ours, &["example.test", "SOA", "+short"]).contains(" 7 7200 900"),
        "NSD's zone served\n{}",
        app.log()
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(dig(ours, &["example.test", "SOA", "+short"]).contains(" 7 7200 900"));
    copy_holding(&file, " 7 7200 900 1209600 300\n");
}

/// A primary that answers the SOA query with serial 9, then sends the AXFR as fast as the
/// connection takes it: the same 2,000 records a message, without end.
fn flooding_primary() -> u16 {
    use hickory_proto::rr::{Name, RData, Record, rdata::NS};
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        let Some(id) = next_query(&mut conn) else {
            return;
        };
        if conn.write_all(&framed(id, vec![soa_record(9)])).is_err() {
            return;
        }
        let Some(id) = next_query(&mut conn) else {
            return;
        };
        // Long names, each a few bytes on the wire (compressed) and two hundred once
        // decoded: the most decoding a message can ask.
        let long = format!(
            "{0}.{1}.{2}.example.test.",
            "a".repeat(60),
            "b".repeat(60),
            "c".repeat(60)
        );
        let target = Name::from_ascii(format!("ns.{long}")).unwrap();
        let hosts: Vec<Record> = (0..2000u32)
            .map(|i| {
                let name = Name::from_ascii(format!("h{i}.{long}")).unwrap();
                Record::from_rdata(name, 60, RData::NS(NS(target.clone())))
            })
            .collect();
        let mut first = vec![soa_record(9)];
        first.extend(hosts.iter().take(1999).cloned());
        let _ = conn.write_all(&framed(id, first));
        let rest = framed(id, hosts);
        while conn.write_all(&rest).is_ok() {}
    });
    port
}

#[test]
fn a_primary_sending_as_fast_as_it_can_never_keeps_the_service_s_queries_waiting() {
    let ours = free_port();
    let flood = flooding_primary();
    let kept = tempfile::tempdir().unwrap();
    let file = kept.path().join("example.test.zone");
    let app = spawn_dns_app(dns_service("dns", ours).tcp().key(
        "secondary",
        &format!(
            r#"[{{ zone = "example.test.", file = {:?}, primaries = ["127.0.0.1:{flood}"], max_records = 300000 }}]"#,
            file.display().to_string()
        ),
    ));
    // Asked every 50 ms while the transfer runs, each answer (REFUSED: no copy yet) is
    // timed; on the code before, queries waited seconds behind the records' decoding.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .unwrap();
    let query = hickory_proto::op::Message::query();
    let mut waits = Vec::new();
    let began = std::time::Instant::now();
    while refreshes(&app, "failed") < 1.0 && began.elapsed() < std::time::Duration::from_secs(60) {
        let mut asked = query.clone();
        asked.add_query(hickory_proto::op::Query::query(
            hickory_proto::rr::Name::from_ascii("example.test.").unwrap(),
            hickory_proto::rr::RecordType::SOA,
        ));
        let sent = std::time::Instant::now();
        socket
            .send_to(&asked.to_vec().unwrap(), ("127.0.0.1", ours))
            .unwrap();
        let mut buf = [0u8; 512];
        let answered = socket.recv(&mut buf).is_ok();
        waits.push(sent.elapsed());
        assert!(
            answered,
            "a query unanswered for 3 s while the primary sends\n{}",
            app.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        app.log().contains("more than 300000 records"),
        "{}",
        app.log()
    );
    // Within a second, but for two at most: on the code before, every query asked while
    // records were decoded waited seconds; one or two caught behind a busy machine's other
    // work may wait longer without saying anything of weft (none waits past the read
    // timeout), where a reactor held again and again would keep several waiting.
    let slow = waits
        .iter()
        .filter(|w| **w >= std::time::Duration::from_millis(1000))
        .count();
    eprintln!(
        "queries while the primary sent: {} asked, {slow} waited a second or more, longest {:?}",
        waits.len(),
        waits.iter().max()
    );
    assert!(
        slow <= 2,
        "{slow} queries waited a second or more: {waits:?}"
    );
    assert!(!file.exists(), "nothing written");
}

/// A primary that accepts every connection and never answers: how many it holds open at
/// once, and the most it held.
fn silent_primary() -> (
    u16,
    std::sync::Arc<(
        std::sync::atomic::AtomicUsize,
        std::sync::atomic::AtomicUsize,
    )>,
) {
    use std::io::Read;
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let open = std::sync::Arc::new((
        std::sync::atomic::AtomicUsize::new(0),
        std::sync::atomic::AtomicUsize::new(0),
    ));
    let counts = open.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let counts = counts.clone();
            std::thread::spawn(move || {
                let now = counts.0.fetch_add(1, Ordering::SeqCst) + 1;
                counts.1.fetch_max(now, Ordering::SeqCst);
                // Held until the secondary closes it.
                let mut sink = [0u8; 512];
                while conn.read(&mut sink).is_ok_and(|n| n > 0) {}
                counts.0.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (port, open)
}

#[test]
fn no_more_than_eight_checks_with_primaries_run_at_once_however_many_zones_are_due() {
    use std::sync::atomic::Ordering;
    let (theirs, open) = silent_primary();
    let kept = tempfile::tempdir().unwrap();
    let zones: Vec<String> = (0..12)
        .map(|i| {
            let file = kept.path().join(format!("z{i}.zone"));
            format!(
                r#"{{ zone = "z{i}.test.", file = {:?}, primaries = ["127.0.0.1:{theirs}"] }}"#,
                file.display().to_string()
            )
        })
        .collect();
    let app = spawn_dns_app(
        dns_service("dns", free_port()).key("secondary", &format!("[{}]", zones.join(", "))),
    );
    // Twelve zones, none held, all due at start: eight connect and wait for the SOA's
    // answer (10 s); the others wait their turn.
    assert_eventually!(
        open.0.load(Ordering::SeqCst) == 8,
        "eight checks under way\n{}",
        app.log()
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        open.1.load(Ordering::SeqCst),
        8,
        "never more than eight at once"
    );
    assert_eq!(open.0.load(Ordering::SeqCst), 8);
}
