//! A zone signed by `dnssec-signzone` (NSEC, and NSEC3 with RFC 9276's parameters), served
//! by weft and checked by `delv`, BIND's validating lookup tool, with the zone's key as its
//! one trust anchor: every kind of answer (positive, CNAME, wildcard, NXDOMAIN, NODATA, a
//! wildcard's NODATA, an empty non-terminal, DS at a delegation with and without one)
//! must validate, which it can only with the signatures and proofs RFC 4035 section 3.1
//! and RFC 5155 section 7.2 ask for, and get the verdict NSD's answer gets from the same
//! zone (NSEC3 with opt-out too). `dig` checks what a referral carries and that a query
//! without DO gets none of it; `weft check` warns of a zone whose signatures expired.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::dns::dig;
use crate::dns_nsd::nsd_serving;
use crate::support::{dns_service, free_port, spawn_dns_app, weft_check};

/// The zone before signing: aliases (to a name, to nothing, into a wildcard, and a
/// wildcard alias), wildcards (one an empty non-terminal), an empty non-terminal (`empty`,
/// above `deep.empty`), a delegation without DS (`sub`) and one with (`secure`).
const ZONE: &str = "\
$ORIGIN example.test.
$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 300
@ IN NS ns1
ns1 IN A 192.0.2.1
www IN A 192.0.2.10
www IN AAAA 2001:db8::10
alias IN CNAME www
*.apps IN A 192.0.2.20
deep.empty IN TXT \"x\"
sub IN NS ns.sub
ns.sub IN A 192.0.2.30
secure IN NS ns.secure
secure IN DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF
ns.secure IN A 192.0.2.40
to-nowhere IN CNAME nothere
to-www IN CNAME www
to-wild IN CNAME x.apps
*.wild IN CNAME www
x.*.ent IN A 192.0.2.50
moved IN DNAME new.example.test.
www.new IN A 192.0.2.60
";

/// A signed copy of [`ZONE`] and the trust anchor that validates it, in a directory of
/// their own.
struct Signed {
    _dir: tempfile::TempDir,
    zone: PathBuf,
    anchor: PathBuf,
}

fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} must be installed (scripts/test installs it): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How a zone proves denials.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Chain {
    Nsec,
    /// NSEC3 without salt or extra iterations (RFC 9276 section 3.1).
    Nsec3,
    /// NSEC3 whose spans skip insecure delegations (RFC 5155 section 6, opt-out).
    Nsec3OptOut,
}

/// [`ZONE`] signed with a new ECDSA P-256 key pair (KSK and ZSK) with `chain`; `extra` are
/// `dnssec-signzone`'s other arguments.
fn signed(chain: Chain, extra: &[&str]) -> Signed {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    std::fs::write(path.join("example.test.zone"), ZONE).unwrap();
    let ksk = run(
        path,
        "dnssec-keygen",
        &["-q", "-a", "ECDSAP256SHA256", "-f", "KSK", "example.test"],
    );
    run(
        path,
        "dnssec-keygen",
        &["-q", "-a", "ECDSAP256SHA256", "example.test"],
    );
    let mut args = vec!["-q", "-S", "-K", ".", "-o", "example.test"];
    match chain {
        Chain::Nsec => {}
        Chain::Nsec3 => args.extend(["-3", "-", "-H", "0"]),
        Chain::Nsec3OptOut => args.extend(["-3", "-", "-H", "0", "-A"]),
    }
    args.extend(extra);
    args.extend(["-f", "signed.zone", "example.test.zone"]);
    run(path, "dnssec-signzone", &args);
    // The KSK's public key as delv's trust anchor.
    let key = std::fs::read_to_string(path.join(format!("{}.key", ksk.trim()))).unwrap();
    let line = key.lines().find(|l| !l.starts_with(';')).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    // example.test. IN DNSKEY 257 3 13 KEY...
    let (flags, protocol, algorithm) = (fields[3], fields[4], fields[5]);
    let public = fields[6..].concat();
    let anchor = path.join("anchor.conf");
    std::fs::write(
        &anchor,
        format!(
            "trust-anchors {{ \"example.test.\" static-key {flags} {protocol} {algorithm} \"{public}\"; }};\n"
        ),
    )
    .unwrap();
    Signed {
        zone: path.join("signed.zone"),
        anchor,
        _dir: dir,
    }
}

/// `delv` asking the server on `port` for `name`/`qtype`, validating from `anchor`: what
/// it says, standard output and error together.
fn delv(port: u16, anchor: &Path, name: &str, qtype: &str) -> String {
    let out = Command::new("delv")
        .args(["@127.0.0.1", "-p", &port.to_string(), "-a"])
        .arg(anchor)
        .args(["+root=example.test", name, qtype])
        .output()
        .expect("delv must be installed (scripts/test installs dnsutils)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn every_kind_of_answer_from_a_signed_zone_validates_with_nsec_and_with_nsec3() {
    const POSITIVE: &str = "; fully validated";
    const NEGATIVE: &str = "; negative response, fully validated";
    let cases = [
        ("www.example.test", "A", POSITIVE),
        ("www.example.test", "AAAA", POSITIVE),
        ("example.test", "DNSKEY", POSITIVE),
        ("alias.example.test", "A", POSITIVE),
        ("x.apps.example.test", "A", POSITIVE),
        ("y.x.apps.example.test", "A", POSITIVE),
        ("secure.example.test", "DS", POSITIVE),
        ("nope.example.test", "A", NEGATIVE),
        ("a.b.nope.example.test", "A", NEGATIVE),
        ("zzz.example.test", "MX", NEGATIVE),
        ("www.example.test", "TXT", NEGATIVE),
        ("x.apps.example.test", "TXT", NEGATIVE),
        ("empty.example.test", "A", NEGATIVE),
        // Below a wildcard's own name, whose closest encloser is that name.
        ("x.*.apps.example.test", "A", NEGATIVE),
        // An empty non-terminal wildcard (`*.ent`, above `x.*.ent`): NODATA for the
        // names it matches (RFC 4592 section 4.2).
        ("y.ent.example.test", "A", NEGATIVE),
        // CNAMEs: to nothing, to a name without the type (delv validates the CNAME, then
        // the denial at its target), into a wildcard, and from one.
        ("to-nowhere.example.test", "A", POSITIVE),
        ("to-www.example.test", "TXT", POSITIVE),
        ("to-wild.example.test", "A", POSITIVE),
        ("a.wild.example.test", "A", POSITIVE),
        ("a.wild.example.test", "TXT", POSITIVE),
        // Below a DNAME: the DNAME signed, the CNAME made from it unsigned (a validator
        // makes it too, RFC 6672 section 5.3.1), then the target's answer or denial
        // (delv says "fully validated" of the DNAME, and shows the proved NXDOMAIN).
        ("www.moved.example.test", "A", POSITIVE),
        ("nope.moved.example.test", "A", POSITIVE),
    ];
    for chain in [Chain::Nsec, Chain::Nsec3, Chain::Nsec3OptOut] {
        let signed = signed(chain, &[]);
        let port = free_port();
        let app = spawn_dns_app(dns_service("dns", port).tcp().zone_file(&signed.zone));
        // The first signature to expire, for alerts: dnssec-signzone signs for 30 days.
        let metrics = app.curl("/metrics").unwrap();
        let expiry = metrics
            .lines()
            .find(|l| l.starts_with("weft_dns_zone_signatures_expire_timestamp_seconds{"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no signature expiry:\n{metrics}"));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let days = (expiry.saturating_sub(now)) / 86_400;
        assert!((28..=30).contains(&days), "{days} days ahead:\n{metrics}");
        // The DNS page and its API show the zone, and when its signatures expire.
        let api: serde_json::Value = serde_json::from_str(&app.curl("/api/dns").unwrap()).unwrap();
        let zone = &api[0]["zones"][0];
        assert_eq!(zone["zone"], "example.test.", "{api}");
        assert_eq!(zone["serial"], 1, "{api}");
        assert_eq!(zone["signed"], true, "{api}");
        assert_eq!(
            zone["signatures_expire_ms"].as_u64(),
            Some(expiry * 1000),
            "{api}"
        );
        assert_eq!(zone["expiring"], false, "{api}");
        // A reload that changes nothing keeps the signed zone as it is.
        app.reload_by_signal("ok");
        let metrics = app.curl("/metrics").unwrap();
        assert!(
            metrics.contains(r#"weft_dns_zone_reloads_total{result="unchanged",service="dns"} 1"#),
            "{metrics}"
        );
        let page = app.curl("/dns").unwrap();
        assert!(
            page.contains("<td class=\"mono\">example.test.</td>")
                && page.contains(&format!("<td>in {}d ", (expiry - now) / 86_400)),
            "{page}"
        );
        let zone = std::fs::read_to_string(&signed.zone).unwrap();
        let theirs = free_port();
        let _nsd = nsd_serving(theirs, "example.test", &zone);
        // The owner of an NSEC3 record is no name of the zone to a query (RFC 5155
        // section 7.2.8).
        let hashed = zone
            .lines()
            .find(|l| l.split_whitespace().nth(3) == Some("NSEC3"))
            .and_then(|l| l.split_whitespace().next())
            .map(str::to_owned);
        let hashed: Vec<_> = hashed.iter().map(|h| (h.as_str(), "A", NEGATIVE)).collect();
        let all = cases
            .iter()
            .copied()
            .chain([("sub.example.test", "DS", NEGATIVE)])
            .chain(hashed);
        for (name, qtype, expected) in all {
            let said = delv(port, &signed.anchor, name, qtype);
            // delv's verdict on weft's answer is its verdict on NSD's; and, but under
            // opt-out (whose spans leave what they skip, and wildcards matched across
            // them, unproved: "unsigned answer"), the one expected.
            let nsd_said = delv(theirs, &signed.anchor, name, qtype);
            let verdict = |said: &str| {
                said.lines()
                    .find(|l| l.starts_with("; "))
                    .map(str::to_owned)
            };
            assert_eq!(
                verdict(&said),
                verdict(&nsd_said),
                "{chain:?}: {name} {qtype}: weft:\n{said}\nNSD:\n{nsd_said}"
            );
            let failed = [
                "broken trust chain",
                "no valid RRSIG",
                "insecure response",
                "bogus",
            ];
            assert!(
                (chain == Chain::Nsec3OptOut || said.contains(expected))
                    && !failed.iter().any(|f| said.contains(f)),
                "{chain:?}: {name} {qtype}: expected {expected:?}:\n{said}"
            );
        }
        // A referral proves the cut has no DS, or carries its DS, signed, and no
        // signature of the child's NS set, which the parent does not sign.
        let insecure = dig(port, &["+dnssec", "+norec", "a.sub.example.test", "A"]);
        let authority = section(&insecure, "AUTHORITY");
        let proof = match chain {
            Chain::Nsec => " IN NSEC ",
            Chain::Nsec3 | Chain::Nsec3OptOut => " IN NSEC3 ",
        };
        assert!(authority.contains(proof), "{chain:?}:\n{insecure}");
        assert!(
            authority.contains(" IN NS ns.sub.example.test."),
            "{insecure}"
        );
        assert!(!authority.contains(" RRSIG NS "), "{insecure}");
        let secure = dig(port, &["+dnssec", "+norec", "a.secure.example.test", "A"]);
        let authority = section(&secure, "AUTHORITY");
        assert!(authority.contains(" IN DS 12345 13 2 "), "{secure}");
        assert!(authority.contains(" IN RRSIG DS 13 3 "), "{secure}");
        // Without DO, none of it.
        let plain = dig(port, &["+nodnssec", "+norec", "nope.example.test", "A"]);
        assert!(plain.contains("status: NXDOMAIN"), "{plain}");
        assert!(
            !plain.contains("RRSIG") && !plain.contains("NSEC"),
            "{plain}"
        );
    }
}

/// The lines of `section` (`ANSWER`, `AUTHORITY`, `ADDITIONAL`) of dig's output, their
/// fields one space apart (dig aligns them with tabs or spaces, by the owner's length).
fn section(out: &str, section: &str) -> String {
    let head = format!(";; {section} SECTION:");
    out.lines()
        .skip_while(|l| !l.starts_with(&head))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn check_warns_of_a_zone_whose_signatures_have_expired() {
    // Signed for November 2025, not verified (dnssec-signzone refuses to verify what has
    // expired).
    let signed = signed(
        Chain::Nsec,
        &["-P", "-s", "20251101000000", "-e", "20251201000000"],
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weft.toml");
    std::fs::write(
        &config,
        format!(
            "[dashboard]\nlisten = \"tcp:0:interface=127.0.0.1\"\n[store]\npath = \"{}\"\n\
             [[service]]\nname = \"dns\"\nkind = \"dns\"\nlisten = \"udp:0:interface=127.0.0.1\"\n\
             zones = [\"{}\"]\n",
            dir.path().join("weft.db").display(),
            signed.zone.display()
        ),
    )
    .unwrap();
    let out = weft_check([config.as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a warning, not an error: {stderr}");
    assert!(
        stderr.contains("zone example.test.: the signature of ")
            && stderr.contains(" expired at 2025-12-01T00:00:00Z")
            && stderr.contains("sign the zone again"),
        "{stderr}"
    );
}

/// A DS set is the parent's data (RFC 4035 section 2.4): with the parent and the child
/// zone served side by side, a DS question at the child's apex is answered from the
/// parent (section 3.1.4.1), where the child, asked, could only say it has none; a
/// parent's CNAME into the child is followed there; and a reload of either leaves no
/// kept answer of the other behind.
#[test]
fn a_ds_at_a_child_zone_s_apex_is_answered_from_the_parent_served_beside_it() {
    let parent = "$ORIGIN example.test.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 300\n\
                  @ NS ns1\nns1 A 192.0.2.1\nchild NS ns.child\nns.child A 192.0.2.2\n\
                  child DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF\n\
                  tochild CNAME www.child\n";
    let child = "$ORIGIN child.example.test.\n$TTL 300\n@ SOA ns hostmaster 1 3600 600 86400 300\n\
                 @ NS ns\nns A 192.0.2.2\nwww A 192.0.2.3\n";
    let port = free_port();
    let app = spawn_dns_app(
        dns_service("dns", port)
            .tcp()
            .zone("example.test.zone", parent)
            .zone("child.example.test.zone", child),
    );
    // Asked twice, without dig's cookie: the second is answered from the answers kept.
    for _ in 0..2 {
        let ds = dig(port, &["+norec", "+nocookie", "child.example.test", "DS"]);
        let answer = section(&ds, "ANSWER");
        assert!(answer.contains(" IN DS 12345 13 2 "), "{ds}");
        assert!(
            ds.contains("flags: qr aa;"),
            "authoritative, from the parent: {ds}"
        );
    }
    let www = dig(
        port,
        &[
            "+norec",
            "+nocookie",
            "+short",
            "www.child.example.test",
            "A",
        ],
    );
    assert_eq!(www.trim(), "192.0.2.3");
    // A CNAME into the child goes on in the child's zone (RFC 1034 section 4.3.2 step
    // 3a), where it met a referral.
    let alias = dig(port, &["+norec", "tochild.example.test", "A"]);
    let answer = section(&alias, "ANSWER");
    assert!(
        answer.contains("tochild.example.test. 300 IN CNAME www.child.example.test.")
            && answer.contains("www.child.example.test. 300 IN A 192.0.2.3"),
        "{alias}"
    );
    assert!(
        alias.contains("flags: qr aa;") && section(&alias, "AUTHORITY").is_empty(),
        "{alias}"
    );
    // Anything else at the apex is the child's.
    let soa = dig(port, &["+norec", "+short", "child.example.test", "SOA"]);
    assert!(
        soa.starts_with("ns.child.example.test. hostmaster.child.example.test. 1 "),
        "{soa}"
    );
    let metrics = app.curl("/metrics").unwrap();
    for zone in ["example.test.", "child.example.test."] {
        let serial = format!(r#"weft_dns_zone_serial{{service="dns",zone="{zone}"}} 1"#);
        assert!(metrics.contains(&serial), "{serial}:\n{metrics}");
    }
    // The parent's DS changes (a key rollover) and the child's zone does not: the DS
    // kept from before is not served after the reload.
    let parent_file = app.dir.path().join("example.test.zone");
    std::fs::write(&parent_file, parent.replace("12345 13 2", "54321 13 2")).unwrap();
    app.reload_by_signal("ok");
    let ds = dig(port, &["+norec", "+nocookie", "child.example.test", "DS"]);
    assert!(
        section(&ds, "ANSWER").contains(" IN DS 54321 13 2 "),
        "{ds}"
    );
    // The child's zone is no longer served: what it answered is not served either; the
    // parent refers to the child's servers.
    let config = app.dir.path().join("weft.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let child_file = format!(
        "{:?}",
        app.dir
            .path()
            .join("child.example.test.zone")
            .display()
            .to_string()
    );
    std::fs::write(&config, text.replace(&format!(", {child_file}"), "")).unwrap();
    app.reload_by_signal("ok");
    let www = dig(
        port,
        &["+norec", "+nocookie", "www.child.example.test", "A"],
    );
    assert!(section(&www, "ANSWER").is_empty(), "{www}");
    assert!(
        section(&www, "AUTHORITY").contains(" IN NS ns.child.example.test."),
        "{www}"
    );
    // What /metrics says of the zones follows: the child's serial is gone.
    let metrics = app.curl("/metrics").unwrap();
    assert!(
        metrics.contains(r#"weft_dns_zone_serial{service="dns",zone="example.test."} 1"#)
            && !metrics.contains(r#"zone="child.example.test.""#),
        "{metrics}"
    );
}
