//! The live registry: every open connection, and the byte totals of the closed ones.
//!
//! One `std::sync::Mutex<HashMap>` is right here. The reactor touches it twice per
//! connection (open and close), never per read or write: the per-connection counters are
//! relaxed atomics inside [`ConnectionInfo`] that the registry merely keeps an `Arc` to.
//! Readers (a scrape, the dashboard, the periodic store snapshot) hold the lock only long
//! enough to clone the `Arc`s and read the counters after letting go, so a snapshot of
//! ten thousand connections blocks an open or close for tens of microseconds at most.
//! Sharding would only pay off with several reactor threads opening connections at once.
//!
//! Closed connections' final byte counts are folded into per-(service, transport) totals
//! under the same lock that removes them, so `received bytes = closed totals + live
//! counters` never goes backwards between two scrapes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, Opts};
use serde::Serialize;
use weft::Address;
use weft::observe::{ConnectionId, ConnectionInfo, TransportKind};

/// What one open connection (or UDP endpoint) looks like right now.
///
/// Taking one allocates nothing (the service name is shared, addresses are kept as they
/// are): the reactor takes one per opening and closing, and the text is written only
/// where it is read, by serialization on the inspector's side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionSnapshot {
    /// The reactor's connection id.
    pub id: u64,
    /// The service it belongs to.
    pub service: Arc<str>,
    /// `tcp`, `udp`, `unix`, `tls`.
    pub transport: TransportKind,
    /// The remote address; serialized as text.
    #[serde(serialize_with = "as_text")]
    pub peer: Address,
    /// The local address; serialized as text.
    #[serde(serialize_with = "as_text")]
    pub local: Address,
    /// When it opened, unix milliseconds.
    pub opened_at_ms: i64,
    /// How long it has been open, milliseconds.
    pub age_ms: u64,
    /// Milliseconds since its last read or write (its age if it never did either).
    pub idle_ms: u64,
    /// Bytes received so far.
    pub bytes_in: u64,
    /// Bytes sent so far.
    pub bytes_out: u64,
    /// Reads (datagrams received, for UDP) so far.
    pub reads: u64,
    /// Writes (datagrams sent, for UDP) so far.
    pub writes: u64,
    /// The index of the reactor that owns it.
    pub reactor: u16,
}

impl ConnectionSnapshot {
    /// Reads `info`'s counters now.
    pub fn of(info: &ConnectionInfo) -> Self {
        let age = info.opened.elapsed();
        Self {
            id: info.id.0,
            service: info.service.clone(),
            transport: info.transport,
            peer: info.peer.clone(),
            local: info.local.clone(),
            opened_at_ms: unix_ms(info.opened_at),
            age_ms: millis(age),
            idle_ms: millis(info.stats.idle().min(age)),
            bytes_in: info.stats.bytes_in(),
            bytes_out: info.stats.bytes_out(),
            reads: info.stats.reads(),
            writes: info.stats.writes(),
            reactor: info.reactor,
        }
    }
}

fn as_text<S: serde::Serializer>(v: &Address, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `at` as unix milliseconds (0 before 1970).
pub fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

type Key = (Arc<str>, TransportKind);

#[derive(Default, Clone, Copy)]
struct Totals {
    bytes_in: u64,
    bytes_out: u64,
}

#[derive(Default)]
struct Inner {
    /// Every open connection; its counters are atomics inside `ConnectionInfo`, read without this
    /// lock.
    open: HashMap<ConnectionId, Arc<ConnectionInfo>>,
    /// Bytes of connections that closed, per service and transport, so the byte totals never go
    /// down.
    closed: HashMap<Key, Totals>,
}

/// Open connections by id, plus the byte totals of closed ones.
#[derive(Default)]
pub struct LiveRegistry {
    /// Taken on open, on close and by readers (a scrape, the dashboard), never per read or write.
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for LiveRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRegistry")
            .field("open", &self.len())
            .finish()
    }
}

impl LiveRegistry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding it, but a poisoned map is still a valid map.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts tracking an open connection.
    pub fn insert(&self, info: &Arc<ConnectionInfo>) {
        self.lock().open.insert(info.id, info.clone());
    }

    /// Stops tracking a connection, folding its final byte counts into the closed totals.
    pub fn remove(&self, info: &ConnectionInfo) {
        let mut inner = self.lock();
        inner.open.remove(&info.id);
        let totals = inner
            .closed
            .entry((info.service.clone(), info.transport))
            .or_default();
        totals.bytes_in += info.stats.bytes_in();
        totals.bytes_out += info.stats.bytes_out();
    }

    /// Reports `service`'s bytes over `transport` from now on, zero until a connection
    /// moves them.
    pub fn declare(&self, service: &Arc<str>, transport: TransportKind) {
        self.lock()
            .closed
            .entry((service.clone(), transport))
            .or_default();
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.lock().open.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The open connections' `Arc`s; the lock is held only to clone them.
    pub fn infos(&self) -> Vec<Arc<ConnectionInfo>> {
        self.lock().open.values().cloned().collect()
    }

    /// Every open connection's counters now, oldest first.
    pub fn snapshot(&self) -> Vec<ConnectionSnapshot> {
        let mut all: Vec<_> = self
            .infos()
            .iter()
            .map(|i| ConnectionSnapshot::of(i))
            .collect();
        all.sort_by_key(|c| c.id);
        all
    }

    /// The service of an open connection.
    pub fn service_of(&self, id: ConnectionId) -> Option<Arc<str>> {
        self.lock().open.get(&id).map(|info| info.service.clone())
    }

    /// One open connection's counters, if it is open.
    pub fn get(&self, id: ConnectionId) -> Option<ConnectionSnapshot> {
        let info = self.lock().open.get(&id).cloned();
        info.map(|i| ConnectionSnapshot::of(&i))
    }

    /// Bytes received and sent per (service, transport), closed and open connections together.
    fn byte_totals(&self) -> HashMap<Key, Totals> {
        let (mut totals, open) = {
            let inner = self.lock();
            (
                inner.closed.clone(),
                inner.open.values().cloned().collect::<Vec<_>>(),
            )
        };
        for info in open {
            let t = totals
                .entry((info.service.clone(), info.transport))
                .or_default();
            t.bytes_in += info.stats.bytes_in();
            t.bytes_out += info.stats.bytes_out();
        }
        totals
    }
}

/// Derives `weft_received_bytes_total` and `weft_sent_bytes_total` at scrape time.
pub(crate) struct ByteCollector {
    live: Arc<LiveRegistry>,
    /// Filled from the live registry at each scrape rather than on each read.
    received: IntCounterVec,
    sent: IntCounterVec,
}

const BYTE_LABELS: [&str; 2] = ["service", "transport"];

impl ByteCollector {
    pub(crate) fn new(live: Arc<LiveRegistry>) -> Result<Self, prometheus::Error> {
        Ok(Self {
            live,
            received: received_vec()?,
            sent: sent_vec()?,
        })
    }
}

fn received_vec() -> Result<IntCounterVec, prometheus::Error> {
    IntCounterVec::new(
        Opts::new(
            "weft_received_bytes_total",
            "Bytes received from peers, by service and transport.",
        ),
        &BYTE_LABELS,
    )
}

fn sent_vec() -> Result<IntCounterVec, prometheus::Error> {
    IntCounterVec::new(
        Opts::new(
            "weft_sent_bytes_total",
            "Bytes sent to peers, by service and transport.",
        ),
        &BYTE_LABELS,
    )
}

impl Collector for ByteCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.received
            .desc()
            .into_iter()
            .chain(self.sent.desc())
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // Fresh vectors each scrape: the values are set, not accumulated, and a service
        // whose counters were never touched still reports what it has.
        let (Ok(received), Ok(sent)) = (received_vec(), sent_vec()) else {
            return Vec::new();
        };
        for ((service, transport), t) in self.live.byte_totals() {
            let labels = [&*service, transport.as_str()];
            received.with_label_values(&labels).inc_by(t.bytes_in);
            sent.with_label_values(&labels).inc_by(t.bytes_out);
        }
        let mut families = received.collect();
        families.extend(sent.collect());
        families
    }
}
