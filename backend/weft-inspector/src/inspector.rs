//! [`Inspector`]: what it runs ([`InspectorConfig`]), starting it and stopping it.
//!
//! The hub is installed on the reactor's thread. The store and the dashboard live on a
//! tokio runtime of their own, on a background thread. At shutdown the reactor's last
//! phase (after connections drained) stops the dashboard and flushes the store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weft::{Phase, Reactor};
use weft_store::{Store, StoreOptions};
use weft_telemetry::{Hub, HubConfig};

use crate::background::Background;
use crate::endpoint::{DashboardEndpointError, dashboard_addr};

/// Clean short-lived connections kept in history per second by default.
pub const DEFAULT_HISTORY_CONNECTIONS_PER_S: u32 = 1000;

/// What the inspector runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InspectorConfig {
    /// The hub's thresholds and sampling.
    pub hub: HubConfig,
    /// The history database; `None` keeps no history.
    pub store: Option<StoreOptions>,
    /// Where the dashboard listens (a `tcp:` endpoint); `None` serves no dashboard.
    pub dashboard: Option<String>,
    /// The bearer token the dashboard requires, if any.
    pub token: Option<String>,
    /// Host names the dashboard answers to besides its own address and `localhost`.
    pub allowed_hosts: Vec<weft_dashboard::AllowedHost>,
    /// `/ws` clients the dashboard serves at once at most.
    pub max_live_clients: usize,
    /// Connections the dashboard holds at once at most.
    pub max_connections: usize,
    /// Connections one peer holds on the dashboard at once at most (0: no cap).
    pub max_connections_per_peer: usize,
    /// How often open connections are written to the store.
    pub snapshot_interval: Duration,
    /// Short-lived connections that closed cleanly are kept in history up to this many a
    /// second, and left out (and counted) beyond; 0 keeps every one. See
    /// `history::Budget`.
    pub history_connections_per_s: u32,
    /// Where the dashboard's `POST /api/reload` goes; `None` answers it `503`.
    pub reloader: Option<weft_dashboard::Reloader>,
    /// Where detections worth a page are posted; `None` posts nothing.
    pub notify: Option<crate::NotifyConfig>,
    /// Where chains are exported as OpenTelemetry spans; `None` builds no spans.
    pub otlp: Option<crate::OtlpConfig>,
}

impl Default for InspectorConfig {
    /// History in `weft.db`, the dashboard on `127.0.0.1:9180`.
    fn default() -> Self {
        Self {
            hub: HubConfig::default(),
            store: Some(StoreOptions::new("weft.db")),
            dashboard: Some("tcp:9180:interface=127.0.0.1".into()),
            token: None,
            allowed_hosts: Vec::new(),
            max_live_clients: weft_dashboard::live::DEFAULT_MAX_LIVE_CLIENTS,
            max_connections: weft_dashboard::server::DEFAULT_MAX_CONNECTIONS,
            max_connections_per_peer: weft_dashboard::server::DEFAULT_MAX_CONNECTIONS_PER_PEER,
            snapshot_interval: Duration::from_secs(1),
            history_connections_per_s: DEFAULT_HISTORY_CONNECTIONS_PER_S,
            reloader: None,
            notify: None,
            otlp: None,
        }
    }
}

/// Why the inspector could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectorError {
    /// The hub's settings are invalid.
    #[error(transparent)]
    Telemetry(#[from] weft_telemetry::TelemetryError),
    /// The history database could not be opened.
    #[error(transparent)]
    Store(#[from] weft_store::StoreError),
    /// The dashboard endpoint is not a `tcp:` endpoint.
    #[error("dashboard endpoint {0:?}: the dashboard listens on a tcp: endpoint")]
    Endpoint(String),
    /// The dashboard endpoint is reachable from other machines and no token is set.
    #[error(
        "dashboard endpoint {0:?} is reachable from other machines; set a token \
         (InspectorConfig::token) or listen on a loopback interface (tcp:PORT:interface=127.0.0.1)"
    )]
    NeedsToken(String),
    /// The token cannot be the dashboard's: too short, or holding what a header or cookie
    /// cannot carry; the text says which.
    #[error("InspectorConfig::token {0}")]
    BadToken(String),
    /// The dashboard could not bind.
    #[error("cannot listen on {endpoint} for the dashboard: {source}")]
    Bind {
        /// The endpoint.
        endpoint: String,
        /// The system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The background runtime could not start.
    #[error("cannot start the inspector's runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// The running inspector. Keep it while the reactor runs; [`join`](Self::join) after.
#[derive(Debug)]
pub struct Inspector {
    hub: Arc<Hub>,
    store: Option<Store>,
    dashboard: Option<SocketAddr>,
    query_spans: Option<crate::QuerySpans>,
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl Inspector {
    /// Installs the hub on `reactor`, opens the store and serves the dashboard. Call it on
    /// the reactor's thread, before `run`.
    ///
    /// A dashboard listens on a `tcp:` endpoint, and on one reachable from other machines
    /// only with a token ([`dashboard_addr`](crate::dashboard_addr)); nothing starts
    /// otherwise.
    pub fn start(reactor: &Reactor, config: InspectorConfig) -> Result<Self, InspectorError> {
        let dashboard = match &config.dashboard {
            Some(endpoint) => match dashboard_addr(endpoint, config.token.as_deref()) {
                Ok(addr) => Some((endpoint.clone(), addr)),
                Err(DashboardEndpointError::NeedsToken(_)) => {
                    return Err(InspectorError::NeedsToken(endpoint.clone()));
                }
                Err(DashboardEndpointError::BadToken(why)) => {
                    return Err(InspectorError::BadToken(why));
                }
                Err(_) => return Err(InspectorError::Endpoint(endpoint.clone())),
            },
            None => None,
        };
        let hub = Hub::new(config.hub.clone())?;
        // One thread is plenty: the inspector mostly waits, SQLite runs on sqlx's own
        // worker thread, and a single-threaded runtime never wakes an idle sibling.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(InspectorError::Runtime)?;
        let stop = CancellationToken::new();
        // Cancelled by the background thread when it has flushed everything.
        let done = CancellationToken::new();
        let (ready_tx, ready_rx) = std_mpsc::channel();
        // Subscribed before the hub is installed, so history starts with the first event.
        let events = config.store.is_some().then(|| hub.subscribe("store"));
        let notify = config.notify.is_some().then(|| hub.subscribe("notify"));
        let (otlp, query_spans) = match &config.otlp {
            Some(otlp) => {
                // Before the hub is installed: the first request already carries its trace.
                weft::observe::trace::enable();
                let (spans, queries) = crate::QuerySpans::channel(otlp.queue);
                (Some((hub.subscribe("otlp"), queries)), Some(spans))
            }
            None => (None, None),
        };
        let background = Background {
            hub: hub.clone(),
            config,
            dashboard,
            reactor: reactor.handle(),
            notify,
            otlp,
            stop: stop.clone(),
            done: done.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("weft-inspector".into())
            .spawn(move || runtime.block_on(background.run(ready_tx, events)))
            .map_err(InspectorError::Runtime)?;
        let ready = match ready_rx.recv() {
            Ok(Ok(ready)) => ready,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(InspectorError::Runtime(std::io::Error::other(
                    "the inspector's thread ended while starting",
                )));
            }
        };
        // A history file shared across runs: ids and event numbers continue above its own.
        weft::observe::ids_after(ready.last_id);
        let hub = hub.with_first_seq(ready.last_seq + 1);
        hub.install(reactor);
        let (token, finished) = (stop.clone(), done);
        reactor.add_shutdown_hook_wait(Phase::After, move || async move {
            token.cancel();
            finished.cancelled().await;
        });
        Ok(Self {
            hub,
            store: ready.store,
            dashboard: ready.dashboard,
            query_spans,
            stop,
            thread: Some(thread),
        })
    }

    /// The telemetry hub.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The history store, when one is open.
    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// Where a DNS service hands the answers its query log keeps, to be exported as
    /// `dns query` spans, when spans are exported (`otlp`).
    pub fn query_spans(&self) -> Option<&crate::QuerySpans> {
        self.query_spans.as_ref()
    }

    /// The dashboard's bound address, when it serves.
    pub fn dashboard_addr(&self) -> Option<SocketAddr> {
        self.dashboard
    }

    /// Stops the dashboard, flushes and closes the store, and waits for the background
    /// thread. The reactor's shutdown does the same; calling both is harmless.
    pub fn join(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the inspector's thread panicked");
        }
    }
}

impl Drop for Inspector {
    fn drop(&mut self) {
        self.finish();
    }
}
