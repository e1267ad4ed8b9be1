//! Exemplars: for each bucket of a latency histogram, the latest observation that belonged
//! to a traced request, with its trace and span ids, so a scrape in the OpenMetrics format
//! can point from a slow bucket to one trace that landed in it.
//!
//! The metrics library keeps none, so they are kept beside the histogram: an
//! [`Exemplars`] per series (one slot per bucket, so its memory is fixed when the series
//! is made), recorded on the reactor thread only for requests that carry a [`SpanRef`]
//! (only while [`trace::enabled`](super::trace::enabled)), and an [`ExemplarIndex`] the
//! encoder finds them in by family name and labels. Several reactors each record into a
//! series of their own under the same name and labels; reading merges them, the latest
//! per bucket winning.

use std::sync::{Arc, Mutex, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

/// The trace and span an observation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanRef {
    /// The trace id; never all zeros.
    pub trace_id: [u8; 16],
    /// The span id; never all zeros.
    pub span_id: [u8; 8],
}

/// One observation kept as a bucket's exemplar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exemplar {
    /// What it belonged to.
    pub span: SpanRef,
    /// The value observed (seconds, for a latency).
    pub value: f64,
    /// When, in seconds since the Unix epoch.
    pub at: f64,
}

/// The latest traced observation of each bucket of one histogram series.
#[derive(Debug)]
pub struct Exemplars {
    /// The buckets' upper bounds, ascending; one more slot is kept for `+Inf`.
    bounds: Box<[f64]>,
    /// By bucket. A std mutex: taken for one store per traced observation (on the
    /// series' reactor) and for a copy per scrape, never across anything else.
    slots: Mutex<Box<[Option<Exemplar>]>>,
}

impl Exemplars {
    /// Slots for a histogram whose buckets have the upper `bounds` (ascending, without
    /// `+Inf`).
    pub fn new(bounds: &[f64]) -> Self {
        Self {
            bounds: bounds.into(),
            slots: Mutex::new(vec![None; bounds.len() + 1].into_boxed_slice()),
        }
    }

    /// Keeps `value`, observed for `span` now, as the exemplar of its bucket (the first
    /// whose upper bound is at least `value`, as the histogram counts it).
    pub fn record(&self, value: f64, span: SpanRef) {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.record_at(value, span, at);
    }

    fn record_at(&self, value: f64, span: SpanRef, at: f64) {
        let bucket = self.bounds.partition_point(|&b| b < value);
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots[bucket] = Some(Exemplar { span, value, at });
    }

    /// Each bucket's exemplar, in bucket order, `+Inf` last.
    pub fn latest(&self) -> Vec<Option<Exemplar>> {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .to_vec()
    }
}

/// One series' exemplars, by family name and labels.
#[derive(Debug)]
struct Entry {
    name: String,
    /// As the metrics library gathers them (sorted by name).
    labels: Vec<(String, String)>,
    /// Dropped with the series.
    exemplars: Weak<Exemplars>,
}

/// Where an encoder finds the exemplars of a histogram series. Cloned, it is the same
/// index. Series are added when made (bounded as the configuration bounds them) and leave
/// when the last handle of their [`Exemplars`] is dropped.
#[derive(Debug, Clone, Default)]
pub struct ExemplarIndex(Arc<Mutex<Vec<Entry>>>);

impl ExemplarIndex {
    /// Lists `exemplars` as those of the series `name{labels}`; `labels` in the order the
    /// metrics library gathers them (sorted by name).
    pub fn add(&self, name: &str, labels: Vec<(String, String)>, exemplars: &Arc<Exemplars>) {
        let mut entries = self.0.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|e| e.exemplars.strong_count() > 0);
        entries.push(Entry {
            name: name.to_owned(),
            labels,
            exemplars: Arc::downgrade(exemplars),
        });
    }

    /// New slots for the series `name{labels}` of a histogram whose buckets have the
    /// upper `bounds`, listed here; `labels` in the order the metrics library gathers
    /// them (sorted by name).
    pub fn series<'a>(
        &self,
        name: &str,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        bounds: &[f64],
    ) -> Arc<Exemplars> {
        let exemplars = Arc::new(Exemplars::new(bounds));
        let labels = labels
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        self.add(name, labels, &exemplars);
        exemplars
    }

    /// Whether a series of family `name` has exemplars listed (to skip the others'
    /// lookups).
    pub fn has_family(&self, name: &str) -> bool {
        let entries = self.0.lock().unwrap_or_else(|p| p.into_inner());
        entries.iter().any(|e| e.name == name)
    }

    /// The exemplars of the series `name` whose labels are `labels` (name, value pairs in
    /// gathered order), merged over every reactor's: per bucket, the latest. `None` if no
    /// such series is listed.
    pub fn find<'a>(
        &self,
        name: &str,
        labels: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    ) -> Option<Vec<Option<Exemplar>>> {
        let sources: Vec<Arc<Exemplars>> = {
            let entries = self.0.lock().unwrap_or_else(|p| p.into_inner());
            entries
                .iter()
                .filter(|e| e.name == name && same(&e.labels, labels.clone()))
                .filter_map(|e| e.exemplars.upgrade())
                .collect()
        };
        let mut merged: Option<Vec<Option<Exemplar>>> = None;
        for latest in sources.iter().map(|s| s.latest()) {
            match &mut merged {
                None => merged = Some(latest),
                Some(into) => {
                    for (slot, more) in into.iter_mut().zip(latest) {
                        if more.is_some_and(|m| slot.is_none_or(|s| m.at > s.at)) {
                            *slot = more;
                        }
                    }
                }
            }
        }
        merged
    }
}

fn same<'a>(kept: &[(String, String)], labels: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
    let mut n = 0;
    for (name, value) in labels {
        match kept.get(n) {
            Some((k, v)) if k == name && v == value => n += 1,
            _ => return false,
        }
    }
    n == kept.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(n: u8) -> SpanRef {
        SpanRef {
            trace_id: [n; 16],
            span_id: [n; 8],
        }
    }

    #[test]
    fn each_bucket_keeps_its_latest_traced_observation() {
        let e = Exemplars::new(&[0.1, 1.0]);
        e.record_at(0.05, span(1), 10.0);
        e.record_at(0.1, span(2), 11.0);
        e.record_at(0.5, span(3), 12.0);
        e.record_at(7.0, span(4), 13.0);
        let latest = e.latest();
        assert_eq!(latest.len(), 3, "two bounds and +Inf");
        assert_eq!(
            latest[0].unwrap().span,
            span(2),
            "0.1 is in the bucket le=0.1"
        );
        assert_eq!(latest[1].unwrap().value, 0.5);
        assert_eq!(latest[2].unwrap().span, span(4));
    }

    #[test]
    fn the_index_merges_reactors_and_forgets_dropped_series() {
        let index = ExemplarIndex::default();
        let labels = vec![("service".to_owned(), "web".to_owned())];
        let (a, b) = (
            Arc::new(Exemplars::new(&[1.0])),
            Arc::new(Exemplars::new(&[1.0])),
        );
        index.add("h", labels.clone(), &a);
        index.add("h", labels, &b);
        a.record_at(0.5, span(1), 20.0);
        b.record_at(0.7, span(2), 10.0);
        b.record_at(3.0, span(3), 5.0);
        let found = index.find("h", [("service", "web")].into_iter()).unwrap();
        assert_eq!(found[0].unwrap().span, span(1), "the later one");
        assert_eq!(found[1].unwrap().span, span(3));
        assert!(index.find("h", [("service", "api")].into_iter()).is_none());
        assert!(index.find("h", std::iter::empty()).is_none());
        drop((a, b));
        assert!(index.find("h", [("service", "web")].into_iter()).is_none());
        assert!(index.has_family("h"));
        index.add("g", Vec::new(), &Arc::new(Exemplars::new(&[])));
        assert!(!index.has_family("h"), "dead entries are pruned on add");
    }
}
