//! What a DNS service shows of its queries beyond its counters: the last queries
//! answered, the names asked most, each upstream's latency and timeouts, and the query
//! log handed to history under a per-second budget.
//!
//! Recording runs on the reactor thread for every answer; readers (the dashboard) copy
//! the figures out from another thread. So the per-query part is cheap and bounded
//! whatever a peer sends: every answer bumps a few atomics; the first
//! [`FULL_PER_SECOND`] answers of each second, then one in [`SAMPLE_EVERY`], also take a
//! short lock to fill a preallocated slot of the recent ring and to count the name in a
//! space-saving top list of at most [`TOP_NAMES`] names (each counted with the weight
//! its sampling gave it). A name's text is written into a slot's kept buffer, so once
//! the ring and the list are full nothing is allocated.
//!
//! The query log ([`QueryLog`]) gets the routine answers up to its budget per second,
//! then one in [`LOG_SAMPLE_EVERY`] marked with that weight; the rest are counted as
//! skipped. Failures (an rcode other than NOERROR and NXDOMAIN, which takes in SERVFAIL
//! after an upstream timeout) have a budget of their own, never below
//! [`MIN_FAILURES_PER_SECOND`], so that routine traffic never crowds them out; past it
//! they are sampled the same way and the rest counted apart, so a flood of bad queries
//! cannot flood history either. Logged entries are held on the reactor thread and handed
//! to the sink together, at most [`HOLD`] later, so that the history writer is woken a
//! few times a second rather than once an entry.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::RecordType;
use prometheus::core::Metric as _;
use prometheus::{Histogram, HistogramOpts, IntCounter};
use weft::observe::exemplar::SpanRef;

mod log;
mod top_names;
use log::{Budget, Log};
pub use log::{HELD_AT_MOST, HOLD};
use top_names::TopNames;

/// Answers recorded in full each second (ring and top names) before sampling starts.
pub const FULL_PER_SECOND: u64 = 200;
/// Past [`FULL_PER_SECOND`], one answer in this many is recorded (its name counted with
/// this weight).
pub const SAMPLE_EVERY: u64 = 64;
/// The recent queries kept.
pub const RECENT: usize = 64;
/// The names the top list tracks at most.
pub const TOP_NAMES: usize = 1000;
/// Past the query log's budget, one routine answer in this many is logged.
pub const LOG_SAMPLE_EVERY: u64 = 100;
/// The query log's budget of failures per second is its budget of routine answers, but
/// never below this.
pub const MIN_FAILURES_PER_SECOND: u64 = 100;
/// Upper bounds of the latency buckets, in seconds: a zone answer takes microseconds,
/// an upstream up to its timeout.
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0,
];

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// A zone this service is authoritative for.
    Zone,
    /// The forwarding cache.
    Cache,
    /// This upstream's answer.
    Upstream(SocketAddr),
    /// A question this server does not answer, well formed: REFUSED (outside the zones
    /// with nowhere to forward, a class or type not served, a transfer not allowed),
    /// NOTIMP (an opcode, or AXFR over UDP), NOTAUTH (a transfer of no zone of its, a
    /// key it does not hold), BADVERS.
    Refused,
    /// FORMERR: a packet that does not decode as a query.
    Malformed,
    /// NOERROR with a server cookie and no question: a client asked for a cookie alone
    /// (RFC 7873 section 5.4).
    Cookie,
    /// SERVFAIL at once: a forwarding bound was reached.
    Busy,
    /// SERVFAIL: a secondary zone with no copy yet, or an expired one.
    NotReady,
    /// SERVFAIL: no upstream answered in time.
    Timeout,
    /// SERVFAIL: the upstream exchange failed otherwise.
    UpstreamFailed,
    /// Over the client prefix's `rate_limit`: slipped (truncated, or BADCOOKIE).
    RateLimited,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Zone => f.write_str("zone"),
            Self::Cache => f.write_str("cache"),
            Self::Upstream(addr) => write!(f, "upstream {addr}"),
            Self::Refused => f.write_str("refused"),
            Self::Malformed => f.write_str("malformed"),
            Self::Cookie => f.write_str("cookie"),
            Self::Busy => f.write_str("busy"),
            Self::NotReady => f.write_str("not ready"),
            Self::Timeout => f.write_str("timeout"),
            Self::UpstreamFailed => f.write_str("upstream failed"),
            Self::RateLimited => f.write_str("rate limited"),
        }
    }
}

/// One answered query, as the log gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedQuery {
    /// When it was answered, unix milliseconds.
    pub at_ms: i64,
    /// Who asked (`None` when the transport did not say).
    pub client: Option<SocketAddr>,
    /// The name asked, empty for a packet without a readable question.
    pub name: String,
    /// Its type (`A`), empty without a question.
    pub qtype: String,
    /// The answer's code (`NOERROR`).
    pub rcode: String,
    /// From arrival to the answer.
    pub latency: Duration,
    /// Where the answer came from ([`Source`]'s text).
    pub source: String,
    /// Kept whatever the budget: an error answer.
    pub failed: bool,
    /// How many answers this entry stands for: 1, or [`LOG_SAMPLE_EVERY`] when it was
    /// sampled past the budget.
    pub weight: u32,
    /// The span of the upstream query that answered it, while spans are exported (a
    /// forwarded question's Deferred chain, shared by everyone who asked it meanwhile).
    pub upstream_span: Option<SpanRef>,
}

/// Where logged queries go (in the gateway: the history store's writer, and the span
/// exporter with `[otlp]`). Called on the reactor thread: it must not block.
pub type QueryLog = Arc<dyn Fn(LoggedQuery) + Send + Sync>;

/// One recent query, as a reader copies it out.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentQuery {
    /// When it was answered, unix milliseconds.
    pub at_ms: i64,
    /// Who asked.
    pub client: Option<SocketAddr>,
    /// The name asked (empty without a readable question).
    pub name: String,
    /// Its type, `None` without a question.
    pub qtype: Option<RecordType>,
    /// The answer's code.
    pub rcode: ResponseCode,
    /// From arrival to the answer.
    pub latency: Duration,
    /// Where the answer came from.
    pub source: Source,
}

/// One upstream's figures since the service started.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamReading {
    /// Its address.
    pub addr: SocketAddr,
    /// Whole answers it gave.
    pub answers: u64,
    /// Queries sent to it that got no answer in time.
    pub timeouts: u64,
    /// Its answers' round-trip times: `(upper bound, cumulative count)` per bucket.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of its round-trip times, seconds.
    pub sum_seconds: f64,
}

/// A service's recorded queries: what [`QueryFigures::read`] returns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueriesReading {
    /// The last queries, newest first.
    pub recent: Vec<RecentQuery>,
    /// The names asked most (lower case) with their estimated counts, most first.
    pub top: Vec<(String, u64)>,
    /// Each upstream, in configuration order.
    pub upstreams: Vec<UpstreamReading>,
    /// Answers recorded in the ring and the top list (sampled under load).
    pub sampled: u64,
    /// Answers seen.
    pub seen: u64,
}

struct UpstreamFigures {
    addr: SocketAddr,
    answers: AtomicU64,
    timeouts: AtomicU64,
    latency: Histogram,
}

/// The per-second window of a sampler: how many it saw in the current second.
#[derive(Default)]
struct Window {
    second: AtomicU64,
    count: AtomicU64,
}

impl Window {
    /// Counts one more in second `second`, returning how many came before it in it.
    fn count(&self, second: u64) -> u64 {
        if self.second.load(Ordering::Relaxed) != second {
            self.second.store(second, Ordering::Relaxed);
            self.count.store(0, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed)
    }
}

/// A DNS service's recorded queries, shared between the reactor thread that records and
/// the readers that copy them out.
pub struct QueryFigures {
    /// When the service started: sampling windows are seconds since then.
    started: Instant,
    window: Window,
    seen: AtomicU64,
    sampled: AtomicU64,
    /// A std mutex, taken for a sampled answer on the reactor thread and by a reader
    /// copying the figures out; never across anything that waits.
    kept: Mutex<Kept>,
    upstreams: OnceLock<Vec<UpstreamFigures>>,
    log: OnceLock<Log>,
}

impl std::fmt::Debug for QueryFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryFigures")
            .field("seen", &self.seen.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for QueryFigures {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            window: Window::default(),
            seen: AtomicU64::new(0),
            sampled: AtomicU64::new(0),
            kept: Mutex::new(Kept::default()),
            upstreams: OnceLock::new(),
            log: OnceLock::new(),
        }
    }
}

/// One answer to record.
pub(crate) struct Answered<'a> {
    /// When it was answered (the arrival plus the latency: no clock is read again).
    pub(crate) at: Instant,
    pub(crate) client: Option<SocketAddr>,
    pub(crate) query: Option<&'a Query>,
    pub(crate) rcode: ResponseCode,
    pub(crate) latency: Duration,
    pub(crate) source: Source,
    /// The upstream query's span, while spans are exported.
    pub(crate) span: Option<SpanRef>,
}

impl QueryFigures {
    /// Tracks `upstreams` (once; later calls change nothing).
    pub(crate) fn set_upstreams(&self, upstreams: &[SocketAddr]) {
        let _ = self.upstreams.set(
            upstreams
                .iter()
                .map(|&addr| UpstreamFigures {
                    addr,
                    answers: AtomicU64::new(0),
                    timeouts: AtomicU64::new(0),
                    latency: Histogram::with_opts(
                        HistogramOpts::new("upstream_rtt_seconds", "upstream round trips")
                            .buckets(LATENCY_BUCKETS.to_vec()),
                    )
                    .expect("valid buckets"),
                })
                .collect(),
        );
    }

    /// Logs answers to `sink`: routine ones up to `per_second` a second (0: all of
    /// them), then one in [`LOG_SAMPLE_EVERY`], `skipped[0]` counting the rest; failures
    /// likewise up to `per_second` or [`MIN_FAILURES_PER_SECOND`], whichever is more,
    /// `skipped[1]` counting the rest. Set once; later calls change nothing.
    pub fn set_log(&self, sink: QueryLog, per_second: u32, skipped: [IntCounter; 2]) {
        let routine = u64::from(per_second);
        let failures = if routine == 0 {
            0
        } else {
            routine.max(MIN_FAILURES_PER_SECOND)
        };
        let [routine_skipped, failures_skipped] = skipped;
        // Built only the first time (a reload calls this again): it registers a hook.
        self.log.get_or_init(|| {
            Log::new(
                sink,
                [
                    Budget::new(routine, routine_skipped),
                    Budget::new(failures, failures_skipped),
                ],
            )
        });
    }

    fn upstream(&self, addr: SocketAddr) -> Option<&UpstreamFigures> {
        self.upstreams.get()?.iter().find(|u| u.addr == addr)
    }

    /// `addr` gave a whole answer `rtt` after the query went out.
    pub(crate) fn upstream_answered(&self, addr: SocketAddr, rtt: Duration) {
        if let Some(u) = self.upstream(addr) {
            u.answers.fetch_add(1, Ordering::Relaxed);
            u.latency.observe(rtt.as_secs_f64());
        }
    }

    /// A query sent to `addr` got no answer in time.
    pub(crate) fn upstream_timed_out(&self, addr: SocketAddr) {
        if let Some(u) = self.upstream(addr) {
            u.timeouts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records one answer.
    pub(crate) fn record(&self, a: &Answered<'_>) {
        self.seen.fetch_add(1, Ordering::Relaxed);
        let second = a.at.saturating_duration_since(self.started).as_secs();
        let before = self.window.count(second);
        let weight = if before < FULL_PER_SECOND {
            1
        } else if (before - FULL_PER_SECOND).is_multiple_of(SAMPLE_EVERY) {
            SAMPLE_EVERY
        } else {
            0
        };
        let failed = !matches!(a.rcode, ResponseCode::NoError | ResponseCode::NXDomain);
        if let Some(log) = self.log.get() {
            log.offer(a, second, failed);
        }
        if weight == 0 {
            return;
        }
        self.sampled.fetch_add(1, Ordering::Relaxed);
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.record(a, weight);
    }

    /// The figures now.
    pub fn read(&self) -> QueriesReading {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let recent = kept.recent();
        let top = kept.top.top();
        drop(kept);
        let upstreams = self
            .upstreams
            .get()
            .map(|all| {
                all.iter()
                    .map(|u| {
                        let h = u.latency.metric();
                        let h = h.get_histogram();
                        UpstreamReading {
                            addr: u.addr,
                            answers: u.answers.load(Ordering::Relaxed),
                            timeouts: u.timeouts.load(Ordering::Relaxed),
                            buckets: h
                                .get_bucket()
                                .iter()
                                .map(|b| (b.upper_bound(), b.cumulative_count()))
                                .collect(),
                            sum_seconds: h.get_sample_sum(),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        QueriesReading {
            recent,
            top,
            upstreams,
            sampled: self.sampled.load(Ordering::Relaxed),
            seen: self.seen.load(Ordering::Relaxed),
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A preallocated recent-query slot; its name buffer is reused.
struct Slot {
    at_ms: i64,
    client: Option<SocketAddr>,
    name: String,
    qtype: Option<RecordType>,
    rcode: ResponseCode,
    latency: Duration,
    source: Source,
}

/// The sampled answers: the recent ring and the top names.
struct Kept {
    ring: Vec<Slot>,
    /// The slot the next answer goes to.
    next: usize,
    /// Slots written so far, up to [`RECENT`].
    filled: usize,
    top: TopNames,
    /// The lower-cased name of the answer being recorded.
    scratch: String,
}

impl Default for Kept {
    fn default() -> Self {
        Self {
            ring: (0..RECENT)
                .map(|_| Slot {
                    at_ms: 0,
                    client: None,
                    name: String::with_capacity(64),
                    qtype: None,
                    rcode: ResponseCode::NoError,
                    latency: Duration::ZERO,
                    source: Source::Zone,
                })
                .collect(),
            next: 0,
            filled: 0,
            top: TopNames::default(),
            scratch: String::with_capacity(256),
        }
    }
}

impl Kept {
    fn record(&mut self, a: &Answered<'_>, weight: u64) {
        let slot = &mut self.ring[self.next];
        self.next = (self.next + 1) % RECENT;
        self.filled = (self.filled + 1).min(RECENT);
        slot.at_ms = now_ms();
        slot.client = a.client;
        slot.name.clear();
        slot.qtype = a.query.map(Query::query_type);
        slot.rcode = a.rcode;
        slot.latency = a.latency;
        slot.source = a.source;
        if let Some(q) = a.query {
            // Writing into a kept buffer: no allocation once it is long enough.
            let _ = write!(slot.name, "{}", crate::wire::NameText(q.name()));
            self.scratch.clear();
            self.scratch.push_str(&slot.name);
            self.scratch.make_ascii_lowercase();
            self.top.count(&self.scratch, weight);
        }
    }

    /// Newest first.
    fn recent(&self) -> Vec<RecentQuery> {
        (1..=self.filled)
            .map(|back| &self.ring[(self.next + RECENT - back) % RECENT])
            .map(|s| RecentQuery {
                at_ms: s.at_ms,
                client: s.client,
                name: s.name.clone(),
                qtype: s.qtype,
                rcode: s.rcode,
                latency: s.latency,
                source: s.source,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
