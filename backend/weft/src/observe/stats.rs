//! Identity and live counters of one connection or UDP endpoint.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Instant, SystemTime};

use crate::address::Address;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh process-wide id; connections, endpoints and Deferreds share one sequence,
/// so an id names exactly one thing.
#[inline]
pub fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Relaxed)
}

/// Makes every id handed out from now on greater than `last`: a program that keeps history
/// across runs (one file, several processes) calls it at start with the highest id the
/// history holds, so a new connection never takes the id of an old one. Never lowers the
/// sequence.
pub fn ids_after(last: u64) {
    NEXT_ID.fetch_max(last.saturating_add(1), Relaxed);
}

/// Identifies one connection (or one UDP endpoint) for its whole life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

impl ConnectionId {
    /// A new, unique id.
    pub fn next() -> Self {
        Self(next_id())
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The kind of transport under a connection; a bounded metric label, serialised as
/// [`as_str`](Self::as_str).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TransportKind {
    /// TCP over IPv4 or IPv6.
    Tcp,
    /// UDP datagrams.
    Udp,
    /// Unix stream sockets.
    Unix,
    /// TLS over TCP.
    Tls,
    /// In memory, for tests.
    Memory,
}

impl TransportKind {
    /// The label used in metrics and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Unix => "unix",
            Self::Tls => "tls",
            Self::Memory => "memory",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known about a connection when it opens; shared with observers for its life.
#[derive(Debug)]
pub struct ConnectionInfo {
    /// Its id.
    pub id: ConnectionId,
    /// The service (listener or client) it belongs to.
    pub service: Arc<str>,
    /// TCP, UDP, Unix or TLS.
    pub transport: TransportKind,
    /// The remote end (for a UDP endpoint, unspecified).
    pub peer: Address,
    /// The local end.
    pub local: Address,
    /// Wall-clock open time, for display and the store.
    pub opened_at: SystemTime,
    /// Monotonic open time, for ages and durations.
    pub opened: Instant,
    /// Counters the reactor updates while the connection is open.
    pub stats: ConnectionStats,
    /// The index of the reactor that owns it (0 unless a
    /// [`ReactorPool`](crate::reactor::ReactorPool) runs several).
    pub reactor: u16,
}

impl ConnectionInfo {
    /// Describes a connection opening now.
    pub fn new(
        service: Arc<str>,
        transport: TransportKind,
        peer: Address,
        local: Address,
    ) -> Arc<Self> {
        Arc::new(Self {
            id: ConnectionId::next(),
            service,
            transport,
            peer,
            local,
            opened_at: SystemTime::now(),
            opened: Instant::now(),
            stats: ConnectionStats::default(),
            reactor: crate::reactor::current_index(),
        })
    }
}

/// Byte and call counters of one connection.
///
/// Only the reactor thread writes them, so an increment is a relaxed load and store
/// (no locked instruction); any thread may read them at any time.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Atomics only so other threads can read; the reactor thread is the sole writer.
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    reads: AtomicU64,
    writes: AtomicU64,
    /// Nanoseconds after `opened` of the last read or write.
    last_activity_ns: AtomicU64,
}

#[inline]
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(by), Relaxed);
}

impl ConnectionStats {
    /// Records `n` bytes received in one read.
    #[inline]
    pub fn record_read(&self, n: usize, since_open_ns: u64) {
        bump(&self.bytes_in, n as u64);
        bump(&self.reads, 1);
        self.last_activity_ns.store(since_open_ns, Relaxed);
    }

    /// Records `n` bytes sent in one write.
    #[inline]
    pub fn record_write(&self, n: usize, since_open_ns: u64) {
        bump(&self.bytes_out, n as u64);
        bump(&self.writes, 1);
        self.last_activity_ns.store(since_open_ns, Relaxed);
    }

    /// Bytes received so far.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Relaxed)
    }
    /// Bytes sent so far.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Relaxed)
    }
    /// Reads (or datagrams received) so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Relaxed)
    }
    /// Writes (or datagrams sent) so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Relaxed)
    }
    /// Time after opening of the last read or write.
    pub fn last_activity(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.last_activity_ns.load(Relaxed))
    }
}
