//! The HTML pages: askama templates (auto-escaped) filled from [`crate::data`].
//!
//! Each page renders complete on the server, so it reads without JavaScript; the scripts
//! under `frontend/static/` then keep it live from `/ws`.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use weft::defer::{DeferredState, StepStatus};
use weft_store::{DeferredDetail, DeferredFilter, StepRecord};
use weft_telemetry::ChainWaits;

use crate::cards::{Card, ProcessCard};
use crate::data::{
    self, ConnectionQuery, ConnectionView, DeferredQuery, DeferredView, DetailQuery, Page,
    ServiceView,
};
use crate::error::ApiError;
use crate::fmt;
use crate::instances::InstanceFilter;
use crate::reactors::{self, ReactorColumn};
use crate::sort::{ConnectionOrder, SortKey};
use crate::state::DashboardState;
use crate::views::{self, ServiceFigures};

/// A service's configuration, indented.
pub(crate) fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Renders `t`, or a plain 500 (logged) if the template fails.
pub(crate) fn html(t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => Html(body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    /// Which navigation link the layout marks as the current page.
    page: &'a str,
    title: String,
    message: String,
}

/// A query string deserialized into `T` as [`crate::error::Query`] does, but refused with
/// the error page (400, naming the parameter): a page's bad link gets a page, as an API
/// call gets JSON.
pub(crate) struct PageQuery<T>(pub(crate) T);

impl<T, S> axum::extract::FromRequestParts<S> for PageQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        crate::error::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|crate::error::Query(q)| Self(q))
            .map_err(|e| error_page("none", e))
    }
}

/// A page-shaped answer for an [`ApiError`].
pub(crate) fn error_page(page: &str, e: ApiError) -> Response {
    e.log();
    let status = e.status();
    let mut response = html(&ErrorPage {
        page,
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        message: e.to_string(),
    });
    *response.status_mut() = status;
    response
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    /// Which navigation link the layout marks as the current page.
    page: &'static str,
    /// The process's own card, where `/proc` can be read.
    process: Option<ProcessCard>,
    cards: Vec<Card>,
    history_error: Option<String>,
}

pub(crate) async fn overview(State(state): State<DashboardState>) -> Response {
    let (services, history_error) = data::services(&state).await;
    html(&Overview {
        page: "overview",
        process: state
            .series
            .process()
            .map(|p| ProcessCard::new(&p, data::now_ms())),
        cards: services.into_iter().map(Card::new).collect(),
        history_error,
    })
}

#[derive(Template)]
#[template(path = "connections.html")]
struct Connections {
    /// Which navigation link the layout marks as the current page.
    page: &'static str,
    rows: Page<ConnectionView>,
    service_names: Vec<String>,
    service: String,
    state: String,
    peer: String,
    /// The `instance` filter, offered when history holds more than one gateway's rows.
    instances: InstanceFilter,
    /// History is shared by a fleet: rows show the instance that served them.
    fleet: bool,
    /// The reactor column and filter.
    reactors: ReactorColumn,
    /// Each column's sort link, built by the server so sorting works without the script.
    headers: Vec<SortHeader>,
    /// `sort` and `dir` as hidden form fields, so filtering keeps the order.
    sort_fields: Vec<(&'static str, &'static str)>,
    history_error: Option<String>,
}

impl Connections {
    fn is_service(&self, name: &str) -> bool {
        self.service == name
    }
}

/// A header of the connections table: a link to the list sorted by its column, so sorting
/// works without the script (which intercepts the click and sorts in place).
struct SortHeader {
    key: &'static str,
    label: &'static str,
    /// Sorted as numbers by the script, not as text.
    numeric: bool,
    /// Right-aligned, as the byte columns are.
    align_right: bool,
    /// `asc` or `desc` on the column sorted now.
    dir: Option<&'static str>,
    href: String,
}

impl SortHeader {
    fn aria_sort(&self) -> &'static str {
        if self.dir == Some("asc") {
            "ascending"
        } else {
            "descending"
        }
    }
}

/// `/connections` with `q`'s filters in `order`; the defaults are left out of the URL.
fn connections_href(q: &ConnectionQuery, order: ConnectionOrder) -> String {
    let limit = q.limit.map(|n| n.to_string());
    let mut pairs: Vec<(&str, &str)> = [
        ("service", q.service.as_deref()),
        ("state", q.state.as_deref()),
        ("peer", q.peer.as_deref()),
        ("instance", q.instance.as_deref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k, v.filter(|v| !v.is_empty())?)))
    .collect();
    let reactor = q.reactor.map(|r| r.to_string());
    if let Some(r) = &reactor {
        pairs.push(("reactor", r));
    }
    for (k, v) in order.query_pairs() {
        pairs.push((k, v));
    }
    if let Some(n) = &limit {
        pairs.push(("limit", n));
    }
    let pairs: Vec<String> = pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={}", fmt::url(v)))
        .collect();
    if pairs.is_empty() {
        "/connections".into()
    } else {
        format!("/connections?{}", pairs.join("&"))
    }
}

fn sort_headers(q: &ConnectionQuery, order: ConnectionOrder) -> Vec<SortHeader> {
    SortKey::ALL
        .into_iter()
        .map(|key| SortHeader {
            key: key.as_str(),
            label: match key {
                SortKey::Age => "age",
                SortKey::BytesIn => "in",
                SortKey::BytesOut => "out",
                _ => key.as_str(),
            },
            numeric: key.numeric(),
            align_right: matches!(key, SortKey::BytesIn | SortKey::BytesOut),
            dir: (order.key == key).then(|| order.dir.as_str()),
            href: connections_href(q, order.toggled(key)),
        })
        .collect()
}

pub(crate) async fn connections(
    State(state): State<DashboardState>,
    PageQuery(q): PageQuery<ConnectionQuery>,
) -> Response {
    let result = async {
        let order = q.order()?;
        // Open connections alone are live: the filter's names must not wait on history.
        let live = q.state.as_deref().map(str::trim) == Some("open");
        let instance = q.instance.as_deref();
        // The rows and the two filters' choices are read together: one after another,
        // a history that does not answer would hold the page for three of its timeouts.
        let (rows, (service_names, services_note), (instances, instances_note)) = tokio::join!(
            data::connections(&state, &q),
            async {
                if live {
                    (data::live_service_names(&state), None)
                } else {
                    let (services, note) = data::services(&state).await;
                    (services.into_iter().map(|s| s.name).collect(), note)
                }
            },
            async {
                if live {
                    (InstanceFilter::asked(&state, instance), None)
                } else {
                    InstanceFilter::new(&state, instance).await
                }
            },
        );
        let mut rows = rows?;
        rows.history_error = rows
            .history_error
            .take()
            .or(services_note)
            .or(instances_note);
        Ok::<_, ApiError>((order, rows, service_names, instances))
    };
    match result.await {
        Ok((order, mut rows, service_names, instances)) => html(&Connections {
            page: "connections",
            reactors: ReactorColumn::new(
                &state.hub,
                rows.items.iter().map(|c| c.reactor),
                q.reactor,
            ),
            history_error: rows.history_error.take(),
            rows,
            service_names,
            headers: sort_headers(&q, order),
            sort_fields: order.query_pairs().collect(),
            service: q.service.unwrap_or_default(),
            state: q.state.unwrap_or_default(),
            peer: q.peer.unwrap_or_default(),
            instances,
            fleet: crate::history::shared(&state),
        }),
        Err(e) => error_page("connections", e),
    }
}

/// One line of a connection's timeline.
struct Moment {
    at_ms: i64,
    what: String,
    /// The Deferred this moment is about, linked from the timeline.
    deferred: Option<i64>,
}

#[derive(Template)]
#[template(path = "connection.html")]
struct Connection {
    /// Which navigation link the layout marks as the current page.
    page: &'static str,
    c: ConnectionView,
    timeline: Vec<Moment>,
    deferreds: Vec<DeferredView>,
    /// Chains of other connections pending now that wait on this one.
    waited_on_by: Vec<DeferredView>,
    /// Its chains run on its reactor: no column of their own.
    reactors: ReactorColumn,
    /// How its chains link to their pages: as its instance's.
    instances: InstanceFilter,
    history_error: Option<String>,
}

fn timeline(c: &ConnectionView, deferreds: &[DeferredView]) -> Vec<Moment> {
    // A UDP port has no one peer (`0.0.0.0:0`): it was opened, not opened from somewhere.
    let what = match c.peer.as_str() {
        "0.0.0.0:0" | "[::]:0" => "opened (a UDP port, with no single peer)".to_owned(),
        peer => format!("opened from {peer}"),
    };
    let mut t = vec![Moment {
        at_ms: c.opened_at_ms,
        what,
        deferred: None,
    }];
    for d in deferreds {
        let r = &d.record;
        t.push(Moment {
            at_ms: r.created_at_ms,
            what: format!("created at {}", r.site),
            deferred: Some(r.id),
        });
        // A chain that fired and then waited on a Deferred a step returned ended later;
        // rows written before history kept the end have the firing only.
        match (r.fired_at_ms, r.ended_at_ms) {
            (Some(fired), Some(ended)) if ended > fired => {
                t.push(Moment {
                    at_ms: fired,
                    what: "fired".to_owned(),
                    deferred: Some(r.id),
                });
                t.push(Moment {
                    at_ms: ended,
                    what: format!("ended, {}", r.state),
                    deferred: Some(r.id),
                });
            }
            (Some(at), _) => t.push(Moment {
                at_ms: at,
                what: format!("fired, {}", r.state),
                deferred: Some(r.id),
            }),
            (None, _) => {}
        }
    }
    if let Some(at) = c.closed_at_ms {
        t.push(Moment {
            at_ms: at,
            what: format!("closed ({})", c.close_reason.as_deref().unwrap_or("?")),
            deferred: None,
        });
    }
    t.sort_by_key(|m| m.at_ms);
    t
}

pub(crate) async fn connection(
    State(state): State<DashboardState>,
    Path(id): Path<String>,
    PageQuery(q): PageQuery<DetailQuery>,
) -> Response {
    let result = async {
        let id = data::parse_id(&id).ok_or(ApiError::NotFound("connection"))?;
        let instance = q.instance.as_deref();
        let (c, (deferreds, history_error)) = tokio::join!(
            data::connection(&state, id, instance),
            data::connection_deferreds(&state, id, instance),
        );
        let c = c?.ok_or(ApiError::NotFound("connection"))?;
        Ok::<_, ApiError>((c, deferreds, history_error))
    };
    match result.await {
        Ok((c, deferreds, history_error)) => html(&Connection {
            page: "connection",
            timeline: timeline(&c, &deferreds),
            waited_on_by: data::deferreds_waiting_on(&state, c.id, q.instance.as_deref()),
            reactors: ReactorColumn::default(),
            instances: InstanceFilter::asked(&state, None),
            c,
            deferreds,
            history_error,
        }),
        Err(e) => error_page("connection", e),
    }
}

#[derive(Template)]
#[template(path = "deferreds.html")]
struct Deferreds {
    /// Which navigation link the layout marks as the current page.
    page: &'static str,
    tabs: [&'static str; DeferredFilter::ALL.len()],
    tab: String,
    service: String,
    /// The reactor column and filter.
    reactors: ReactorColumn,
    /// The `instance` filter, offered when history holds more than one gateway's rows.
    instances: InstanceFilter,
    deferreds: Vec<DeferredView>,
    /// Rows the limit left out, shown as "N more not shown".
    hidden: usize,
    history_error: Option<String>,
}

impl Deferreds {
    fn is_tab(&self, t: &str) -> bool {
        self.tab == t
    }
}

pub(crate) async fn deferreds(
    State(state): State<DashboardState>,
    PageQuery(mut q): PageQuery<DeferredQuery>,
) -> Response {
    let tab = q
        .state
        .get_or_insert_with(|| DeferredFilter::Pending.as_str().into())
        .clone();
    let ((instances, note), page) = tokio::join!(
        InstanceFilter::new(&state, q.instance.as_deref()),
        data::deferreds(&state, &q),
    );
    match page {
        Ok(page) => html(&Deferreds {
            instances,
            page: "deferreds",
            tabs: DeferredFilter::ALL.map(DeferredFilter::as_str),
            tab,
            service: q.service.unwrap_or_default(),
            reactors: ReactorColumn::new(
                &state.hub,
                page.items
                    .iter()
                    .map(|d| reactors::of_record(d.record.reactor)),
                q.reactor,
            ),
            deferreds: page.items,
            hidden: page.hidden,
            history_error: page.history_error.or(note),
        }),
        Err(e) => error_page("deferreds", e),
    }
}

/// A step with its place on the waterfall.
struct StepBar {
    step: StepRecord,
    /// Where the bar starts, in percent of the span from the first step run to the last one's end.
    offset_pct: String,
    /// The bar's width in the same percent, at least 0.5 so an instant step stays visible.
    width_pct: String,
    /// Added and not run yet: not on the time axis.
    queued: bool,
    /// The step the chain waits at.
    here: bool,
}

impl StepBar {
    /// The row's classes: `queued`, `here`, both or none.
    fn row_class(&self) -> &'static str {
        match (self.queued, self.here) {
            (true, true) => "queued here",
            (true, false) => "queued",
            (false, true) => "here",
            (false, false) => "",
        }
    }
}

/// Lays the steps that ran out on one time axis from the first one's start to the last
/// one's end; the queued ones follow, off the axis.
fn waterfall(steps: Vec<StepRecord>, waiting_at: Option<i64>) -> Vec<StepBar> {
    let ran = || {
        steps
            .iter()
            .filter(|s| s.status() != Some(StepStatus::Queued))
    };
    let start = ran().map(|s| s.started_at_us).min().unwrap_or(0);
    let end = ran()
        .map(|s| s.started_at_us + s.duration_us.unwrap_or(0))
        .max()
        .unwrap_or(0);
    let span = (end - start).max(1) as f64;
    steps
        .into_iter()
        .map(|step| {
            let queued = step.status() == Some(StepStatus::Queued);
            let offset = if queued {
                0.0
            } else {
                (step.started_at_us - start) as f64 / span * 100.0
            };
            let width = (step.duration_us.unwrap_or(0) as f64 / span * 100.0).max(0.5);
            StepBar {
                offset_pct: format!("{:.2}", offset.min(99.5)),
                width_pct: format!("{:.2}", width.min(100.0 - offset).max(0.5)),
                queued,
                here: waiting_at == Some(step.idx),
                step,
            }
        })
        .collect()
}

/// Where an unfinished chain stands, in words: `waiting before step 3 of 5 (...)`.
fn waiting_text(d: &DeferredDetail, at: i64) -> Option<String> {
    let step = d.steps.iter().find(|s| s.idx == at)?;
    let of = d.steps.last().map_or(0, |s| s.idx + 1);
    let place = format!(
        "step {} of {of} ({} added at {})",
        at + 1,
        step.kind,
        step.site
    );
    Some(match d.deferred.deferred_state() {
        Some(DeferredState::Waiting) => match d.deferred.waiting_on {
            Some(child) => format!("Waiting on Deferred {child} at {place}"),
            None => format!("Waiting at {place}"),
        },
        Some(DeferredState::Paused) => format!("Paused before {place}"),
        _ => format!("Not fired yet: waiting before {place}"),
    })
}

#[derive(Template)]
#[template(path = "deferred.html")]
struct Deferred {
    /// Which navigation link the layout marks as the current page.
    page: &'static str,
    age_ms: u64,
    steps: Vec<StepBar>,
    /// Where the chain stands, when it waits at a step.
    waiting: Option<String>,
    /// The locks it waits on or holds, from the wait-for graph.
    waits: Option<ChainWaits>,
    /// What its links to the chains and connections of its instance add (`?instance=`
    /// for another gateway's).
    scope: String,
    d: DeferredDetail,
    history_error: Option<String>,
}

pub(crate) async fn deferred(
    State(state): State<DashboardState>,
    Path(id): Path<String>,
    PageQuery(q): PageQuery<DetailQuery>,
) -> Response {
    let Some(id) = data::parse_id(&id) else {
        return error_page("deferred", ApiError::NotFound("deferred"));
    };
    match data::deferred(&state, id, q.instance.as_deref()).await {
        Ok((Some(mut d), history_error)) => {
            let at = data::waiting_at(&d);
            let waiting = at.and_then(|at| waiting_text(&d, at));
            let steps = waterfall(std::mem::take(&mut d.steps), at);
            let age_ms = DeferredView::new(d.deferred.clone(), data::now_ms()).age_ms;
            html(&Deferred {
                page: "deferred",
                age_ms,
                steps,
                waiting,
                waits: data::chain_waits(&state, &d),
                scope: InstanceFilter::asked(&state, None).query(&d.deferred.instance),
                d,
                history_error,
            })
        }
        Ok((None, _)) => error_page("deferred", ApiError::NotFound("deferred")),
        Err(e) => error_page("deferred", e),
    }
}

#[derive(Template)]
#[template(path = "services.html")]
struct Services {
    /// Which navigation link the layout marks as the current page.
    page: &'static str,
    services: Vec<ServiceView>,
    history_error: Option<String>,
}

pub(crate) async fn services(State(state): State<DashboardState>) -> Response {
    let (services, history_error) = data::services(&state).await;
    html(&Services {
        page: "services",
        services,
        history_error,
    })
}

#[derive(Template)]
#[template(path = "http.html")]
struct Http {
    /// Which navigation link the layout marks as the current page.
    page: &'static str,
    services: Vec<ServiceFigures>,
    /// The seconds rates and percentiles were measured over.
    window_s: u64,
}

/// The seconds figures measured now cover: the window, or less (or more) when the views
/// were last looked at less (or more) than a window ago; `window` with no service.
fn measured_over(windows: impl Iterator<Item = f64>, window: std::time::Duration) -> u64 {
    windows
        .fold(None, |longest: Option<f64>, w| {
            Some(longest.map_or(w, |l| l.max(w)))
        })
        .map_or(window.as_secs(), |w| w.round().max(1.0) as u64)
}

pub(crate) async fn http(State(state): State<DashboardState>) -> Response {
    let services = views::http(&state);
    let window_s = measured_over(services.iter().map(|s| s.window_s), views::WINDOW);
    html(&Http {
        page: "http",
        services,
        window_s,
    })
}

#[derive(Template)]
#[template(path = "dns.html")]
struct Dns {
    /// Which navigation link the layout marks as the current page.
    page: &'static str,
    services: Vec<crate::dns::DnsFigures>,
    /// The seconds rates, ratios and percentiles were measured over.
    window_s: u64,
    history_error: Option<String>,
}

pub(crate) async fn dns(State(state): State<DashboardState>) -> Response {
    let (services, history_error) = crate::dns::dns(&state).await;
    let window_s = measured_over(services.iter().map(|s| s.window_s), crate::dns::WINDOW);
    html(&Dns {
        page: "dns",
        services,
        window_s,
        history_error,
    })
}

/// The answer for any path no route matches: JSON under `/api/`, a page elsewhere.
pub(crate) async fn not_found(uri: Uri) -> Response {
    if uri.path().starts_with("/api/") {
        return ApiError::NotFound("page").into_response();
    }
    error_page("none", ApiError::NotFound("page"))
}

#[derive(Template)]
#[template(path = "login.html")]
pub(crate) struct Login {
    pub(crate) next: String,
    pub(crate) failed: bool,
    /// Seconds to wait, for a peer that tried too many wrong tokens.
    pub(crate) wait: Option<u64>,
}

impl Login {
    pub(crate) fn response(self, status: StatusCode) -> Response {
        let mut r = html(&self);
        *r.status_mut() = status;
        r
    }
}

/// The waterfall's offsets and widths, for tests.
#[cfg(test)]
pub(crate) fn tests_waterfall(steps: Vec<StepRecord>) -> Vec<(String, String)> {
    waterfall(steps, None)
        .into_iter()
        .map(|b| (b.offset_pct, b.width_pct))
        .collect()
}
