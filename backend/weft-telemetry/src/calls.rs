//! `weft_reactor_calls_refused_total{reactor}`: calls from other threads (the dashboard's
//! actions, a reload on another reactor, a program's own) that a reactor's handle turned
//! away because its bounded queue was full. Read from the handles at scrape time, so a
//! refusal costs the caller one relaxed increment and nothing more.

use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, Opts};
use weft::ReactorHandle;

/// The handle of every reactor a hub is installed on, by index.
pub(crate) type Handles = Arc<Mutex<Vec<Option<ReactorHandle>>>>;

/// Reads each installed reactor's refused calls at scrape time.
pub(crate) struct CallsCollector {
    handles: Handles,
    /// Kept for [`Collector::desc`]; each scrape fills a fresh vector of the same family.
    template: IntCounterVec,
}

fn refused_vec() -> prometheus::Result<IntCounterVec> {
    IntCounterVec::new(
        Opts::new(
            "weft_reactor_calls_refused_total",
            "Calls from other threads a reactor turned away because its queue was full \
             (the reactor was blocked or far behind), by reactor.",
        ),
        &["reactor"],
    )
}

impl CallsCollector {
    pub(crate) fn new(handles: Handles) -> prometheus::Result<Self> {
        Ok(Self {
            handles,
            template: refused_vec()?,
        })
    }
}

impl Collector for CallsCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.template.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Ok(refused) = refused_vec() else {
            return Vec::new();
        };
        let handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        for (index, handle) in handles.iter().enumerate() {
            if let Some(handle) = handle {
                let label = index.to_string();
                refused
                    .with_label_values(&[&label])
                    .inc_by(handle.calls_refused());
            }
        }
        refused.collect()
    }
}
