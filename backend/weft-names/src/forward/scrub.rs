//! What of an upstream's answer is kept: the records that answer the question asked,
//! and what the sections may carry with them (RFC 2181 section 5.4.1 ranks everything
//! else below data a resolver may trust; an upstream that sends more is mistaken or
//! poisoned). Nothing is kept for a name inside one of the service's own zones, which it
//! answers for itself, but the denial proofs of the authority section.
//!
//! - the answer section: the records of the name asked, of the type asked (any type for
//!   ANY), and the CNAMEs that lead from it, followed to the names they point to (and
//!   the records there); a DNAME above one of those names; the RRSIGs of those names
//!   and DNAMEs;
//! - the authority section: the SOA, NS and DS of a zone holding the last name of that
//!   chain, and NSEC, NSEC3 and RRSIG records (a denial's proof, or a wildcard answer's,
//!   which comes without an SOA; sent only to clients that set DO, whose validators
//!   check them);
//! - the additional section: the addresses (A, AAAA and their RRSIGs) of the names the
//!   records kept point to (NS, MX, SRV, SVCB and HTTPS targets).
//!
//! A CNAME chain that leads into one of the service's own zones is completed from that
//! zone when the answer is sent ([`complete`]).
//!
//! The rules follow Unbound's scrubber for a forwarder's answers. Before them, the rest
//! was answered to clients and cached with the question, for whoever asked it next.

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{LowerName, RData, Record, RecordType};

use crate::cache::Answer;
use crate::zone::Catalog;

/// How many CNAMEs a chain is followed through.
const MAX_CHAIN: usize = 16;

/// Removes from `answer` what does not answer `query` (see the module documentation),
/// and every record of a name in one of `zones` (the service's own). Returns how many
/// records were removed.
pub(crate) fn scrub(answer: &mut Answer, query: &Query, zones: &Catalog) -> usize {
    let before = answer.answers.len() + answer.authorities.len() + answer.additionals.len();
    let ours = |name: &LowerName| zones.holds(name);
    let owner = |r: &Record| LowerName::new(&r.name);
    let qtype = query.query_type();

    let chain = chain(&answer.answers, query, ours);
    let above = |name: &LowerName| chain.iter().any(|n| name.zone_of(n) && name != n);
    // The DNAMEs kept, whose RRSIGs are kept with them: above the chain, or asked for
    // themselves (their type, or ANY).
    let asked = |name: &LowerName| {
        matches!(qtype, RecordType::DNAME | RecordType::ANY) && chain.contains(name)
    };
    let dnames: Vec<LowerName> = answer
        .answers
        .iter()
        .filter(|r| r.record_type() == RecordType::DNAME)
        .map(owner)
        .filter(|name| (above(name) || asked(name)) && !ours(name))
        .collect();
    answer.answers.retain(|r| {
        let name = owner(r);
        if ours(&name) {
            return false;
        }
        match r.record_type() {
            RecordType::DNAME => dnames.contains(&name),
            RecordType::RRSIG => chain.contains(&name) || dnames.contains(&name),
            rtype if chain.contains(&name) => {
                qtype == RecordType::ANY || rtype == qtype || rtype == RecordType::CNAME
            }
            _ => false,
        }
    });

    let last = chain.last().expect("the chain begins with the name asked");
    answer.authorities.retain(|r| {
        let name = owner(r);
        match r.record_type() {
            RecordType::SOA | RecordType::NS | RecordType::DS => name.zone_of(last) && !ours(&name),
            // A denial's proof, or a wildcard answer's (which comes with no SOA to place
            // it by), or a referral's: the upstream zone's own, whatever names it covers
            // (ours too), which only clients that set DO are sent and their validators
            // check against its signatures.
            RecordType::NSEC | RecordType::NSEC3 | RecordType::RRSIG => true,
            _ => false,
        }
    });

    let targets: Vec<LowerName> = answer
        .answers
        .iter()
        .chain(&answer.authorities)
        .filter_map(target)
        .collect();
    answer.additionals.retain(|r| {
        let name = owner(r);
        !ours(&name)
            && targets.contains(&name)
            && matches!(
                r.record_type(),
                RecordType::A | RecordType::AAAA | RecordType::RRSIG
            )
    });

    before - (answer.answers.len() + answer.authorities.len() + answer.additionals.len())
}

/// The name asked, then each name a CNAME of the one before points to, as `answers`
/// give them (in any order; a loop or a chain past [`MAX_CHAIN`] ends it), up to the
/// first that is `ours` (the service answers for it, not the upstream). A question for
/// the CNAME itself, or for ANY, follows none.
fn chain(answers: &[Record], query: &Query, ours: impl Fn(&LowerName) -> bool) -> Vec<LowerName> {
    let mut chain = vec![LowerName::new(query.name())];
    if matches!(query.query_type(), RecordType::CNAME | RecordType::ANY) {
        return chain;
    }
    while chain.len() <= MAX_CHAIN {
        let last = chain.last().expect("never empty");
        if ours(last) {
            break;
        }
        let next = answers.iter().find_map(|r| match &r.data {
            RData::CNAME(target) if LowerName::new(&r.name) == *last => {
                Some(LowerName::new(&target.0))
            }
            _ => None,
        });
        match next {
            Some(next) if !chain.contains(&next) => chain.push(next),
            _ => break,
        }
    }
    chain
}

/// The name a record points to whose addresses may come with it. An SVCB or HTTPS
/// record whose target is `.` points to its own owner (RFC 9460 section 2.5).
fn target(record: &Record) -> Option<LowerName> {
    let name = match &record.data {
        RData::NS(ns) => &ns.0,
        RData::MX(mx) => &mx.exchange,
        RData::SRV(srv) => &srv.target,
        RData::SVCB(svcb) => &svcb.target_name,
        RData::HTTPS(https) => &https.0.target_name,
        _ => return None,
    };
    let service = matches!(record.data, RData::SVCB(_) | RData::HTTPS(_));
    Some(LowerName::new(if service && name.is_root() {
        &record.name
    } else {
        name
    }))
}

/// Completes from `zones` (the service's own) the CNAME chain of `message`, an upstream's
/// answer to `query` (scrubbed), when it leads into one of them: the upstream's records
/// there were left out, and a stub resolver would not ask again for the target. What
/// the answer holds past the chain's way in (cached before a reload made the zone the
/// service's) goes; the rcode and the other sections become what the service's zones
/// answer for the name the chain enters by (`Catalog::lookup`, on into another of them).
pub(crate) fn complete(message: &mut Message, query: &Query, zones: &Catalog) {
    if zones.zones().is_empty()
        || matches!(query.query_type(), RecordType::CNAME | RecordType::ANY)
        || !message
            .answers
            .iter()
            .any(|r| r.record_type() == RecordType::CNAME)
    {
        return;
    }
    let ours = |name: &LowerName| zones.holds(name);
    let chain = chain(&message.answers, query, ours);
    let [before @ .., last] = &chain[..] else {
        return;
    };
    if before.is_empty() || !ours(last) {
        return;
    }
    let Some(target) = message.answers.iter().find_map(|r| match &r.data {
        RData::CNAME(target) if LowerName::new(&target.0) == *last => Some(target.0.clone()),
        _ => None,
    }) else {
        return;
    };
    // As a question for the target would be answered (on into another zone of the
    // service, a DS from its parent).
    let Some((local, _)) = zones.lookup(&target, query.query_type(), false) else {
        return;
    };
    message.answers.retain(|r| {
        let name = LowerName::new(&r.name);
        before.contains(&name) || (r.record_type() == RecordType::DNAME && !ours(&name))
    });
    message.metadata.response_code = local.rcode;
    message.answers.extend(local.answers);
    message.authorities = local.authorities;
    message.additionals = local.additionals;
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::str::FromStr;

    use hickory_proto::rr::rdata::{A, CNAME, MX, NS, SOA};
    use hickory_proto::rr::{Name, RData};

    use crate::zone::Zone;

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_str(s).unwrap()
    }

    /// An empty response, for `complete` to work on.
    fn response() -> Message {
        Message::new(
            1,
            hickory_proto::op::MessageType::Response,
            hickory_proto::op::OpCode::Query,
        )
    }

    /// The service's own zone `weft.test`, with `records` besides its SOA and NS.
    fn weft_test(records: &str) -> Catalog {
        let text =
            format!("$ORIGIN weft.test.\n$TTL 60\n@ SOA ns host 1 2 3 4 5\n@ NS ns\n{records}");
        let mut zones = Catalog::default();
        zones
            .add(Zone::parse(Path::new("weft.test.zone"), &text).unwrap())
            .unwrap();
        zones
    }

    fn record(owner: &str, data: RData) -> Record {
        Record::from_rdata(name(owner), 300, data)
    }

    fn a(owner: &str) -> Record {
        record(owner, RData::A(A::new(192, 0, 2, 1)))
    }

    fn cname(owner: &str, target: &str) -> Record {
        record(owner, RData::CNAME(CNAME(name(target))))
    }

    fn soa(owner: &str) -> Record {
        record(
            owner,
            RData::SOA(SOA::new(name("ns."), name("host."), 1, 2, 3, 4, 5)),
        )
    }

    fn owners(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| format!("{} {}", r.name, r.record_type()))
            .collect()
    }

    fn answer(answers: Vec<Record>, authorities: Vec<Record>, additionals: Vec<Record>) -> Answer {
        Answer {
            rcode: hickory_proto::op::ResponseCode::NoError,
            answers,
            authorities,
            additionals,
        }
    }

    #[test]
    fn an_answer_keeps_its_chain_and_loses_records_of_other_names_and_of_the_service_s_zones() {
        let query = Query::query(name("www.example.com."), RecordType::A);
        let mut got = answer(
            vec![
                cname("www.example.com.", "edge.cdn.net."),
                a("edge.cdn.net."),
                // Records nobody asked for: another name, another type, our own zone.
                a("bank.example."),
                a("www.weft.test."),
                record(
                    "www.example.com.",
                    RData::MX(MX::new(10, name("mx.example.com."))),
                ),
            ],
            vec![
                record("cdn.net.", RData::NS(NS(name("ns.cdn.net.")))),
                record("bank.example.", RData::NS(NS(name("evil.example.")))),
                record("weft.test.", RData::NS(NS(name("evil.example.")))),
            ],
            vec![a("ns.cdn.net."), a("evil.example."), a("www.weft.test.")],
        );
        let removed = scrub(&mut got, &query, &weft_test(""));
        assert_eq!(
            owners(&got.answers),
            ["www.example.com. CNAME", "edge.cdn.net. A"]
        );
        assert_eq!(owners(&got.authorities), ["cdn.net. NS"]);
        assert_eq!(owners(&got.additionals), ["ns.cdn.net. A"]);
        assert_eq!(removed, 7);
    }

    #[test]
    fn a_chain_into_the_service_s_own_zone_keeps_its_cname_but_not_the_upstream_s_records_there() {
        let query = Query::query(name("Alias.Example.com."), RecordType::A);
        let mut got = answer(
            vec![
                cname("alias.example.com.", "www.weft.test."),
                a("www.weft.test."),
            ],
            vec![],
            vec![],
        );
        scrub(&mut got, &query, &weft_test(""));
        assert_eq!(owners(&got.answers), ["alias.example.com. CNAME"]);
    }

    #[test]
    fn a_chain_into_the_service_s_own_zone_is_completed_from_it() {
        let zones = weft_test("www A 192.0.2.10\nold CNAME www\n");
        let ask = |qname: &str, qtype: RecordType, target: &str| {
            let query = Query::query(name(qname), qtype);
            let mut message = response();
            message.metadata.response_code = hickory_proto::op::ResponseCode::NXDomain;
            message.answers.push(cname(qname, target));
            complete(&mut message, &query, &zones);
            message
        };
        // Through a CNAME of the zone's own, too.
        let m = ask("alias.example.com.", RecordType::A, "Old.Weft.Test.");
        assert_eq!(
            owners(&m.answers),
            [
                "alias.example.com. CNAME",
                "old.weft.test. CNAME",
                "www.weft.test. A"
            ]
        );
        assert_eq!(
            m.metadata.response_code,
            hickory_proto::op::ResponseCode::NoError
        );
        let m = ask("alias.example.com.", RecordType::A, "gone.weft.test.");
        assert_eq!(
            m.metadata.response_code,
            hickory_proto::op::ResponseCode::NXDomain
        );
        assert_eq!(owners(&m.authorities), ["weft.test. SOA"]);
        // A chain elsewhere, or a question for the CNAME itself, is left as it is.
        assert_eq!(
            owners(&ask("a.example.com.", RecordType::A, "b.example.net.").answers).len(),
            1
        );
        assert_eq!(
            owners(&ask("alias.example.com.", RecordType::CNAME, "www.weft.test.").answers).len(),
            1
        );
    }

    #[test]
    fn an_https_record_with_target_dot_keeps_its_owner_s_addresses_and_a_dname_asked_for_stays() {
        let query = Query::query(name("svc.example.com."), RecordType::HTTPS);
        let https = hickory_proto::rr::rdata::HTTPS(hickory_proto::rr::rdata::SVCB::new(
            1,
            Name::root(),
            vec![],
        ));
        let mut got = answer(
            vec![record("svc.example.com.", RData::HTTPS(https))],
            vec![],
            vec![a("svc.example.com."), a("other.example.com.")],
        );
        scrub(&mut got, &query, &Catalog::default());
        assert_eq!(owners(&got.additionals), ["svc.example.com. A"]);

        for qtype in [RecordType::DNAME, RecordType::ANY] {
            let query = Query::query(name("dn.example.com."), qtype);
            let dname = typed("dn.example.com.", RecordType::DNAME);
            let mut got = answer(vec![dname], vec![], vec![]);
            assert_eq!(scrub(&mut got, &query, &Catalog::default()), 0, "{qtype}");
        }
    }

    #[test]
    fn a_chain_ends_where_it_enters_the_service_s_zone_and_what_is_past_it_goes() {
        let query = Query::query(name("a.example.com."), RecordType::A);
        let sent = vec![
            cname("a.example.com.", "b.weft.test."),
            cname("b.weft.test.", "c.evil.example."),
            a("c.evil.example."),
        ];
        let mut got = answer(sent.clone(), vec![], vec![]);
        assert_eq!(scrub(&mut got, &query, &weft_test("")), 2);
        assert_eq!(owners(&got.answers), ["a.example.com. CNAME"]);

        // Cached before the zone was the service's: completing it drops the rest.
        let zones = weft_test("b A 192.0.2.2\n");
        let mut message = response();
        message.answers = sent;
        complete(&mut message, &query, &zones);
        assert_eq!(
            owners(&message.answers),
            ["a.example.com. CNAME", "b.weft.test. A"]
        );
    }

    #[test]
    fn a_denial_keeps_the_soa_of_a_zone_above_the_name_and_no_other() {
        let query = Query::query(name("nothing.example.com."), RecordType::A);
        let mut got = answer(
            vec![],
            vec![soa("example.com."), soa("other.example.")],
            vec![],
        );
        scrub(&mut got, &query, &Catalog::default());
        assert_eq!(owners(&got.authorities), ["example.com. SOA"]);
    }

    fn typed(owner: &str, rtype: RecordType) -> Record {
        let mut r = a(owner);
        r.data = RData::Unknown {
            code: rtype,
            rdata: hickory_proto::rr::rdata::NULL::with(vec![1]),
        };
        r
    }

    #[test]
    fn a_signed_wildcard_answer_keeps_its_proof_and_a_dname_its_signature() {
        let query = Query::query(name("x.wild.example.com."), RecordType::A);
        let mut got = answer(
            vec![
                record(
                    "example.com.",
                    RData::Unknown {
                        code: RecordType::DNAME,
                        rdata: hickory_proto::rr::rdata::NULL::with(vec![0]),
                    },
                ),
                typed("example.com.", RecordType::RRSIG),
                a("x.wild.example.com."),
                typed("x.wild.example.com.", RecordType::RRSIG),
                typed("elsewhere.example.", RecordType::RRSIG),
            ],
            // No SOA: a wildcard answer's proof that no closer name exists.
            vec![
                typed("w.example.com.", RecordType::NSEC),
                typed("w.example.com.", RecordType::RRSIG),
            ],
            vec![],
        );
        assert_eq!(scrub(&mut got, &query, &Catalog::default()), 1);
        assert_eq!(
            owners(&got.answers),
            [
                "example.com. DNAME",
                "example.com. RRSIG",
                "x.wild.example.com. A",
                "x.wild.example.com. RRSIG"
            ]
        );
        assert_eq!(
            owners(&got.authorities),
            ["w.example.com. NSEC", "w.example.com. RRSIG"]
        );
    }

    /// Random answers of a few names and types: whatever the upstream sends, what is kept
    /// was sent, the records asked for stay, and nothing of the service's zone is kept
    /// but the proofs of the authority section.
    #[test]
    fn any_answer_keeps_a_subset_with_the_records_asked_for_and_none_of_the_local_zone_s() {
        let names = [
            "q.example.com.",
            "t.example.com.",
            "example.com.",
            "x.other.net.",
            "www.weft.test.",
            "weft.test.",
        ];
        let zones = weft_test("");
        let ours_name = |n: &LowerName| zones.holds(n);
        let rng = std::cell::RefCell::new(fastrand::Rng::with_seed(7));
        let below = |n: usize| rng.borrow_mut().usize(..n);
        let pick = || names[below(names.len())];
        let random = || match below(6) {
            0 => cname(pick(), pick()),
            1 => soa(pick()),
            2 => record(pick(), RData::NS(NS(name(pick())))),
            3 => typed(pick(), RecordType::NSEC),
            4 => typed(pick(), RecordType::RRSIG),
            _ => a(pick()),
        };
        let section = || (0..below(6)).map(|_| random()).collect::<Vec<_>>();
        for round in 0..20_000 {
            let sent = answer(section(), section(), section());
            let qtype = [RecordType::A, RecordType::CNAME, RecordType::ANY][below(3)];
            let query = Query::query(name("q.example.com."), qtype);
            let mut kept = sent.clone();
            let removed = scrub(&mut kept, &query, &zones);
            let all = |a: &Answer| a.answers.len() + a.authorities.len() + a.additionals.len();
            assert_eq!(all(&kept) + removed, all(&sent), "{round}");
            for (k, s) in [
                (&kept.answers, &sent.answers),
                (&kept.authorities, &sent.authorities),
                (&kept.additionals, &sent.additionals),
            ] {
                assert!(
                    k.iter().all(|r| s.contains(r)),
                    "{round}: kept what was sent"
                );
            }
            let asked = |r: &&Record| {
                LowerName::new(&r.name) == LowerName::new(&name("q.example.com."))
                    && (r.record_type() == qtype || qtype == RecordType::ANY)
            };
            assert_eq!(
                kept.answers.iter().filter(asked).count(),
                sent.answers.iter().filter(asked).count(),
                "{round}: the records asked for stay"
            );
            // Nothing past the chain's way into the zone: the upstream's word there is not
            // taken, however its chain goes on.
            let mut way = vec![LowerName::new(&name("q.example.com."))];
            while qtype == RecordType::A && way.len() <= names.len() {
                let at = way.last().expect("never empty").clone();
                let next = kept.answers.iter().find_map(|r| match &r.data {
                    RData::CNAME(t) if LowerName::new(&r.name) == at => Some(LowerName::new(&t.0)),
                    _ => None,
                });
                match next {
                    Some(next) if !ours_name(&at) && !way.contains(&next) => way.push(next),
                    _ => break,
                }
            }
            assert!(
                kept.answers
                    .iter()
                    .all(|r| way.contains(&LowerName::new(&r.name))),
                "{round}: past the chain: {kept:?}"
            );
            let ours = |r: &Record| ours_name(&LowerName::new(&r.name));
            let proof = |r: &Record| {
                matches!(
                    r.record_type(),
                    RecordType::NSEC | RecordType::NSEC3 | RecordType::RRSIG
                )
            };
            assert!(
                !kept.answers.iter().chain(&kept.additionals).any(ours)
                    && !kept.authorities.iter().any(|r| ours(r) && !proof(r)),
                "{round}: {kept:?}"
            );
        }
    }

    #[test]
    fn a_cname_loop_ends_the_chain() {
        let query = Query::query(name("a.example.com."), RecordType::A);
        let mut got = answer(
            vec![
                cname("a.example.com.", "b.example.com."),
                cname("b.example.com.", "a.example.com."),
            ],
            vec![],
            vec![],
        );
        assert_eq!(scrub(&mut got, &query, &Catalog::default()), 0);
    }
}
