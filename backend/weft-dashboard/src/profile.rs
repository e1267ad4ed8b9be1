//! The reactor profile: `/profile` and `/api/profile`.
//!
//! Which callback sites (Deferred callbacks, delayed calls, protocol methods, task
//! polls) used the reactor's time over the last fifteen minutes, from the reactor's own
//! per-site table ([`weft::reactor::profile::snapshot`]), drawn as a stacked series in
//! server-rendered SVG; and the reactor-lag spikes, each with the call that held the
//! reactor, from history (so a spike is still explained after a restart) and from the
//! hub for those not written yet.

use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use weft::reactor::profile::{self, BUCKET_SECS, BUCKETS, ProfileSnapshot};
use weft_telemetry::LagSpike;

use crate::state::DashboardState;

/// Sites listed unless `?limit=` says otherwise.
const DEFAULT_SITES: usize = 20;
/// Sites drawn as their own band of the chart; the rest are one "other" band.
const BANDS: usize = 6;
/// Spikes listed.
const SPIKES: u32 = 50;
/// Band colours, one per drawn site, then "other".
const COLOURS: [&str; BANDS + 1] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#bab0ac",
];

/// `?limit=N`: how many sites.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ProfileQuery {
    limit: Option<usize>,
}

/// `/api/profile`.
#[derive(Debug, Serialize)]
pub struct ProfileView {
    /// Seconds per bucket of each site's series.
    pub bucket_secs: u64,
    /// The unix second the first bucket starts at; the series are oldest first.
    pub first_bucket_start: u64,
    /// The sites, busiest first.
    pub sites: Vec<SiteView>,
    /// Calls per bucket at sites the reactor had no row left for.
    pub overflow_calls: Vec<u64>,
    /// Reactor-lag spikes, newest first, each with what was running.
    pub lag_spikes: Vec<SpikeView>,
    /// Set when history could not be read (`lag_spikes` then holds only the recent ones).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_error: Option<String>,
}

/// One site's share of the reactor.
#[derive(Debug, Serialize)]
pub struct SiteView {
    /// `file:line`, or `Type::method` for a protocol method.
    pub site: String,
    /// `callback`, `timer`, `protocol` or `poll`.
    pub kind: &'static str,
    /// Calls in the window.
    pub count: u64,
    /// Reactor time they used, milliseconds.
    pub busy_ms: f64,
    /// Their mean, milliseconds.
    pub per_call_ms: f64,
    /// Milliseconds per bucket, oldest first.
    pub series_ms: Vec<f64>,
}

/// A reactor-lag spike as history keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SpikeView {
    /// When, unix milliseconds.
    pub at_ms: i64,
    /// How late the reactor was, milliseconds.
    pub lag_ms: f64,
    /// The longest call since the probe before: what held the reactor.
    pub site: Option<String>,
    /// What kind of call it was.
    pub site_kind: Option<String>,
    /// How long it ran, milliseconds.
    pub took_ms: Option<f64>,
}

impl From<LagSpike> for SpikeView {
    fn from(s: LagSpike) -> Self {
        Self {
            at_ms: s.at_ms,
            lag_ms: s.lag_ms,
            site: s.site,
            site_kind: s.site_kind.map(str::to_owned),
            took_ms: s.took_ms,
        }
    }
}

fn ms(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

fn sites(snapshot: &ProfileSnapshot, limit: usize) -> Vec<SiteView> {
    snapshot
        .sites
        .iter()
        .take(limit)
        .map(|p| SiteView {
            site: p.site.to_string(),
            kind: p.kind.as_str(),
            count: p.count,
            busy_ms: p.busy.as_secs_f64() * 1e3,
            per_call_ms: p.busy.as_secs_f64() * 1e3 / p.count.max(1) as f64,
            series_ms: p.series_nanos.iter().map(|n| ms(*n)).collect(),
        })
        .collect()
}

/// The spikes history holds, with the hub's recent ones not written yet in front.
async fn spikes(state: &DashboardState) -> (Vec<SpikeView>, Option<String>) {
    let recent: Vec<SpikeView> = state.hub.lag_spikes().into_iter().map(Into::into).collect();
    let Some(store) = &state.store else {
        return (recent, None);
    };
    match store.recent_events("reactor_lag", SPIKES).await {
        Ok(rows) => {
            let stored: Vec<SpikeView> = rows
                .iter()
                .filter_map(|r| serde_json::from_str(&r.payload_json).ok())
                .collect();
            let newest = stored.first().map_or(i64::MIN, |s| s.at_ms);
            let mut all: Vec<SpikeView> = recent.into_iter().filter(|s| s.at_ms > newest).collect();
            all.extend(stored);
            all.truncate(SPIKES as usize);
            (all, None)
        }
        Err(e) => (recent, Some(crate::history::unavailable(state, &e))),
    }
}

async fn view(state: &DashboardState, limit: usize) -> ProfileView {
    let snapshot = profile::snapshot();
    let (lag_spikes, history_error) = spikes(state).await;
    ProfileView {
        bucket_secs: BUCKET_SECS,
        first_bucket_start: snapshot.last_bucket_start - (BUCKETS as u64 - 1) * BUCKET_SECS,
        sites: sites(&snapshot, limit),
        overflow_calls: snapshot.overflow_calls,
        lag_spikes,
        history_error,
    }
}

pub(crate) async fn api(
    State(state): State<DashboardState>,
    crate::error::Query(q): crate::error::Query<ProfileQuery>,
) -> Json<ProfileView> {
    Json(view(&state, q.limit.unwrap_or(DEFAULT_SITES)).await)
}

/// One rectangle of the stacked chart.
pub(crate) struct Bar {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    colour: &'static str,
    title: String,
}

/// A band's key entry.
pub(crate) struct Band {
    colour: &'static str,
    label: String,
}

/// Chart size in SVG units; the page scales it to its width.
const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 200.0;

/// Stacks each bucket's busiest sites as bars, in share of the bucket's wall time.
fn chart(sites: &[SiteView]) -> (Vec<Bar>, Vec<Band>, f64) {
    let mut bands: Vec<(String, Vec<f64>)> = sites
        .iter()
        .take(BANDS)
        .map(|s| (s.site.clone(), s.series_ms.clone()))
        .collect();
    if sites.len() > BANDS {
        let mut other = vec![0.0; BUCKETS];
        for s in &sites[BANDS..] {
            for (o, v) in other.iter_mut().zip(&s.series_ms) {
                *o += v;
            }
        }
        bands.push(("other sites".to_owned(), other));
    }
    let totals: Vec<f64> = (0..BUCKETS)
        .map(|i| bands.iter().map(|(_, s)| s[i]).sum())
        .collect();
    // Scale to the busiest bucket, but never below 1% of the reactor, so an idle
    // reactor's chart is not all noise.
    let bucket_ms = (BUCKET_SECS * 1000) as f64;
    let top = totals.iter().copied().fold(bucket_ms / 100.0, f64::max);
    let w = WIDTH / BUCKETS as f64;
    let mut bars = Vec::new();
    for i in 0..BUCKETS {
        let mut y = HEIGHT;
        for (b, (label, series)) in bands.iter().enumerate() {
            let v = series[i];
            if v <= 0.0 {
                continue;
            }
            let h = v / top * HEIGHT;
            y -= h;
            bars.push(Bar {
                x: i as f64 * w,
                y,
                w: w * 0.9,
                h,
                colour: COLOURS[b],
                title: format!("{label}: {v:.1} ms"),
            });
        }
    }
    let key = bands
        .iter()
        .enumerate()
        .map(|(b, (label, _))| Band {
            colour: COLOURS[b],
            label: label.clone(),
        })
        .collect();
    (bars, key, top / bucket_ms * 100.0)
}

#[derive(Template)]
#[template(path = "profile.html")]
struct ProfilePage {
    /// Which navigation link the layout marks as the current page.
    page: &'static str,
    view: ProfileView,
    bars: Vec<Bar>,
    bands: Vec<Band>,
    /// The share of the reactor the chart's top line stands for, percent.
    top_percent: f64,
    width: f64,
    height: f64,
    /// The window, minutes.
    window_min: u64,
    /// Calls at sites beyond the table's capacity.
    overflow: u64,
    history_error: Option<String>,
}

pub(crate) async fn page(
    State(state): State<DashboardState>,
    crate::pages::PageQuery(q): crate::pages::PageQuery<ProfileQuery>,
) -> Response {
    let view = view(&state, q.limit.unwrap_or(DEFAULT_SITES)).await;
    let (bars, bands, top_percent) = chart(&view.sites);
    crate::pages::html(&ProfilePage {
        page: "profile",
        history_error: view.history_error.clone(),
        window_min: BUCKETS as u64 * BUCKET_SECS / 60,
        overflow: view.overflow_calls.iter().sum(),
        view,
        bars,
        bands,
        top_percent,
        width: WIDTH,
        height: HEIGHT,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(name: &str, per_bucket: f64) -> SiteView {
        SiteView {
            site: name.into(),
            kind: "callback",
            count: 1,
            busy_ms: per_bucket * BUCKETS as f64,
            per_call_ms: per_bucket,
            series_ms: vec![per_bucket; BUCKETS],
        }
    }

    #[test]
    fn the_chart_stacks_the_busiest_sites_and_folds_the_rest_into_one_band() {
        let sites: Vec<SiteView> = (0..BANDS + 3)
            .map(|i| site(&format!("s{i}.rs:1"), 100.0))
            .collect();
        let (bars, bands, top) = chart(&sites);
        assert_eq!(bands.len(), BANDS + 1);
        assert_eq!(bands[BANDS].label, "other sites");
        assert_eq!(bars.len(), BUCKETS * (BANDS + 1));
        // Each bucket's stack reaches the top: it is the busiest bucket.
        let first: f64 = bars.iter().filter(|b| b.x == 0.0).map(|b| b.h).sum();
        assert!((first - HEIGHT).abs() < 1e-6);
        // 9 sites of 100 ms in a 10 s bucket: the top line is 9% of the reactor.
        assert!((top - 9.0).abs() < 1e-9, "{top}");
    }
}
