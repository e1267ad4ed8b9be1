//! The answer a zone gives (RFC 1034 section 4.3.2): records from the name's own node or
//! synthesized from a wildcard (RFC 4592), CNAMEs followed inside the zone, referrals at
//! zone cuts, NXDOMAIN or NODATA with the SOA (RFC 2308), the A and AAAA records of
//! in-zone NS, MX and SRV targets in the additional section, and `ANY` as one RRset
//! (RFC 8482).
//!
//! Positive answers carry no NS set in the authority section: it is optional (RFC 2181
//! section 6.1 leaves it to the server), every resolver already holds it from the
//! referral that brought it here, and it would double the size of the common answer.
//! NSD with `minimal-responses: yes` and Knot answer the same way; NSD's default adds it.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use super::proof::sign;
use super::{MAX_CNAME_CHAIN, Zone, ZoneAnswer};

/// What a zone holds at a name.
enum Node<'a> {
    /// The name's own records.
    Exact(&'a [Record]),
    /// No node of its own: the records of the wildcard (the second) at its closest
    /// encloser, which answer with the name as their owner (RFC 4592 section 3.3.1);
    /// none when the wildcard is an empty non-terminal.
    Wildcard(&'a [Record], &'a LowerName),
    /// A node without records (an empty non-terminal): NODATA, and no wildcard applies
    /// (RFC 4592 section 2.2.2).
    Empty,
    /// No such name, and no wildcard covers it: its closest encloser, the nearest
    /// ancestor that exists.
    Missing(LowerName),
    /// Below a DNAME (RFC 6672): the records of its owner (the second), the DNAME among
    /// them.
    Redirected(&'a [Record], &'a LowerName),
    /// At or below a zone cut, whose name this is: someone else's data.
    Delegated(&'a LowerName),
}

impl Zone {
    /// The answer to `qname`/`qtype`, which must be inside the zone.
    pub fn lookup(&self, qname: &Name, qtype: RecordType) -> ZoneAnswer {
        self.answer(qname, qtype, false, &mut Vec::new(), &|_| false)
    }

    /// The answer to `qname`/`qtype` asked with DO (RFC 3225): from a signed zone, the
    /// answer [`lookup`](Self::lookup) gives with each RRset's RRSIGs, and the NSEC or
    /// NSEC3 records that prove a denial, a wildcard's expansion or a delegation without
    /// DS (RFC 4035 section 3.1, RFC 5155 section 7.2; see `proof`).
    pub fn lookup_dnssec(&self, qname: &Name, qtype: RecordType) -> ZoneAnswer {
        self.answer(qname, qtype, self.signed, &mut Vec::new(), &|_| false)
    }

    /// The answer, with DNSSEC records when `dnssec` (and the zone is signed). `followed`
    /// holds the names whose CNAMEs are in the answer so far, from other zones too (a
    /// [`Catalog`](super::Catalog) chain): a loop ends when it comes back to one, so each
    /// record is in the answer once, and the chain at [`MAX_CNAME_CHAIN`] in all. The
    /// chain stops, its CNAMEs the answer, at a target `hand_off` says another zone
    /// answers.
    pub(super) fn answer(
        &self,
        qname: &Name,
        qtype: RecordType,
        dnssec: bool,
        followed: &mut Vec<LowerName>,
        hand_off: &dyn Fn(&LowerName) -> bool,
    ) -> ZoneAnswer {
        let dnssec = dnssec && self.signed;
        let mut answer = ZoneAnswer {
            rcode: ResponseCode::NoError,
            authoritative: true,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        };
        let mut owner = qname.clone();
        let mut name = LowerName::new(qname);
        loop {
            let (records, wildcard) = match self.node(&name) {
                Node::Exact(records) => (records, None),
                // A wildcard's records answer with the name as their owner (RFC 4592).
                Node::Wildcard(records, wildcard) => (records, Some(wildcard)),
                Node::Empty => {
                    let mut answer = self.negative(answer, ResponseCode::NoError, dnssec);
                    if dnssec {
                        self.deny_type(&mut answer.authorities, &name);
                    }
                    return answer;
                }
                Node::Missing(encloser) => {
                    let mut answer = self.negative(answer, ResponseCode::NXDomain, dnssec);
                    if dnssec {
                        self.deny_name(&mut answer.authorities, &name, encloser);
                    }
                    return answer;
                }
                Node::Delegated(cut) if *cut == name && qtype == RecordType::DS => {
                    // The DS set at a cut is the parent's (RFC 4035 section 2.4), so
                    // this zone answers for it with authority.
                    let ds = self.records.get(cut).map_or(&[][..], |r| r.as_slice());
                    if !push(&mut answer.answers, ds, RecordType::DS, Some(&owner)) {
                        let mut answer = self.negative(answer, ResponseCode::NoError, dnssec);
                        if dnssec {
                            self.deny_type(&mut answer.authorities, cut);
                        }
                        return answer;
                    }
                    if dnssec {
                        sign(&mut answer.answers, ds, RecordType::DS, Some(&owner));
                    }
                    return answer;
                }
                Node::Delegated(cut) => return self.referral(answer, cut, dnssec),
                Node::Redirected(records, at) => {
                    let Some(target) = self.redirect(&mut answer, records, at, &owner, dnssec)
                    else {
                        return answer;
                    };
                    // The synthesized CNAME is followed as a CNAME would be, but for the
                    // questions a CNAME itself answers.
                    // A target below the DNAME's own name would be rewritten again,
                    // and again: it is left there, as NSD leaves it.
                    if matches!(qtype, RecordType::CNAME | RecordType::ANY)
                        || at.zone_of(&LowerName::new(&target))
                    {
                        return answer;
                    }
                    let Some(next) = self.follows(name, &target, followed, hand_off) else {
                        return answer;
                    };
                    name = next;
                    owner = target;
                    continue;
                }
            };
            // Owned by the name as asked (or as the CNAME before wrote it), in its case,
            // as NSD answers: the zone's case would differ from the question's, which a
            // resolver randomising it (0x20) compares, and compress worse.
            let rewrite = Some(&owner);
            let wanted = match qtype {
                // RFC 8482 section 4.1: one RRset of the node, the first in the file
                // (the SOA at the apex), over UDP and TCP alike, as NSD does; one of data
                // before a DNSSEC record's, which says nothing alone (an RRSIG or NSEC
                // written first in a generated zone).
                RecordType::ANY => records
                    .iter()
                    .map(Record::record_type)
                    .find(|t| {
                        !matches!(t, RecordType::RRSIG | RecordType::NSEC | RecordType::NSEC3)
                    })
                    .or_else(|| records.first().map(Record::record_type))
                    .unwrap_or(RecordType::ANY),
                other => other,
            };
            if push(&mut answer.answers, records, wanted, rewrite) {
                if dnssec {
                    self.sign_answer(&mut answer, records, wanted, &owner, &name, wildcard);
                }
                self.add_targets(&mut answer, wanted, dnssec);
                return answer;
            }
            let Some(RData::CNAME(target)) = records
                .iter()
                .find(|r| r.record_type() == RecordType::CNAME)
                .map(|r| &r.data)
            else {
                let mut answer = self.negative(answer, ResponseCode::NoError, dnssec);
                if dnssec {
                    match wildcard {
                        None => self.deny_type(&mut answer.authorities, &name),
                        Some(wildcard) => {
                            self.deny_type_at_wildcard(&mut answer.authorities, &name, wildcard);
                        }
                    }
                }
                return answer;
            };
            push(&mut answer.answers, records, RecordType::CNAME, rewrite);
            if dnssec {
                self.sign_answer(
                    &mut answer,
                    records,
                    RecordType::CNAME,
                    &owner,
                    &name,
                    wildcard,
                );
            }
            let Some(next) = self.follows(name, &target.0, followed, hand_off) else {
                return answer;
            };
            name = next;
            owner = target.0.clone();
        }
    }

    /// Whether the chain goes on from `name` to `target` in this zone, `name` now among
    /// those `followed`: not when the target is someone else's (the client's resolver
    /// follows it, or another zone served here answers it), a loop, or a chain too long
    /// to follow; the CNAMEs so far are then the answer. Gives the target's name.
    fn follows(
        &self,
        name: LowerName,
        target: &Name,
        followed: &mut Vec<LowerName>,
        hand_off: &dyn Fn(&LowerName) -> bool,
    ) -> Option<LowerName> {
        followed.push(name);
        let next = LowerName::new(target);
        let goes_on = self.lower_origin.zone_of(&next)
            && !followed.contains(&next)
            && followed.len() < MAX_CNAME_CHAIN
            && !hand_off(&next);
        goes_on.then_some(next)
    }

    /// What the zone holds at `name`, inside the zone.
    fn node(&self, name: &LowerName) -> Node<'_> {
        if let Some(cut) = self.cut_above(name) {
            return Node::Delegated(cut);
        }
        if let Some(records) = self.records.get(name)
            && (self.hashed.is_empty() || !self.hashed.contains(name))
        {
            return Node::Exact(records);
        }
        if self.names.contains(name) {
            return Node::Empty;
        }
        // The closest encloser: the nearest ancestor that exists (the origin always does,
        // and the walk stops there whatever `names` holds: the proofs walk on up from it).
        let mut encloser = name.base_name();
        while !self.names.contains(&encloser)
            && encloser != self.lower_origin
            && encloser.num_labels() > 0
        {
            encloser = encloser.base_name();
        }
        // A DNAME at the closest encloser rewrites every name below it (RFC 6672 section
        // 2.3); the loader keeps its subtree empty, so no wildcard is there to match.
        if self.redirects
            && let Some((owner, records)) = self.records.get_key_value(&encloser)
            && records.iter().any(|r| r.record_type() == RecordType::DNAME)
        {
            return Node::Redirected(records, owner);
        }
        match self.wildcards.get(&encloser) {
            // An empty non-terminal wildcard has no records: NODATA for whatever it matches.
            Some(wild) => {
                Node::Wildcard(self.records.get(wild).map_or(&[], |r| r.as_slice()), wild)
            }
            None => Node::Missing(encloser),
        }
    }

    /// The highest zone cut at or above `name` and below the apex, if any.
    fn cut_above(&self, name: &LowerName) -> Option<&LowerName> {
        if self.cuts.is_empty() {
            return None;
        }
        let mut found = None;
        let mut at = name.clone();
        while at.num_labels() > self.lower_origin.num_labels() {
            if let Some(cut) = self.cuts.get(&at) {
                found = Some(cut);
            }
            at = at.base_name();
        }
        found
    }

    /// Answers a name below the DNAME at `at` (among `records`) as RFC 6672 section 3.1
    /// says: the DNAME (with its RRSIGs, asked with DO), then a CNAME synthesized for
    /// `owner` (the name as asked) to the same name below the DNAME's target, with the
    /// DNAME's TTL and unsigned (a validator makes it from the DNAME). Gives that target;
    /// `None` when it would pass 255 bytes, which is YXDOMAIN (section 2.2).
    fn redirect(
        &self,
        answer: &mut ZoneAnswer,
        records: &[Record],
        at: &LowerName,
        owner: &Name,
        dnssec: bool,
    ) -> Option<Name> {
        let dname = records
            .iter()
            .find(|r| r.record_type() == RecordType::DNAME)?;
        let target = super::dname_target(&dname.data)?;
        push(&mut answer.answers, records, RecordType::DNAME, None);
        if dnssec {
            sign(&mut answer.answers, records, RecordType::DNAME, None);
        }
        // The labels of `owner` above the DNAME's owner, in front of its target.
        let keep = owner.iter().count().saturating_sub(at.iter().count());
        let Ok(synthesized) = Name::from_labels(owner.iter().take(keep).chain(target.iter()))
        else {
            answer.rcode = ResponseCode::YXDomain;
            return None;
        };
        let mut synthesized = synthesized;
        synthesized.set_fqdn(true);
        answer.answers.push(Record::from_rdata(
            owner.clone(),
            dname.ttl,
            RData::CNAME(hickory_proto::rr::rdata::CNAME(synthesized.clone())),
        ));
        Some(synthesized)
    }

    /// A referral to the zone cut `cut`: its NS set in the authority section, the
    /// addresses this zone holds for their targets in the additional section (glue at or
    /// below the cut, and in-zone addresses elsewhere, as NSD gives). Not authoritative,
    /// unless CNAMEs of this zone led here (a chain from another zone keeps that zone's
    /// AA: `Catalog::lookup`).
    ///
    /// Asked with DO, a referral from a signed zone carries the cut's DS set and its
    /// RRSIGs, or the proof that it has none (RFC 4035 section 3.1.4, RFC 5155 section
    /// 7.2.7): the NS set and the glue are the child's, and unsigned.
    fn referral(&self, mut answer: ZoneAnswer, cut: &LowerName, dnssec: bool) -> ZoneAnswer {
        answer.authoritative = !answer.answers.is_empty();
        let ns = self.records.get(cut).map_or(&[][..], |r| r.as_slice());
        push(&mut answer.authorities, ns, RecordType::NS, None);
        if dnssec {
            if push(&mut answer.authorities, ns, RecordType::DS, None) {
                sign(&mut answer.authorities, ns, RecordType::DS, None);
            } else {
                self.deny_type(&mut answer.authorities, cut);
            }
        }
        for record in ns {
            if let RData::NS(target) = &record.data {
                self.add_addresses(&mut answer.additionals, &target.0, true, dnssec);
            }
        }
        answer
    }

    /// The additional section of an answer of type `rtype`: the in-zone A and AAAA of
    /// the NS, MX and SRV targets among the answers.
    fn add_targets(&self, answer: &mut ZoneAnswer, rtype: RecordType, dnssec: bool) {
        if !matches!(rtype, RecordType::NS | RecordType::MX | RecordType::SRV) {
            return;
        }
        for record in &answer.answers {
            let target = match &record.data {
                RData::NS(ns) => &ns.0,
                RData::MX(mx) => &mx.exchange,
                RData::SRV(srv) => &srv.target,
                _ => continue,
            };
            // An NS target below a cut is glue that belongs with it; an MX or SRV target
            // there is someone else's name (NSD draws the same line).
            self.add_addresses(
                &mut answer.additionals,
                target,
                rtype == RecordType::NS,
                dnssec,
            );
        }
    }

    /// Adds the A and AAAA records this zone holds for `target` to `section`, once:
    /// its own, or synthesized from a wildcard; below a cut only with `glue`. With
    /// `dnssec`, their RRSIGs go with them (RFC 4035 section 3.1.1; glue has none).
    fn add_addresses(&self, section: &mut Vec<Record>, target: &Name, glue: bool, dnssec: bool) {
        let lower = LowerName::new(target);
        if !self.lower_origin.zone_of(&lower) || section.iter().any(|r| r.name == *target) {
            return;
        }
        let (records, rewrite) = match self.node(&lower) {
            Node::Exact(records) => (records, None),
            Node::Wildcard(records, _) => (records, Some(target)),
            Node::Delegated(_) if glue => match self.records.get(&lower) {
                Some(records) => (records.as_slice(), None),
                None => return,
            },
            _ => return,
        };
        for rtype in [RecordType::A, RecordType::AAAA] {
            if push(section, records, rtype, rewrite) && dnssec {
                sign(section, records, rtype, rewrite);
            }
        }
    }

    /// NXDOMAIN or NODATA, with the SOA whose TTL is the negative-caching time (and,
    /// with `dnssec`, its RRSIGs at that TTL).
    fn negative(&self, mut answer: ZoneAnswer, rcode: ResponseCode, dnssec: bool) -> ZoneAnswer {
        let mut soa = self.soa.clone();
        if let RData::SOA(data) = &soa.data {
            soa.ttl = soa.ttl.min(data.minimum);
        }
        answer.rcode = rcode;
        answer.authorities.push(soa);
        if dnssec && let Some(apex) = self.records.get(&self.lower_origin) {
            sign(&mut answer.authorities, apex, RecordType::SOA, None);
        }
        answer
    }

    /// Adds the RRSIGs of the `rtype` RRset just put in the answer from `records` at
    /// `name` (owned by `owner`, as asked), and when `wildcard` made it, the proof that
    /// `name` itself is not there.
    fn sign_answer(
        &self,
        answer: &mut ZoneAnswer,
        records: &[Record],
        rtype: RecordType,
        owner: &Name,
        name: &LowerName,
        wildcard: Option<&LowerName>,
    ) {
        sign(&mut answer.answers, records, rtype, Some(owner));
        if let Some(wildcard) = wildcard {
            self.prove_expansion(&mut answer.authorities, name, wildcard);
        }
    }
}

/// Appends the records of `records` of type `rtype` to `section`, owned by `owner` when
/// they come from a wildcard; whether there were any.
fn push(
    section: &mut Vec<Record>,
    records: &[Record],
    rtype: RecordType,
    owner: Option<&Name>,
) -> bool {
    let before = section.len();
    for record in records.iter().filter(|r| r.record_type() == rtype) {
        let mut record = record.clone();
        if let Some(owner) = owner {
            record.name = owner.clone();
        }
        section.push(record);
    }
    section.len() > before
}
