//! What the dashboard's DNS view shows of a dns service, as the service-neutral
//! [`ServiceSnapshot`] of `weft-telemetry`: queries by type and answers by code (from
//! the service's counters), cache hits and misses, the time to answer any query, each
//! upstream's answers, timeouts and round-trip times, the names asked most and the
//! recent queries (from its [`QueryFigures`]). Counters are atomics and the figures sit
//! behind a short lock, so a reader never waits on the service.
//!
//! Also the query log's way into history and traces: each logged answer becomes a row of
//! the store's `queries` table and, with `[otlp]`, a `dns query` span, each queued
//! without waiting (a full queue is counted by the store, and by the exporter).

use std::sync::Arc;

use weft_names::transfer::Secondary;
use weft_names::view::{LoggedQuery, QueryLog};
use weft_names::{Catalog, QueryFigures, ServiceMetrics};
use weft_store::QueryRecord;
use weft_telemetry::live::unix_ms;
use weft_telemetry::views::{
    Histogram, RecentRequest, ServiceSnapshot, ServiceView, Tally, TopKey, UpstreamSnapshot,
    ZoneSnapshot,
};

use super::QueryLogTo;

/// The names listed at most, of the up to 1,000 the service tracks.
const TOP_SHOWN: usize = 50;

/// A dns service's view, valid for as long as the service runs.
pub(crate) struct DnsView {
    metrics: ServiceMetrics,
    figures: Arc<QueryFigures>,
    /// What it serves: each zone as loaded (a reload that changes one starts the
    /// service again, with a view of its own).
    zones: Vec<ZoneSnapshot>,
    /// The origins of its secondary zones, whose refresh is read at each snapshot
    /// (`crate::secondaries::status`): a check that finds the copy current changes no
    /// zone.
    secondaries: Vec<hickory_proto::rr::Name>,
}

impl DnsView {
    /// The view of the service counting into `metrics` and serving `zones`, some of them
    /// (and maybe more, not served yet) its `secondaries`.
    pub(crate) fn of(metrics: &ServiceMetrics, zones: &Catalog, secondaries: &[Secondary]) -> Self {
        let primaries = |origin: &hickory_proto::rr::Name| -> Vec<String> {
            let secondary = secondaries.iter().find(|s| s.origin == *origin);
            secondary.map_or_else(Vec::new, |s| {
                s.primaries.iter().map(ToString::to_string).collect()
            })
        };
        let mut snapshots: Vec<ZoneSnapshot> = zones
            .zones()
            .iter()
            .map(|zone| ZoneSnapshot {
                zone: zone.origin().to_string(),
                serial: zone.serial(),
                records: zone.len() as u64,
                signed: zone.is_signed(),
                signatures_expire_ms: zone.first_expiry().map(|(at, _, _)| unix_ms(at)),
                primaries: primaries(zone.origin()),
                served: true,
                refresh: None,
            })
            .collect();
        let unserved = secondaries
            .iter()
            .filter(|s| !zones.zones().iter().any(|z| *z.origin() == s.origin));
        snapshots.extend(unserved.map(|s| ZoneSnapshot {
            zone: s.origin.to_string(),
            primaries: primaries(&s.origin),
            ..ZoneSnapshot::default()
        }));
        let zones = snapshots;
        Self {
            metrics: metrics.clone(),
            figures: metrics.figures().clone(),
            zones,
            secondaries: secondaries.iter().map(|s| s.origin.clone()).collect(),
        }
    }
}

impl DnsView {
    /// Its zones, each secondary one with where its refresh stands now.
    fn zones(&self) -> Vec<ZoneSnapshot> {
        let mut zones = self.zones.clone();
        for origin in &self.secondaries {
            let shown = origin.to_string();
            if let Some(zone) = zones.iter_mut().find(|z| z.zone == shown) {
                zone.refresh = Some(
                    crate::secondaries::status(self.metrics.name(), origin).unwrap_or_default(),
                );
            }
        }
        zones
    }
}

fn histogram(buckets: &[(f64, u64)], sum_seconds: f64) -> Histogram {
    let (bounds, cumulative): (Vec<f64>, Vec<u64>) = buckets.iter().copied().unzip();
    Histogram {
        count: cumulative.last().copied().unwrap_or(0),
        bounds,
        cumulative,
        sum_seconds,
    }
}

impl ServiceView for DnsView {
    fn snapshot(&self) -> ServiceSnapshot {
        let read = self.figures.read();
        let counts = self.metrics.counts();
        let (buckets, count, sum) = self.metrics.duration();
        let mut latency = histogram(&buckets, sum);
        latency.count = count;
        let upstreams = read
            .upstreams
            .iter()
            .map(|u| {
                let mut latency = histogram(&u.buckets, u.sum_seconds);
                latency.count = u.answers;
                UpstreamSnapshot {
                    name: u.addr.to_string(),
                    url: u.addr.to_string(),
                    requests: u.answers,
                    errors: u.timeouts,
                    latency: Some(latency),
                    timeouts: Some(u.timeouts),
                    ..UpstreamSnapshot::default()
                }
            })
            .collect();
        ServiceSnapshot {
            tallies: vec![
                Tally {
                    name: "qtype",
                    counts: self.metrics.qtype_counts(),
                },
                Tally {
                    name: "rcode",
                    counts: self.metrics.rcode_counts(),
                },
            ],
            counters: vec![
                ("cache_hits", counts.cache_hits),
                ("cache_misses", counts.cache_misses),
                ("upstream_timeouts", counts.upstream_timeouts),
            ],
            latency: Some(latency),
            upstreams,
            top: read
                .top
                .into_iter()
                .take(TOP_SHOWN)
                .map(|(key, count)| TopKey { key, count })
                .collect(),
            sampled: (read.sampled, read.seen),
            recent: read
                .recent
                .into_iter()
                .map(|q| RecentRequest {
                    at_ms: q.at_ms,
                    client: q.client.map(|c| c.to_string()).unwrap_or_default(),
                    name: q.name,
                    kind: q
                        .qtype
                        .map(weft_names::metrics::type_name)
                        .unwrap_or_default(),
                    status: weft_names::metrics::rcode_name(q.rcode),
                    latency_ms: q.latency.as_secs_f64() * 1e3,
                    source: q.source.to_string(),
                })
                .collect(),
            zones: self.zones(),
            ..ServiceSnapshot::default()
        }
    }
}

/// The query log of service `service` into `to`: the store's `queries` table and the
/// span exporter, whichever are there.
pub(crate) fn query_log(service: &str, to: &QueryLogTo) -> QueryLog {
    let service: Arc<str> = service.into();
    let (writer, spans) = (to.writer.clone(), to.spans.clone());
    Arc::new(move |q: LoggedQuery| {
        let upstream = q.upstream_span;
        let record = QueryRecord {
            service: service.to_string(),
            at_ms: q.at_ms,
            client: q.client.map(|c| c.to_string()).unwrap_or_default(),
            name: q.name,
            qtype: q.qtype,
            rcode: q.rcode,
            latency_us: i64::try_from(q.latency.as_micros()).unwrap_or(i64::MAX),
            source: q.source,
            failed: q.failed,
            weight: i64::from(q.weight),
        };
        match (&writer, &spans) {
            (Some(writer), Some(spans)) => {
                spans.offer(record.clone(), upstream);
                writer.try_send(record);
            }
            (Some(writer), None) => {
                writer.try_send(record);
            }
            (None, Some(spans)) => spans.offer(record, upstream),
            (None, None) => {}
        }
    })
}
