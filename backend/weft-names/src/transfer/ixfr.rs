//! The changes an IXFR brings (RFC 1995 section 4) and how they are made into the copy
//! held: [`Changes`], read by `inbound`'s fetch, and [`make`], run by the task keeping
//! the zone on a blocking thread.

use std::collections::{HashMap, HashSet};

use hickory_proto::rr::{LowerName, RData, Record, RecordType};

use crate::error::ZoneError;
use crate::zone::Zone;

/// What an IXFR brought (RFC 1995 section 4): the zone's new SOA, and each version's
/// changes from the one before, oldest first, the first from the copy held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// The SOA of the version transferred.
    pub soa: Record,
    /// Each step from one serial to the next.
    pub steps: Vec<Change>,
}

/// One version's changes from the one before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The serial before.
    pub from: u32,
    /// The serial after.
    pub to: u32,
    /// The records taken out (the SOA not among them).
    pub deleted: Vec<Record>,
    /// The records put in, after those were taken out (the SOA not among them).
    pub added: Vec<Record>,
}

impl Changes {
    /// The records deleted and added over every step.
    pub fn len(&self) -> usize {
        self.steps
            .iter()
            .map(|c| c.deleted.len() + c.added.len())
            .sum()
    }

    /// Whether no record changed but the SOA.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Change {
    /// The change from serial `from`, its records to come.
    pub(crate) fn starting_at(from: u32) -> Self {
        Self {
            from,
            to: from,
            deleted: Vec::new(),
            added: Vec::new(),
        }
    }
}

/// Why an IXFR's changes are not made into the copy held; the zone is asked whole
/// then (RFC 1995 section 4 has the client fall back to AXFR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotApplied(pub String);

impl std::fmt::Display for NotApplied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why an IXFR's changes make no zone.
#[derive(Debug)]
pub enum Unmade {
    /// They do not apply to the copy held: the zone is asked whole.
    NotApplied(NotApplied),
    /// The zone they make is one a zone file could not hold: refused, as a transfer of
    /// it whole would be.
    Refused(ZoneError),
}

/// The zone `held` becomes with `changes`: changed in place where they touch only
/// records that change nothing but their own RRsets (`Zone::changed`), else built again
/// from its records after them (`Zone::from_transfer` of the records after them,
/// numbered from `first_line` as a file of them would have them), the same zone either
/// way.
pub fn make(
    held: &Zone,
    changes: Changes,
    file: &std::path::Path,
    first_line: usize,
) -> Result<Zone, Unmade> {
    let net = net(held, changes).map_err(Unmade::NotApplied)?;
    if let Some(changed) = held.changed(&net.soa, &net.removed, &net.added) {
        return changed.map_err(Unmade::Refused);
    }
    Zone::from_transfer(file, net.records(held), first_line).map_err(Unmade::Refused)
}

/// The records of zone `held` after `changes`, an IXFR's from it: its SOA theirs, the
/// records each step deletes taken out and the ones it adds put in, in order. A record
/// compares without its TTL (RFC 2136 section 1.1.1): one added that is held replaces
/// it, though an RRset keeps one TTL, its lowest, when the zone is built. An error when
/// the steps do not start at the copy's serial and follow on to the SOA's, or one deletes
/// a record the zone does not hold as the steps before left it. What `make` builds from
/// when the zone is not changed in place; the tests' reference.
#[cfg(test)]
pub(crate) fn apply(held: &Zone, changes: Changes) -> Result<Vec<Record>, NotApplied> {
    net(held, changes).map(|net| net.records(held))
}

/// Changes netted against the copy they apply to.
struct Net {
    /// The SOA after them.
    soa: Record,
    /// The records of the copy taken out (deleted, or replaced by one added).
    removed: HashSet<(LowerName, RData)>,
    /// The records put in, each once, in the order they came.
    added: Vec<Record>,
}

impl Net {
    /// Every record of `held` after these changes, the SOA first.
    fn records(self, held: &Zone) -> Vec<Record> {
        let mut records = Vec::with_capacity(held.len() + self.added.len());
        records.push(self.soa);
        let touched: HashSet<&LowerName> = self.removed.iter().map(|(owner, _)| owner).collect();
        for owner in held.owners().iter() {
            let touched = touched.contains(owner);
            let kept = held.records_at(owner).iter().filter(|r| {
                r.record_type() != RecordType::SOA
                    && (!touched || !self.removed.contains(&(owner.clone(), r.data.clone())))
            });
            records.extend(kept.cloned());
        }
        records.extend(self.added);
        records
    }
}

/// `changes` netted against `held`, or why they do not apply to it.
fn net(held: &Zone, changes: Changes) -> Result<Net, NotApplied> {
    let Changes { soa, steps } = changes;
    // The records of the copy at each owner a step touches (looked up once each), those
    // taken out (deleted, or replaced by one added), and the records added, each once
    // (`None` once deleted again).
    let mut at_owner = HashMap::<LowerName, HashSet<RData>>::new();
    let mut out_of_copy = HashSet::<(LowerName, RData)>::new();
    let mut added: Vec<Option<Record>> = Vec::new();
    let mut added_at = HashMap::<(LowerName, RData), usize>::new();
    let mut holds = |owner: &LowerName, data: &RData| {
        at_owner
            .entry(owner.clone())
            .or_insert_with(|| {
                held.records_at(owner)
                    .iter()
                    .map(|r| r.data.clone())
                    .collect()
            })
            .contains(data)
    };
    let mut serial = held.serial();
    for step in steps {
        if step.from != serial {
            return Err(NotApplied(format!(
                "a change from serial {} where the copy is at {serial}",
                step.from
            )));
        }
        serial = step.to;
        for record in step.deleted {
            let key = (LowerName::new(&record.name), record.data);
            if let Some(at) = added_at.remove(&key) {
                added[at] = None;
            } else if holds(&key.0, &key.1) && !out_of_copy.contains(&key) {
                out_of_copy.insert(key);
            } else {
                return Err(NotApplied(format!(
                    "the change to serial {} deletes a {} record of {} that the copy does not hold",
                    step.to,
                    key.1.record_type(),
                    key.0
                )));
            }
        }
        for record in step.added {
            let key = (LowerName::new(&record.name), record.data.clone());
            if holds(&key.0, &key.1) {
                out_of_copy.insert(key.clone());
            }
            match added_at.get(&key) {
                Some(&at) => added[at] = Some(record),
                None => {
                    added_at.insert(key, added.len());
                    added.push(Some(record));
                }
            }
        }
    }
    let RData::SOA(theirs) = &soa.data else {
        return Err(NotApplied("the changes' SOA is not one".into()));
    };
    if theirs.serial != serial {
        return Err(NotApplied(format!(
            "changes that end at serial {serial}, not the primary's {}",
            theirs.serial
        )));
    }
    Ok(Net {
        soa,
        removed: out_of_copy,
        added: added.into_iter().flatten().collect(),
    })
}

#[cfg(test)]
#[path = "ixfr_tests.rs"]
mod tests;
