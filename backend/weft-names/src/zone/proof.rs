//! DNSSEC in the answers of a signed zone (RFC 4035 section 3.1): to a query with DO,
//! every RRset an answer carries comes with the RRSIGs that sign it, and an answer that
//! says a name or a type is not there, or that a wildcard made it, comes with the NSEC
//! (RFC 4035 section 3.1.3) or NSEC3 (RFC 5155 section 7.2) records that prove it.
//!
//! Nothing is signed here: the zone holds its signatures and its chain, made offline by
//! a signer (dnssec-signzone, ldns-signzone, OpenDNSSEC), and served as NSD serves them.
//! The chain is read once, with the zone: the owners of its NSEC records in canonical
//! order (RFC 4034 section 6.1), or its NSEC3 records by the hashes their owners spell,
//! with the parameters of its NSEC3PARAM. A proof is then a binary search, and for NSEC3
//! hashes of names computed as asked: three for an NXDOMAIN (the closest encloser, the
//! next closer name and the wildcard), one when the closest encloser is the apex (whose
//! NSEC3 and wildcard's are found once, at load), one more for each ancestor passed over
//! below an opt-out span and for each wildcard a CNAME chain passes through. The owners of NSEC3
//! records are not names of the zone to a query (RFC 5155 section 7.2.8): they are left
//! out of its tree when it is read.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use sha1::{Digest, Sha1};

use super::Zone;
use crate::wire::same_name;

/// The most NSEC3 iterations a zone may ask (RFC 9276 section 3.2: validators may treat
/// a zone asking more as insecure; BIND 9.18 and Unbound treat more than 150 so). Each
/// hash of a proof costs that many more SHA-1 blocks, so a zone asking more would make
/// every random name asked cost the server more than its answer is worth.
pub(crate) const MAX_NSEC3_ITERATIONS: u16 = 150;

/// The chain that proves what a signed zone does not hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) enum Chain {
    /// None: the zone is not signed, or holds no NSEC or NSEC3 records.
    #[default]
    None,
    /// The owners of its NSEC records, in canonical order.
    Nsec(Vec<LowerName>),
    /// Its NSEC3 records, by hash.
    Nsec3(Nsec3Chain),
}

/// The NSEC3 records of a zone with the parameters of its NSEC3PARAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Nsec3Chain {
    iterations: u16,
    salt: Vec<u8>,
    /// The hash the first label of each NSEC3 record's owner spells (base32hex), for
    /// those of its parameters, in order,
    hashes: Vec<Hash>,
    /// and the owner of each, at the same index.
    owners: Vec<LowerName>,
    /// The apex's own NSEC3 (which a chain has when its signer made it whole) and the one
    /// covering the wildcard below the apex: the closest encloser proof of most names a
    /// zone does not hold, found once rather than hashed for each.
    apex: Option<usize>,
    apex_wildcard: usize,
}

/// An NSEC3 hash: SHA-1's 20 bytes, the one hash RFC 5155 defines.
type Hash = [u8; 20];

impl Chain {
    /// The chain of the zone at `apex` holding `records`: NSEC3 when its apex has an
    /// NSEC3PARAM of SHA-1 (the one hash RFC 5155 defines) with its flags clear (RFC 5155
    /// section 4.1.2: other flags make it one to ignore), the first such, and NSEC3
    /// records of its parameters; else NSEC, when it has NSEC records.
    pub(super) fn read(apex: &LowerName, records: &super::NameMap<Arc<Vec<Record>>>) -> Self {
        let param = records
            .get(apex)
            .and_then(|apex| apex.iter().find_map(|r| nsec3_param(r)));
        if let Some((iterations, salt)) = param {
            let mut hashes: Vec<(Hash, LowerName)> = records
                .iter()
                .filter(|(_, records)| {
                    records.iter().any(|r| {
                        nsec3(r, RecordType::NSEC3)
                            .is_some_and(|(_, i, s)| i == iterations && s == salt)
                    })
                })
                .filter_map(|(owner, _)| Some((hashed(owner)?, owner.clone())))
                .collect();
            if !hashes.is_empty() {
                hashes.sort();
                let (hashes, owners) = hashes.into_iter().unzip();
                let mut chain = Nsec3Chain {
                    iterations,
                    salt: salt.to_vec(),
                    hashes,
                    owners,
                    apex: None,
                    apex_wildcard: 0,
                };
                chain.apex = chain.matching_at(apex);
                chain.apex_wildcard = chain.covering_at(&wildcard_at(apex));
                return Self::Nsec3(chain);
            }
        }
        let mut owners: Vec<LowerName> = records
            .iter()
            .filter(|(_, records)| records.iter().any(|r| r.record_type() == RecordType::NSEC))
            .map(|(owner, _)| owner.clone())
            .collect();
        if owners.is_empty() {
            return Self::None;
        }
        owners.sort();
        Self::Nsec(owners)
    }

    /// Why a signed zone with this chain cannot prove a denial, if it cannot.
    pub(super) fn missing(
        &self,
        records: &super::NameMap<Arc<Vec<Record>>>,
        apex: &LowerName,
    ) -> Option<String> {
        if *self != Self::None {
            return None;
        }
        let has = |rtype| {
            records
                .values()
                .flat_map(|v| v.iter())
                .any(|r| r.record_type() == rtype)
        };
        let param = records
            .get(apex)
            .is_some_and(|apex| apex.iter().any(|r| nsec3_param(r).is_some()));
        Some(match (has(RecordType::NSEC3), param) {
            (false, false) => "has no NSEC or NSEC3 records; sign it with a signer that adds \
                 an NSEC or NSEC3 chain"
                .to_owned(),
            (true, false) => "has NSEC3 records and no NSEC3PARAM of SHA-1 with its flags clear \
                 at its apex, which says the chain to prove denials with (RFC 5155 section \
                 7.2); add it with its RRSIG, or sign the zone again"
                .to_owned(),
            (_, true) => "has no NSEC3 records of its NSEC3PARAM's iterations and salt whose \
                 owner spells a SHA-1 hash (32 base32hex digits); sign the zone again so that \
                 they match"
                .to_owned(),
        })
    }
}

/// The iterations and salt of `record` when it is an NSEC3PARAM of SHA-1 with its flags
/// clear; the zone parser checks its iterations against [`MAX_NSEC3_ITERATIONS`].
pub(super) fn nsec3_param(record: &Record) -> Option<(u16, &[u8])> {
    nsec3(record, RecordType::NSEC3PARAM)
        .filter(|(flags, _, _)| *flags == 0)
        .map(|(_, iterations, salt)| (iterations, salt))
}

impl Zone {
    /// Takes the owners that hold only NSEC3 records (and their signatures) out of the
    /// zone's tree (RFC 5155 section 7.2.8): a query for one is answered as if it were not
    /// there. A transfer still carries them, lower-cased.
    pub(super) fn hide_nsec3_owners(&mut self) {
        let only_nsec3 = |r: &Record| {
            r.record_type() == RecordType::NSEC3 || covered(r) == Some(RecordType::NSEC3)
        };
        self.hashed = self
            .records
            .iter()
            .filter(|(owner, records)| {
                **owner != self.lower_origin && records.iter().all(only_nsec3)
            })
            .map(|(owner, _)| owner.clone())
            .collect();
        if self.hashed.is_empty() {
            return;
        }
        // Served lower-cased, as NSD and Knot serve them: signers write the hash in upper
        // case, and names compare without case (a proof's owner is no name anyone asked
        // for, whose case an answer would keep).
        for owner in &self.hashed {
            for record in self
                .records
                .get_mut(owner)
                .map(Arc::make_mut)
                .into_iter()
                .flatten()
            {
                record.name = record.name.to_lowercase();
            }
        }
        // The tree again without them, so a name below one (however made up) still has
        // its ancestors.
        self.names.clear();
        for owner in self.records.keys().filter(|o| !self.hashed.contains(*o)) {
            let origin = &self.lower_origin;
            super::add_name(&mut self.names, &mut self.wildcards, origin, owner.clone());
        }
    }

    /// When the first of its signatures to expire does (signature times are seconds of
    /// the epoch modulo 2^32, RFC 4034 section 3.1.5, read from the time the zone was
    /// loaded), with the owner and the type it signs; `None` when it holds no RRSIG.
    /// Found when the zone is read, so asking costs nothing (`/metrics` asks after each
    /// reload, on the reactor thread).
    pub fn first_expiry(&self) -> Option<(SystemTime, &Name, RecordType)> {
        self.expiry
            .as_ref()
            .map(|(at, owner, rtype)| (*at, owner, *rtype))
    }

    /// What [`first_expiry`](Self::first_expiry) says, read from `now`: every RRSIG
    /// walked once.
    pub(super) fn find_first_expiry(
        &self,
        now: SystemTime,
    ) -> Option<(SystemTime, Name, RecordType)> {
        // Of several that expire together, the first in canonical order, and then by
        // type: the same one each time the zone is read (the zone's records are in a
        // hash map, and two reads of one file must be equal zones, or a reload would take
        // every signed zone for changed).
        self.signature_times(now, EXPIRATION)
            .min_by(|(a, x), (b, y)| order(*a, x, *b, y))
            .map(|(ahead, record)| {
                let (at, owner, rtype) = signed_at(now, ahead, record);
                (at, owner.clone(), rtype)
            })
    }

    /// When the last of its signatures to become valid does, if that is after `now`: a
    /// validator finds an answer whose signature is not valid yet bogus too (RFC 4035
    /// section 5.3.1).
    pub fn last_inception(&self, now: SystemTime) -> Option<(SystemTime, &Name, RecordType)> {
        self.signature_times(now, INCEPTION)
            .min_by(|(a, x), (b, y)| order(-*a, x, -*b, y))
            .filter(|(ahead, _)| *ahead > 0)
            .map(|(ahead, record)| signed_at(now, ahead, record))
    }

    /// Each RRSIG with the seconds from `now` to the time in its field at `at`
    /// (`EXPIRATION` or `INCEPTION`), read in serial arithmetic: within 68 years either
    /// side of now.
    fn signature_times(&self, now: SystemTime, at: usize) -> impl Iterator<Item = (i64, &Record)> {
        // Truncated on purpose: signature times wrap at 2^32.
        #[allow(clippy::cast_possible_truncation)]
        let today = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as u32;
        self.records
            .values()
            .flat_map(|r| r.iter())
            .filter_map(move |record| {
                let RData::Unknown { code, rdata } = &record.data else {
                    return None;
                };
                let field = rdata
                    .anything
                    .get(at..at + 4)
                    .filter(|_| *code == RecordType::RRSIG)?;
                let time = u32::from_be_bytes(field.try_into().ok()?);
                #[allow(clippy::cast_possible_wrap)]
                let ahead = i64::from(time.wrapping_sub(today) as i32);
                Some((ahead, record))
            })
    }

    /// Adds the proof that `name`, which exists, has no RRset of the type asked (NODATA;
    /// RFC 4035 section 3.1.3.1, RFC 5155 section 7.2.3): its NSEC, or the one that covers
    /// it when it is an empty non-terminal (which has none); its NSEC3, or, where it has
    /// none (below an opt-out), the proof of its closest provable encloser (7.2.4).
    pub(super) fn deny_type(&self, section: &mut Vec<Record>, name: &LowerName) {
        match &self.chain {
            Chain::None => {}
            Chain::Nsec(owners) => {
                let has_nsec = self
                    .records
                    .get(name)
                    .is_some_and(|r| r.iter().any(|r| r.record_type() == RecordType::NSEC));
                let at = if has_nsec {
                    name
                } else {
                    covering(owners, name)
                };
                self.add_proof(section, at, RecordType::NSEC);
            }
            Chain::Nsec3(chain) => match chain.matching(name) {
                Some(at) => self.add_proof(section, at, RecordType::NSEC3),
                None => {
                    self.prove_encloser(section, chain, name, self.closest_encloser(name));
                }
            },
        }
    }

    /// Adds the proof that `name`, whose closest encloser is `encloser`, does not exist
    /// and that no wildcard could have made it (NXDOMAIN; RFC 4035 section 3.1.3.2, RFC
    /// 5155 section 7.2.2).
    pub(super) fn deny_name(
        &self,
        section: &mut Vec<Record>,
        name: &LowerName,
        encloser: LowerName,
    ) {
        match &self.chain {
            Chain::None => {}
            Chain::Nsec(owners) => {
                let wildcard = wildcard_at(&encloser);
                self.add_proof(section, covering(owners, name), RecordType::NSEC);
                self.add_proof(section, covering(owners, &wildcard), RecordType::NSEC);
            }
            Chain::Nsec3(chain) => {
                let encloser = self.prove_encloser(section, chain, name, encloser);
                let covering = if encloser == self.lower_origin {
                    &chain.owners[chain.apex_wildcard]
                } else {
                    chain.covering(&wildcard_at(&encloser))
                };
                self.add_proof(section, covering, RecordType::NSEC3);
            }
        }
    }

    /// Adds the proof that `name`, answered from `wildcard`, does not exist itself (RFC
    /// 4035 section 3.1.3.3, RFC 5155 section 7.2.6): a validator sees from the RRSIG's
    /// label count that a wildcard made the answer, and needs to know it had to.
    pub(super) fn prove_expansion(
        &self,
        section: &mut Vec<Record>,
        name: &LowerName,
        wildcard: &LowerName,
    ) {
        match &self.chain {
            Chain::None => {}
            Chain::Nsec(owners) => {
                self.add_proof(section, covering(owners, name), RecordType::NSEC)
            }
            Chain::Nsec3(chain) => {
                let next_closer = next_closer(name, &wildcard.base_name());
                self.add_proof(section, chain.covering(&next_closer), RecordType::NSEC3);
            }
        }
    }

    /// Adds the proof that `name`, which only `wildcard` matches, has no RRset of the
    /// type asked: that it does not exist, and that the wildcard has no such RRset
    /// (RFC 4035 section 3.1.3.4, RFC 5155 section 7.2.5).
    pub(super) fn deny_type_at_wildcard(
        &self,
        section: &mut Vec<Record>,
        name: &LowerName,
        wildcard: &LowerName,
    ) {
        match &self.chain {
            Chain::None => {}
            // The wildcard's own NSEC, or, an empty non-terminal, the one covering it.
            Chain::Nsec(_) => {
                self.prove_expansion(section, name, wildcard);
                self.deny_type(section, wildcard);
            }
            Chain::Nsec3(chain) => {
                self.prove_encloser(section, chain, name, self.closest_encloser(name));
                if let Some(at) = chain.matching(wildcard) {
                    self.add_proof(section, at, RecordType::NSEC3);
                }
            }
        }
    }

    /// Adds, for a query for `name` in an NSEC3 zone, the closest encloser proof (RFC
    /// 5155 section 7.2.1): the NSEC3 of the closest ancestor that has one, from
    /// `encloser`, the closest that exists, up, and the one that covers the next closer
    /// name below it. Gives the encloser proved.
    fn prove_encloser(
        &self,
        section: &mut Vec<Record>,
        chain: &Nsec3Chain,
        name: &LowerName,
        mut encloser: LowerName,
    ) -> LowerName {
        // Below an opt-out span an existing name may have no NSEC3: the proof is of the
        // closest one that does (the apex always has one).
        let at = loop {
            if encloser == self.lower_origin {
                break chain.apex.map(|at| &chain.owners[at]);
            }
            if let Some(at) = chain.matching(&encloser) {
                break Some(at);
            }
            encloser = encloser.base_name();
        };
        if let Some(at) = at {
            self.add_proof(section, at, RecordType::NSEC3);
        }
        if name != &encloser {
            let next_closer = next_closer(name, &encloser);
            self.add_proof(section, chain.covering(&next_closer), RecordType::NSEC3);
        }
        encloser
    }

    /// The closest existing ancestor of `name` (the name itself when it exists).
    fn closest_encloser(&self, name: &LowerName) -> LowerName {
        let mut encloser = name.clone();
        while !self.names.contains(&encloser) && encloser != self.lower_origin {
            encloser = encloser.base_name();
        }
        encloser
    }

    /// Adds the record of type `rtype` (NSEC or NSEC3) at `owner` and its signatures to
    /// `section`, unless they are there already (one may prove two things).
    fn add_proof(&self, section: &mut Vec<Record>, owner: &LowerName, rtype: RecordType) {
        let there = section
            .iter()
            .any(|r| r.record_type() == rtype && same_name(&r.name, owner));
        if there {
            return;
        }
        let Some(records) = self.records.get(owner) else {
            return;
        };
        let before = section.len();
        section.extend(records.iter().filter(|r| r.record_type() == rtype).cloned());
        if section.len() > before {
            sign(section, records, rtype, None);
        }
    }
}

impl Nsec3Chain {
    /// Its iterations and salt.
    pub(super) fn parameters(&self) -> (u16, &[u8]) {
        (self.iterations, &self.salt)
    }

    /// The owner of the NSEC3 record whose hash is `name`'s.
    fn matching(&self, name: &LowerName) -> Option<&LowerName> {
        self.matching_at(name).map(|at| &self.owners[at])
    }

    /// The owner of the NSEC3 record whose span covers `name`'s hash: the last one with a
    /// hash below it, or the last of all, whose span wraps around to the first. (A chain
    /// is never empty: `Chain::read` makes none of no records.)
    fn covering(&self, name: &LowerName) -> &LowerName {
        &self.owners[self.covering_at(name)]
    }

    /// Where [`matching`](Self::matching)'s record is in the chain.
    fn matching_at(&self, name: &LowerName) -> Option<usize> {
        self.hashes.binary_search(&self.hash(name)).ok()
    }

    /// Where [`covering`](Self::covering)'s record is in the chain.
    fn covering_at(&self, name: &LowerName) -> usize {
        let hash = self.hash(name);
        let after = self.hashes.partition_point(|h| *h < hash);
        after.checked_sub(1).unwrap_or(self.hashes.len() - 1)
    }

    /// RFC 5155 section 5: SHA-1 of the name in canonical form and the salt, then of
    /// that hash and the salt, `iterations` times more.
    fn hash(&self, name: &LowerName) -> Hash {
        let mut wire = Vec::with_capacity(name.len() + 2);
        for label in name.iter() {
            wire.push(u8::try_from(label.len()).unwrap_or(u8::MAX));
            wire.extend(label.iter().map(u8::to_ascii_lowercase));
        }
        wire.push(0);
        let mut hash = Sha1::new()
            .chain_update(&wire)
            .chain_update(&self.salt)
            .finalize();
        for _ in 0..self.iterations {
            hash = Sha1::new()
                .chain_update(hash)
                .chain_update(&self.salt)
                .finalize();
        }
        hash.into()
    }
}

/// Appends the RRSIGs among `records` that cover `rtype` to `section`, owned by `owner`
/// when a wildcard made the RRset, with the TTL the RRset has in `section` (RFC 4034
/// section 3: an RRSIG's TTL is its RRset's).
pub(super) fn sign(
    section: &mut Vec<Record>,
    records: &[Record],
    rtype: RecordType,
    owner: Option<&Name>,
) {
    let Some(ttl) = section
        .iter()
        .rev()
        .find(|r| r.record_type() == rtype)
        .map(|r| r.ttl)
    else {
        return;
    };
    for record in records.iter().filter(|r| covered(r) == Some(rtype)) {
        let mut record = record.clone();
        if let Some(owner) = owner {
            record.name = owner.clone();
        }
        record.ttl = ttl;
        section.push(record);
    }
}

/// The type an RRSIG covers (the first field of its data, which hickory-proto without
/// its DNSSEC feature leaves undecoded); `None` for any other record.
pub(crate) fn covered(record: &Record) -> Option<RecordType> {
    match &record.data {
        RData::Unknown { code, rdata } if *code == RecordType::RRSIG => {
            let bytes = rdata.anything.get(..2)?;
            Some(RecordType::from(u16::from_be_bytes([bytes[0], bytes[1]])))
        }
        _ => None,
    }
}

/// The flags, iterations and salt of an NSEC3 or NSEC3PARAM record (`rtype`) of SHA-1.
fn nsec3(record: &Record, rtype: RecordType) -> Option<(u8, u16, &[u8])> {
    match &record.data {
        RData::Unknown { code, rdata } if *code == rtype => {
            let bytes = &rdata.anything;
            let (&algorithm, rest) = bytes.split_first()?;
            let flags = *rest.first()?;
            let iterations = u16::from_be_bytes([*rest.get(1)?, *rest.get(2)?]);
            let length = usize::from(*rest.get(3)?);
            let salt = rest.get(4..4 + length)?;
            (algorithm == 1).then_some((flags, iterations, salt))
        }
        _ => None,
    }
}

/// The hash an NSEC3 owner's first label spells; `None` unless it spells one of SHA-1.
fn hashed(owner: &LowerName) -> Option<Hash> {
    let label = owner.iter().next()?.to_ascii_uppercase();
    let hash = data_encoding::BASE32HEX_NOPAD.decode(&label).ok()?;
    hash.try_into().ok()
}

/// The owner of the NSEC record whose span covers `name`: the last at or before it in
/// canonical order (the apex, first of all, is before every name of the zone).
fn covering<'a>(owners: &'a [LowerName], name: &LowerName) -> &'a LowerName {
    let after = owners.partition_point(|owner| owner <= name);
    &owners[after.checked_sub(1).unwrap_or(owners.len() - 1)]
}

/// The wildcard directly below `encloser` (`*.encloser`); the encloser itself in the one
/// case that has no room for it, a name already 254 bytes long, which no wildcard covers.
fn wildcard_at(encloser: &LowerName) -> LowerName {
    match encloser.prepend_label("*") {
        Ok(wildcard) => LowerName::new(&wildcard),
        Err(_) => encloser.clone(),
    }
}

/// The ancestor of `name` one label below `encloser` (RFC 5155 section 1.3). Labels are
/// counted as `trim_to` counts them: hickory's `num_labels` leaves out a leading `*`, and
/// an encloser may be a wildcard's owner (`x.*.apps` below `*.apps`).
fn next_closer(name: &LowerName, encloser: &LowerName) -> LowerName {
    LowerName::new(&name.trim_to(encloser.iter().count() + 1))
}

/// Where an RRSIG's expiration and inception lie in its data (RFC 4034 section 3.1).
const EXPIRATION: usize = 8;
const INCEPTION: usize = 12;

/// The time `ahead` seconds from `now`, with the owner and covered type of `record`.
fn signed_at(now: SystemTime, ahead: i64, record: &Record) -> (SystemTime, &Name, RecordType) {
    let epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let since_epoch = i64::try_from(epoch)
        .unwrap_or(i64::MAX)
        .saturating_add(ahead);
    let at = UNIX_EPOCH + Duration::from_secs(u64::try_from(since_epoch).unwrap_or(0));
    (
        at,
        &record.name,
        covered(record).unwrap_or(RecordType::RRSIG),
    )
}

/// Signature times `a` of `x` and `b` of `y` in order, ties by owner (canonical order,
/// without case: `Name`'s own) and then covered type, so a choice among them is the same
/// each time.
fn order(a: i64, x: &Record, b: i64, y: &Record) -> std::cmp::Ordering {
    a.cmp(&b)
        .then_with(|| x.name.cmp(&y.name))
        .then_with(|| covered(x).cmp(&covered(y)))
}
