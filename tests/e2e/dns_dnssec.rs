//! A zone signed by `dnssec-signzone` (NSEC, and NSEC3 with RFC 9276's parameters), served
//! by weft and checked by `delv`, BIND's validating lookup tool, with the zone's key as its
//! one trust anchor: every kind of answer (positive, CNAME, wildcard, NXDOMAIN, NODATA, a
//! wildcard's NODATA, an empty non-terminal, DS at a delegation with and without one)
//! must validate, which it can only with the signatures and proofs RFC 4035 section 3.1
//! and RFC 5155 section 7.2 ask for. `dig` checks what a referral carries and that a query
//! without DO gets none of it; `weft check` warns of a zone whose signatures expired.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::dns::dig;
use crate::support::{dns_service, free_port, spawn_dns_app, weft_check};

/// The zone before signing: an alias, a wildcard, an empty non-terminal (`empty`, above
/// `deep.empty`), a delegation without DS (`sub`) and one with (`secure`).
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

/// [`ZONE`] signed with a new ECDSA P-256 key pair (KSK and ZSK), with NSEC or with NSEC3
/// (no salt, no extra iterations, RFC 9276 section 3.1); `extra` are `dnssec-signzone`'s
/// other arguments.
fn signed(nsec3: bool, extra: &[&str]) -> Signed {
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
    if nsec3 {
        args.extend(["-3", "-", "-H", "0"]);
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
        ("sub.example.test", "DS", NEGATIVE),
    ];
    for nsec3 in [false, true] {
        let chain = if nsec3 { "NSEC3" } else { "NSEC" };
        let signed = signed(nsec3, &[]);
        let port = free_port();
        let _app = spawn_dns_app(dns_service("dns", port).tcp().zone_file(&signed.zone));
        for (name, qtype, expected) in cases {
            let said = delv(port, &signed.anchor, name, qtype);
            assert!(
                said.contains(expected),
                "{chain}: {name} {qtype}: expected {expected:?}:\n{said}"
            );
        }
        // A referral proves the cut has no DS, or carries its DS, signed, and no
        // signature of the child's NS set, which the parent does not sign.
        let insecure = dig(port, &["+dnssec", "+norec", "a.sub.example.test", "A"]);
        let authority = section(&insecure, "AUTHORITY");
        assert!(
            authority.contains(&format!(" IN {chain} ")),
            "{chain}:\n{insecure}"
        );
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
        false,
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
/// parent (section 3.1.4.1), where the child, asked, could only say it has none.
#[test]
fn a_ds_at_a_child_zone_s_apex_is_answered_from_the_parent_served_beside_it() {
    let parent = "$ORIGIN example.test.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 300\n\
                  @ NS ns1\nns1 A 192.0.2.1\nchild NS ns.child\nns.child A 192.0.2.2\n\
                  child DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF\n";
    let child = "$ORIGIN child.example.test.\n$TTL 300\n@ SOA ns hostmaster 1 3600 600 86400 300\n\
                 @ NS ns\nns A 192.0.2.2\nwww A 192.0.2.3\n";
    let port = free_port();
    let _app = spawn_dns_app(
        dns_service("dns", port)
            .tcp()
            .zone("example.test.zone", parent)
            .zone("child.example.test.zone", child),
    );
    let ds = dig(port, &["+norec", "child.example.test", "DS"]);
    let answer = section(&ds, "ANSWER");
    assert!(answer.contains(" IN DS 12345 13 2 "), "{ds}");
    assert!(
        ds.contains("flags: qr aa;"),
        "authoritative, from the parent: {ds}"
    );
    // Anything else at the apex is the child's.
    let soa = dig(port, &["+norec", "+short", "child.example.test", "SOA"]);
    assert!(
        soa.starts_with("ns.child.example.test. hostmaster.child.example.test. 1 "),
        "{soa}"
    );
}
