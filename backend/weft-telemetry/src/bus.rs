//! The event bus: owned events in one bounded ring that readers pull from at their own pace.
//!
//! Each event gets a sequence number and a timestamp once, is wrapped in an `Arc` and
//! appended to the ring: a short, uncontended lock on the reactor thread, and no wake-up
//! of another thread per event. A [`Feed`] (the store writer, the dashboard's encoder)
//! waits for the first event after it went idle, which costs one wake-up, and then takes
//! everything published since in one go, so a busy reactor wakes each reader at most once
//! per batch however many events it publishes.
//!
//! The ring keeps only what some reader has not taken yet, up to its capacity. A reader
//! that falls further behind loses the oldest events: its next read reports how many it
//! missed ([`Missed`]) and they are counted under `weft_events_dropped_total{consumer}`
//! with the reader's name. The reactor never waits for a reader.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use prometheus::IntCounter;
use serde::Serialize;
use tokio::sync::Notify;
use weft::defer::Detector;
use weft::observe::{CloseKind, ErrorKind, TransportKind};

use crate::chains::DeferredSnapshot;
use crate::live::{ConnectionSnapshot, unix_ms};
use crate::reload::ReloadResult;

/// One thing that happened, in the owned form consumers keep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TelemetryEvent {
    /// Increases by one per event; unique across runs of a program that starts it above
    /// what its history holds (see [`Hub::with_first_seq`](crate::Hub::with_first_seq)).
    pub seq: u64,
    /// When it was observed, unix milliseconds.
    pub at_ms: i64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The kinds of [`TelemetryEvent`]; serialized with a `type` field.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A listener started serving.
    ListenerStarted {
        /// Its service.
        service: String,
        /// The endpoint string it was asked for.
        endpoint: String,
        /// `tcp`, `udp`, ...
        transport: TransportKind,
        /// The address bound.
        local: String,
    },
    /// A listener stopped.
    ListenerStopped {
        /// Its service.
        service: String,
        /// The endpoint string it was asked for.
        endpoint: String,
        /// `tcp`, `udp`, ...
        transport: TransportKind,
        /// The address it was bound to.
        local: String,
    },
    /// A connection opened.
    ConnectionOpened {
        /// The connection as it opened.
        connection: ConnectionSnapshot,
    },
    /// A connection closed.
    ConnectionClosed {
        /// The connection with its final counters.
        connection: ConnectionSnapshot,
        /// Why it closed (`done`, `reset`, ...); [`CloseKind::is_routine`] tells the
        /// routine ones.
        reason: CloseKind,
        /// The reason in words.
        detail: Cow<'static, str>,
    },
    /// A connection was refused before a protocol ran.
    Refused {
        /// The service that refused it.
        service: String,
        /// Who tried.
        peer: String,
        /// A bounded reason label.
        reason: &'static str,
        /// Refusals of this service and reason left off the bus since the last one
        /// published: they are published at most once a second
        /// ([`refusals`](crate::refusals)), and counted in full by the metric.
        suppressed: u64,
    },
    /// An error the reactor handled.
    ProtocolError {
        /// The service.
        service: String,
        /// The connection, when there is one.
        connection: Option<u64>,
        /// What went wrong.
        kind: ErrorKind,
        /// The details.
        message: String,
        /// Errors of this service and kind left off the bus since the last one
        /// published: at most [`ERROR_EVENTS`](crate::refusals::ERROR_EVENTS) a second
        /// are, and the metric counts them all.
        suppressed: u64,
    },
    /// A callback blocked the reactor.
    SlowCallback {
        /// What ran.
        callback: String,
        /// The service, when known.
        service: Option<String>,
        /// The connection, when known.
        connection: Option<u64>,
        /// How long it ran, milliseconds.
        duration_ms: f64,
    },
    /// A detector flagged a Deferred chain.
    DeferredDetected {
        /// Which detector.
        detector: Detector,
        /// The chain as it is now, with its steps so far.
        deferred: DeferredSnapshot,
        /// What the detector saw, in words.
        detail: String,
    },
    /// A chain ended and is kept in history: it failed, was flagged, or was sampled.
    DeferredEnded {
        /// The chain with its steps.
        deferred: DeferredSnapshot,
    },
    /// The reactor fell behind by at least the slow-callback threshold.
    ReactorLag {
        /// How late, and the call that held it.
        #[serde(flatten)]
        spike: crate::profile::LagSpike,
    },
    /// The configuration was reloaded, or a reload changed nothing; says why.
    ConfigReloaded {
        /// `ok`, `invalid` or `failed`.
        result: ReloadResult,
        /// What was applied, or why nothing was.
        message: String,
        /// Services started.
        added: Vec<String>,
        /// Services stopped.
        removed: Vec<String>,
        /// Services replaced.
        changed: Vec<String>,
    },
}

impl EventKind {
    /// The `type` name, as serialized.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ListenerStarted { .. } => "listener_started",
            Self::ListenerStopped { .. } => "listener_stopped",
            Self::ConnectionOpened { .. } => "connection_opened",
            Self::ConnectionClosed { .. } => "connection_closed",
            Self::Refused { .. } => "refused",
            Self::ProtocolError { .. } => "protocol_error",
            Self::SlowCallback { .. } => "slow_callback",
            Self::DeferredDetected { .. } => "deferred_detected",
            Self::DeferredEnded { .. } => "deferred_ended",
            Self::ConfigReloaded { .. } => "config_reloaded",
            Self::ReactorLag { .. } => "reactor_lag",
        }
    }
}

/// The ring and the readers' positions in it.
struct Ring {
    /// Events not yet taken by every reader, oldest first.
    events: VecDeque<Arc<TelemetryEvent>>,
    /// The position of `events[0]`: how many events were published before it.
    start: u64,
    /// Each open feed's position: the next event it will take.
    readers: HashMap<u64, u64>,
    /// The id the next feed gets; ids are never reused, so a dropped feed's position cannot be
    /// taken by another.
    next_reader: u64,
    /// A reader found nothing and is waiting: the next publish wakes it.
    waiting: bool,
    /// The hub is gone: nothing more will come.
    closed: bool,
}

impl Ring {
    fn end(&self) -> u64 {
        self.start + self.events.len() as u64
    }

    /// Drops events every reader has taken.
    fn trim(&mut self) {
        let oldest = self.readers.values().copied().min().unwrap_or(self.end());
        let n = usize::try_from(oldest.saturating_sub(self.start)).unwrap_or(usize::MAX);
        let n = n.min(self.events.len());
        self.events.drain(..n);
        self.start += n as u64;
    }
}

/// What the hub and its feeds share.
struct Shared {
    /// One lock for the ring and every reader's position: publishing and reading each take it once
    /// per event or batch.
    ring: Mutex<Ring>,
    /// How many feeds are open, read without the lock.
    readers: AtomicUsize,
    /// Woken when an event arrives for a waiting reader, or when the hub goes away.
    arrived: Notify,
    /// Most events the ring holds; beyond it the oldest is dropped and the readers that had not
    /// taken it are told how many they missed.
    capacity: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Ring> {
        // Nothing panics while holding it; a poisoned ring is still a valid ring.
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Sequence numbers and the ring.
pub(crate) struct Bus {
    /// The next event's number; continues from the history's highest after a restart
    /// (`with_first_seq`).
    seq: AtomicU64,
    shared: Arc<Shared>,
}

impl Bus {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            seq: AtomicU64::new(1),
            shared: Arc::new(Shared {
                ring: Mutex::new(Ring {
                    events: VecDeque::new(),
                    start: 0,
                    readers: HashMap::new(),
                    next_reader: 0,
                    waiting: false,
                    closed: false,
                }),
                readers: AtomicUsize::new(0),
                arrived: Notify::new(),
                capacity,
            }),
        }
    }

    pub(crate) fn set_first_seq(&self, seq: u64) {
        self.seq.store(seq, Ordering::Relaxed);
    }

    /// Whether anyone would receive an event; lets the hub skip building one.
    pub(crate) fn has_listeners(&self) -> bool {
        self.shared.readers.load(Ordering::Relaxed) > 0
    }

    /// Stamps `kind` and appends it for every reader.
    pub(crate) fn publish(&self, kind: EventKind) {
        self.append(kind, false);
    }

    /// Like [`publish`](Self::publish), and returns the event (always `Some`) even when
    /// nobody reads the bus, for the hub to keep beside it.
    pub(crate) fn publish_kept(&self, kind: EventKind) -> Option<Arc<TelemetryEvent>> {
        self.append(kind, true)
    }

    fn append(&self, kind: EventKind, always: bool) -> Option<Arc<TelemetryEvent>> {
        let at_ms = unix_ms(SystemTime::now());
        let (event, wake) = {
            let mut ring = self.shared.lock();
            if ring.readers.is_empty() && !always {
                return None;
            }
            // Numbered under the lock, so the ring is in sequence order.
            let event = Arc::new(TelemetryEvent {
                seq: self.seq.fetch_add(1, Ordering::Relaxed),
                at_ms,
                kind,
            });
            if ring.readers.is_empty() {
                return Some(event);
            }
            ring.events.push_back(event.clone());
            if ring.events.len() > self.shared.capacity {
                // The slowest reader loses the oldest event; it learns so on its next read.
                ring.events.pop_front();
                ring.start += 1;
            }
            (event, std::mem::take(&mut ring.waiting))
        };
        if wake {
            self.shared.arrived.notify_waiters();
        }
        Some(event)
    }

    /// A new reader, whose drops are counted on `dropped`.
    pub(crate) fn subscribe(&self, dropped: IntCounter) -> Feed {
        let mut ring = self.shared.lock();
        let id = ring.next_reader;
        ring.next_reader += 1;
        let at = ring.end();
        ring.readers.insert(id, at);
        self.shared.readers.fetch_add(1, Ordering::Relaxed);
        Feed {
            shared: self.shared.clone(),
            id,
            dropped,
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.arrived.notify_waiters();
    }
}

/// A reader fell behind and this many events were dropped for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the event feed fell behind and missed {0} events")]
pub struct Missed(pub u64);

/// One reader of the bus (see [`Hub::subscribe`](crate::Hub::subscribe)): every event
/// from its subscription on, in order, unless it falls more than the bus's capacity
/// behind.
pub struct Feed {
    shared: Arc<Shared>,
    /// This feed's key in the ring's positions; dropping the feed removes it, so the ring no longer
    /// waits on it.
    id: u64,
    /// This consumer's `weft_events_dropped_total` counter, incremented by what it missed.
    dropped: IntCounter,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed").field("id", &self.id).finish()
    }
}

impl Feed {
    /// Moves every event published since the last read (at most `max`) into `out`, without
    /// waiting. `Ok(0)` when there is none yet, or the hub is gone; `Err(Missed(n))` when
    /// this reader fell behind (the missed events are counted), after which it continues
    /// with the oldest event still kept.
    pub fn try_recv_many(
        &mut self,
        out: &mut Vec<Arc<TelemetryEvent>>,
        max: usize,
    ) -> Result<usize, Missed> {
        let mut ring = self.shared.lock();
        self.take(&mut ring, out, max)
    }

    /// Like [`try_recv_many`](Self::try_recv_many), but first waits until there is at
    /// least one event; `Ok(0)` only once the hub is gone.
    pub async fn recv_many(
        &mut self,
        out: &mut Vec<Arc<TelemetryEvent>>,
        max: usize,
    ) -> Result<usize, Missed> {
        loop {
            let arrived = self.shared.arrived.notified();
            let mut arrived = std::pin::pin!(arrived);
            // Registered before looking, so a publish right after the look still wakes us.
            arrived.as_mut().enable();
            {
                let mut ring = self.shared.lock();
                let n = self.take(&mut ring, out, max)?;
                if n > 0 || ring.closed {
                    return Ok(n);
                }
                ring.waiting = true;
            }
            arrived.await;
        }
    }

    /// The next event; `Ok(None)` once the hub is gone.
    pub async fn recv(&mut self) -> Result<Option<Arc<TelemetryEvent>>, Missed> {
        let mut one = Vec::with_capacity(1);
        self.recv_many(&mut one, 1).await?;
        Ok(one.pop())
    }

    fn take(
        &self,
        ring: &mut Ring,
        out: &mut Vec<Arc<TelemetryEvent>>,
        max: usize,
    ) -> Result<usize, Missed> {
        let (start, end) = (ring.start, ring.end());
        let Some(at) = ring.readers.get_mut(&self.id) else {
            return Ok(0);
        };
        if *at < start {
            let missed = start - *at;
            *at = start;
            self.dropped.inc_by(missed);
            return Err(Missed(missed));
        }
        let from = usize::try_from(*at - start).unwrap_or(usize::MAX);
        let n = usize::try_from(end - *at).unwrap_or(usize::MAX).min(max);
        out.extend(ring.events.range(from..from + n).cloned());
        *at += n as u64;
        ring.trim();
        Ok(n)
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        let mut ring = self.shared.lock();
        ring.readers.remove(&self.id);
        self.shared.readers.fetch_sub(1, Ordering::Relaxed);
        ring.trim();
    }
}
