//! [`Catalog`]: the zones of one service, the one that answers a name, and the answer of
//! them all (a CNAME chain goes on from one zone into another).

use std::path::PathBuf;
use std::sync::Arc;

use hickory_proto::rr::{LowerName, Name, RData, RecordType};

use super::{MAX_CNAME_CHAIN, Zone, ZoneAnswer};
use crate::error::NamesError;

/// The zones of one service.
///
/// Each zone is shared: the catalog is cloned for every reactor that runs the service
/// (and kept in the service's settings besides), and a zone of a million records is
/// hundreds of megabytes, so a clone copies pointers, never records.
///
/// Two catalogs are equal when they hold the same zones, shared, in the same order: a
/// comparison never walks records (a reload compares the services it reads with the
/// running ones on the reactor thread, where comparing two copies of a large zone would
/// stall every service). A zone read again and found unchanged is made the running one
/// first, off that thread ([`share_unchanged`](Self::share_unchanged)).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    zones: Vec<Arc<Zone>>,
}

impl PartialEq for Catalog {
    fn eq(&self, other: &Self) -> bool {
        self.zones.len() == other.zones.len()
            && self
                .zones
                .iter()
                .zip(&other.zones)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

impl Eq for Catalog {}

/// Zones with at least this many owner names are freed off the reactor thread (about a
/// millisecond's work).
const FREED_IN_BACKGROUND: usize = 4096;

impl Drop for Catalog {
    /// The last catalog holding a large zone frees it on a blocking thread: a zone read
    /// again by a reload replaces the one in service on the reactor thread, where freeing
    /// 100,000 records takes tens of milliseconds. (A zone whose last holder is not a
    /// catalog, such as a reload's report of a zone kept, is freed where it is dropped;
    /// catalogs outlive those.)
    fn drop(&mut self) {
        for zone in self.zones.drain(..) {
            match Arc::into_inner(zone) {
                Some(zone) if zone.records.len() >= FREED_IN_BACKGROUND => {
                    weft::task::drop_in_background(zone);
                }
                _ => {}
            }
        }
    }
}

impl Catalog {
    /// Loads every file of `paths`; two files with the same origin are an error.
    pub fn load(paths: &[PathBuf]) -> Result<Self, NamesError> {
        let mut catalog = Self::default();
        for path in paths {
            catalog.add(Zone::load(path)?)?;
        }
        Ok(catalog)
    }

    /// Adds `zone`: a zone, or one shared with another catalog (a zone kept across a
    /// reload).
    pub fn add(&mut self, zone: impl Into<Arc<Zone>>) -> Result<(), NamesError> {
        let zone = zone.into();
        if let Some(other) = self.zones.iter().find(|z| z.origin == zone.origin) {
            return Err(NamesError::DuplicateZone {
                origin: zone.origin.to_string(),
                first: other.file.clone(),
                second: zone.file.clone(),
            });
        }
        self.zones.push(zone);
        Ok(())
    }

    /// Puts each zone of `running` in place of the zone this catalog read from the same
    /// file when the two hold the same records, so the catalogs share it and compare equal
    /// for it. The copy read is dropped here, where a reload reads its files (a blocking
    /// thread), not where the catalog is put in service.
    pub fn share_unchanged(&mut self, running: &Catalog) {
        for zone in &mut self.zones {
            if let Some(same) = running
                .zones
                .iter()
                .find(|r| r.file == zone.file && ***r == **zone)
            {
                *zone = same.clone();
            }
        }
    }

    /// Whether `name` is inside one of the zones.
    pub fn holds(&self, name: &LowerName) -> bool {
        self.zones.iter().any(|z| z.lower_origin.zone_of(name))
    }

    /// The zones, in the order added.
    pub fn zones(&self) -> &[Arc<Zone>] {
        &self.zones
    }

    /// Makes each zone's list of names that transfers walk, which the first transfer of
    /// a zone would otherwise make on the thread answering queries (a tenth of a second
    /// for 100,000 names). For a service that sends its zones whole, as it loads them.
    pub fn prepare_transfers(&self) {
        for zone in &self.zones {
            drop(zone.owners());
        }
    }

    /// The zone with the longest origin containing `name`.
    pub fn find(&self, name: &Name) -> Option<&Zone> {
        self.zones
            .iter()
            .filter(|z| z.origin.zone_of(name))
            .max_by_key(|z| z.origin.num_labels())
            .map(|z| &**z)
    }

    /// The answer of these zones to `qname`/`qtype` (with DNSSEC records when
    /// `dnssec_ok`, see [`Zone::lookup_dnssec`]), `None` when no zone holds the name. A
    /// CNAME chain that reaches a name another zone here answers (outside its zone, or
    /// in a zone served below it, delegated or not) goes on in that zone,
    /// as RFC 1034 section 4.3.2 step 3a has it (back to step 1, which picks the zone),
    /// and as NSD answers: each record once, at most eight CNAMEs in all. The flag says
    /// whether the answer came from one zone alone.
    pub fn lookup(
        &self,
        qname: &Name,
        qtype: RecordType,
        dnssec_ok: bool,
    ) -> Option<(ZoneAnswer, bool)> {
        let mut zone = self.find_for(qname, qtype)?;
        let mut followed = Vec::new();
        // Another zone answers `name`: `zone` hands its chain off there.
        let elsewhere = |zone: &Zone, name: &LowerName| {
            self.find_for(name, qtype)
                .is_some_and(|other| !std::ptr::eq(other, zone))
        };
        let mut answer = zone.answer(qname, qtype, dnssec_ok, &mut followed, &|n| {
            elsewhere(zone, n)
        });
        let mut alone = true;
        loop {
            // The chain ends at a CNAME (its RRSIGs after it) that this zone handed off.
            let last = answer
                .answers
                .iter()
                .rev()
                .find(|r| r.record_type() != RecordType::RRSIG);
            // (A hop that added nothing, a denial or a referral, leaves the CNAME before
            // it last: its target is then the zone just asked, which ends the loop.)
            let Some(RData::CNAME(target)) = last.map(|r| &r.data) else {
                return Some((answer, alone));
            };
            let target = target.0.clone();
            let lower = LowerName::new(&target);
            let next = match self.find_for(&target, qtype) {
                Some(next)
                    if !std::ptr::eq(next, zone)
                        && !followed.contains(&lower)
                        && followed.len() < MAX_CNAME_CHAIN
                        && !matches!(qtype, RecordType::CNAME | RecordType::ANY) =>
                {
                    next
                }
                _ => return Some((answer, alone)),
            };
            let then = next.answer(&target, qtype, dnssec_ok, &mut followed, &|n| {
                elsewhere(next, n)
            });
            // The zone before handed off at the CNAME: its answer holds nothing past the
            // chain but the proofs of the wildcards its CNAMEs came from. A proof two
            // zones both give (a chain back into a zone) goes in once (RFC 2181 section 5).
            answer.answers.extend(then.answers);
            for record in then.authorities {
                if !answer.authorities.contains(&record) {
                    answer.authorities.push(record);
                }
            }
            answer.additionals = then.additionals;
            answer.rcode = then.rcode;
            zone = next;
            alone = false;
        }
    }

    /// The zone that answers `qtype` at `name`: the one [`find`](Self::find) gives, but
    /// for a DS at a zone's apex, which is the parent's data (RFC 4035 section 2.4), so
    /// the parent zone answers it when the catalog holds that too and delegates the name
    /// (section 3.1.4.1). A zone above that does not delegate it would deny the name
    /// that the child serves.
    pub fn find_for(&self, name: &Name, qtype: RecordType) -> Option<&Zone> {
        let zone = self.find(name)?;
        if qtype != RecordType::DS || name.is_root() {
            return Some(zone);
        }
        let lower = LowerName::new(name);
        if zone.lower_origin != lower {
            return Some(zone);
        }
        match self.find(&name.base_name()) {
            Some(parent) if parent.cuts.contains(&lower) => Some(parent),
            _ => Some(zone),
        }
    }
}
