//! A zone changed in place of built again: what an IXFR brings to a large zone is a few
//! records, and building the zone again from all of them (its checks, its maps) took
//! most of a second for 200,000. [`Zone::changed`] copies the zone and changes only the
//! owners the records touch, with the checks the build would make of them, where the
//! change cannot reach past those owners: records of types with no part in the zone's
//! structure (not SOA, NS, CNAME, DNAME, nor DNSSEC's), at owners that are neither
//! wildcards nor at or below a zone cut, in a zone neither signed nor holding a DNAME.
//! Any other change is left to the build, which gives the same zone (tests hold the two
//! equal).

use std::collections::HashSet;
use std::sync::Arc;

use hickory_proto::rr::{LowerName, RData, Record, RecordType};

use super::{
    MAX_RRSET_BYTES, NameMap, NameSet, Zone, add_name, alias_target, answer_bytes, as_in_text,
    cname_beside, rrset_too_large, same_ttl,
};
use crate::error::ZoneError;

/// Whether a record of `rtype` changes nothing but its own RRset: not the zone's apex
/// records, a delegation, an alias or a redirection, nor DNSSEC's records and chain.
fn plain(rtype: RecordType) -> bool {
    !matches!(
        rtype,
        RecordType::SOA
            | RecordType::NS
            | RecordType::CNAME
            | RecordType::DNAME
            | RecordType::DS
            | RecordType::DNSKEY
            | RecordType::CDS
            | RecordType::CDNSKEY
            | RecordType::RRSIG
            | RecordType::NSEC
            | RecordType::NSEC3
            | RecordType::NSEC3PARAM
    )
}

impl Zone {
    /// This zone with `soa` for its SOA, the records `removed` names (by owner and data)
    /// taken out and `added` put in, in order; `None` when the change is one only the
    /// build makes (see the module's comment). An error names what the build would
    /// refuse.
    pub(crate) fn changed(
        &self,
        soa: &Record,
        removed: &HashSet<(LowerName, RData)>,
        added: &[Record],
    ) -> Option<Result<Self, ZoneError>> {
        if self.signed || self.redirects || LowerName::new(&soa.name) != self.lower_origin {
            return None;
        }
        let types = removed.iter().map(|(_, data)| data.record_type());
        let owners: HashSet<LowerName> = removed
            .iter()
            .map(|(owner, _)| owner.clone())
            .chain(added.iter().map(|r| LowerName::new(&r.name)))
            .collect();
        let in_place = types
            .chain(added.iter().map(Record::record_type))
            .all(plain)
            && owners.iter().all(|owner| self.changes_alone(owner));
        if !in_place {
            return None;
        }
        Some(self.changed_at(soa, removed, added, &owners))
    }

    /// Whether records of a plain type at `owner` change nothing but its RRsets: it is in
    /// the zone, no label of it is a wildcard, and neither it nor a name above it (below
    /// the origin) is a zone cut.
    fn changes_alone(&self, owner: &LowerName) -> bool {
        if !self.lower_origin.zone_of(owner) || owner.iter().any(|label| label == b"*") {
            return false;
        }
        let mut name = owner.clone();
        while name != self.lower_origin {
            if self.cuts.contains(&name) {
                return false;
            }
            name = name.base_name();
        }
        true
    }

    fn changed_at(
        &self,
        soa: &Record,
        removed: &HashSet<(LowerName, RData)>,
        added: &[Record],
        owners: &HashSet<LowerName>,
    ) -> Result<Self, ZoneError> {
        let refuse = |message: String| ZoneError {
            file: self.file.clone(),
            line: 0,
            message,
        };
        let mut soa = soa.clone();
        if let Some(message) = as_in_text(&mut soa) {
            return Err(refuse(message));
        }
        let mut zone = self.clone();
        zone.owners = super::walk::Owners::default();
        // The origin as the SOA spells it, as the build takes it.
        zone.origin = soa.name.clone();
        zone.soa = soa.clone();
        if let Some(apex) = zone.records.get_mut(&zone.lower_origin).map(Arc::make_mut)
            && let Some(old) = apex.iter_mut().find(|r| r.record_type() == RecordType::SOA)
        {
            *old = soa;
        }
        for owner in owners {
            if let Some(records) = zone.records.get_mut(owner).map(Arc::make_mut) {
                records.retain(|r| !removed.contains(&(owner.clone(), r.data.clone())));
            }
        }
        let mut scratch = Vec::new();
        for record in added {
            let mut record = record.clone();
            if let Some(message) = as_in_text(&mut record) {
                return Err(refuse(message));
            }
            let owner = LowerName::new(&record.name);
            let rtype = record.record_type();
            let at_owner = zone.records.entry(owner.clone()).or_default();
            if at_owner
                .iter()
                .any(|r| r.record_type() == RecordType::CNAME)
            {
                return Err(refuse(cname_beside(&record.name)));
            }
            if at_owner.contains(&record) {
                continue;
            }
            let mut size = answer_bytes(&record, &mut scratch).map_err(&refuse)?;
            for other in at_owner.iter().filter(|r| r.record_type() == rtype) {
                size += answer_bytes(other, &mut scratch).map_err(&refuse)?;
            }
            if size > MAX_RRSET_BYTES {
                return Err(refuse(rrset_too_large(rtype, &record.name, size)));
            }
            // RFC 2181 section 10.3, as the build checks it.
            if let RData::MX(mx) = &record.data {
                let target = LowerName::new(&mx.exchange);
                let alias = zone.records.get(&target).is_some_and(|records| {
                    records.iter().any(|r| r.record_type() == RecordType::CNAME)
                });
                if alias && zone.lower_origin.zone_of(&target) {
                    return Err(refuse(alias_target(rtype, &record.name, &target)));
                }
            }
            let at_owner = Arc::make_mut(zone.records.entry(owner.clone()).or_default());
            at_owner.push(record);
            same_ttl(at_owner, rtype);
            add_name(
                &mut zone.names,
                &mut zone.wildcards,
                &zone.lower_origin,
                owner,
            );
        }
        // An owner left without records is no name of the zone, nor are the names above
        // it that were only there for it: the names are made again from the owners.
        let emptied: Vec<LowerName> = owners
            .iter()
            .filter(|o| zone.records.get(*o).is_some_and(|r| r.is_empty()))
            .cloned()
            .collect();
        if !emptied.is_empty() {
            for owner in &emptied {
                zone.records.remove(owner);
            }
            let mut names = NameSet::default();
            let mut wildcards = NameMap::default();
            for owner in zone.records.keys() {
                add_name(
                    &mut names,
                    &mut wildcards,
                    &zone.lower_origin,
                    owner.clone(),
                );
            }
            zone.names = names;
            zone.wildcards = wildcards;
        }
        zone.count = zone.records.values().map(|r| r.len()).sum();
        Ok(zone)
    }
}
