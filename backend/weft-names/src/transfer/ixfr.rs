//! The changes an IXFR brings (RFC 1995 section 4) and how they are made into the copy
//! held: [`Changes`], read by `inbound`'s fetch, and [`apply`], run by the task keeping
//! the zone on a blocking thread.

use std::collections::{HashMap, HashSet};

use hickory_proto::rr::{LowerName, RData, Record, RecordType};

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

/// The records of zone `held` after `changes`, an IXFR's from it: its SOA theirs, the
/// records each step deletes taken out and the ones it adds put in, in order. A record
/// compares without its TTL (RFC 2136 section 1.1.1): one added that is held replaces
/// it, though an RRset keeps one TTL, its lowest, when the zone is built. An error when
/// the steps do not start at the copy's serial and follow on to the SOA's, or one deletes
/// a record the zone does not hold as the steps before left it.
pub fn apply(held: &Zone, changes: Changes) -> Result<Vec<Record>, NotApplied> {
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
    let mut records = Vec::with_capacity(held.len() + added.len());
    records.push(soa);
    for owner in held.owners().iter() {
        let touched = at_owner.contains_key(owner);
        let kept = held.records_at(owner).iter().filter(|r| {
            r.record_type() != RecordType::SOA
                && (!touched || !out_of_copy.contains(&(owner.clone(), r.data.clone())))
        });
        records.extend(kept.cloned());
    }
    records.extend(added.into_iter().flatten());
    Ok(records)
}
