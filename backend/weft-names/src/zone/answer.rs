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

use super::{MAX_CNAME_CHAIN, Zone, ZoneAnswer};

/// What a zone holds at a name.
enum Node<'a> {
    /// The name's own records.
    Exact(&'a [Record]),
    /// No node of its own: the records of the wildcard at its closest encloser, which
    /// answer with the name as their owner (RFC 4592 section 3.3.1).
    Wildcard(&'a [Record]),
    /// A node without records (an empty non-terminal): NODATA, and no wildcard applies
    /// (RFC 4592 section 2.2.2).
    Empty,
    /// No such name, and no wildcard covers it.
    Missing,
    /// At or below a zone cut, whose name this is: someone else's data.
    Delegated(&'a LowerName),
}

impl Zone {
    /// The answer to `qname`/`qtype`, which must be inside the zone.
    pub fn lookup(&self, qname: &Name, qtype: RecordType) -> ZoneAnswer {
        let mut answer = ZoneAnswer {
            rcode: ResponseCode::NoError,
            authoritative: true,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        };
        let mut owner = qname.clone();
        let mut name = LowerName::new(qname);
        // The names whose CNAMEs are in the answer: a loop ends when it comes back to one,
        // so each record is in the answer once.
        let mut followed: Vec<LowerName> = Vec::new();
        loop {
            let records = match self.node(&name) {
                // A wildcard's records answer with the name as their owner (RFC 4592).
                Node::Exact(records) | Node::Wildcard(records) => records,
                Node::Empty => return self.negative(answer, ResponseCode::NoError),
                Node::Missing => return self.negative(answer, ResponseCode::NXDomain),
                Node::Delegated(cut) if *cut == name && qtype == RecordType::DS => {
                    // The DS set at a cut is the parent's (RFC 4035 section 2.4), so
                    // this zone answers for it with authority.
                    let ds = self.records.get(cut).map_or(&[][..], Vec::as_slice);
                    if !push(&mut answer.answers, ds, RecordType::DS, Some(&owner)) {
                        return self.negative(answer, ResponseCode::NoError);
                    }
                    return answer;
                }
                Node::Delegated(cut) => return self.referral(answer, cut),
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
                    .unwrap_or_else(|| records[0].record_type()),
                other => other,
            };
            if push(&mut answer.answers, records, wanted, rewrite) {
                self.add_targets(&mut answer, wanted);
                return answer;
            }
            let Some(RData::CNAME(target)) = records
                .iter()
                .find(|r| r.record_type() == RecordType::CNAME)
                .map(|r| &r.data)
            else {
                return self.negative(answer, ResponseCode::NoError);
            };
            push(&mut answer.answers, records, RecordType::CNAME, rewrite);
            followed.push(name);
            let next = LowerName::new(&target.0);
            if !self.lower_origin.zone_of(&next)
                || followed.contains(&next)
                || followed.len() >= MAX_CNAME_CHAIN
            {
                // Someone else's target (the client's resolver follows it), a loop, or a
                // chain too long to follow: the CNAMEs so far are the answer.
                return answer;
            }
            name = next;
            owner = target.0.clone();
        }
    }

    /// What the zone holds at `name`, inside the zone.
    fn node(&self, name: &LowerName) -> Node<'_> {
        if let Some(cut) = self.cut_above(name) {
            return Node::Delegated(cut);
        }
        if let Some(records) = self.records.get(name) {
            return Node::Exact(records);
        }
        if self.names.contains(name) {
            return Node::Empty;
        }
        // The closest encloser: the nearest ancestor that exists (the origin always does).
        let mut encloser = name.base_name();
        while !self.names.contains(&encloser) && encloser.num_labels() > 0 {
            encloser = encloser.base_name();
        }
        match self
            .wildcards
            .get(&encloser)
            .and_then(|wild| self.records.get(wild))
        {
            Some(records) => Node::Wildcard(records),
            None => Node::Missing,
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

    /// A referral to the zone cut `cut`: its NS set in the authority section, the
    /// addresses this zone holds for their targets in the additional section (glue at or
    /// below the cut, and in-zone addresses elsewhere, as NSD gives). Not authoritative,
    /// unless CNAMEs of this zone led here.
    fn referral(&self, mut answer: ZoneAnswer, cut: &LowerName) -> ZoneAnswer {
        answer.authoritative = !answer.answers.is_empty();
        let ns = self.records.get(cut).map_or(&[][..], Vec::as_slice);
        push(&mut answer.authorities, ns, RecordType::NS, None);
        for record in ns {
            if let RData::NS(target) = &record.data {
                self.add_addresses(&mut answer.additionals, &target.0, true);
            }
        }
        answer
    }

    /// The additional section of an answer of type `rtype`: the in-zone A and AAAA of
    /// the NS, MX and SRV targets among the answers.
    fn add_targets(&self, answer: &mut ZoneAnswer, rtype: RecordType) {
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
            self.add_addresses(&mut answer.additionals, target, rtype == RecordType::NS);
        }
    }

    /// Adds the A and AAAA records this zone holds for `target` to `section`, once:
    /// its own, or synthesized from a wildcard; below a cut only with `glue`.
    fn add_addresses(&self, section: &mut Vec<Record>, target: &Name, glue: bool) {
        let lower = LowerName::new(target);
        if !self.lower_origin.zone_of(&lower) || section.iter().any(|r| r.name == *target) {
            return;
        }
        let (records, rewrite) = match self.node(&lower) {
            Node::Exact(records) => (records, None),
            Node::Wildcard(records) => (records, Some(target)),
            Node::Delegated(_) if glue => match self.records.get(&lower) {
                Some(records) => (records.as_slice(), None),
                None => return,
            },
            _ => return,
        };
        push(section, records, RecordType::A, rewrite);
        push(section, records, RecordType::AAAA, rewrite);
    }

    /// NXDOMAIN or NODATA, with the SOA whose TTL is the negative-caching time.
    fn negative(&self, mut answer: ZoneAnswer, rcode: ResponseCode) -> ZoneAnswer {
        let mut soa = self.soa.clone();
        if let RData::SOA(data) = &soa.data {
            soa.ttl = soa.ttl.min(data.minimum);
        }
        answer.rcode = rcode;
        answer.authorities.push(soa);
        answer
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
