//! A zone's contents in full, for zone transfers: its SOA and serial, and every record by
//! owner name.

use hickory_proto::rr::{LowerName, RData, Record};

use super::Zone;

impl Zone {
    /// Its SOA record.
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// The serial of its SOA.
    pub fn serial(&self) -> u32 {
        match &self.soa.data {
            RData::SOA(soa) => soa.serial,
            _ => unreachable!("a zone's SOA record holds SOA data"),
        }
    }

    /// Every owner name with records, the origin first: a cursor over the zone that a
    /// transfer keeps across the messages it sends.
    pub(crate) fn owners(&self) -> Vec<LowerName> {
        let origin = LowerName::new(&self.origin);
        let mut owners = Vec::with_capacity(self.records.len());
        owners.push(origin.clone());
        owners.extend(self.records.keys().filter(|n| **n != origin).cloned());
        owners
    }

    /// The records of `owner`, in file order (its SOA included at the origin).
    pub(crate) fn records_at(&self, owner: &LowerName) -> &[Record] {
        self.records.get(owner).map_or(&[], Vec::as_slice)
    }
}
