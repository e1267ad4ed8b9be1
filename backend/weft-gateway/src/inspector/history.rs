//! Between the hub and the store: events become rows off the reactor thread, open
//! connections are written about once a second, and the store's counters become metrics.

use std::sync::Arc;
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntGauge, Opts};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weft_store::{ConnectionRecord, EventRecord, Record, Store, Writer};
use weft_telemetry::{
    ConnectionSnapshot, Consumer, DeferredSnapshot, EventKind, Hub, TelemetryEvent,
};

/// The hub's consumer named `store`: hands events to [`convert`] through a bounded queue,
/// so the reactor thread never serializes JSON or touches the store.
pub(crate) struct StoreConsumer {
    pub(crate) tx: mpsc::Sender<Arc<TelemetryEvent>>,
}

impl Consumer for StoreConsumer {
    fn name(&self) -> &'static str {
        "store"
    }

    fn offer(&self, event: &Arc<TelemetryEvent>) -> bool {
        self.tx.try_send(event.clone()).is_ok()
    }
}

/// The rows one event becomes.
pub(crate) fn records(event: &TelemetryEvent) -> Vec<Record> {
    let mut out = Vec::with_capacity(2);
    match &event.kind {
        EventKind::ConnectionOpened { connection } => {
            out.push(connection_record(connection, None).into());
        }
        EventKind::ConnectionClosed {
            connection, reason, ..
        } => {
            out.push(connection_record(connection, Some((event.at_ms, reason))).into());
        }
        EventKind::DeferredDetected { deferred, .. } | EventKind::DeferredEnded { deferred } => {
            deferred_records(deferred, &mut out);
        }
        _ => {}
    }
    out.push(
        EventRecord {
            seq: i64::try_from(event.seq).unwrap_or(i64::MAX),
            at_ms: event.at_ms,
            kind: event.kind.name().to_owned(),
            payload_json: serde_json::to_string(&event.kind).unwrap_or_else(|_| "{}".into()),
        }
        .into(),
    );
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

/// Turns queued events into rows until `stop`, then drains what is queued.
pub(crate) async fn convert(
    mut rx: mpsc::Receiver<Arc<TelemetryEvent>>,
    writer: Writer,
    stop: CancellationToken,
) {
    let write = |event: &TelemetryEvent| {
        for record in records(event) {
            // A full store queue is counted by the store (weft_store_events_dropped_total).
            writer.try_send(record);
        }
    };
    loop {
        tokio::select! {
            event = rx.recv() => match event {
                Some(event) => write(&event),
                None => return,
            },
            () = stop.cancelled() => break,
        }
    }
    rx.close();
    while let Some(event) = rx.recv().await {
        write(&event);
    }
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
