//! The forwarder's cache: upstream answers by question, kept for their TTL.
//!
//! Positive answers live for their smallest record TTL; NXDOMAIN and NODATA for the
//! SOA's negative-caching time, the lower of the SOA record's TTL and its MINIMUM
//! (RFC 2308 section 5), and at most three hours (`NEGATIVE_TTL_CAP`). NODATA is kept
//! for the question (name and type); an NXDOMAIN without a CNAME says the name has no
//! records of any type, so it answers every type of that name. TTLs are raised to
//! `min_ttl` and lowered to `max_ttl`, and counted down on the thread's clock, so a test
//! moves them with a fake one. With `serve_stale`, an
//! entry is kept that long past its TTL, to be served (TTL 30, RFC 8767 section 4) only
//! when no upstream answers. The cache holds at most `capacity` questions and at most
//! `max_bytes` of answers (each entry costs its records as encoded, their in-memory
//! headers and a fixed overhead for the entry, which is what a flood of large answers
//! grows); when it is full, expired entries go first, then the oldest, each counted as
//! evicted.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;

/// How long after its refresh failed a stale answer is served at once, with no upstream
/// asked (RFC 8767 section 5's failure recheck timer, 30 s as it suggests): a client
/// asking again meanwhile does not wait out the upstream's timeout for the same answer.
pub(crate) const FAILURE_RECHECK: Duration = Duration::from_secs(30);

/// The TTL of a stale answer (RFC 8767 section 4).
pub const STALE_TTL: u32 = 30;
/// What an entry costs besides its name and records: its slot in the map and the
/// eviction queue, its key and its bookkeeping.
const ENTRY_OVERHEAD: usize = 160;

/// `answer` as served stale: every TTL [`STALE_TTL`].
fn stale_copy(answer: &Answer) -> Answer {
    let mut answer = answer.clone();
    for record in answer.records() {
        record.ttl = STALE_TTL;
    }
    answer
}

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

/// How long an SOA record says no data may be kept: the lower of its TTL and its MINIMUM
/// (RFC 2308 section 3); `None` for another record.
fn soa_negative_ttl(record: &Record) -> Option<u32> {
    match &record.data {
        RData::SOA(soa) => Some(record.ttl.min(soa.minimum)),
        _ => None,
    }
}

/// The longest a negative answer is kept, whatever its SOA says: RFC 2308 section 5
/// finds one to three hours work well and more than a day problematic; a name made a
/// moment after an upstream (or a zone's typo) said it did not exist should not stay
/// missing for a day. BIND's `max-ncache-ttl`.
pub(crate) const NEGATIVE_TTL_CAP: u32 = 3 * 3600;

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

    /// How long it may be cached as the answer to a question of type `asked`, if at all,
    /// before `min_ttl` and `max_ttl`: its records' lowest TTL, and where it ends without
    /// data (NXDOMAIN, NODATA, or a CNAME chain to either) no longer than its SOA says,
    /// the lower of the SOA's TTL and its MINIMUM (RFC 2308 sections 3 and 5). A chain
    /// to NODATA kept for its CNAME's day would go on saying "no such record" for a day
    /// after the target got one.
    fn ttl(&self, asked: RecordType) -> Option<u32> {
        if !matches!(self.rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
            return None;
        }
        let records = self.answers.iter().map(|r| r.ttl).min();
        if !self.ends_without_data(asked) {
            return records;
        }
        match (records, self.negative_ttl()) {
            (records, Some(negative)) => Some(records.map_or(negative, |r| r.min(negative))),
            // A bare chain with no SOA (an upstream that did not follow it): the chain's
            // records are all it says, kept for their TTL; a negative answer without an
            // SOA is not cached (RFC 2308 section 5).
            (Some(records), None) if self.rcode == ResponseCode::NoError => Some(records),
            _ => None,
        }
    }

    /// The lower of its SOA's TTL and MINIMUM: how long it may say there is no data.
    fn negative_ttl(&self) -> Option<u32> {
        self.authorities.iter().find_map(soa_negative_ttl)
    }

    /// Whether it ends without records of the type `asked` (any record for ANY): an
    /// NXDOMAIN, or no such records, or only the aliases leading to the name that would
    /// hold them.
    fn ends_without_data(&self, asked: RecordType) -> bool {
        self.rcode == ResponseCode::NXDomain
            || !self
                .answers
                .iter()
                .any(|r| asked == RecordType::ANY || r.record_type() == asked)
    }

    /// Whether it ends without data for `asked` and says so with an SOA: a negative
    /// answer, or a chain to one, kept no longer than [`NEGATIVE_TTL_CAP`]. (A bare chain
    /// without an SOA is the chain's records, kept for their TTL.)
    fn ends_negative(&self, asked: RecordType) -> bool {
        self.ends_without_data(asked) && self.negative_ttl().is_some()
    }

    /// Whether it is negative (NXDOMAIN or NODATA): no records answer the question, and
    /// its SOA says how long that may be kept ([`NEGATIVE_TTL_CAP`] at most).
    fn is_negative(&self) -> bool {
        self.answers.is_empty()
    }

    /// Whether it says the name has no records at all: NXDOMAIN for the name asked,
    /// not for the target of a CNAME in the answer (RFC 2308 section 5).
    fn no_such_name(&self) -> bool {
        self.rcode == ResponseCode::NXDomain && self.is_negative()
    }

    /// What it costs the cache kept under `key`: each record as encoded with its
    /// in-memory header, the name, and [`ENTRY_OVERHEAD`].
    fn cost(&self, key: &Key) -> usize {
        let records = self
            .answers
            .iter()
            .chain(&self.authorities)
            .chain(&self.additionals)
            .map(|r| std::mem::size_of::<Record>() + r.to_bytes().map_or(0, |b| b.len()))
            .sum::<usize>();
        ENTRY_OVERHEAD + key.0.len() + records
    }

    fn records(&mut self) -> impl Iterator<Item = &mut Record> {
        self.answers
            .iter_mut()
            .chain(&mut self.authorities)
            .chain(&mut self.additionals)
    }
}

/// The cache's TTL bounds and how long expired entries are kept to serve stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    pub(crate) min_ttl: u32,
    pub(crate) max_ttl: u32,
    pub(crate) serve_stale: Option<Duration>,
}

impl Policy {
    /// `answer` with every TTL between `min_ttl` and `max_ttl`, as it is cached and
    /// replayed.
    pub(crate) fn clamp(&self, answer: &mut Answer) {
        // A negative answer's records (its SOA) say how long a resolver behind may keep
        // it: no longer than this cache does.
        let cap = if answer.is_negative() {
            NEGATIVE_TTL_CAP
        } else {
            u32::MAX
        };
        // An SOA in the authority section (there to say how long no data may be kept)
        // carries the lower of its TTL and its MINIMUM, from the first answer on, as the
        // cached copies do (RFC 2308 section 3).
        for record in &mut answer.authorities {
            if let Some(ttl) = soa_negative_ttl(record) {
                record.ttl = ttl;
            }
        }
        for record in answer.records() {
            record.ttl = self.bound(record.ttl).min(cap);
        }
    }

    /// `ttl` within the bounds; one with its top bit set is 0 first (RFC 2181 §8: such a
    /// TTL is a negative number to some, and must not be read as 68 years).
    fn bound(&self, ttl: u32) -> u32 {
        let ttl = if ttl > i32::MAX as u32 { 0 } else { ttl };
        ttl.max(self.min_ttl).min(self.max_ttl)
    }

    /// How long past its TTL an entry is kept.
    fn stale_secs(&self) -> u64 {
        self.serve_stale.map_or(0, |d| d.as_secs())
    }
}

/// The key an NXDOMAIN for a whole name is kept under: type 0 is reserved (RFC 6895
/// section 3.1), so no answer to a real question is stored there.
fn name_key(key: &Key) -> Key {
    (key.0.clone(), RecordType::ZERO, key.2)
}

struct Entry {
    answer: Answer,
    /// When it was stored, on the reactor's clock: TTLs are lowered by the time since.
    stored: Duration,
    /// How long it may be served: the answer's lowest TTL, within `min_ttl..=max_ttl`.
    ttl: u32,
    /// Matches the eviction queue's copy, so a replaced entry's old slot is skipped.
    seq: u64,
    /// What it counts against `max_bytes`.
    cost: usize,
    /// When no upstream gave a usable answer to refresh it, last: served stale then.
    refresh_failed: Option<Duration>,
}

/// A bounded TTL cache of answers.
pub(crate) struct Cache {
    /// Entries kept at most: the oldest is evicted first, so a flood of names cannot grow it.
    capacity: usize,
    /// Bytes kept at most (see [`Answer::cost`]), so a flood of large answers cannot grow it.
    max_bytes: usize,
    /// Bytes kept now.
    bytes: usize,
    /// Entries evicted to make room so far (expired ones swept out are not counted).
    evicted: u64,
    policy: Policy,
    entries: HashMap<Key, Entry>,
    /// Insertion order, for evicting the oldest.
    order: VecDeque<(Key, u64)>,
    /// The next entry's number, to tell a replaced entry's stale slot in `order`.
    seq: u64,
    /// When a full cache last swept out its expired entries: a sweep scans every entry,
    /// so it runs at most once a second, and a flood of new names in between costs one
    /// eviction of the oldest each.
    swept: Option<Duration>,
}

impl Cache {
    pub(crate) fn new(capacity: usize, policy: Policy) -> Self {
        Self {
            capacity,
            max_bytes: usize::MAX,
            bytes: 0,
            evicted: 0,
            policy,
            entries: HashMap::new(),
            order: VecDeque::new(),
            seq: 0,
            swept: None,
        }
    }

    /// This cache, holding at most `max_bytes` of answers.
    pub(crate) fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes held now.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Entries evicted to make room so far.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted
    }

    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Whether `other` has the same bound and policy: what it holds would be held here.
    pub(crate) fn same_settings(&self, other: &Cache) -> bool {
        (self.capacity, self.max_bytes, self.policy)
            == (other.capacity, other.max_bytes, other.policy)
    }

    /// The answer to `key` at time `now`, TTLs lowered by the time it spent here: the
    /// question's own, or an NXDOMAIN for its name.
    pub(crate) fn get(&mut self, key: &Key, now: Duration) -> Option<Answer> {
        self.fresh(key, now)
            .or_else(|| self.fresh(&name_key(key), now))
    }

    fn fresh(&mut self, key: &Key, now: Duration) -> Option<Answer> {
        let entry = self.entries.get(key)?;
        let age = now.saturating_sub(entry.stored).as_secs();
        if age >= u64::from(entry.ttl) {
            if age >= u64::from(entry.ttl) + self.policy.stale_secs() {
                self.remove(key);
            }
            return None;
        }
        let age = age as u32;
        let mut answer = entry.answer.clone();
        // An NS set or an address (glue) beside the answer whose own TTL ran out is not
        // served (a TTL bounds how long its record may be held, RFC 2181 section 8): the
        // entry lives as long as its answer's records, which may outlive them. What the
        // answer stands on is kept to its end: a negative answer's SOA (which bounds the
        // entry anyway) and the DNSSEC proofs and signatures a validator needs with it.
        let expired = |r: &Record| {
            r.ttl <= age
                && matches!(
                    r.record_type(),
                    RecordType::NS | RecordType::A | RecordType::AAAA
                )
        };
        answer.authorities.retain(|r| !expired(r));
        answer.additionals.retain(|r| !expired(r));
        for record in answer.records() {
            record.ttl = record.ttl.saturating_sub(age).min(entry.ttl - age);
        }
        Some(answer)
    }

    /// An expired answer to `key` still within `serve_stale` of its TTL, every TTL
    /// [`STALE_TTL`] (RFC 8767 section 4), for when no upstream answers: its refresh
    /// failed, marked so for [`FAILURE_RECHECK`].
    pub(crate) fn stale(&mut self, key: &Key, now: Duration) -> Option<Answer> {
        let entry = self.stale_entry(key, now)?;
        entry.refresh_failed = Some(now);
        Some(stale_copy(&entry.answer))
    }

    /// The stale answer to `key` when its refresh failed within [`FAILURE_RECHECK`] of
    /// `now`: served at once, as RFC 8767 section 5 suggests, rather than after another
    /// wait on upstreams that just failed. Once the time is up, the next question asks
    /// them again (and marks it anew if they fail again).
    pub(crate) fn stale_after_failure(&mut self, key: &Key, now: Duration) -> Option<Answer> {
        let entry = self.stale_entry(key, now)?;
        let failed = entry.refresh_failed?;
        (now.saturating_sub(failed) < FAILURE_RECHECK).then(|| stale_copy(&entry.answer))
    }

    /// The entry for `key` (or an NXDOMAIN for its name), expired or not, while it is
    /// within `serve_stale` of its TTL.
    fn stale_entry(&mut self, key: &Key, now: Duration) -> Option<&mut Entry> {
        let window = self.policy.stale_secs();
        if window == 0 {
            return None;
        }
        let key = match self.entries.contains_key(key) {
            true => key.clone(),
            false => name_key(key),
        };
        let entry = self.entries.get_mut(&key)?;
        let age = now.saturating_sub(entry.stored).as_secs();
        (age < u64::from(entry.ttl) + window).then_some(entry)
    }

    /// Keeps `answer`, a whole one (never truncated) with its TTLs clamped by
    /// [`Policy::clamp`], for its TTL if it may be cached.
    pub(crate) fn insert(&mut self, key: Key, answer: Answer, now: Duration) {
        if self.capacity == 0 {
            return;
        }
        let Some(mut ttl) = answer.ttl(key.1).map(|t| self.policy.bound(t)) else {
            return;
        };
        // After the bounds: a `min_ttl` above it does not keep a name missing longer.
        if answer.ends_negative(key.1) {
            ttl = ttl.min(NEGATIVE_TTL_CAP);
        }
        if ttl == 0 {
            return;
        }
        let key = if answer.no_such_name() {
            name_key(&key)
        } else {
            key
        };
        let cost = answer.cost(&key);
        if cost > self.max_bytes {
            return;
        }
        self.remove(&key);
        while self.entries.len() >= self.capacity || self.bytes + cost > self.max_bytes {
            if !self.evict(now) {
                break;
            }
        }
        self.bytes += cost;
        self.seq += 1;
        self.order.push_back((key.clone(), self.seq));
        self.entries.insert(
            key,
            Entry {
                answer,
                stored: now,
                ttl,
                seq: self.seq,
                cost,
                refresh_failed: None,
            },
        );
        // Replaced entries leave stale slots; compact when they dominate.
        if self.order.len() > 2 * self.capacity.max(16) {
            let entries = &self.entries;
            self.order
                .retain(|(k, seq)| entries.get(k).is_some_and(|e| e.seq == *seq));
        }
    }

    /// Drops every entry for a name at or below one of `origins` (zones that changed,
    /// came or went), and every one whose answer holds a record of such a name or
    /// points into one (a CNAME chain that led into a zone of the service's: completed
    /// from that zone when sent, it would end in a bare CNAME once the zone is gone).
    pub(crate) fn forget_under(&mut self, origins: &[LowerName]) {
        if origins.is_empty() {
            return;
        }
        // `Name::zone_of` ignores case: no lower-cased copy of each record's name.
        let under = |name: &Name| origins.iter().any(|o| Name::zone_of(o, name));
        self.retain(|key, entry| {
            let a = &entry.answer;
            let touches =
                |r: &Record| under(&r.name) || matches!(&r.data, RData::CNAME(t) if under(&t.0));
            !under(&key.0)
                && !a
                    .answers
                    .iter()
                    .chain(&a.authorities)
                    .chain(&a.additionals)
                    .any(touches)
        });
    }

    fn remove(&mut self, key: &Key) {
        if let Some(entry) = self.entries.remove(key) {
            self.bytes -= entry.cost;
        }
    }

    /// Keeps the entries `keep` accepts, and their bytes.
    fn retain(&mut self, mut keep: impl FnMut(&Key, &Entry) -> bool) {
        let mut freed = 0;
        self.entries.retain(|key, entry| {
            let kept = keep(key, entry);
            if !kept {
                freed += entry.cost;
            }
            kept
        });
        self.bytes -= freed;
    }

    /// Makes room for one entry: every expired one, or else the oldest (counted).
    /// Returns false when there was nothing to remove.
    fn evict(&mut self, now: Duration) -> bool {
        if self
            .swept
            .is_none_or(|at| now.saturating_sub(at) >= Duration::from_secs(1))
        {
            self.swept = Some(now);
            let before = self.entries.len();
            self.retain(|_, e| now.saturating_sub(e.stored).as_secs() < u64::from(e.ttl));
            if self.entries.len() < before {
                return true;
            }
        }
        while let Some((key, seq)) = self.order.pop_front() {
            if self.entries.get(&key).is_some_and(|e| e.seq == seq) {
                self.remove(&key);
                self.evicted += 1;
                return true;
            }
        }
        false
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

    const PLAIN: Policy = Policy {
        min_ttl: 0,
        max_ttl: 86_400,
        serve_stale: None,
    };

    fn soa(ttl: u32, minimum: u32) -> Record {
        let soa = SOA::new(Name::root(), Name::root(), 1, 2, 3, 4, minimum);
        Record::from_rdata(Name::from_ascii("test.").unwrap(), ttl, RData::SOA(soa))
    }

    fn negative(rcode: ResponseCode, soa_ttl: u32, minimum: u32) -> Answer {
        Answer {
            rcode,
            answers: vec![],
            authorities: vec![soa(soa_ttl, minimum)],
            additionals: vec![],
        }
    }

    fn typed(name: &str, rtype: RecordType) -> Key {
        (key(name).0, rtype, DNSClass::IN)
    }

    #[test]
    fn ttls_are_raised_to_min_ttl_and_lowered_to_max_ttl() {
        let policy = Policy {
            min_ttl: 60,
            max_ttl: 300,
            serve_stale: None,
        };
        let mut cache = Cache::new(10, policy);
        for (name, ttl) in [("short.test.", 5), ("long.test.", 86_400)] {
            let mut answer = a(name, ttl);
            policy.clamp(&mut answer);
            cache.insert(key(name), answer, S(0));
        }
        assert_eq!(
            cache.get(&key("short.test."), S(10)).unwrap().answers[0].ttl,
            50
        );
        assert!(
            cache.get(&key("short.test."), S(60)).is_none(),
            "kept min_ttl"
        );
        assert_eq!(
            cache.get(&key("long.test."), S(0)).unwrap().answers[0].ttl,
            300
        );
        assert!(
            cache.get(&key("long.test."), S(300)).is_none(),
            "kept max_ttl"
        );
        // A TTL with its top bit set is read as 0 (RFC 2181 §8), then raised.
        let mut top = a("top.test.", 0x8000_0001);
        policy.clamp(&mut top);
        assert_eq!(top.answers[0].ttl, 60);
        let mut zero = a("zero.test.", 0);
        policy.clamp(&mut zero);
        cache.insert(key("zero.test."), zero, S(0));
        assert!(
            cache.get(&key("zero.test."), S(59)).is_some(),
            "min_ttl applies to TTL 0 too"
        );
    }

    /// The SOA of a negative answer goes out as it is kept: the lower of its TTL and its
    /// MINIMUM, within the bounds and the negative cap, the first time as every other.
    #[test]
    fn a_negative_answer_s_soa_says_the_lower_of_its_ttl_and_minimum() {
        let policy = Policy {
            min_ttl: 0,
            max_ttl: 7 * 86_400,
            serve_stale: None,
        };
        for (soa_ttl, minimum, sent) in [(900, 60, 60), (30, 60, 30), (86_400, 86_400, 10_800)] {
            let mut answer = negative(ResponseCode::NXDomain, soa_ttl, minimum);
            policy.clamp(&mut answer);
            assert_eq!(answer.authorities[0].ttl, sent, "SOA {soa_ttl} {minimum}");
        }
    }

    #[test]
    fn a_chain_that_ends_without_data_is_kept_no_longer_than_its_soa_says() {
        let cname = |name: &str, target: &str, ttl: u32| {
            Record::from_rdata(
                Name::from_ascii(name).unwrap(),
                ttl,
                RData::CNAME(hickory_proto::rr::rdata::CNAME(
                    Name::from_ascii(target).unwrap(),
                )),
            )
        };
        let mut cache = Cache::new(10, PLAIN);
        // a CNAME b for a day, and b has no A: NODATA, its SOA's MINIMUM 2 s.
        let nodata = Answer {
            answers: vec![cname("a.up.test.", "b.up.test.", 86_400)],
            ..negative(ResponseCode::NoError, 3600, 2)
        };
        cache.insert(key("a.up.test."), nodata.clone(), S(0));
        assert!(cache.get(&key("a.up.test."), S(1)).is_some());
        assert!(
            cache.get(&key("a.up.test."), S(2)).is_none(),
            "kept for the SOA's 2 s, not the CNAME's day"
        );
        // The same chain asked as a CNAME answers with data: kept for its TTL.
        cache.insert(typed("a.up.test.", RecordType::CNAME), nodata, S(0));
        assert!(
            cache
                .get(&typed("a.up.test.", RecordType::CNAME), S(3600))
                .is_some()
        );
        // A chain to NXDOMAIN the same; one with no SOA at all is kept for its records.
        let nx = Answer {
            answers: vec![cname("c.up.test.", "d.up.test.", 86_400)],
            ..negative(ResponseCode::NXDomain, 3600, 5)
        };
        cache.insert(key("c.up.test."), nx, S(0));
        assert!(cache.get(&key("c.up.test."), S(5)).is_none());
        let bare = Answer {
            answers: vec![cname("e.up.test.", "elsewhere.test.", 300)],
            authorities: vec![],
            ..negative(ResponseCode::NoError, 0, 0)
        };
        cache.insert(key("e.up.test."), bare, S(0));
        assert!(cache.get(&key("e.up.test."), S(299)).is_some());

        // ANY: NXDOMAIN is negative (capped at 3 hours, however long its SOA says), and
        // NODATA is cached for its SOA's time.
        let policy = Policy {
            max_ttl: 7 * 86_400,
            ..PLAIN
        };
        let mut cache = Cache::new(10, policy);
        let any = |name| typed(name, RecordType::ANY);
        cache.insert(
            any("gone.up.test."),
            negative(ResponseCode::NXDomain, 86_400, 86_400),
            S(0),
        );
        assert!(cache.get(&any("gone.up.test."), S(3 * 3600 - 1)).is_some());
        assert!(cache.get(&any("gone.up.test."), S(3 * 3600)).is_none());
        cache.insert(
            any("empty.up.test."),
            negative(ResponseCode::NoError, 60, 30),
            S(0),
        );
        assert!(cache.get(&any("empty.up.test."), S(29)).is_some());
        assert!(cache.get(&any("empty.up.test."), S(30)).is_none());
        // An ANY NXDOMAIN through a CNAME is negative too, its CNAME no data.
        let chained = Answer {
            answers: vec![cname("alias.up.test.", "gone.up.test.", 86_400)],
            ..negative(ResponseCode::NXDomain, 86_400, 86_400)
        };
        cache.insert(any("alias.up.test."), chained, S(0));
        assert!(cache.get(&any("alias.up.test."), S(3 * 3600)).is_none());
    }

    #[test]
    fn extra_records_are_not_served_past_their_own_ttl() {
        let mut cache = Cache::new(10, PLAIN);
        let mut answer = a("www.up.test.", 300);
        answer.additionals.push(Record::from_rdata(
            Name::from_ascii("ns.up.test.").unwrap(),
            10,
            RData::A(A::new(192, 0, 2, 53)),
        ));
        cache.insert(key("www.up.test."), answer, S(0));
        let early = cache.get(&key("www.up.test."), S(5)).unwrap();
        assert_eq!(early.additionals[0].ttl, 5);
        let late = cache.get(&key("www.up.test."), S(10)).unwrap();
        assert!(late.additionals.is_empty(), "{late:?}");
        assert_eq!(late.answers[0].ttl, 290);

        // A proof beside the answer is kept with it, whatever its own TTL.
        let mut proved = a("x.wild.up.test.", 300);
        proved.authorities.push(Record::from_rdata(
            Name::from_ascii("wild.up.test.").unwrap(),
            10,
            RData::TXT(hickory_proto::rr::rdata::TXT::new(vec!["stand-in".into()])),
        ));
        proved.authorities.push(Record::from_rdata(
            Name::from_ascii("wild.up.test.").unwrap(),
            10,
            RData::Unknown {
                code: RecordType::NSEC,
                rdata: hickory_proto::rr::rdata::NULL::with(vec![0; 8]),
            },
        ));
        cache.insert(key("x.wild.up.test."), proved, S(0));
        let late = cache.get(&key("x.wild.up.test."), S(20)).unwrap();
        let kept: Vec<_> = late.authorities.iter().map(Record::record_type).collect();
        assert_eq!(kept, [RecordType::TXT, RecordType::NSEC], "{late:?}");
    }

    #[test]
    fn nxdomain_answers_every_type_of_the_name_and_nodata_only_its_type() {
        let mut cache = Cache::new(10, PLAIN);
        cache.insert(
            typed("gone.test.", RecordType::A),
            negative(ResponseCode::NXDomain, 600, 120),
            S(0),
        );
        let nx = cache
            .get(&typed("GONE.test.", RecordType::MX), S(20))
            .expect("NXDOMAIN covers every type");
        assert_eq!(nx.rcode, ResponseCode::NXDomain);
        assert_eq!(
            nx.authorities[0].ttl, 100,
            "min(SOA TTL, MINIMUM) counted down"
        );
        assert!(
            cache
                .get(&typed("gone.test.", RecordType::A), S(120))
                .is_none()
        );

        cache.insert(
            typed("some.test.", RecordType::AAAA),
            negative(ResponseCode::NoError, 30, 600),
            S(0),
        );
        assert!(
            cache
                .get(&typed("some.test.", RecordType::AAAA), S(29))
                .is_some()
        );
        assert!(
            cache
                .get(&typed("some.test.", RecordType::A), S(0))
                .is_none(),
            "NODATA is per type"
        );

        let mut via_cname = negative(ResponseCode::NXDomain, 600, 600);
        via_cname.answers = a("alias.test.", 60).answers;
        cache.insert(typed("alias.test.", RecordType::A), via_cname, S(0));
        assert!(
            cache
                .get(&typed("alias.test.", RecordType::TXT), S(0))
                .is_none(),
            "an NXDOMAIN for a CNAME's target says nothing of the name asked"
        );
        assert!(
            cache
                .get(&typed("alias.test.", RecordType::A), S(0))
                .is_some()
        );
    }

    #[test]
    fn expired_answers_are_served_stale_within_the_window_with_ttl_30() {
        let policy = Policy {
            serve_stale: Some(S(3600)),
            ..PLAIN
        };
        let mut cache = Cache::new(10, policy);
        cache.insert(key("a.test."), a("a.test.", 60), S(0));
        assert!(
            cache
                .stale(&key("a.test."), S(10))
                .is_some_and(|s| s.answers[0].ttl == STALE_TTL)
        );
        assert!(
            cache.get(&key("a.test."), S(61)).is_none(),
            "expired for normal answers"
        );
        let stale = cache
            .stale(&key("a.test."), S(61))
            .expect("kept for serve-stale");
        assert_eq!(stale.answers[0].ttl, STALE_TTL);
        assert!(
            cache.stale(&key("a.test."), S(3660)).is_none(),
            "past the window"
        );

        let mut off = Cache::new(10, PLAIN);
        off.insert(key("a.test."), a("a.test.", 60), S(0));
        assert!(
            off.stale(&key("a.test."), S(61)).is_none(),
            "off by default"
        );
    }

    #[test]
    fn answers_live_for_their_ttl_counting_down() {
        let mut cache = Cache::new(10, PLAIN);
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
        let mut cache = Cache::new(10, PLAIN);
        let nx = negative(ResponseCode::NXDomain, 600, 60);
        cache.insert(key("nx.test."), nx, S(0));
        assert!(cache.get(&key("nx.test."), S(59)).is_some());
        assert!(cache.get(&key("nx.test."), S(60)).is_none());

        // An SOA that asks for more than the cap (max_ttl is a day here) gets the cap, in
        // the cache and in the answer a resolver behind keeps.
        let mut long = negative(ResponseCode::NXDomain, 100_000, 2_000_000);
        PLAIN.clamp(&mut long);
        assert!(long.authorities.iter().all(|r| r.ttl == NEGATIVE_TTL_CAP));
        cache.insert(key("long.test."), long, S(0));
        let cap = u64::from(NEGATIVE_TTL_CAP);
        assert!(cache.get(&key("long.test."), S(cap - 1)).is_some());
        assert!(cache.get(&key("long.test."), S(cap)).is_none());
        // So does one a `min_ttl` above the cap would raise.
        let raised = Policy {
            min_ttl: 5 * 3600,
            ..PLAIN
        };
        let mut high = Cache::new(10, raised);
        high.insert(
            key("nx.test."),
            negative(ResponseCode::NXDomain, 60, 60),
            S(0),
        );
        assert!(high.get(&key("nx.test."), S(cap - 1)).is_some());
        assert!(high.get(&key("nx.test."), S(cap)).is_none());

        let mut fail = a("f.test.", 30);
        fail.rcode = ResponseCode::ServFail;
        cache.insert(key("f.test."), fail, S(0));
        cache.insert(key("z.test."), a("z.test.", 0), S(0));
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_full_cache_drops_expired_entries_first_then_the_oldest() {
        let mut cache = Cache::new(2, PLAIN);
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
