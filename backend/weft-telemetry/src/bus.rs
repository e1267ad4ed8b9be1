//! The event bus: owned events, fanned out to consumers without ever waiting.
//!
//! Each event gets a sequence number and a timestamp once, is wrapped in an `Arc`, and is
//! offered to every [`Consumer`] (the store writer) and to the broadcast behind
//! [`LiveFeed`]s (browsers). A consumer that cannot take an event at once drops it, and the
//! hub counts the drop under `weft_events_dropped_total{consumer}`; a live subscriber that
//! falls behind learns how many it missed, counted under `consumer="live"`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use prometheus::IntCounter;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::chains::DeferredSnapshot;
use crate::live::{ConnectionSnapshot, unix_ms};

/// One thing that happened, in the owned form consumers keep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TelemetryEvent {
    /// Increases by one per event; unique across runs of a program that seeds it from the
    /// clock (see [`Hub::with_first_seq`](crate::Hub::with_first_seq)).
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
        transport: &'static str,
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
        transport: &'static str,
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
        /// The bounded reason label (`done`, `reset`, ...).
        reason: &'static str,
        /// The reason in words.
        detail: String,
    },
    /// A connection was refused before a protocol ran.
    Refused {
        /// The service that refused it.
        service: String,
        /// Who tried.
        peer: String,
        /// A bounded reason label.
        reason: &'static str,
    },
    /// An error the reactor handled.
    ProtocolError {
        /// The service.
        service: String,
        /// The connection, when there is one.
        connection: Option<u64>,
        /// A bounded kind label.
        kind: &'static str,
        /// The details.
        message: String,
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
        /// `stalled`, `slow`, `unhandled` or `leaked`.
        detector: &'static str,
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
        }
    }
}

/// Takes events from the bus. Called on the reactor thread: it must not block.
pub trait Consumer: Send + Sync + 'static {
    /// A short, fixed name: the `consumer` label of its drop counter.
    fn name(&self) -> &'static str;

    /// Takes `event` if it can at once; `false` means it was dropped.
    fn offer(&self, event: &Arc<TelemetryEvent>) -> bool;
}

struct Registered {
    consumer: Arc<dyn Consumer>,
    dropped: IntCounter,
}

/// Sequence numbers and the fan-out.
pub(crate) struct Bus {
    seq: AtomicU64,
    /// Written when a consumer is added (at start-up), read per event: uncontended.
    consumers: RwLock<Vec<Registered>>,
    live: broadcast::Sender<Arc<TelemetryEvent>>,
    live_dropped: IntCounter,
}

impl Bus {
    pub(crate) fn new(capacity: usize, live_dropped: IntCounter) -> Self {
        Self {
            seq: AtomicU64::new(1),
            consumers: RwLock::default(),
            live: broadcast::channel(capacity).0,
            live_dropped,
        }
    }

    pub(crate) fn set_first_seq(&self, seq: u64) {
        self.seq.store(seq, Ordering::Relaxed);
    }

    pub(crate) fn add(&self, consumer: Arc<dyn Consumer>, dropped: IntCounter) {
        self.consumers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Registered { consumer, dropped });
    }

    /// Whether anyone would receive an event; lets the hub skip building one.
    pub(crate) fn has_listeners(&self) -> bool {
        self.live.receiver_count() > 0
            || !self
                .consumers
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
    }

    /// Stamps `kind` and offers it to everyone.
    pub(crate) fn publish(&self, kind: EventKind) {
        let event = Arc::new(TelemetryEvent {
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            at_ms: unix_ms(SystemTime::now()),
            kind,
        });
        for r in self
            .consumers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            if !r.consumer.offer(&event) {
                r.dropped.inc();
            }
        }
        if self.live.receiver_count() > 0 {
            // Only fails when every receiver is gone in the meantime: nobody missed it.
            let _ = self.live.send(event);
        }
    }

    pub(crate) fn subscribe(&self) -> LiveFeed {
        LiveFeed {
            rx: self.live.subscribe(),
            dropped: self.live_dropped.clone(),
        }
    }
}

/// A subscriber fell behind and this many events were dropped for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the live feed fell behind and missed {0} events")]
pub struct Missed(pub u64);

/// A live subscription to the bus, for one browser.
#[derive(Debug)]
pub struct LiveFeed {
    rx: broadcast::Receiver<Arc<TelemetryEvent>>,
    dropped: IntCounter,
}

impl LiveFeed {
    /// The next event; `Err(Missed(n))` when this subscriber fell behind (the missed events
    /// are counted), after which it continues with the oldest event still buffered.
    /// `Ok(None)` when the hub is gone.
    pub async fn recv(&mut self) -> Result<Option<Arc<TelemetryEvent>>, Missed> {
        match self.rx.recv().await {
            Ok(event) => Ok(Some(event)),
            Err(broadcast::error::RecvError::Closed) => Ok(None),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                self.dropped.inc_by(n);
                Err(Missed(n))
            }
        }
    }
}
