//! The DNS page and `/api/dns`: per DNS service, queries per second by type and by
//! response code over the last [`WINDOW`], the cache hit ratio, p50/p99 time to answer,
//! each upstream's latency and timeouts, the names asked most and the recent queries, and
//! the zones it serves (serial, records, and when a signed one's signatures expire).
//!
//! The figures come from the service's view (`weft_telemetry::ServiceViews`, kind `dns`)
//! measured against earlier readings as the HTTP page's are ([`ViewHistory`]). Recent
//! queries are the service's own ring; when it holds fewer than it can (after a restart),
//! the query log in history fills in older ones.

use std::time::Duration;

use serde::Serialize;
use weft_telemetry::views::{
    Histogram, RecentRequest, ServiceSnapshot, Tally, TopKey, ZoneSnapshot,
};

use crate::data::now_ms;
use crate::state::DashboardState;
use crate::views::{Measured, ViewHistory, window_latency};

/// The span rates, ratios and percentiles are measured over.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Recent queries shown per service at most.
pub const RECENT: usize = 64;

/// A DNS service's figures for the page and the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnsFigures {
    /// The service.
    pub service: String,
    /// The seconds rates, ratios and percentiles cover.
    pub window_s: f64,
    /// Queries answered since the process started.
    pub queries: u64,
    /// Queries answered per second over the window.
    pub queries_per_s: f64,
    /// Queries by type: each type asked since start.
    pub qtypes: Vec<Rate>,
    /// Answers by response code: each code sent since start.
    pub rcodes: Vec<Rate>,
    /// The forwarding cache.
    pub cache: Cache,
    /// Median time from a query's arrival to its answer over the window, milliseconds.
    pub p50_ms: Option<f64>,
    /// The 99th percentile of the same.
    pub p99_ms: Option<f64>,
    /// Each upstream, in configuration order.
    pub upstreams: Vec<Upstream>,
    /// The names asked most (sampled under load; at most 1,000 tracked), most first.
    pub top_names: Vec<TopKey>,
    /// Queries the top names and recent queries were taken from, and all queries seen.
    pub sampled: u64,
    /// All queries seen.
    pub seen: u64,
    /// The last queries answered, newest first; older ones from history after a restart.
    pub recent: Vec<RecentQuery>,
    /// The zones it serves, in configuration order.
    pub zones: Vec<ZoneFigures>,
}

/// A zone a DNS service serves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZoneFigures {
    /// Its origin.
    pub zone: String,
    /// Its SOA serial.
    pub serial: u32,
    /// Its records.
    pub records: u64,
    /// Whether it is signed.
    pub signed: bool,
    /// When its first signature expires, unix milliseconds (signed zones).
    pub signatures_expire_ms: Option<i64>,
    /// Milliseconds from now to then, below 0 once it has expired.
    pub signatures_left_ms: Option<i64>,
    /// Whether it has expired or expires within three days (what `weft check` warns of).
    pub expiring: bool,
    /// Where a secondary zone is transferred from; empty for a zone from a file.
    pub primaries: Vec<String>,
    /// Whether it is served (a secondary zone is not before its first transfer, nor
    /// once its copy expired).
    pub served: bool,
    /// What a secondary zone's last check with its primaries found (`current at ...`,
    /// `IXFR from ...: 1 record changed`, `failed: ...`); `None` before the first and for
    /// a zone from a file.
    pub check: Option<String>,
    /// Milliseconds since that check ended.
    pub checked_ago_ms: Option<i64>,
    /// Whether it failed (or the copy expired).
    pub check_failed: bool,
    /// Milliseconds until the next check (a NOTIFY may bring it sooner), below 0 while
    /// it is under way.
    pub next_check_in_ms: Option<i64>,
    /// Milliseconds until the copy held expires unless a primary confirms it.
    pub expires_in_ms: Option<i64>,
}

/// How long before a signature expires the page flags its zone: what `weft check` warns
/// of (`weft-gateway/src/services/dns_signed.rs`, `SOON`).
const EXPIRING: i64 = 3 * 24 * 3600 * 1000;

impl ZoneFigures {
    pub(crate) fn of(zone: ZoneSnapshot, now_ms: i64) -> Self {
        let refresh = zone.refresh.unwrap_or_default();
        let left = zone
            .signatures_expire_ms
            .map(|at| at.saturating_sub(now_ms));
        Self {
            zone: zone.zone,
            serial: zone.serial,
            records: zone.records,
            signed: zone.signed,
            signatures_expire_ms: zone.signatures_expire_ms,
            signatures_left_ms: left,
            expiring: left.is_some_and(|left| left < EXPIRING),
            primaries: zone.primaries,
            served: zone.served,
            check: refresh.outcome.clone(),
            checked_ago_ms: refresh.checked_ms.map(|at| now_ms.saturating_sub(at)),
            check_failed: refresh.failed,
            next_check_in_ms: refresh.next_check_ms.map(|at| at.saturating_sub(now_ms)),
            expires_in_ms: refresh.expires_ms.map(|at| at.saturating_sub(now_ms)),
        }
    }

    /// What the page says of a secondary zone's refresh: `current at 192.0.2.1:53, 12s
    /// ago; next in 1h 59m; expires in 13d 23h`, or `-` for a zone from a file.
    pub fn refresh(&self) -> String {
        if self.primaries.is_empty() {
            return "-".to_owned();
        }
        let age = |ms: i64| crate::fmt::age(&ms.unsigned_abs());
        let mut parts = vec![match (&self.check, self.checked_ago_ms) {
            (Some(check), Some(ago)) => format!("{check}, {} ago", age(ago)),
            _ => "not checked yet".to_owned(),
        }];
        match self.next_check_in_ms {
            Some(next) if next > 0 => parts.push(format!("next in {}", age(next))),
            Some(_) => parts.push("checking now".to_owned()),
            None => {}
        }
        match self.expires_in_ms {
            Some(left) if left >= 0 => parts.push(format!("expires in {}", age(left))),
            Some(past) => parts.push(format!("expired {} ago", age(past))),
            None => {}
        }
        parts.join("; ")
    }

    /// What the page says of where it comes from: `file`, or `from 192.0.2.1:53`, and
    /// for a secondary zone not served, why not.
    pub fn source(&self) -> String {
        match (self.primaries.is_empty(), self.served) {
            (true, _) => "file".to_owned(),
            (false, true) => format!("from {}", self.primaries.join(", ")),
            (false, false) => format!(
                "from {}: not served (no copy yet, or it expired)",
                self.primaries.join(", ")
            ),
        }
    }

    /// What the page says of its signatures: `in 29d 23h`, `expired 2d 1h ago`, or `-`.
    pub fn signatures(&self) -> String {
        match self.signatures_left_ms {
            None => "-".to_owned(),
            Some(left) if left >= 0 => format!("in {}", crate::fmt::age(&left.unsigned_abs())),
            Some(left) => format!("expired {} ago", crate::fmt::age(&left.unsigned_abs())),
        }
    }
}

/// A count since start and its rate over the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rate {
    /// The value counted (`A`, `NOERROR`).
    pub name: String,
    /// Since the process started.
    pub total: u64,
    /// Per second over the window.
    pub per_s: f64,
}

/// The forwarding cache's lookups.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cache {
    /// Lookups that found the answer, since start.
    pub hits: u64,
    /// Lookups that did not, since start.
    pub misses: u64,
    /// Hits over lookups in the window; `None` without a lookup.
    pub hit_ratio: Option<f64>,
}

/// One upstream's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Upstream {
    /// Its address.
    pub name: String,
    /// Whole answers it gave since start.
    pub answers: u64,
    /// Queries it left unanswered past the timeout, since start.
    pub timeouts: u64,
    /// Median round-trip time of its answers over the window, milliseconds.
    pub p50_ms: Option<f64>,
    /// The 99th percentile of the same.
    pub p99_ms: Option<f64>,
}

/// One recent query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecentQuery {
    /// When it was answered, unix milliseconds.
    pub at_ms: i64,
    /// Who asked.
    pub client: String,
    /// The name asked.
    pub name: String,
    /// Its type.
    pub qtype: String,
    /// The answer's code.
    pub rcode: String,
    /// From arrival to answer, milliseconds.
    pub latency_ms: f64,
    /// Where the answer came from: `zone`, `cache`, `upstream ADDRESS`, `refused`,
    /// `timeout`, `busy`, `malformed`, `upstream failed`.
    pub source: String,
    /// Read back from the query log rather than the service's memory.
    pub from_history: bool,
}

impl From<RecentRequest> for RecentQuery {
    fn from(r: RecentRequest) -> Self {
        Self {
            at_ms: r.at_ms,
            client: r.client,
            name: r.name,
            qtype: r.kind,
            rcode: r.status,
            latency_ms: r.latency_ms,
            source: r.source,
            from_history: false,
        }
    }
}

/// The figures of each DNS service in `history`'s window.
pub fn figures(
    history: &ViewHistory,
    state_views: &weft_telemetry::ServiceViews,
    now: i64,
    started: i64,
) -> Vec<DnsFigures> {
    history
        .measure(state_views, "dns", now, started)
        .into_iter()
        .map(|m| service(m, now))
        .collect()
}

fn service(m: Measured, now_ms: i64) -> DnsFigures {
    let Measured {
        service,
        now,
        before,
        secs,
    } = m;
    let before = before.unwrap_or_default();
    let rates = |name: &str| rates(&now.tallies, &before.tallies, name, secs);
    let qtypes = rates("qtype");
    let queries: u64 = qtypes.iter().map(|r| r.total).sum();
    let asked_before: u64 = before
        .tallies
        .iter()
        .filter(|t| t.name == "qtype")
        .flat_map(|t| t.counts.iter().map(|(_, n)| n))
        .sum();
    let (p50_ms, p99_ms) = percentiles(now.latency.as_ref(), before.latency.as_ref());
    DnsFigures {
        service,
        window_s: secs,
        queries,
        queries_per_s: queries.saturating_sub(asked_before) as f64 / secs,
        qtypes,
        rcodes: rates("rcode"),
        cache: cache(&now, &before),
        p50_ms,
        p99_ms,
        upstreams: upstreams(&now, &before),
        top_names: now.top,
        sampled: now.sampled.0,
        seen: now.sampled.1,
        recent: now.recent.into_iter().map(RecentQuery::from).collect(),
        zones: now
            .zones
            .into_iter()
            .map(|z| ZoneFigures::of(z, now_ms))
            .collect(),
    }
}

/// p50 and p99 of the answers recorded between `before` and `now`; none without `now`.
fn percentiles(now: Option<&Histogram>, before: Option<&Histogram>) -> (Option<f64>, Option<f64>) {
    match now {
        Some(h) => {
            let (_, p50, p99) = window_latency(h, before);
            (p50, p99)
        }
        None => (None, None),
    }
}

/// The cache's lookups since start, and its hit ratio between `before` and `now`.
fn cache(now: &ServiceSnapshot, before: &ServiceSnapshot) -> Cache {
    let counter = |s: &ServiceSnapshot, name: &str| {
        s.counters
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| *v)
    };
    let (hits, misses) = (counter(now, "cache_hits"), counter(now, "cache_misses"));
    let (window_hits, window_misses) = (
        hits.saturating_sub(counter(before, "cache_hits")),
        misses.saturating_sub(counter(before, "cache_misses")),
    );
    let lookups = window_hits + window_misses;
    Cache {
        hits,
        misses,
        hit_ratio: (lookups > 0).then(|| window_hits as f64 / lookups as f64),
    }
}

/// Each upstream's answers and timeouts since start, and its latency between `before`
/// and `now`.
fn upstreams(now: &ServiceSnapshot, before: &ServiceSnapshot) -> Vec<Upstream> {
    now.upstreams
        .iter()
        .map(|u| {
            let was = before
                .upstreams
                .iter()
                .find(|b| b.url == u.url)
                .and_then(|b| b.latency.as_ref());
            let (p50_ms, p99_ms) = percentiles(u.latency.as_ref(), was);
            Upstream {
                name: u.name.clone(),
                answers: u.requests,
                timeouts: u.timeouts.unwrap_or(0),
                p50_ms,
                p99_ms,
            }
        })
        .collect()
}

/// Each value of tally `name` seen since start, with its rate over the window, busiest
/// first.
fn rates(now: &[Tally], before: &[Tally], name: &str, secs: f64) -> Vec<Rate> {
    let Some(tally) = now.iter().find(|t| t.name == name) else {
        return Vec::new();
    };
    let was = before.iter().find(|t| t.name == name);
    let mut out: Vec<Rate> = tally
        .counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(value, n)| {
            let earlier = was
                .and_then(|t| t.counts.iter().find(|(v, _)| v == value))
                .map_or(0, |(_, n)| *n);
            Rate {
                name: value.clone(),
                total: *n,
                per_s: n.saturating_sub(earlier) as f64 / secs,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.per_s
            .total_cmp(&a.per_s)
            .then(b.total.cmp(&a.total))
            .then_with(|| a.name.cmp(&b.name))
    });
    out
}

/// The DNS services' figures now, recent queries filled in from history where the
/// service's own memory is short, and what history could not give.
pub(crate) async fn dns(state: &DashboardState) -> (Vec<DnsFigures>, Option<String>) {
    let now = now_ms();
    let started = now - i64::try_from(state.started.elapsed().as_millis()).unwrap_or(0);
    let mut all = figures(&state.dns, state.hub.views(), now, started);
    let mut history_error = None;
    let Some(store) = &state.store else {
        return (all, None);
    };
    for figures in &mut all {
        if figures.recent.len() >= RECENT {
            continue;
        }
        // Only what the live ring cannot have: queries before the oldest it holds.
        let before = figures.recent.last().map_or(now, |q| q.at_ms);
        let want = RECENT - figures.recent.len();
        match store.recent_queries(&figures.service, before, want).await {
            Ok(rows) => figures.recent.extend(rows.into_iter().map(|r| RecentQuery {
                at_ms: r.at_ms,
                client: r.client,
                name: r.name,
                qtype: r.qtype,
                rcode: r.rcode,
                latency_ms: r.latency_us as f64 / 1e3,
                source: r.source,
                from_history: true,
            })),
            Err(e) => {
                history_error = Some(crate::history::unavailable(state, &e));
            }
        }
    }
    (all, history_error)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use weft_telemetry::ServiceViews;
    use weft_telemetry::views::{ServiceView, UpstreamSnapshot};

    use super::*;

    /// A DNS view whose figures the test sets.
    struct Fixed(Mutex<ServiceSnapshot>);

    impl ServiceView for Fixed {
        fn snapshot(&self) -> ServiceSnapshot {
            self.0.lock().unwrap().clone()
        }
    }

    fn snapshot(a: u64, hits: u64, misses: u64) -> ServiceSnapshot {
        ServiceSnapshot {
            tallies: vec![
                Tally {
                    name: "qtype",
                    counts: vec![("A".into(), a), ("MX".into(), 0), ("TXT".into(), 1)],
                },
                Tally {
                    name: "rcode",
                    counts: vec![("NOERROR".into(), a + 1)],
                },
            ],
            counters: vec![("cache_hits", hits), ("cache_misses", misses)],
            upstreams: vec![UpstreamSnapshot {
                name: "127.0.0.1:53".into(),
                url: "127.0.0.1:53".into(),
                requests: misses,
                timeouts: Some(1),
                ..UpstreamSnapshot::default()
            }],
            ..ServiceSnapshot::default()
        }
    }

    #[test]
    fn rates_and_the_hit_ratio_cover_the_window_and_unasked_types_are_left_out() {
        let views = ServiceViews::default();
        let view = Arc::new(Fixed(Mutex::new(snapshot(60, 0, 0))));
        views.set("dns", "dns", view.clone());
        let history = ViewHistory::with_window(WINDOW);
        let first = &figures(&history, &views, 60_000, 0)[0];
        assert_eq!(first.queries, 61);
        assert!((first.queries_per_s - 61.0 / 60.0).abs() < 1e-9);
        let names: Vec<_> = first.qtypes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["A", "TXT"], "busiest first, none never asked");
        assert_eq!(first.cache.hit_ratio, None, "no lookup yet");
        for at in (61_000..=120_000).step_by(1000) {
            figures(&history, &views, at, 0);
        }
        *view.0.lock().unwrap() = snapshot(180, 3, 1);
        let later = &figures(&history, &views, 120_000, 0)[0];
        assert_eq!(later.qtypes[0].name, "A");
        assert!((later.qtypes[0].per_s - 2.0).abs() < 1e-9, "{later:?}");
        assert_eq!(later.cache.hit_ratio, Some(0.75));
        assert_eq!((later.cache.hits, later.cache.misses), (3, 1));
        assert_eq!(later.upstreams[0].timeouts, 1);
        assert_eq!(later.rcodes[0].name, "NOERROR");
    }
}
