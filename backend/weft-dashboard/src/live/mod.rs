//! The live feed behind `/ws`.
//!
//! One encoder ([`encode`]) subscribes to the hub, batches events for a few milliseconds
//! and serializes each batch once into a [`Frame`]; the sampler adds a `stats` frame each
//! second. Frames go out on a broadcast ([`Fanout`]) with room for [`FRAMES`] frames per
//! client: that ring is each client's bounded queue. A client that falls further behind
//! (a slow browser, a full socket) never slows the encoder or the hub: it is told how
//! many events it missed and gets a fresh snapshot ([`session`]).
//!
//! Messages, each a JSON object with a `type`:
//! - `snapshot`: `seq` (the last event it includes), `connections` (open ones, newest
//!   first, capped, with `connections_hidden`), `services` (figures with their last
//!   minutes), `alerts` (detections and drops since start).
//! - `events`: `events`, each a telemetry event with its own `seq`, `at_ms` and `type`
//!   (`connection_opened`, `connection_closed`, ...).
//! - `stats`: once a second, `services` with their latest point, `alerts`, and the open
//!   `connections` with fresh counters.
//! - `lagged`: `missed` events were not delivered; a `snapshot` follows.

pub mod session;
mod ws;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast;
use weft_telemetry::{Hub, Missed, TelemetryEvent};

use crate::data::{ConnectionView, now_ms};
use crate::series::{Alerts, Series, ServiceStats};

pub(crate) use ws::ws;

/// Frames buffered per client before it is resynced.
pub const FRAMES: usize = 256;

/// How long the encoder gathers events into one frame.
pub const BATCH: Duration = Duration::from_millis(20);

/// Events in one frame at most; a busier window is split.
const MAX_BATCH: usize = 1000;

/// Open connections a snapshot or a `stats` frame carries at most (newest first).
pub const MAX_CONNECTIONS: usize = 2000;

/// What a frame carries, beyond its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Events with sequence numbers up to `last_seq`.
    Events {
        /// The last event's number.
        last_seq: u64,
    },
    /// Periodic figures.
    Stats,
    /// The encoder itself missed this many events: every client resyncs.
    Resync(u64),
}

/// One encoded message, shared by every client.
#[derive(Debug, Clone)]
pub struct Frame {
    /// What it is.
    pub kind: FrameKind,
    /// The JSON text sent as is.
    pub json: Arc<str>,
}

/// The broadcast of frames and the last event number encoded.
#[derive(Debug)]
pub struct Fanout {
    tx: broadcast::Sender<Frame>,
    last_seq: AtomicU64,
}

impl Default for Fanout {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(FRAMES).0,
            last_seq: AtomicU64::new(0),
        }
    }
}

impl Fanout {
    /// A client's subscription, from the next frame on.
    pub fn subscribe(&self) -> broadcast::Receiver<Frame> {
        self.tx.subscribe()
    }

    /// The number of the last event encoded (0 before any).
    pub fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Acquire)
    }

    /// How many clients are connected.
    pub fn clients(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Sends a frame to every client (nobody listening is fine), first noting the last
    /// event it carries.
    pub fn publish(&self, frame: Frame) {
        if let FrameKind::Events { last_seq } = frame.kind {
            self.last_seq.store(last_seq, Ordering::Release);
        }
        let _ = self.tx.send(frame);
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Message<'a> {
    Events {
        events: &'a [Arc<TelemetryEvent>],
    },
    Lagged {
        missed: u64,
    },
    Stats {
        at_ms: i64,
        services: Vec<ServiceStats>,
        alerts: Alerts,
        connections: Vec<ConnectionView>,
        connections_hidden: usize,
    },
    Snapshot {
        seq: u64,
        at_ms: i64,
        services: Vec<ServiceStats>,
        alerts: Alerts,
        connections: Vec<ConnectionView>,
        connections_hidden: usize,
    },
}

fn to_json(m: &Message<'_>) -> Arc<str> {
    serde_json::to_string(m)
        .unwrap_or_else(|_| r#"{"type":"error"}"#.into())
        .into()
}

/// The `lagged` message for `missed` events.
pub fn lagged(missed: u64) -> Arc<str> {
    to_json(&Message::Lagged { missed })
}

/// Open connections, newest first, capped; and how many the cap left out.
fn open_connections(hub: &Hub) -> (Vec<ConnectionView>, usize) {
    let all = hub.connections();
    let hidden = all.len().saturating_sub(MAX_CONNECTIONS);
    let views = all
        .into_iter()
        .rev()
        .take(MAX_CONNECTIONS)
        .map(ConnectionView::from)
        .collect();
    (views, hidden)
}

/// The state of everything now, as the first message a client gets.
pub fn snapshot(hub: &Hub, series: &Series, seq: u64) -> Arc<str> {
    let (connections, connections_hidden) = open_connections(hub);
    to_json(&Message::Snapshot {
        seq,
        at_ms: now_ms(),
        services: series.stats(),
        alerts: series.alerts(),
        connections,
        connections_hidden,
    })
}

fn stats_frame(hub: &Hub, series: &Series) -> Frame {
    let (connections, connections_hidden) = open_connections(hub);
    let services = series
        .stats()
        .into_iter()
        .map(|mut s| {
            let tail = |v: &mut Vec<f64>| {
                let n = v.len().saturating_sub(1);
                v.drain(..n);
            };
            tail(&mut s.conn_rate);
            tail(&mut s.in_rate);
            tail(&mut s.out_rate);
            s.pending = vec![s.now.pending];
            s.stalled = vec![s.now.stalled];
            s
        })
        .collect();
    Frame {
        kind: FrameKind::Stats,
        json: to_json(&Message::Stats {
            at_ms: now_ms(),
            services,
            alerts: series.alerts(),
            connections,
            connections_hidden,
        }),
    }
}

/// Samples the hub into `series` every `every`, and sends a `stats` frame after each.
pub async fn sample(hub: Arc<Hub>, series: Arc<Series>, fanout: Arc<Fanout>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        series.sample(&hub, now_ms());
        if fanout.clients() > 0 {
            fanout.publish(stats_frame(&hub, &series));
        }
    }
}

/// Encodes the hub's events into frames until the hub goes away.
pub async fn encode(hub: Arc<Hub>, fanout: Arc<Fanout>) {
    let mut feed = hub.subscribe();
    drop(hub);
    let mut batch: Vec<Arc<TelemetryEvent>> = Vec::new();
    let flush = |batch: &mut Vec<Arc<TelemetryEvent>>| {
        let Some(last) = batch.last() else { return };
        let last_seq = last.seq;
        // Nobody to read it: skip the encoding, keep the count.
        let json = if fanout.clients() > 0 {
            to_json(&Message::Events { events: batch })
        } else {
            Arc::from("")
        };
        fanout.publish(Frame {
            kind: FrameKind::Events { last_seq },
            json,
        });
        batch.clear();
    };
    loop {
        // Wait for the first event of a batch, then gather for at most `BATCH`.
        let first = feed.recv().await;
        let deadline = tokio::time::Instant::now() + BATCH;
        let mut next = first;
        loop {
            match next {
                Ok(Some(event)) => {
                    batch.push(event);
                    if batch.len() >= MAX_BATCH {
                        flush(&mut batch);
                    }
                }
                Ok(None) => {
                    flush(&mut batch);
                    return;
                }
                Err(Missed(n)) => {
                    flush(&mut batch);
                    fanout.publish(Frame {
                        kind: FrameKind::Resync(n),
                        json: lagged(n),
                    });
                }
            }
            match tokio::time::timeout_at(deadline, feed.recv()).await {
                Ok(r) => next = r,
                Err(_) => break,
            }
        }
        flush(&mut batch);
    }
}

/// Runs the sampler and the encoder until `stop` completes. The gateway runs this next to
/// the server; without it pages still render, but nothing is live.
pub async fn run(
    hub: Arc<Hub>,
    series: Arc<Series>,
    fanout: Arc<Fanout>,
    stop: impl Future<Output = ()>,
) {
    tokio::select! {
        () = sample(hub.clone(), series, fanout.clone(), Duration::from_secs(1)) => {}
        () = encode(hub, fanout) => {}
        () = stop => {}
    }
}
