//! A zone's contents in full, for zone transfers: its SOA and serial, and every record by
//! owner name.

use std::sync::{Arc, OnceLock};

use hickory_proto::rr::{LowerName, RData, Record};

use super::Zone;

/// A zone's owner names in transfer order, once made: not part of what the zone is (two
/// zones of the same records are equal whether or not either was transferred).
#[derive(Debug, Clone, Default)]
pub(super) struct Owners(OnceLock<Arc<[LowerName]>>);

impl PartialEq for Owners {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Owners {}

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

    /// Every owner name with records, the origin first: what a transfer walks, keeping its
    /// place across the messages it sends. Made once, by the zone's first transfer, and
    /// shared by every transfer after it: a zone of 100,000 names is not copied again for
    /// each transfer, on the thread that answers everyone else.
    pub(crate) fn owners(&self) -> Arc<[LowerName]> {
        self.owners
            .0
            .get_or_init(|| {
                let origin = &self.lower_origin;
                let rest = self.records.keys().filter(|n| *n != origin).cloned();
                std::iter::once(origin.clone()).chain(rest).collect()
            })
            .clone()
    }

    /// Every record, the apex's first (its SOA first of all), then each other owner's.
    pub fn records(&self) -> impl ExactSizeIterator<Item = &Record> {
        let origin = &self.lower_origin;
        let rest = self
            .records
            .iter()
            .filter(move |(owner, _)| *owner != origin);
        let apex = self.records_at(origin).iter();
        Counted {
            records: apex.chain(rest.flat_map(|(_, records)| records.iter())),
            left: self.count,
        }
    }

    /// The records of `owner`, in file order (its SOA included at the origin).
    pub(crate) fn records_at(&self, owner: &LowerName) -> &[Record] {
        self.records.get(owner).map_or(&[], |r| r.as_slice())
    }
}

/// An iterator of a zone's records that knows how many are left (a zone file written of
/// them is sized once).
struct Counted<I> {
    records: I,
    left: usize,
}

impl<'a, I: Iterator<Item = &'a Record>> Iterator for Counted<I> {
    type Item = &'a Record;

    fn next(&mut self) -> Option<&'a Record> {
        let next = self.records.next();
        self.left = self.left.saturating_sub(usize::from(next.is_some()));
        next
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<'a, I: Iterator<Item = &'a Record>> ExactSizeIterator for Counted<I> {}
