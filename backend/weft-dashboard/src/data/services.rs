//! The service rows: each service's configuration from history beside its live figures.

use serde::Serialize;
use weft_store::ServiceRecord;

use crate::history;
use crate::series::ServiceStats;
use crate::state::DashboardState;

/// A service: its configuration from history and its live figures.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    /// The name.
    pub name: String,
    /// `echo`, `http`, ... (empty when the service was never recorded).
    pub kind: String,
    /// The endpoints it listens on.
    pub endpoints: Vec<String>,
    /// Its configuration, as a JSON object.
    pub config: serde_json::Value,
    /// Figures now and over the last minutes.
    pub stats: ServiceStats,
}

/// Every service, configured (from history) or seen in the metrics, by name; and the note
/// when history could not be read (the services are then those in the metrics, without
/// their configuration).
pub async fn services(state: &DashboardState) -> (Vec<ServiceView>, Option<String>) {
    let (records, note): (Vec<ServiceRecord>, _) = match &state.store {
        Some(store) => history::or_note(state, store.services().await, Vec::new()),
        None => (Vec::new(), None),
    };
    let mut stats = live_stats(state);
    let mut out: Vec<ServiceView> = records
        .into_iter()
        .map(|r| {
            let s = stats
                .iter()
                .position(|s| s.service == r.name)
                .map(|i| stats.remove(i))
                .unwrap_or_else(|| ServiceStats {
                    service: r.name.clone(),
                    ..ServiceStats::default()
                });
            ServiceView {
                config: serde_json::from_str(&r.config_json).unwrap_or_default(),
                name: r.name,
                kind: r.kind,
                endpoints: r.endpoints,
                stats: s,
            }
        })
        .collect();
    out.extend(stats.into_iter().map(|s| ServiceView {
        name: s.service.clone(),
        kind: String::new(),
        endpoints: Vec::new(),
        config: serde_json::Value::Null,
        stats: s,
    }));
    out.sort_by(|a, b| a.name.cmp(&b.name));
    (out, note)
}

/// The names of the services with live figures, for views that must not wait on history.
pub fn live_service_names(state: &DashboardState) -> Vec<String> {
    live_stats(state).into_iter().map(|s| s.service).collect()
}

/// The figures of every service served now: one a reload removed leaves at once, not at
/// the next sample.
fn live_stats(state: &DashboardState) -> Vec<ServiceStats> {
    let mut stats = state.series.stats();
    stats.retain(|s| s.service != weft_telemetry::NO_SERVICE && !state.hub.is_retired(&s.service));
    stats
}
