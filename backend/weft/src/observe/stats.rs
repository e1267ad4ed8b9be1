//! Identity and live counters of one connection or UDP endpoint.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime};

use super::stopwatch::{self, Stopwatch};
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

    /// Time after opening of the last read or write (zero before any).
    pub fn last_activity(&self) -> Duration {
        self.opened.elapsed().saturating_sub(self.stats.idle())
    }
}

/// Byte and call counters of one connection.
///
/// Only the reactor thread writes them, so an increment is a relaxed load and store
/// (no locked instruction); any thread may read them at any time.
#[derive(Debug)]
pub struct ConnectionStats {
    /// Atomics only so other threads can read; the reactor thread is the sole writer.
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    reads: AtomicU64,
    writes: AtomicU64,
    /// The stopwatch's reading at the last read or write (at the opening, before any).
    /// What is asked of it is how long ago that was, a span the stopwatch measures well,
    /// and a read or a write stamps it with a counter read instead of a clock call.
    last_activity: AtomicU64,
}

impl Default for ConnectionStats {
    fn default() -> Self {
        Self {
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            last_activity: AtomicU64::new(stopwatch::raw()),
        }
    }
}

#[inline]
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(by), Relaxed);
}

impl ConnectionStats {
    /// Stamps activity now without a byte counted (a TLS handshake moving on).
    #[inline]
    pub(crate) fn touch(&self) {
        self.last_activity.store(stopwatch::raw(), Relaxed);
    }

    /// Records `n` bytes received in one read, made `at` (one reading may stamp several
    /// made together: the datagrams of one batch).
    #[inline]
    pub fn record_read(&self, n: usize, at: Stopwatch) {
        bump(&self.bytes_in, n as u64);
        bump(&self.reads, 1);
        self.last_activity.store(at.reading(), Relaxed);
    }

    /// Records `n` bytes sent in one write, made `at`.
    #[inline]
    pub fn record_write(&self, n: usize, at: Stopwatch) {
        bump(&self.bytes_out, n as u64);
        bump(&self.writes, 1);
        self.last_activity.store(at.reading(), Relaxed);
    }

    /// Time since the last read or write (since the opening, before any).
    pub fn idle(&self) -> Duration {
        let last = self.last_activity.load(Relaxed);
        Duration::from_nanos(stopwatch::nanos_between(last, stopwatch::raw()))
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
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_read_or_write_ends_the_idle_time_and_dates_the_last_activity() {
        let info = ConnectionInfo::new(
            "s".into(),
            TransportKind::Tcp,
            Address::Memory("a".into()),
            Address::Memory("b".into()),
        );
        // Margins wide enough for a test thread descheduled between two lines.
        std::thread::sleep(Duration::from_millis(100));
        // Before any read or write, idle since the opening.
        assert!(info.stats.idle() >= Duration::from_millis(99));
        assert!(info.last_activity() < Duration::from_millis(50));
        info.stats.record_read(10, Stopwatch::start());
        assert!(info.stats.idle() < Duration::from_millis(50));
        let at = info.last_activity();
        assert!(at >= Duration::from_millis(99), "{at:?}");
        std::thread::sleep(Duration::from_millis(60));
        info.stats.record_write(4, Stopwatch::start());
        assert!(info.last_activity() >= at + Duration::from_millis(59));
        assert_eq!((info.stats.bytes_in(), info.stats.bytes_out()), (10, 4));
        assert_eq!((info.stats.reads(), info.stats.writes()), (1, 1));
    }
}
