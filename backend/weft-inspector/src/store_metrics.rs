//! `weft_store_*`: the store's counters, read at scrape time and registered on the hub's
//! registry, so `/metrics` has them.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntGauge, Opts};
use weft_store::Store;

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
    /// Reads `store`'s counters at each scrape.
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
