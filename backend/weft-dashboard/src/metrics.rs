//! The dashboard's own counters, registered on the hub's registry (so `/metrics` has
//! them): what it refused, its live clients and why they left, and history it could not
//! read.

use std::net::IpAddr;
use std::sync::Arc;

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Why a request was refused (the `reason` of `weft_dashboard_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its `Host` is not one of the dashboard's names.
    Host,
    /// It lacked the token.
    Token,
    /// It presented a token after trying too many wrong ones ([`crate::attempts`]).
    TokenAttempts,
    /// A cross-site action, login or feed request.
    CrossSite,
    /// A malformed WebSocket handshake.
    Handshake,
    /// `/ws` already serves `max_live_clients`.
    LiveClients,
    /// A connection from a peer that already holds `max_connections_per_peer`.
    LimitPeer,
    /// A connection while the listener already holds `max_connections`.
    LimitTotal,
    /// `POST /api/reload` while as many reloads as the queue holds wait already.
    ReloadBusy,
    /// A request head over [`crate::server::MAX_HEAD`], with more than hyper's 100 fields,
    /// or a target too long for hyper (which answers those itself, 431 or 414).
    HeadTooLarge,
    /// A request head hyper could not parse (answered 400 by hyper itself).
    Malformed,
    /// A request head begun and not finished within [`crate::server::HEADER_TIMEOUT`]
    /// (a slowloris); the connection is closed.
    HeadTimeout,
    /// A request body over [`crate::server::MAX_BODY`], or not all in within
    /// [`crate::server::BODY_TIMEOUT`].
    Body,
    /// An idle connection (no request under way, never upgraded) closed to make room for a
    /// new one while the listener held `max_connections`.
    IdleEvicted,
}

impl Refusal {
    const ALL: [Self; 14] = [
        Self::Host,
        Self::Token,
        Self::TokenAttempts,
        Self::CrossSite,
        Self::Handshake,
        Self::LiveClients,
        Self::LimitPeer,
        Self::LimitTotal,
        Self::ReloadBusy,
        Self::HeadTooLarge,
        Self::Malformed,
        Self::HeadTimeout,
        Self::Body,
        Self::IdleEvicted,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Token => "token",
            Self::TokenAttempts => "token_attempts",
            Self::CrossSite => "cross_site",
            Self::Handshake => "handshake",
            Self::LiveClients => "live_clients",
            Self::LimitPeer => "limit_peer",
            Self::LimitTotal => "limit_total",
            Self::ReloadBusy => "reload_busy",
            Self::HeadTooLarge => "head_too_large",
            Self::Malformed => "malformed",
            Self::HeadTimeout => "head_timeout",
            Self::Body => "body",
            Self::IdleEvicted => "idle_evicted",
        }
    }

    /// What the refusal means, for its log line.
    fn meaning(self) -> &'static str {
        match self {
            Self::Host => "its Host is missing, repeated or not one of the dashboard's names",
            Self::Token => "it did not present the token",
            Self::TokenAttempts => "its peer presented too many wrong tokens and must wait",
            Self::CrossSite => "another site's page made the browser send it",
            Self::Handshake => "a malformed WebSocket handshake",
            Self::LiveClients => "the live feed serves max_live_clients already",
            Self::LimitPeer => "its peer holds max_connections_per_peer connections already",
            Self::LimitTotal => "the dashboard holds max_connections connections already",
            Self::ReloadBusy => "as many reloads as the queue holds wait already",
            Self::HeadTooLarge => "its head is too large",
            Self::Malformed => "its head is malformed",
            Self::HeadTimeout => "its head was begun and not finished in time",
            Self::Body => "its body is too large, broke off or came too slowly",
            Self::IdleEvicted => "an idle connection closed to make room for this peer's new one",
        }
    }
}

/// The name the dashboard's refusals are logged under, for their line budget.
fn dashboard() -> &'static Arc<str> {
    static NAME: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    NAME.get_or_init(|| Arc::from("dashboard"))
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
    const ALL: [Self; 2] = [Self::Busy, Self::Failed];

    fn as_str(self) -> &'static str {
        match self {
            Self::Busy => "busy",
            Self::Failed => "failed",
        }
    }
}

/// One counter per value of a bounded label, resolved when the family is made: counting
/// is then an index and an atomic add, with no label lookup.
#[derive(Debug, Clone)]
struct ByReason<const N: usize>([IntCounter; N]);

impl<const N: usize> ByReason<N> {
    fn new<R: Copy>(
        family: &IntCounterVec,
        all: [R; N],
        label: impl Fn(R) -> &'static str,
    ) -> Self {
        Self(all.map(|r| family.with_label_values(&[label(r)])))
    }
}

/// The dashboard's counters. Every label value exists from the start, so a scrape shows
/// zeros rather than nothing.
#[derive(Debug, Clone)]
pub struct DashboardMetrics {
    /// `weft_dashboard_refused_total`, one counter per refusal reason.
    refused: ByReason<{ Refusal::ALL.len() }>,
    /// `/ws` feeds open now, beside the cap `max_live_clients`.
    live_clients: IntGauge,
    /// Why `/ws` feeds ended, one counter per reason.
    disconnects: ByReason<7>,
    /// `weft_dashboard_history_errors_total`: answers given without history because it could not be
    /// read.
    history_errors: ByReason<2>,
}

impl DashboardMetrics {
    /// The counters, registered on `registry`. If they are there already (a second
    /// dashboard on one hub), they are kept unregistered and say so in the log.
    pub fn new(registry: &Registry) -> Self {
        let vec = |name: &str, help: &str| {
            IntCounterVec::new(Opts::new(name, help), &["reason"]).expect("a valid metric")
        };
        let refused = vec(
            "weft_dashboard_refused_total",
            "Dashboard requests and connections refused, by reason (host, token, \
             token_attempts, cross_site, handshake, live_clients, limit_peer, limit_total, \
             idle_evicted: an idle connection closed to make room, reload_busy, \
             head_too_large, malformed, head_timeout: a head begun and not finished in time, \
             body).",
        );
        let live_clients = IntGauge::new(
            "weft_dashboard_live_clients",
            "Clients connected to the dashboard's live feed (/ws).",
        )
        .expect("a valid metric");
        let disconnects = vec(
            "weft_dashboard_live_disconnects_total",
            "Live feed (/ws) clients that left, by reason.",
        );
        let history_errors = vec(
            "weft_dashboard_history_errors_total",
            "Dashboard views served without their history part, by reason (busy, failed).",
        );
        let collectors: [Box<dyn prometheus::core::Collector>; 4] = [
            Box::new(refused.clone()),
            Box::new(live_clients.clone()),
            Box::new(disconnects.clone()),
            Box::new(history_errors.clone()),
        ];
        for c in collectors {
            if let Err(e) = registry.register(c) {
                tracing::warn!(error = %e, "dashboard metrics not exported");
            }
        }
        Self {
            refused: ByReason::new(&refused, Refusal::ALL, Refusal::as_str),
            live_clients,
            disconnects: ByReason::new(&disconnects, Disconnect::ALL, Disconnect::as_str),
            history_errors: ByReason::new(
                &history_errors,
                HistoryFailure::ALL,
                HistoryFailure::as_str,
            ),
        }
    }

    /// Counts a refusal of a request or connection from `peer` (for `IdleEvicted`, the
    /// peer whose new connection the idle one made room for) and logs it at `info`,
    /// naming the peer and why (a guesser of the token, a page of another site), as the
    /// services log the bad input they handle: at most [`weft::observe::LOG_BURST`] lines
    /// a second for each reason, the first after some were left out saying how many.
    pub(crate) fn refused(&self, why: Refusal, peer: Option<IpAddr>) {
        self.refused.0[why as usize].inc();
        if let Some(suppressed) = weft::observe::log_line_budget(dashboard(), why.as_str()) {
            let peer = peer.map_or_else(|| "-".to_owned(), |p| p.to_string());
            tracing::info!(%peer, reason = why.as_str(), suppressed, "dashboard refused a request: {}", why.meaning());
        }
    }

    pub(crate) fn history_failed(&self, why: HistoryFailure) {
        self.history_errors.0[why as usize].inc();
    }

    pub(crate) fn live_joined(&self) {
        self.live_clients.inc();
    }

    pub(crate) fn live_left(&self) {
        self.live_clients.dec();
    }

    pub(crate) fn live_disconnected(&self, why: Disconnect) {
        self.disconnects.0[why as usize].inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The handles are indexed by each reason's place in its enum: every reason must land
    /// on its own label.
    #[test]
    fn each_reason_is_counted_under_its_own_label() {
        let registry = Registry::new();
        let m = DashboardMetrics::new(&registry);
        for (n, r) in Refusal::ALL.into_iter().enumerate() {
            for _ in 0..=n {
                m.refused(r, None);
            }
        }
        for (n, d) in Disconnect::ALL.into_iter().enumerate() {
            for _ in 0..=n {
                m.live_disconnected(d);
            }
        }
        for (n, h) in HistoryFailure::ALL.into_iter().enumerate() {
            for _ in 0..=n {
                m.history_failed(h);
            }
        }
        let mut text = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut text,
        )
        .unwrap();
        let text = String::from_utf8(text).unwrap();
        let counted = |family: &str, reason: &str| -> u64 {
            let series = format!("{family}{{reason=\"{reason}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(series.as_str())?.parse().ok())
                .unwrap_or_default()
        };
        for (n, r) in Refusal::ALL.into_iter().enumerate() {
            assert_eq!(
                counted("weft_dashboard_refused_total", r.as_str()),
                n as u64 + 1
            );
        }
        for (n, d) in Disconnect::ALL.into_iter().enumerate() {
            let got = counted("weft_dashboard_live_disconnects_total", d.as_str());
            assert_eq!(got, n as u64 + 1);
        }
        for (n, h) in HistoryFailure::ALL.into_iter().enumerate() {
            let got = counted("weft_dashboard_history_errors_total", h.as_str());
            assert_eq!(got, n as u64 + 1);
        }
    }
}
