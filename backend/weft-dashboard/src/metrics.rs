//! `/metrics`: everything on the hub's registry, in Prometheus' text format; and the
//! dashboard's own counters, registered there: what it refused, its live clients and why
//! they left, and history it could not read.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

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
    /// A malformed WebSocket handshake.
    Handshake,
    /// `/ws` already serves `max_live_clients`.
    LiveClients,
    /// `POST /api/reload` while as many reloads as the queue holds wait already.
    ReloadBusy,
}

impl Refusal {
    const ALL: [Self; 6] = [
        Self::Host,
        Self::Token,
        Self::CrossSite,
        Self::Handshake,
        Self::LiveClients,
        Self::ReloadBusy,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Token => "token",
            Self::CrossSite => "cross_site",
            Self::Handshake => "handshake",
            Self::LiveClients => "live_clients",
            Self::ReloadBusy => "reload_busy",
        }
    }
}

/// Why a `/ws` client left (the `reason` of `weft_dashboard_live_disconnects_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disconnect {
    /// It sent a Close.
    ClientClosed,
    /// Its connection ended without one.
    ClientGone,
    /// It broke the protocol (closed with 1002 or 1007).
    ProtocolError,
    /// It sent a message over the limit (closed with 1009).
    TooBig,
    /// Sending to it made no progress for the send timeout.
    SendTimeout,
    /// Its socket failed while sending.
    SendFailed,
    /// The dashboard shut down (closed with 1001).
    Shutdown,
}

impl Disconnect {
    const ALL: [Self; 7] = [
        Self::ClientClosed,
        Self::ClientGone,
        Self::ProtocolError,
        Self::TooBig,
        Self::SendTimeout,
        Self::SendFailed,
        Self::Shutdown,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::ClientClosed => "client_closed",
            Self::ClientGone => "client_gone",
            Self::ProtocolError => "protocol_error",
            Self::TooBig => "too_big",
            Self::SendTimeout => "send_timeout",
            Self::SendFailed => "send_failed",
            Self::Shutdown => "shutdown",
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
    live_clients: IntGauge,
    disconnects: IntCounterVec,
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
                "Dashboard requests refused, by reason (host, token, cross_site, handshake, live_clients).",
            ),
            live_clients: IntGauge::new(
                "weft_dashboard_live_clients",
                "Clients connected to the dashboard's live feed (/ws).",
            )
            .expect("a valid metric"),
            disconnects: vec(
                "weft_dashboard_live_disconnects_total",
                "Live feed (/ws) clients that left, by reason.",
            ),
            history_errors: vec(
                "weft_dashboard_history_errors_total",
                "Dashboard views served without their history part, by reason (busy, failed).",
            ),
        };
        for r in Refusal::ALL {
            m.refused.with_label_values(&[r.as_str()]);
        }
        for d in Disconnect::ALL {
            m.disconnects.with_label_values(&[d.as_str()]);
        }
        for h in [HistoryFailure::Busy, HistoryFailure::Failed] {
            m.history_errors.with_label_values(&[h.as_str()]);
        }
        let collectors: [Box<dyn prometheus::core::Collector>; 4] = [
            Box::new(m.refused.clone()),
            Box::new(m.live_clients.clone()),
            Box::new(m.disconnects.clone()),
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

    pub(crate) fn live_joined(&self) {
        self.live_clients.inc();
    }

    pub(crate) fn live_left(&self) {
        self.live_clients.dec();
    }

    pub(crate) fn live_disconnected(&self, why: Disconnect) {
        self.disconnects.with_label_values(&[why.as_str()]).inc();
    }
}
