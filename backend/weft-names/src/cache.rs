//! The forwarder's cache: upstream answers by question, kept for their TTL.
//!
//! Positive answers live for their smallest record TTL; NXDOMAIN and NODATA for the SOA's
//! negative-caching time (RFC 2308). TTLs are counted down on the thread's clock, so a
//! test moves them with a fake one. The cache holds at most `capacity` questions; when it
//! is full, expired entries go first, then the oldest.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, RData, Record, RecordType};

/// The longest time anything is cached, whatever its TTL says (one day).
pub const MAX_TTL: u32 = 86_400;

/// A question, case-insensitive.
pub(crate) type Key = (LowerName, RecordType, DNSClass);

/// The parts of an upstream answer worth replaying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) rcode: ResponseCode,
    pub(crate) answers: Vec<Record>,
    pub(crate) authorities: Vec<Record>,
    pub(crate) additionals: Vec<Record>,
}

impl Answer {
    /// The sections of `message`, without its EDNS or signature: OPT and TSIG records
    /// belong to one exchange and are never cached (RFC 6891 section 6.1.1, RFC 8945
    /// section 4.1). Without DNSSEC support hickory leaves a TSIG among the additionals.
    pub(crate) fn from_message(message: &Message) -> Self {
        Self {
            rcode: message.metadata.response_code,
            answers: message.answers.clone(),
            authorities: message.authorities.clone(),
            additionals: message
                .additionals
                .iter()
                .filter(|r| r.record_type() != RecordType::TSIG)
                .cloned()
                .collect(),
        }
    }

    /// How long it may be cached, if at all.
    fn ttl(&self) -> Option<u32> {
        let ttl = match self.rcode {
            ResponseCode::NoError if !self.answers.is_empty() => {
                self.answers.iter().map(|r| r.ttl).min()?
            }
            ResponseCode::NoError | ResponseCode::NXDomain => {
                self.authorities.iter().find_map(|r| match &r.data {
                    RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                    _ => None,
                })?
            }
            _ => return None,
        };
        (ttl > 0).then_some(ttl.min(MAX_TTL))
    }
}

struct Entry {
    answer: Answer,
    /// When it was stored, on the reactor's clock: TTLs are lowered by the time since.
    stored: Duration,
    /// How long it may be served: the answer's lowest TTL, at most `MAX_TTL`.
    ttl: u32,
    /// Matches the eviction queue's copy, so a replaced entry's old slot is skipped.
    seq: u64,
}

/// A bounded TTL cache of answers.
pub(crate) struct Cache {
    /// Entries kept at most: the oldest is evicted first, so a flood of names cannot grow it.
    capacity: usize,
    entries: HashMap<Key, Entry>,
    /// Insertion order, for evicting the oldest.
    order: VecDeque<(Key, u64)>,
    /// The next entry's number, to tell a replaced entry's stale slot in `order`.
    seq: u64,
}

impl Cache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
            seq: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The answer to `key` at time `now`, TTLs lowered by the time it spent here.
    pub(crate) fn get(&mut self, key: &Key, now: Duration) -> Option<Answer> {
        let entry = self.entries.get(key)?;
        let age = now.saturating_sub(entry.stored).as_secs();
        if age >= u64::from(entry.ttl) {
            self.entries.remove(key);
            return None;
        }
        let age = age as u32;
        let mut answer = entry.answer.clone();
        for record in answer
            .answers
            .iter_mut()
            .chain(&mut answer.authorities)
            .chain(&mut answer.additionals)
        {
            record.ttl = record.ttl.saturating_sub(age).min(entry.ttl - age);
        }
        Some(answer)
    }

    /// Keeps `answer`, a whole one (never truncated), for its TTL if it may be cached.
    pub(crate) fn insert(&mut self, key: Key, answer: Answer, now: Duration) {
        if self.capacity == 0 {
            return;
        }
        let Some(ttl) = answer.ttl() else {
            return;
        };
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.evict(now);
        }
        self.seq += 1;
        self.order.push_back((key.clone(), self.seq));
        self.entries.insert(
            key,
            Entry {
                answer,
                stored: now,
                ttl,
                seq: self.seq,
            },
        );
        // Replaced entries leave stale slots; compact when they dominate.
        if self.order.len() > 2 * self.capacity.max(16) {
            let entries = &self.entries;
            self.order
                .retain(|(k, seq)| entries.get(k).is_some_and(|e| e.seq == *seq));
        }
    }

    /// Makes room for one entry: every expired one, or else the oldest.
    fn evict(&mut self, now: Duration) {
        let before = self.entries.len();
        self.entries
            .retain(|_, e| now.saturating_sub(e.stored).as_secs() < u64::from(e.ttl));
        if self.entries.len() < before {
            return;
        }
        while let Some((key, seq)) = self.order.pop_front() {
            if self.entries.get(&key).is_some_and(|e| e.seq == seq) {
                self.entries.remove(&key);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::Name;
    use hickory_proto::rr::rdata::{A, SOA};

    fn key(name: &str) -> Key {
        (
            LowerName::new(&Name::from_ascii(name).unwrap()),
            RecordType::A,
            DNSClass::IN,
        )
    }

    fn a(name: &str, ttl: u32) -> Answer {
        Answer {
            rcode: ResponseCode::NoError,
            answers: vec![Record::from_rdata(
                Name::from_ascii(name).unwrap(),
                ttl,
                RData::A(A::new(192, 0, 2, 1)),
            )],
            authorities: vec![],
            additionals: vec![],
        }
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn answers_live_for_their_ttl_counting_down() {
        let mut cache = Cache::new(10);
        cache.insert(key("a.test."), a("a.test.", 30), S(100));
        assert_eq!(
            cache.get(&key("A.TEST."), S(110)).unwrap().answers[0].ttl,
            20
        );
        assert!(cache.get(&key("a.test."), S(130)).is_none());
        assert_eq!(cache.len(), 0, "expired entries go when seen");
    }

    #[test]
    fn negative_answers_use_the_soa_minimum_and_failures_are_not_kept() {
        let mut cache = Cache::new(10);
        let soa = SOA::new(Name::root(), Name::root(), 1, 2, 3, 4, 60);
        let nx = Answer {
            rcode: ResponseCode::NXDomain,
            answers: vec![],
            authorities: vec![Record::from_rdata(
                Name::from_ascii("test.").unwrap(),
                600,
                RData::SOA(soa),
            )],
            additionals: vec![],
        };
        cache.insert(key("nx.test."), nx, S(0));
        assert!(cache.get(&key("nx.test."), S(59)).is_some());
        assert!(cache.get(&key("nx.test."), S(60)).is_none());

        let mut fail = a("f.test.", 30);
        fail.rcode = ResponseCode::ServFail;
        cache.insert(key("f.test."), fail, S(0));
        cache.insert(key("z.test."), a("z.test.", 0), S(0));
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_full_cache_drops_expired_entries_first_then_the_oldest() {
        let mut cache = Cache::new(2);
        cache.insert(key("short.test."), a("short.test.", 5), S(0));
        cache.insert(key("long.test."), a("long.test.", 500), S(0));
        cache.insert(key("new.test."), a("new.test.", 500), S(10));
        assert!(cache.get(&key("long.test."), S(10)).is_some());
        cache.insert(key("newer.test."), a("newer.test.", 500), S(11));
        assert_eq!(cache.len(), 2);
        assert!(
            cache.get(&key("long.test."), S(11)).is_none(),
            "the oldest went"
        );
        assert!(cache.get(&key("newer.test."), S(11)).is_some());
    }
}
