//! Between the hub and the store: events become rows off the reactor thread, open
//! connections are written about once a second, and the store's counters become metrics.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntGauge, Opts};
use tokio_util::sync::CancellationToken;
use weft_store::{ConnectionRecord, EventRecord, Record, Store, Writer};
use weft_telemetry::{ConnectionSnapshot, DeferredSnapshot, EventKind, Feed, Hub, TelemetryEvent};

/// How long [`convert`] lets events gather on the bus before taking them: the writer
/// commits every 200 ms anyway, and the reactor wakes this task once per batch.
const GATHER: Duration = Duration::from_millis(50);

/// The rows a batch of events becomes. A connection is one row: its opening and closing
/// are kept in it with their event numbers (the store rebuilds both events from it), and
/// when both are in the batch they are written once. Every other event is a row of the
/// event log, plus the rows of the chain it carries.
pub(crate) fn records(events: &[Arc<TelemetryEvent>]) -> Vec<Record> {
    let mut out = Vec::new();
    let mut connections: Vec<ConnectionRecord> = Vec::new();
    let mut index: HashMap<i64, usize> = HashMap::new();
    for event in events {
        let seq = i64::try_from(event.seq).unwrap_or(i64::MAX);
        let row = match &event.kind {
            EventKind::ConnectionOpened { connection } => ConnectionRecord {
                opened_seq: Some(seq),
                ..connection_record(connection, None)
            },
            EventKind::ConnectionClosed {
                connection,
                reason,
                detail,
            } => ConnectionRecord {
                closed_seq: Some(seq),
                close_detail: Some(detail.clone()),
                ..connection_record(connection, Some((event.at_ms, reason)))
            },
            kind => {
                if let EventKind::DeferredDetected { deferred, .. }
                | EventKind::DeferredEnded { deferred } = kind
                {
                    deferred_records(deferred, &mut out);
                }
                out.push(
                    EventRecord {
                        seq,
                        at_ms: event.at_ms,
                        kind: kind.name().to_owned(),
                        payload_json: serde_json::to_string(kind).unwrap_or_else(|_| "{}".into()),
                    }
                    .into(),
                );
                continue;
            }
        };
        match index.get(&row.id) {
            Some(&i) => connections[i].absorb(row),
            None => {
                index.insert(row.id, connections.len());
                connections.push(row);
            }
        }
    }
    out.extend(connections.into_iter().map(Record::from));
    out
}

/// A connection row; `closed` is when and why, once it has closed.
pub(crate) fn connection_record(
    c: &ConnectionSnapshot,
    closed: Option<(i64, &str)>,
) -> ConnectionRecord {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    ConnectionRecord {
        id: n(c.id),
        service: c.service.clone(),
        transport: c.transport.to_owned(),
        peer: c.peer.clone(),
        local: c.local.clone(),
        opened_at_ms: c.opened_at_ms,
        closed_at_ms: closed.map(|(at, _)| at),
        bytes_in: n(c.bytes_in),
        bytes_out: n(c.bytes_out),
        reads: n(c.reads),
        writes: n(c.writes),
        close_reason: closed.map(|(_, why)| why.to_owned()),
        close_detail: None,
        opened_seq: None,
        closed_seq: None,
    }
}

/// A chain's row and its steps' rows (the conversion the dashboard shows live chains with).
pub(crate) fn deferred_records(d: &DeferredSnapshot, out: &mut Vec<Record>) {
    out.push(weft_dashboard::data::deferred_record(d).into());
    out.extend(
        weft_dashboard::data::step_records(d)
            .into_iter()
            .map(Record::from),
    );
}

/// Turns the hub's events (read as the bus reader `store`) into rows until `stop`, then
/// takes what is left. Events lost by falling behind are counted by the hub under
/// `weft_events_dropped_total{consumer="store"}`.
pub(crate) async fn convert(mut feed: Feed, writer: Writer, stop: CancellationToken) {
    let mut batch = Vec::new();
    let write = |batch: &mut Vec<Arc<TelemetryEvent>>| {
        for record in records(batch) {
            // A full store queue is counted by the store (weft_store_events_dropped_total).
            writer.try_send(record);
        }
        batch.clear();
    };
    loop {
        tokio::select! {
            // A miss was counted by the hub; what is kept is written as usual.
            taken = feed.recv_many(&mut batch, usize::MAX) => if taken == Ok(0) {
                return;
            },
            () = stop.cancelled() => break,
        }
        // Let the rest of a burst gather: one wake-up per batch, not per event.
        tokio::select! {
            () = tokio::time::sleep(GATHER) => {}
            () = stop.cancelled() => {}
        }
        let _ = feed.try_recv_many(&mut batch, usize::MAX);
        write(&mut batch);
    }
    while !matches!(feed.try_recv_many(&mut batch, usize::MAX), Ok(0)) {}
    write(&mut batch);
}

/// Writes every open connection with its counters, and every pending Deferred chain with
/// its steps so far, every `interval`, until `stop`.
pub(crate) async fn snapshots(
    hub: Arc<Hub>,
    writer: Writer,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        for c in hub.connections() {
            writer.try_send(connection_record(&c, None));
        }
        let mut rows = Vec::new();
        for d in hub.pending_deferreds() {
            deferred_records(&d, &mut rows);
        }
        for row in rows {
            writer.try_send(row);
        }
    }
}

/// `weft_store_*`, read from the store's counters at scrape time.
pub(crate) struct StoreCollector {
    store: Store,
    descs: Vec<Desc>,
}

const COUNTERS: [(&str, &str); 6] = [
    (
        "weft_store_records_queued_total",
        "Records accepted into the history writer's queue.",
    ),
    (
        "weft_store_records_written_total",
        "Records committed to the history database.",
    ),
    (
        "weft_store_events_dropped_total",
        "Records lost: the queue was full, or their batch could not be written.",
    ),
    (
        "weft_store_write_errors_total",
        "Failed attempts to write history (locked, read-only, full or missing file).",
    ),
    (
        "weft_store_reopens_total",
        "Times the history file was found deleted or replaced and was recreated.",
    ),
    ("weft_store_pruned_rows_total", "Rows removed by retention."),
];
const QUEUE: (&str, &str) = (
    "weft_store_queue_length",
    "Records waiting in the history writer's queue.",
);

impl StoreCollector {
    pub(crate) fn new(store: Store) -> Result<Self, prometheus::Error> {
        let mut descs = Vec::new();
        for (name, help) in COUNTERS.into_iter().chain([QUEUE]) {
            descs.push(Desc::new(
                name.into(),
                help.into(),
                vec![],
                Default::default(),
            )?);
        }
        Ok(Self { store, descs })
    }
}

impl Collector for StoreCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let s = self.store.stats().snapshot();
        let values = [
            s.queued,
            s.written,
            s.dropped,
            s.write_errors,
            s.reopens,
            s.pruned,
        ];
        let mut out = Vec::new();
        for ((name, help), value) in COUNTERS.into_iter().zip(values) {
            if let Ok(c) = IntCounter::with_opts(Opts::new(name, help)) {
                c.inc_by(value);
                out.extend(c.collect());
            }
        }
        if let Ok(g) = IntGauge::with_opts(Opts::new(QUEUE.0, QUEUE.1)) {
            g.set(i64::try_from(self.store.writer().queue_len()).unwrap_or(i64::MAX));
            out.extend(g.collect());
        }
        out
    }
}
