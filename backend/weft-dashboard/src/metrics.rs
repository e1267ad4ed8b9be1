//! `/metrics`: everything on the hub's registry, in Prometheus' text format; and the
//! dashboard's own counters, registered there: what it refused and history it could not
//! read.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus::{IntCounterVec, Opts, Registry};

use crate::DashboardState;

/// The text exposition format's content type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(crate) async fn metrics(State(state): State<DashboardState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, TEXT_FORMAT)],
        state.hub.encode_metrics(),
    )
}

/// Why a request was refused (the `reason` of `weft_dashboard_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its `Host` is not one of the dashboard's names.
    Host,
    /// It lacked the token.
    Token,
    /// A cross-site action, login or feed request.
    CrossSite,
}

impl Refusal {
    const ALL: [Self; 3] = [Self::Host, Self::Token, Self::CrossSite];

    fn as_str(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Token => "token",
            Self::CrossSite => "cross_site",
        }
    }
}

/// Why history could not be read (the `reason` of `weft_dashboard_history_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HistoryFailure {
    /// Another connection holds the file locked, or every reader is busy.
    Busy,
    /// Any other failure; the cause is logged.
    Failed,
}

impl HistoryFailure {
    fn as_str(self) -> &'static str {
        match self {
            Self::Busy => "busy",
            Self::Failed => "failed",
        }
    }
}

/// The dashboard's counters. Every label value exists from the start, so a scrape shows
/// zeros rather than nothing.
#[derive(Debug, Clone)]
pub struct DashboardMetrics {
    refused: IntCounterVec,
    history_errors: IntCounterVec,
}

impl DashboardMetrics {
    /// The counters, registered on `registry`. If they are there already (a second
    /// dashboard on one hub), they are kept unregistered and say so in the log.
    pub fn new(registry: &Registry) -> Self {
        let vec = |name: &str, help: &str| {
            IntCounterVec::new(Opts::new(name, help), &["reason"]).expect("a valid metric")
        };
        let m = Self {
            refused: vec(
                "weft_dashboard_refused_total",
                "Dashboard requests refused, by reason (host, token, cross_site).",
            ),
            history_errors: vec(
                "weft_dashboard_history_errors_total",
                "Dashboard views served without their history part, by reason (busy, failed).",
            ),
        };
        for r in Refusal::ALL {
            m.refused.with_label_values(&[r.as_str()]);
        }
        for h in [HistoryFailure::Busy, HistoryFailure::Failed] {
            m.history_errors.with_label_values(&[h.as_str()]);
        }
        let collectors: [Box<dyn prometheus::core::Collector>; 2] = [
            Box::new(m.refused.clone()),
            Box::new(m.history_errors.clone()),
        ];
        for c in collectors {
            if let Err(e) = registry.register(c) {
                tracing::warn!(error = %e, "dashboard metrics not exported");
            }
        }
        m
    }

    pub(crate) fn refused(&self, why: Refusal) {
        self.refused.with_label_values(&[why.as_str()]).inc();
    }

    pub(crate) fn history_failed(&self, why: HistoryFailure) {
        self.history_errors.with_label_values(&[why.as_str()]).inc();
    }
}
