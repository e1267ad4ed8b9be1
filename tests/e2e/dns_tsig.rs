//! TSIG (RFC 8945) against the real binary: `dig -y` transfers a zone of many messages
//! signed with a key of `tsig_keys` and verifies each message; the same request unsigned,
//! or signed with a wrong secret or a key the service does not hold, is refused and
//! counted; and NSD, as a secondary, pulls the zone with the key and serves it.

use crate::assert_eventually;
use crate::dns::dig;
use crate::dns_nsd::nsd_with;
use crate::support::{App, dns_service, free_port, spawn_dns_app};

/// A key as `tsig-keygen` writes one: 32 bytes of base64.
const SECRET: &str = "bWFkZSBmb3IgdGhlIHRlc3Qgb2YgVFNJRyBpbiB3ZWZ0";
const WRONG: &str = "c29tZSBvdGhlciBzZWNyZXQgb2YgdGhpcnR5LXR3byBi";

/// A zone of `hosts` names, enough for a transfer of several messages.
fn zone(hosts: usize) -> String {
    let mut text = String::from(
        "$ORIGIN example.test.\n$TTL 1h\n@ IN SOA ns1 hostmaster 7 2h 15m 2w 5m\n@ IN NS ns1\n\
         ns1 IN A 192.0.2.53\n",
    );
    for i in 0..hosts {
        text.push_str(&format!("host{i} IN A 10.0.{}.{}\n", i / 256, i % 256));
        text.push_str(&format!(
            "host{i} IN TXT \"a record of host {i} to fill the zone\"\n"
        ));
    }
    text
}

fn signed_app(port: u16, hosts: usize, notify: &str) -> App {
    spawn_dns_app(
        dns_service("dns", port)
            .tcp()
            .zone("example.test.zone", zone(hosts))
            .key("notify", notify)
            .key(
                "tsig_keys",
                &format!(r#"[{{ name = "xfr.example.", algorithm = "hmac-sha256", secret = "{SECRET}" }}]"#),
            )
            .key("allow_transfer", r#"["127.0.0.1 xfr.example."]"#),
    )
}

fn transfers(app: &App, result: &str) -> Option<f64> {
    app.metric(&format!(
        r#"weft_dns_transfers_total{{result="{result}",service="dns"}}"#
    ))
}

#[test]
fn dig_transfers_a_zone_signed_with_its_key_verifying_every_message_and_others_are_refused() {
    let port = free_port();
    let app = signed_app(port, 1500, "[]");
    let key = format!("hmac-sha256:xfr.example.:{SECRET}");

    // Signed: every message verifies (dig stops at the first that does not).
    let out = dig(port, &["-y", &key, "example.test", "AXFR"]);
    assert!(!out.contains("failed") && !out.contains("verify"), "{out}");
    let (signatures, records): (Vec<&str>, Vec<&str>) = out
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .partition(|l| l.contains("\tTSIG\t"));
    let records = records.len();
    assert_eq!(
        records,
        2 * 1500 + 4,
        "both SOAs, NS, A and every host\n{out}"
    );
    let messages: usize = out
        .lines()
        .find_map(|l| l.strip_prefix(";; XFR size: "))
        .and_then(|l| l.split("messages ").nth(1))
        .and_then(|l| l.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("dig's transfer summary\n{out}"));
    assert!(messages > 3, "{messages} messages\n{out}");
    assert_eq!(signatures.len(), messages, "each message signed\n{out}");
    assert_eq!(transfers(&app, "complete"), Some(1.0));

    // Unsigned, from the address the entry names: refused.
    let out = dig(port, &["example.test", "AXFR"]);
    assert!(out.contains("Transfer failed"), "{out}");
    assert_eq!(transfers(&app, "refused"), Some(1.0));

    // A query signed with the key is answered signed, over UDP and TCP.
    for transport in ["+notcp", "+tcp"] {
        let out = dig(port, &["-y", &key, "host7.example.test", "A", transport]);
        assert!(
            out.contains("status: NOERROR") && out.contains("10.0.0.7"),
            "{out}"
        );
        assert!(out.contains("TSIG PSEUDOSECTION"), "signed\n{out}");
        assert!(
            !out.contains("verify failure") && !out.contains("Couldn't"),
            "{out}"
        );
    }

    // Errors found after the signature verified are signed too: an EDNS version not
    // spoken (BADVERS), a class not served (REFUSED), a NOTIFY (this service is a
    // primary) and an opcode not served.
    for (args, status) in [
        (&["+opcode=notify", "example.test", "SOA"][..], "REFUSED"),
        (&["+opcode=status", "example.test", "SOA"][..], "NOTIMP"),
        (
            &["+edns=1", "+noednsnegotiation", "example.test", "SOA"][..],
            "BADVERS",
        ),
        (&["-c", "CH", "version.bind", "TXT"][..], "REFUSED"),
    ] {
        let mut all = vec!["-y", key.as_str()];
        all.extend(args);
        let out = dig(port, &all);
        assert!(out.contains(&format!("status: {status}")), "{out}");
        assert!(out.contains("TSIG PSEUDOSECTION"), "signed\n{out}");
        assert!(
            !out.contains("verify failure") && !out.contains("Couldn't"),
            "{out}"
        );
    }

    // A wrong secret: NOTAUTH with BADSIG, unsigned, the transfer and the query alike.
    let wrong = format!("hmac-sha256:xfr.example.:{WRONG}");
    let out = dig(port, &["-y", &wrong, "example.test", "AXFR"]);
    assert!(out.contains("Transfer failed"), "{out}");
    let out = dig(port, &["-y", &wrong, "example.test", "SOA"]);
    assert!(
        out.contains("status: NOTAUTH") && out.contains("BADSIG"),
        "{out}"
    );
    assert!(out.contains("ANSWER: 0,"), "{out}");
    assert_eq!(transfers(&app, "complete"), Some(1.0), "nothing more sent");
    let tsig = |result: &str| {
        app.metric(&format!(
            r#"weft_dns_tsig_total{{result="{result}",service="dns"}}"#
        ))
    };
    assert_eq!(tsig("badsig"), Some(2.0), "the transfer and the query");
    assert!(tsig("verified") >= Some(7.0), "{:?}", tsig("verified"));
    assert_eq!(tsig("badkey"), Some(0.0));
    assert!(app.metric(r#"weft_dns_responses_total{rcode="NOTAUTH",service="dns"}"#) >= Some(2.0));
}

#[test]
fn nsd_as_a_secondary_pulls_the_zone_with_the_key_and_takes_a_signed_notify_of_a_new_serial() {
    let port = free_port();
    let theirs = free_port();
    let app = signed_app(port, 1500, &format!(r#""127.0.0.1:{theirs} xfr.example.""#));
    let clauses = format!(
        "key:\n  name: xfr.example.\n  algorithm: hmac-sha256\n  secret: \"{SECRET}\"\n\
         zone:\n  name: example.test\n  zonefile: secondary.zone\n  \
         request-xfr: AXFR 127.0.0.1@{port} xfr.example.\n  \
         allow-notify: 127.0.0.1 xfr.example.\n"
    );
    let nsd = nsd_with(theirs, "example.test", &[], &clauses);
    // Its last host came in the last message of the transfer.
    let last = "host1499.example.test";
    assert_eventually!(
        dig(theirs, &[last, "A", "+short"]).trim() == "10.0.5.219",
        "NSD serves the zone it transferred with the key\n{}",
        nsd.log()
    );
    let out = dig(theirs, &["example.test", "SOA", "+norec"]);
    assert!(
        out.contains("flags: qr aa") && out.contains(" 7 7200 900"),
        "{out}"
    );

    // A new serial: the NOTIFY, signed, brings NSD to transfer again at once (its own
    // refresh would wait two hours; it takes a NOTIFY only signed with the key).
    let file = app.dir.path().join("example.test.zone");
    let text = zone(1500).replace(" 7 2h", " 8 2h") + "new IN A 192.0.2.99\n";
    std::fs::write(&file, text).unwrap();
    app.reload_by_signal("ok");
    assert_eventually!(
        dig(theirs, &["new.example.test", "A", "+short"]).trim() == "192.0.2.99",
        "NSD took the NOTIFY and transferred serial 8\n{}",
        nsd.log()
    );
    assert_eventually!(
        app.metric(r#"weft_dns_notifies_total{result="acknowledged",service="dns"}"#) == Some(1.0),
        "acknowledged"
    );
}
