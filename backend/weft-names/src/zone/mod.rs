//! Authoritative data: BIND zone files parsed into [`Zone`]s, and the answers they give.
//!
//! A [`Catalog`] holds the zones of a service; [`Catalog::find`] picks the zone with the
//! longest origin that contains a name, and [`Zone::lookup`] answers from it
//! (`answer`): the records asked for or synthesized from a wildcard, CNAMEs followed
//! inside the zone (each once, at most eight; [`Catalog::lookup`] goes on into the
//! catalog's other zones), referrals at zone cuts,
//! NXDOMAIN or NODATA with the SOA in the authority section (RFC 2308).
//!
//! Files are read by `lex` (entries with their lines), `parse` (directives, owners, TTLs,
//! `$INCLUDE`d files), `generate` (`$GENERATE`), `rdata` (each type's fields) and
//! `dnssec` (the DNSSEC types). A signed zone's answers to DO queries carry its RRSIGs
//! and the NSEC or NSEC3 records that prove its denials (`proof`).

mod answer;
mod catalog;
#[cfg(test)]
mod catalog_tests;
mod changed;
#[cfg(test)]
mod dname_tests;
mod dnssec;
mod generate;
mod lex;
pub(crate) mod parse;
mod proof;
#[cfg(test)]
pub(crate) mod proof_tests;
mod rdata;
mod walk;

pub use catalog::Catalog;
pub(crate) use proof::covered;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, Record, RecordType};

use crate::error::ZoneError;

/// A zone's maps by name. Their keys are the zone's own names, read from its file: a
/// question only looks one up, never adds one, so a fast hash (foldhash, seeded per
/// process) serves where SipHash took a tenth of the time of a random-name flood's
/// answers.
type NameMap<V> = HashMap<LowerName, V, foldhash::fast::RandomState>;
/// A zone's sets of names (see [`NameMap`]).
type NameSet = HashSet<LowerName, foldhash::fast::RandomState>;

/// How many CNAMEs an answer follows at most.
const MAX_CNAME_CHAIN: usize = 8;

/// One zone: its origin, its SOA and its records by owner name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    origin: Name,
    soa: Record,
    /// Every record of each owner name, in file order; shared with the zone it was
    /// changed from by an IXFR where the change did not touch the owner (`changed.rs`).
    records: NameMap<Arc<Vec<Record>>>,
    /// Owner names and every ancestor up to the origin, so an empty non-terminal
    /// (`b.example.test` when only `a.b.example.test` has records) is NODATA, not NXDOMAIN.
    names: NameSet,
    /// The wildcard (`*.apps.example.test`) below each name that has one: an owner, or an
    /// empty non-terminal above one (`*.apps` of `x.*.apps`).
    wildcards: NameMap<LowerName>,
    /// The zone cuts: names below the origin with NS records, delegated to other servers.
    cuts: NameSet,
    /// The origin, lower-cased, for comparisons.
    lower_origin: LowerName,
    /// Where it was read from, for errors that name the file (two zones for one origin).
    file: PathBuf,
    /// The files its `$INCLUDE`s read records from, resolved, in the order first read.
    included: Vec<PathBuf>,
    /// Its owner names in transfer order, made by the first transfer (`walk.rs`).
    owners: walk::Owners,
    /// Whether it holds RRSIG records: answers to DO queries then carry them.
    signed: bool,
    /// Whether it holds a DNAME: a missing name's closest encloser is then looked at.
    redirects: bool,
    /// Its NSEC or NSEC3 chain, which proves denials to DO queries (`proof.rs`).
    chain: proof::Chain,
    /// The owners that hold only NSEC3 records (and their RRSIGs): not names of the zone
    /// to a query (RFC 5155 section 7.2.8), so out of `names`, and looked past by `node`.
    hashed: NameSet,
    /// When its first signature expires, with the owner and type it signs (`proof.rs`).
    expiry: Option<(std::time::SystemTime, Name, RecordType)>,
    /// How many records it holds, counted once when it is read (the dashboard's DNS view
    /// asks when its service starts, on the reactor thread).
    count: usize,
}

/// What a zone says about a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneAnswer {
    /// NOERROR (with answers, NODATA or a referral) or NXDOMAIN.
    pub rcode: ResponseCode,
    /// Whether the answer is the zone's own data (AA): not for a referral.
    pub authoritative: bool,
    /// The answer section: the records asked for, after the CNAMEs leading to them.
    pub answers: Vec<Record>,
    /// The authority section: the SOA for a negative answer, the NS set of a referral.
    pub authorities: Vec<Record>,
    /// The additional section: addresses of NS, MX and SRV targets, and glue.
    pub additionals: Vec<Record>,
}

impl Zone {
    /// Reads and parses the zone file at `path`.
    pub fn load(path: &Path) -> Result<Self, ZoneError> {
        let text = parse::read_text(path).map_err(|e| ZoneError {
            file: path.to_owned(),
            line: 0,
            message: format!("cannot read the zone file: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses zone file `text`, naming `file` in errors; `$INCLUDE`d files are read
    /// relative to its directory. Names are relative to the `$ORIGIN` in force; the
    /// zone's origin is the owner of its one SOA record.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ZoneError> {
        let (records, included) = parse::records(file, text)?;
        Self::build(file, records, included)
    }

    /// The zone of `records`, a transfer's (its SOA first; the closing SOA left off),
    /// named `file` in errors, each record numbered from `first_line` as
    /// [`crate::transfer::inbound::zone_text`] writes them there. The zone is the one
    /// [`parse`](Self::parse) makes of that text: the records the text could not hold are
    /// refused as it refuses them (a class other than IN, a meta type, a DNAME whose
    /// target is no name, an SOA timer past 2^31 - 1), a TTL with its top bit set is 0
    /// (RFC 2181 section 8), and the zone's own checks are the same code.
    pub fn from_transfer(
        file: &Path,
        records: Vec<Record>,
        first_line: usize,
    ) -> Result<Self, ZoneError> {
        let named: Rc<Path> = Rc::from(file);
        let mut located = Vec::with_capacity(records.len());
        for (i, mut record) in records.into_iter().enumerate() {
            let line = first_line + i;
            if let Some(message) = as_in_text(&mut record) {
                return Err(ZoneError {
                    file: file.to_owned(),
                    line,
                    message,
                });
            }
            located.push(parse::Located {
                file: named.clone(),
                line,
                record,
            });
        }
        Self::build(file, located, Vec::new())
    }

    /// The zone of `records`, read from `file` and the files it `included`.
    fn build(
        file: &Path,
        records: Vec<parse::Located>,
        included: Vec<PathBuf>,
    ) -> Result<Self, ZoneError> {
        let err = |at: &parse::Located, message: String| ZoneError {
            file: at.file.to_path_buf(),
            line: at.line,
            message,
        };
        let mut soa: Option<&parse::Located> = None;
        for at in &records {
            if at.record.record_type() == RecordType::SOA {
                if let Some(first) = soa {
                    return Err(err(
                        at,
                        format!(
                            "a second SOA record; a zone has one (the first is on line {} of {})",
                            first.line,
                            first.file.display()
                        ),
                    ));
                }
                soa = Some(at);
            }
        }
        let Some(soa) = soa else {
            return Err(ZoneError {
                file: file.to_owned(),
                line: 0,
                message: "no SOA record; a zone starts with one, such as `@ IN SOA ns1 hostmaster 1 3600 600 86400 300`".into(),
            });
        };
        if let Some(first) = records.first()
            && first.record.record_type() != RecordType::SOA
        {
            return Err(err(
                first,
                format!("the SOA record (line {}) must come first", soa.line),
            ));
        }
        let origin = soa.record.name.clone();
        let lower_origin = LowerName::new(&origin);
        // An apex without NS records names no server for the zone: a resolver following a
        // delegation, or a secondary transferring it, finds none (RFC 1034 section 4.2.1).
        // BIND, Knot and PowerDNS refuse such a zone; an `IN NS` line meant for the apex
        // but indented under another owner is the usual cause.
        let apex_ns = records.iter().any(|at| {
            at.record.record_type() == RecordType::NS
                && LowerName::new(&at.record.name) == lower_origin
        });
        if !apex_ns {
            return Err(err(
                soa,
                format!(
                    "the zone {origin} has no NS record at its apex: nothing names a server for it; \
                     add one such as `@ IN NS ns1` (an indented line belongs to the owner above it)"
                ),
            ));
        }
        let mut zone = Self {
            origin,
            soa: soa.record.clone(),
            records: NameMap::default(),
            names: NameSet::default(),
            wildcards: NameMap::default(),
            cuts: NameSet::default(),
            lower_origin: lower_origin.clone(),
            file: file.to_owned(),
            included,
            owners: walk::Owners::default(),
            signed: false,
            redirects: false,
            chain: proof::Chain::None,
            hashed: NameSet::default(),
            expiry: None,
            count: 0,
        };
        // The bytes each RRset takes in an answer, to refuse one no message can hold.
        let mut sizes: HashMap<(LowerName, RecordType), usize> = HashMap::new();
        let mut scratch = Vec::new();
        // NS and MX targets in the zone, with their line: checked against its CNAMEs once
        // every record is in.
        let mut targets: Vec<(usize, Name, RecordType, LowerName)> = Vec::new();
        // The owners of DNAME records, with the line of each.
        let mut dnames: NameMap<usize> = NameMap::default();
        // Each record moves into the zone: a large zone is never held twice.
        for at in records {
            let record = &at.record;
            let owner = LowerName::new(&record.name);
            if !lower_origin.zone_of(&owner) {
                return Err(err(
                    &at,
                    format!("{} is outside the zone {}", record.name, zone.origin),
                ));
            }
            let rtype = record.record_type();
            // The apex's NSEC3PARAM is the one read (RFC 5155 section 4).
            if let Some((iterations, _)) = proof::nsec3_param(record)
                && iterations > proof::MAX_NSEC3_ITERATIONS
                && owner == lower_origin
            {
                return Err(err(
                    &at,
                    format!(
                        "the NSEC3PARAM asks {iterations} iterations, more than {}: validating \
                         resolvers treat such a zone as insecure (RFC 9276 section 3.2), and each \
                         negative answer would hash names that many times; sign the zone again \
                         with 0 iterations and no salt (RFC 9276 section 3.1)",
                        proof::MAX_NSEC3_ITERATIONS
                    ),
                ));
            }
            let target = match &record.data {
                hickory_proto::rr::RData::NS(ns) => Some(&ns.0),
                hickory_proto::rr::RData::MX(mx) => Some(&mx.exchange),
                _ => None,
            };
            if let Some(target) = target.map(LowerName::new)
                && lower_origin.zone_of(&target)
            {
                targets.push((at.line, record.name.clone(), rtype, target));
            }
            if owner.is_wildcard()
                && matches!(rtype, RecordType::NS | RecordType::SOA | RecordType::DNAME)
            {
                // RFC 4592 section 4.2: a wildcard NS set delegates nothing a resolver
                // can follow; BIND and NSD refuse it too.
                return Err(err(
                    &at,
                    format!(
                        "{} is a wildcard: it cannot hold {rtype} records",
                        record.name
                    ),
                ));
            }
            let at_owner = Arc::make_mut(zone.records.entry(owner.clone()).or_default());
            // A CNAME's own signatures and NSEC record stand beside it (RFC 2181 section
            // 10.1, RFC 4035 section 2.5): a signed zone has them at every CNAME.
            let beside = |t: RecordType| matches!(t, RecordType::RRSIG | RecordType::NSEC);
            let clash = match rtype {
                RecordType::CNAME => at_owner.iter().any(|r| !beside(r.record_type())),
                t if beside(t) => false,
                _ => at_owner
                    .iter()
                    .any(|r| r.record_type() == RecordType::CNAME),
            };
            if clash {
                return Err(err(&at, cname_beside(&record.name)));
            }
            if rtype == RecordType::DNAME {
                let target = dname_target(&record.data);
                let mut kept = at_owner.iter().filter_map(|r| dname_target(&r.data));
                // The same target written in another case is the same record.
                if let Some(other) = kept.next() {
                    if Some(&other) == target.as_ref() {
                        continue;
                    }
                    return Err(err(
                        &at,
                        format!(
                            "{} has two DNAME records; a name has one at most (RFC 6672 \
                             section 2.4)",
                            record.name
                        ),
                    ));
                }
                dnames.insert(owner.clone(), at.line);
                zone.redirects = true;
            }
            if !at_owner.contains(record) {
                let size = sizes.entry((owner.clone(), rtype)).or_default();
                *size += answer_bytes(record, &mut scratch).map_err(|message| err(&at, message))?;
                if *size > MAX_RRSET_BYTES {
                    return Err(err(&at, rrset_too_large(rtype, &record.name, *size)));
                }
                zone.signed |= rtype == RecordType::RRSIG;
                at_owner.push(at.record);
                same_ttl(at_owner, rtype);
            }
            if rtype == RecordType::NS && owner != lower_origin {
                zone.cuts.insert(owner.clone());
            }
            add_name(&mut zone.names, &mut zone.wildcards, &lower_origin, owner);
        }
        // RFC 6672 section 2.4: nothing below a DNAME, whose subtree is its target's (the
        // NSEC3 records of a DNAME at the apex are not names of the zone's tree).
        if !dnames.is_empty() {
            let only_nsec3 = |records: &[Record]| {
                records
                    .iter()
                    .all(|r| matches!(r.record_type(), RecordType::NSEC3 | RecordType::RRSIG))
            };
            // The first in canonical order, so a file gets the same error each time.
            let mut first: Option<(&LowerName, LowerName, usize)> = None;
            for (owner, records) in &zone.records {
                if only_nsec3(records) || first.as_ref().is_some_and(|(f, ..)| *f <= owner) {
                    continue;
                }
                let mut above = owner.base_name();
                while lower_origin.zone_of(&above) && above.num_labels() > 0 {
                    if let Some(&line) = dnames.get(&above) {
                        first = Some((owner, above, line));
                        break;
                    }
                    above = above.base_name();
                }
            }
            if let Some((owner, above, line)) = first {
                return Err(ZoneError {
                    file: file.to_owned(),
                    line,
                    message: format!(
                        "{above} has a DNAME, and {owner} below it has records: a DNAME's \
                         subtree is its target's, so nothing below it is served (RFC 6672 \
                         section 2.4); remove them or the DNAME"
                    ),
                });
            }
        }
        // RFC 2181 §10.3: an NS or MX record MUST NOT name an alias; a resolver following
        // it finds a CNAME where it looks for an address (BIND refuses such a zone).
        for (line, owner, rtype, target) in targets {
            let alias = zone.records.get(&target).is_some_and(|records| {
                records.iter().any(|r| r.record_type() == RecordType::CNAME)
            });
            if alias {
                return Err(ZoneError {
                    file: file.to_owned(),
                    line,
                    message: alias_target(rtype, &owner, &target),
                });
            }
        }
        zone.count = zone.records.values().map(|r| r.len()).sum();
        if zone.signed {
            zone.chain = proof::Chain::read(&zone.lower_origin, &zone.records);
            zone.hide_nsec3_owners();
            zone.expiry = zone.find_first_expiry(std::time::SystemTime::now());
        }
        Ok(zone)
    }

    /// The zone's origin.
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The file it was read from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The files its `$INCLUDE`s read records from (resolved paths).
    pub fn included_files(&self) -> &[PathBuf] {
        &self.included
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether it is signed: it holds RRSIG records, which answers to DO queries carry
    /// with the RRsets they sign ([`lookup_dnssec`](Self::lookup_dnssec)).
    pub fn is_signed(&self) -> bool {
        self.signed
    }

    /// Why it cannot prove a denial, when it is signed and cannot: validators then find
    /// its negative answers bogus. Says what it lacks (`has no NSEC or NSEC3 records`).
    pub fn denial_missing(&self) -> Option<String> {
        if !self.signed {
            return None;
        }
        self.chain.missing(&self.records, &self.lower_origin)
    }

    /// The iterations and salt of the NSEC3 chain it proves denials with, if it uses one.
    pub fn nsec3_parameters(&self) -> Option<(u16, &[u8])> {
        match &self.chain {
            proof::Chain::Nsec3(chain) => Some(chain.parameters()),
            _ => None,
        }
    }

    /// Whether it holds no records (never true for a parsed zone: it has its SOA).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// The most an RRset may take in an answer: a message is at most 65,535 bytes (the TCP
/// length prefix, RFC 1035 §4.2.2), less its header (12), the longest question (a
/// 255-byte name, its type and class) and the room kept for OPT and TSIG records
/// (`wire::TRAILER_ROOM`).
const MAX_RRSET_BYTES: usize = 65_535 - 12 - 259 - crate::wire::TRAILER_ROOM as usize;

/// Why `record`, come by a transfer, is one a zone file could not hold (what the text
/// reading refuses before the zone's own checks), if it is; else its TTL as a zone file
/// reads it: one with its top bit set is 0 (RFC 2181 section 8).
fn as_in_text(record: &mut Record) -> Option<String> {
    not_in_text(record).or_else(|| {
        if record.ttl > i32::MAX.cast_unsigned() {
            record.ttl = 0;
        }
        None
    })
}

/// What the zone says of a name with a CNAME and other records.
fn cname_beside(name: &Name) -> String {
    format!("{name} has a CNAME and other records; a CNAME must be alone at its name")
}

/// What the zone says of an RRset too large for an answer.
fn rrset_too_large(rtype: RecordType, name: &Name, size: usize) -> String {
    format!(
        "the {rtype} records of {name} take {size} bytes, more than a DNS message can carry \
         in an answer ({MAX_RRSET_BYTES}): no query for them could be answered and no \
         transfer could send them; make the set smaller"
    )
}

/// What the zone says of an NS or MX record that names an alias (RFC 2181 section 10.3).
fn alias_target(rtype: RecordType, owner: &Name, target: &LowerName) -> String {
    format!(
        "the {rtype} record of {owner} names {target}, which is an alias (a CNAME): an \
         {rtype} target must be the name that has the address records (RFC 2181 section \
         10.3)"
    )
}

/// Why `record`, come by a transfer, is one a zone file could not hold (what the text
/// reading refuses before the zone's own checks), if it is.
fn not_in_text(record: &Record) -> Option<String> {
    let rtype = record.record_type();
    if record.dns_class != hickory_proto::rr::DNSClass::IN {
        return Some(format!(
            "{} {rtype}: class {} is not supported; only IN",
            record.name, record.dns_class
        ));
    }
    match (u16::from(rtype), &record.data) {
        (41 | 128..=255, _) => Some(format!(
            "{} {rtype} is a meta or question type, not data a zone can hold",
            record.name
        )),
        (39, data) if dname_target(data).is_none() => Some(format!(
            "{} DNAME: its data is not a domain name (uncompressed, as RFC 6672 section 2.5 \
             writes it)",
            record.name
        )),
        (_, hickory_proto::rr::RData::SOA(soa))
            if [soa.refresh, soa.retry, soa.expire].iter().any(|t| *t < 0)
                || soa.minimum > i32::MAX.cast_unsigned() =>
        {
            Some(format!(
                "{} SOA: a timer is longer than the largest TTL (2^31 - 1 seconds)",
                record.name
            ))
        }
        _ => None,
    }
}

/// What `record` adds to an answer holding its RRset: its type, class, TTL and data
/// length (10 bytes), its data, and its owner, written once as a 2-byte pointer; an
/// error when its data is longer than a record can say (RDLENGTH is 16 bits, RFC 1035
/// §3.2.1).
/// The target of a DNAME record (kept as its wire form, `rdata.rs`): the name its RDATA
/// spells, uncompressed; `None` for any other record, or RDATA that is not such a name.
pub(crate) fn dname_target(data: &hickory_proto::rr::RData) -> Option<Name> {
    let hickory_proto::rr::RData::Unknown { code, rdata } = data else {
        return None;
    };
    if *code != RecordType::DNAME {
        return None;
    }
    let bytes = &rdata.anything;
    // Labels to the root label, no pointer, nothing after it.
    let mut at = 0;
    loop {
        let len = usize::from(*bytes.get(at)?);
        if len & 0xC0 != 0 {
            return None;
        }
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    if at != bytes.len() {
        return None;
    }
    use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
    Name::read(&mut BinDecoder::new(bytes)).ok()
}

fn answer_bytes(record: &Record, data: &mut Vec<u8>) -> Result<usize, String> {
    use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
    data.clear();
    let mut encoder = BinEncoder::new(data);
    record.data.emit(&mut encoder).map_err(|e| {
        format!(
            "the {} record of {} cannot be written in a message ({e}); a record's data \
                 holds at most 65,535 bytes",
            record.record_type(),
            record.name
        )
    })?;
    if data.len() > usize::from(u16::MAX) {
        return Err(format!(
            "the {} record of {} holds {} bytes of data, more than a record can (65,535)",
            record.record_type(),
            record.name,
            data.len()
        ));
    }
    Ok(2 + 10 + data.len())
}

/// Gives the records of type `rtype` of one owner the lowest TTL among them: the records
/// of an RRset MUST have one TTL (RFC 2181 section 5.2), and a zone file that gives them
/// several is read as that section tells a client to read such an answer. RRSIGs are left
/// alone: each takes the TTL of the set it signs.
fn same_ttl(records: &mut [Record], rtype: RecordType) {
    if rtype == RecordType::RRSIG {
        return;
    }
    let of_type = |r: &&mut Record| r.record_type() == rtype;
    let lowest = records.iter_mut().filter(of_type).map(|r| r.ttl).min();
    if let Some(ttl) = lowest {
        records.iter_mut().filter(of_type).for_each(|r| r.ttl = ttl);
    }
}

/// Adds `owner` and each of its ancestors up to `origin` to `names`, and each wildcard
/// among them to `wildcards` under its parent: an empty non-terminal one too (`*.a` of
/// `x.*.a`), which still matches names below `a`, and gives them NODATA (RFC 4592
/// section 4.2).
fn add_name(
    names: &mut NameSet,
    wildcards: &mut NameMap<LowerName>,
    origin: &LowerName,
    owner: LowerName,
) {
    let mut name = owner;
    while names.insert(name.clone()) && name != *origin {
        if name.is_wildcard() {
            wildcards.insert(name.base_name(), name.clone());
        }
        name = name.base_name();
    }
}

#[cfg(test)]
mod tests;
