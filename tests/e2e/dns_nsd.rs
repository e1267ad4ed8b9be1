//! weft and NSD, the reference authoritative server, serve the same zone of edge cases
//! and get the same questions; their rcodes, AA bits and sections must agree.
//!
//! One deliberate difference is normalized away: NSD (without `minimal-responses`) adds
//! the apex NS set to the authority section of positive answers, and those servers'
//! addresses to the additional section; weft leaves them out (see the README). And `ANY`
//! is asked only where the node's RRsets leave one choice or NSD's matches weft's (the
//! first in the file): RFC 8482 lets a server pick any one, and NSD's pick follows its
//! own storage order.

use std::process::{Child, Command, Stdio};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{LowerName, Name, RData, RecordType};

use crate::assert_eventually;
use crate::dns_auth::{EDGE, ask, edge_app};
use crate::support::free_port;

/// NSD on a loopback port, stopped on drop.
pub(crate) struct Nsd {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Nsd {
    /// What NSD logged so far, for a failing test's message.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("nsd.log")).unwrap_or_default()
    }

    /// Writes `text` over its file `name` and has it read its zone files again (SIGHUP).
    pub(crate) fn reload_with(&self, name: &str, text: &str) {
        std::fs::write(self._dir.path().join(name), text).unwrap();
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        assert!(sent.success(), "kill -HUP nsd failed");
    }
}

impl Drop for Nsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nsd_binary() -> &'static str {
    ["/usr/sbin/nsd", "/usr/local/sbin/nsd"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("nsd")
}

fn nsd(port: u16) -> Nsd {
    nsd_serving(port, "edge.test", EDGE)
}

/// NSD serving the zone `origin` from `text` on UDP and TCP `port` of 127.0.0.1, answering
/// once this returns.
pub(crate) fn nsd_serving(port: u16, origin: &str, text: &str) -> Nsd {
    let zone = format!("zone:\n  name: {origin}\n  zonefile: served.zone\n");
    nsd_with(port, origin, &[("served.zone", text)], &zone)
}

/// NSD on UDP and TCP `port` of 127.0.0.1 with `files` written into its directory (its
/// `zonesdir`) and `clauses` (`zone:` and `key:` clauses) after its `server:` clause,
/// answering questions for `origin` (SERVFAIL counts) once this returns.
pub(crate) fn nsd_with(port: u16, origin: &str, files: &[(&str, &str)], clauses: &str) -> Nsd {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    std::fs::write(
        dir.path().join("nsd.conf"),
        format!(
            "server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  username: \"\"\n  \
             zonesdir: \"{d}\"\n  database: \"\"\n  pidfile: \"{d}/nsd.pid\"\n  \
             xfrdfile: \"{d}/xfrd.state\"\n  zonelistfile: \"{d}/zone.list\"\n  \
             xfrdir: \"{d}\"\n  logfile: \"{d}/nsd.log\"\n  server-count: 1\n  \
             verbosity: 2\n\
             remote-control:\n  control-enable: no\n{clauses}"
        ),
    )
    .unwrap();
    let child = Command::new(nsd_binary())
        .arg("-d")
        .arg("-c")
        .arg(dir.path().join("nsd.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nsd must be installed (scripts/test installs it)");
    let nsd = Nsd { child, _dir: dir };
    let soa = format!("{origin}.");
    assert_eventually!(
        std::net::UdpSocket::bind("127.0.0.1:0").is_ok_and(|s| {
            s.set_read_timeout(Some(std::time::Duration::from_millis(200)))
                .unwrap();
            let probe = crate::dns_auth::query(&soa, RecordType::SOA);
            s.send_to(&probe, ("127.0.0.1", port)).is_ok() && s.recv(&mut [0; 512]).is_ok()
        }),
        "NSD answers on port {port}"
    );
    nsd
}

/// What is compared of an answer: rcode, AA, and each section as sorted record texts.
#[derive(Debug, PartialEq)]
struct Seen {
    rcode: ResponseCode,
    aa: bool,
    answer: Vec<String>,
    authority: Vec<String>,
    additional: Vec<String>,
}

fn texts<'a>(records: impl Iterator<Item = &'a hickory_proto::rr::Record>) -> Vec<String> {
    let mut out: Vec<String> = records
        .map(|r| format!("{} {} {} {}", r.name, r.ttl, r.record_type(), r.data))
        .collect();
    out.sort();
    out
}

fn seen(message: &Message) -> Seen {
    Seen {
        rcode: message.metadata.response_code,
        aa: message.metadata.authoritative,
        answer: texts(message.answers.iter()),
        authority: texts(message.authorities.iter()),
        additional: texts(message.additionals.iter()),
    }
}

/// NSD's answer without the apex NS set it adds to positive answers, nor the addresses
/// it adds for those servers alone.
fn without_apex_ns(message: &Message) -> Seen {
    let apex = LowerName::from(Name::from_ascii("edge.test.").unwrap());
    let positive = message.metadata.authoritative && !message.answers.is_empty();
    let is_apex_ns = |r: &&hickory_proto::rr::Record| {
        positive && r.record_type() == RecordType::NS && LowerName::new(&r.name) == apex
    };
    let dropped: Vec<LowerName> = message
        .authorities
        .iter()
        .filter(is_apex_ns)
        .filter_map(|r| match &r.data {
            RData::NS(ns) => Some(LowerName::new(&ns.0)),
            _ => None,
        })
        .collect();
    let wanted: Vec<LowerName> = message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::NS(ns) => Some(LowerName::new(&ns.0)),
            RData::MX(mx) => Some(LowerName::new(&mx.exchange)),
            RData::SRV(srv) => Some(LowerName::new(&srv.target)),
            _ => None,
        })
        .collect();
    let mut out = seen(message);
    out.authority = texts(message.authorities.iter().filter(|r| !is_apex_ns(r)));
    out.additional = texts(message.additionals.iter().filter(|r| {
        let owner = LowerName::new(&r.name);
        !dropped.contains(&owner) || wanted.contains(&owner)
    }));
    out
}

#[test]
fn weft_and_nsd_answer_the_zone_edge_cases_alike() {
    let (ours, theirs) = (free_port(), free_port());
    let _app = edge_app(ours);
    let _nsd = nsd(theirs);
    use RecordType::*;
    let questions = [
        ("www", A),
        ("www", TXT),
        ("www", MX),
        ("x", A),
        ("x", TXT),
        ("x", MX),
        ("deep.x", A),
        ("*", A),
        ("b", A),
        ("c.b", A),
        ("z.a.b", A),
        ("a.b", A),
        ("foo.apps", A),
        ("foo.apps", ANY),
        ("toapp", A),
        ("towild", A),
        ("q.empty", A),
        ("q.empty", TXT),
        // An empty non-terminal wildcard matches, with no data (RFC 4592 section 4.2).
        ("y.ent", A),
        ("z.y.ent", TXT),
        ("*.ent", A),
        ("x.*.ent", A),
        ("@", MX),
        ("@", NS),
        ("@", ANY),
        ("@", SOA),
        ("_sip._tcp", SRV),
        ("foo.mx", MX),
        ("mxwild", MX),
        ("mxsub", MX),
        ("www.sub", A),
        ("sub", NS),
        ("sub", A),
        ("sub", DS),
        ("ns1.sub", A),
        ("noglue", DS),
        ("x.noglue", A),
        ("tosub", A),
        ("mixed", ANY),
        ("mixed", AAAA),
        ("types", CAA),
        ("types", SSHFP),
        ("types", TLSA),
        ("types", NAPTR),
        ("types", HINFO),
        ("types", DNSKEY),
        ("types", DS),
        ("types", RRSIG),
        ("types", NSEC),
        ("types", SVCB),
        ("types", HTTPS),
        ("types", RecordType::Unknown(65534)),
        // DNAME: the DNAME and the CNAME made from it, followed in the zone or not.
        ("www.old", A),
        ("nope.old", A),
        ("www.old", CNAME),
        ("www.old", DNAME),
        ("deep.er.old", TXT),
        ("old", DNAME),
        ("old", TXT),
        ("old", A),
        ("a.b.ext", A),
        ("www", OPT),
        ("www", TSIG),
        ("x", RecordType::Unknown(249)),
        ("www", RecordType::Unknown(0)),
    ];
    let mut differ = Vec::new();
    for (label, qtype) in questions {
        let name = match label {
            "@" => "edge.test.".to_owned(),
            l => format!("{l}.edge.test."),
        };
        let weft = seen(&ask(ours, &name, qtype, false));
        let nsd = without_apex_ns(&ask(theirs, &name, qtype, false));
        if weft != nsd {
            differ.push(format!("{name} {qtype}:\n  weft {weft:?}\n  nsd  {nsd:?}"));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}
