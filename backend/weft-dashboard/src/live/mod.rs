//! The live feed behind `/ws`.
//!
//! One encoder ([`encode`]) reads the hub's bus, gathers events for [`BATCH`] and
//! serializes each batch once into a [`Frame`]; the sampler adds a `stats` frame each
//! second. Frames go out on a broadcast ([`Fanout`]) with room for [`FRAMES`] frames per
//! client: that ring is each client's bounded queue, and every client sends the same
//! shared bytes. A client that falls further behind (a slow browser, a full socket) never
//! slows the encoder or the hub: it is told how many events it missed and gets a fresh
//! snapshot ([`session`]).
//!
//! A frame is a delta, so a connection that opens and closes within one frame is sent
//! once, as its `connection_closed`: that event carries everything the opening did (id,
//! service, peer, local address, when it opened) plus its final counters. Such brief
//! connections are listed up to [`MAX_BRIEF`] per frame (those that ended badly always);
//! beyond that a frame only counts them, in `brief_omitted`. A page keeps a few hundred
//! closed connections and draws four times a second, so under heavy churn the rest would
//! be thrown away unseen; history and the metrics have them all.
//!
//! Messages, each a JSON object with a `type`:
//! - `snapshot`: `seq` (the last event it includes), `connections` (open ones, newest
//!   first, capped, with `connections_hidden`), `services` (figures with their last
//!   minutes), `alerts` (detections and drops since start), `process` (CPU, memory,
//!   open files and connections against their limits, with their last minutes; absent
//!   where `/proc` cannot be read).
//! - `events`: `events`, each a telemetry event with its own `seq`, `at_ms` and `type`
//!   (`connection_opened`, `connection_closed`, ...), in sequence order; `seq` skips the
//!   openings folded into a closing and the brief connections counted in
//!   `brief_omitted` (present when not zero).
//! - `stats`: once a second, `services` with their latest point, `alerts`, `process`
//!   with its latest point, and the open `connections` with fresh counters.
//! - `lagged`: `missed` events were not delivered; a `snapshot` follows.

pub mod chunked;
mod fanout;
mod handshake;
pub mod session;
mod ws;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use weft_telemetry::{Folded, Hub, Missed, TelemetryEvent, fold};

use crate::data::{ConnectionView, now_ms};
use crate::series::{Alerts, ProcessStats, Series, ServiceStats};

pub use fanout::Fanout;
pub(crate) use ws::ws;
pub use ws::{MAX_MESSAGE, SEND_TIMEOUT};

/// Frames buffered per client before it is resynced.
pub const FRAMES: usize = 256;

/// `/ws` clients served at once unless `[dashboard] max_live_clients` says otherwise.
pub const DEFAULT_MAX_LIVE_CLIENTS: usize = 256;

/// How long a shutting-down dashboard waits for its live clients to say goodbye.
pub const GOODBYE: Duration = Duration::from_secs(2);

/// How long the encoder gathers events into one frame. Pages draw at most four times a
/// second, so this adds little to what a person sees, and it bounds the frames each client
/// is sent to ten a second however busy the hub is.
pub const BATCH: Duration = Duration::from_millis(100);

/// Connections that open and close within one frame and close routinely, listed in it at
/// most; the rest are counted.
pub const MAX_BRIEF: usize = 200;

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
    /// The JSON text sent as is; cloning it shares the bytes.
    pub json: Utf8Bytes,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Message<'a> {
    Events {
        events: &'a [&'a TelemetryEvent],
        #[serde(skip_serializing_if = "is_zero")]
        brief_omitted: usize,
    },
    Lagged {
        missed: u64,
    },
    Stats {
        at_ms: i64,
        services: Vec<ServiceStats>,
        alerts: Alerts,
        /// The process's figures: the last sample's (a value each series adds).
        #[serde(skip_serializing_if = "Option::is_none")]
        process: Option<ProcessStats>,
        connections: Vec<ConnectionView>,
        connections_hidden: usize,
    },
    Snapshot {
        seq: u64,
        at_ms: i64,
        services: Vec<ServiceStats>,
        alerts: Alerts,
        /// The process's figures over the last minutes; absent where `/proc` cannot be
        /// read.
        #[serde(skip_serializing_if = "Option::is_none")]
        process: Option<ProcessStats>,
        connections: Vec<ConnectionView>,
        connections_hidden: usize,
    },
}

fn to_json(m: &Message<'_>) -> Utf8Bytes {
    serde_json::to_string(m)
        .unwrap_or_else(|_| r#"{"type":"error"}"#.into())
        .into()
}

/// The `lagged` message for `missed` events.
pub fn lagged(missed: u64) -> Utf8Bytes {
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
pub fn snapshot(hub: &Hub, series: &Series, seq: u64) -> Utf8Bytes {
    let (connections, connections_hidden) = open_connections(hub);
    to_json(&Message::Snapshot {
        seq,
        at_ms: now_ms(),
        services: series.stats(),
        alerts: alerts(hub, series),
        process: series.process(),
        connections,
        connections_hidden,
    })
}

/// The banner's figures: the sampler's, with the last reload as of now.
fn alerts(hub: &Hub, series: &Series) -> Alerts {
    Alerts {
        last_reload: hub.last_reload(),
        ..series.alerts()
    }
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
            alerts: alerts(hub, series),
            process: series.process().map(|mut p| {
                p.cpu.drain(..p.cpu.len().saturating_sub(1));
                p.resident.drain(..p.resident.len().saturating_sub(1));
                p
            }),
            connections,
            connections_hidden,
        }),
    }
}

/// Samples the hub into `series` every `every`, and sends a `stats` frame after each;
/// publishes the refusals the bus left out at the end of a burst
/// ([`Hub::publish_overdue_refusals`]) on the same beat.
pub async fn sample(hub: Arc<Hub>, series: Arc<Series>, fanout: Arc<Fanout>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        hub.publish_overdue_refusals();
        series.sample(&hub, now_ms());
        if fanout.clients() > 0 {
            fanout.publish(stats_frame(&hub, &series));
        }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The events of `batch` a client is sent, and how many brief connections were left out:
/// every event, except the opening of a connection whose closing is in the same batch
/// ([`fold`]), and the routine closings of such brief connections beyond the first
/// [`MAX_BRIEF`].
fn deltas(batch: &[Arc<TelemetryEvent>]) -> (Vec<&TelemetryEvent>, usize) {
    let (mut brief, mut omitted) = (0, 0);
    let mut sent = Vec::with_capacity(batch.len());
    for folded in fold(batch) {
        match folded {
            Folded::Brief {
                closing, reason, ..
            } if reason.is_routine() => {
                brief += 1;
                if brief > MAX_BRIEF {
                    omitted += 1;
                } else {
                    sent.push(closing);
                }
            }
            Folded::Brief { closing: e, .. } | Folded::Event(e) => sent.push(e),
        }
    }
    (sent, omitted)
}

/// Encodes the hub's events into frames until the hub goes away. It reads the bus as
/// `live`: woken by the first event of a batch, it lets the rest gather for [`BATCH`] and
/// takes them all at once, so a busy hub costs one wake-up per frame, not per event.
pub async fn encode(hub: Arc<Hub>, fanout: Arc<Fanout>) {
    let mut feed = hub.subscribe("live");
    drop(hub);
    let mut batch: Vec<Arc<TelemetryEvent>> = Vec::new();
    let flush = |batch: &mut Vec<Arc<TelemetryEvent>>| {
        let Some(last) = batch.last() else { return };
        let last_seq = last.seq;
        // Nobody to read it: skip the encoding, keep the count.
        let json = if fanout.clients() > 0 {
            let (events, brief_omitted) = deltas(batch);
            to_json(&Message::Events {
                events: &events,
                brief_omitted,
            })
        } else {
            Utf8Bytes::default()
        };
        fanout.publish(Frame {
            kind: FrameKind::Events { last_seq },
            json,
        });
        batch.clear();
    };
    let missed = |batch: &mut Vec<Arc<TelemetryEvent>>, n: u64| {
        flush(batch);
        fanout.publish(Frame {
            kind: FrameKind::Resync(n),
            json: lagged(n),
        });
    };
    loop {
        match feed.recv_many(&mut batch, MAX_BATCH).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(Missed(n)) => {
                missed(&mut batch, n);
                continue;
            }
        }
        tokio::time::sleep(BATCH).await;
        loop {
            if batch.len() >= MAX_BATCH {
                flush(&mut batch);
            }
            let room = MAX_BATCH - batch.len();
            match feed.try_recv_many(&mut batch, room) {
                Ok(0) => break,
                Ok(_) => {}
                Err(Missed(n)) => missed(&mut batch, n),
            }
        }
        flush(&mut batch);
    }
}

/// Runs the sampler and the encoder until `stop` completes, then closes every client's
/// feed with 1001 (going away) and waits, up to [`GOODBYE`], for them to leave. The
/// inspector runs this next to the server; without it pages still render, but nothing is
/// live.
pub async fn run(
    hub: Arc<Hub>,
    series: Arc<Series>,
    fanout: Arc<Fanout>,
    stop: impl Future<Output = ()>,
) {
    tokio::select! {
        () = sample(hub.clone(), series, fanout.clone(), Duration::from_secs(1)) => {}
        () = encode(hub, fanout.clone()) => {}
        () = stop => {}
    }
    fanout.shut_down();
    if tokio::time::timeout(GOODBYE, fanout.drained())
        .await
        .is_err()
    {
        tracing::debug!("live clients still connected at exit");
    }
}

#[cfg(test)]
mod tests {
    use weft::observe::{CloseKind, TransportKind};
    use weft_telemetry::{ConnectionSnapshot, EventKind};

    use super::*;

    fn connection(id: u64) -> ConnectionSnapshot {
        ConnectionSnapshot {
            id,
            service: "echo".into(),
            transport: TransportKind::Tcp,
            peer: weft::Address::Ip("127.0.0.1:5000".parse().unwrap()),
            local: weft::Address::Ip("127.0.0.1:8000".parse().unwrap()),
            opened_at_ms: 1,
            age_ms: 0,
            idle_ms: 0,
            bytes_in: 0,
            bytes_out: 0,
            reads: 0,
            writes: 0,
            reactor: 0,
        }
    }

    fn event(seq: u64, kind: EventKind) -> Arc<TelemetryEvent> {
        Arc::new(TelemetryEvent {
            seq,
            at_ms: 1,
            kind,
        })
    }

    #[test]
    fn an_opening_closed_in_the_same_frame_is_sent_only_as_the_closing() {
        let opened = |seq, id| {
            event(
                seq,
                EventKind::ConnectionOpened {
                    connection: connection(id),
                },
            )
        };
        let closed = |seq, id| {
            event(
                seq,
                EventKind::ConnectionClosed {
                    connection: connection(id),
                    reason: CloseKind::Done,
                    detail: "closed cleanly".into(),
                },
            )
        };
        // 1 opened before this frame and closes in it; 2 opens and closes; 3 stays open.
        let batch = [opened(10, 2), opened(11, 3), closed(12, 1), closed(13, 2)];
        let (sent, omitted) = deltas(&batch);
        let sent: Vec<u64> = sent.iter().map(|e| e.seq).collect();
        assert_eq!((sent, omitted), (vec![11, 12, 13], 0));
    }

    #[test]
    fn brief_connections_beyond_the_cap_are_counted_unless_they_ended_badly() {
        let brief = |id: u64, reason: CloseKind| {
            let open = event(
                2 * id,
                EventKind::ConnectionOpened {
                    connection: connection(id),
                },
            );
            let close = event(
                2 * id + 1,
                EventKind::ConnectionClosed {
                    connection: connection(id),
                    reason,
                    detail: "".into(),
                },
            );
            [open, close]
        };
        let n = MAX_BRIEF as u64 + 10;
        let mut batch: Vec<_> = (1..=n).flat_map(|id| brief(id, CloseKind::Done)).collect();
        batch.extend(brief(n + 1, CloseKind::TimedOut));
        let (sent, omitted) = deltas(&batch);
        assert_eq!(omitted, 10);
        assert_eq!(sent.len(), MAX_BRIEF + 1);
        assert_eq!(
            sent.last().unwrap().seq,
            2 * (n + 1) + 1,
            "the timeout is listed"
        );
        let json = to_json(&Message::Events {
            events: &sent,
            brief_omitted: omitted,
        });
        let v: serde_json::Value = serde_json::from_str(json.as_str()).unwrap();
        assert_eq!(v["brief_omitted"], 10);
    }
}
