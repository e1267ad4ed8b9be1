//! What the dashboard's handlers share.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use weft::ReactorHandle;
use weft_store::Store;
use weft_telemetry::{Hub, ReloadOutcome};

use crate::host::{AllowedHost, HostPolicy};
use crate::live::{DEFAULT_MAX_LIVE_CLIENTS, Fanout};
use crate::metrics::DashboardMetrics;
use crate::series::Series;
use crate::server::{DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_PEER};
use crate::views::ViewHistory;

/// The dashboard's state: cheap to clone, shared by every request.
#[derive(Debug, Clone)]
pub struct DashboardState {
    /// Live connections, metrics and the live feed.
    pub hub: Arc<Hub>,
    /// History, when a store is open.
    pub store: Option<Store>,
    /// When set (by [`with_token`](Self::with_token)), every route but `/healthz` and
    /// `/login` needs the token, as `Authorization: Bearer TOKEN` or as the session
    /// cookie `/login` sets.
    pub token: Option<Arc<str>>,
    /// The sessions of the sign-in cookie.
    pub(crate) sessions: Arc<crate::session::Sessions>,
    /// The reactor the actions (close a connection, cancel a Deferred) are sent to; without
    /// one they answer `503`.
    pub reactor: Option<ReactorHandle>,
    /// When the dashboard started, for `/healthz`.
    pub started: Instant,
    /// The last minutes of per-service figures, filled by [`crate::background`].
    pub series: Arc<Series>,
    /// Encoded live frames shared by every `/ws` client, filled by [`crate::background`].
    pub fanout: Arc<Fanout>,
    /// The names a request's `Host` may give.
    pub hosts: Arc<HostPolicy>,
    /// `/ws` clients served at once at most; more get `503`.
    pub max_live_clients: usize,
    /// Connections [`serve`](crate::serve) holds at once at most.
    pub max_connections: usize,
    /// Connections one peer holds at once at most (0: no cap).
    pub max_connections_per_peer: usize,
    /// The dashboard's own counters, on the hub's registry.
    pub metrics: DashboardMetrics,
    /// Where `POST /api/reload` asks the program to reload its configuration; without
    /// one it answers `503`.
    pub reloader: Option<Reloader>,
    /// The readings the HTTP view's rates and percentiles are measured against.
    pub http: Arc<ViewHistory>,
    /// The readings the DNS view's rates, ratios and percentiles are measured against.
    pub dns: Arc<ViewHistory>,
    /// Each peer's wrong tokens, to limit guessing.
    pub(crate) attempts: Arc<crate::attempts::Attempts>,
    /// When history that could not be read was last logged, and how many failed reads
    /// were not since (`crate::history::unavailable`).
    pub(crate) history_warned: Arc<std::sync::Mutex<(Option<Instant>, u64)>>,
}

/// One request to reload: the program answers it with the outcome.
pub type ReloadRequest = oneshot::Sender<ReloadOutcome>;

/// The sending end of a program's reload requests (`POST /api/reload`). The program
/// serves the receiving end where it reconfigures (its reactor thread), one request at a
/// time; at most the queue's capacity wait, and more are refused.
#[derive(Debug, Clone)]
pub struct Reloader {
    /// Bounded: when the program has that many reloads waiting, more are refused rather than
    /// queued.
    requests: mpsc::Sender<ReloadRequest>,
}

/// Why a reload request got no outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReloadRefused {
    /// As many requests as the queue holds wait already.
    Busy,
    /// The program stopped serving requests (it is shutting down).
    Gone,
}

impl Reloader {
    /// A reloader whose queue holds `capacity` requests (at least 1), and the receiving
    /// end for the program.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<ReloadRequest>) {
        let (requests, rx) = mpsc::channel(capacity.max(1));
        (Self { requests }, rx)
    }

    /// Queues a request without waiting; the outcome comes on the returned channel.
    pub(crate) fn request(&self) -> Result<oneshot::Receiver<ReloadOutcome>, ReloadRefused> {
        let (tx, rx) = oneshot::channel();
        self.requests.try_send(tx).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ReloadRefused::Busy,
            mpsc::error::TrySendError::Closed(_) => ReloadRefused::Gone,
        })?;
        Ok(rx)
    }
}

impl DashboardState {
    /// A state over `hub`, with no store, no token and no reactor, answering to loopback
    /// names on any port until told its address.
    pub fn new(hub: Arc<Hub>) -> Self {
        let metrics = DashboardMetrics::new(hub.registry());
        Self {
            hub,
            store: None,
            token: None,
            sessions: Arc::new(crate::session::Sessions::new()),
            reactor: None,
            started: Instant::now(),
            series: Arc::new(Series::default()),
            fanout: Arc::new(Fanout::default()),
            hosts: Arc::new(HostPolicy::default()),
            max_live_clients: DEFAULT_MAX_LIVE_CLIENTS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_peer: DEFAULT_MAX_CONNECTIONS_PER_PEER,
            metrics,
            reloader: None,
            http: Arc::new(ViewHistory::default()),
            dns: Arc::new(ViewHistory::with_window(crate::dns::WINDOW)),
            attempts: Arc::default(),
            history_warned: Arc::default(),
        }
    }

    /// Adds the history store.
    pub fn with_store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// Requires `token` on every route but `/healthz` and `/login`.
    pub fn with_token(mut self, token: impl Into<Arc<str>>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sends actions to `reactor`.
    pub fn with_reactor(mut self, reactor: ReactorHandle) -> Self {
        self.reactor = Some(reactor);
        self
    }

    /// Sends `POST /api/reload` to `reloader`.
    pub fn with_reloader(mut self, reloader: Reloader) -> Self {
        self.reloader = Some(reloader);
        self
    }

    /// Answers to `addr` (the listener's bound address) and to loopback names with its
    /// port only.
    pub fn with_listen_addr(mut self, addr: SocketAddr) -> Self {
        Arc::make_mut(&mut self.hosts).listen = Some(addr);
        self
    }

    /// Answers to `hosts` besides its own addresses (`[dashboard] allowed_hosts`).
    pub fn with_allowed_hosts(mut self, hosts: impl IntoIterator<Item = AllowedHost>) -> Self {
        Arc::make_mut(&mut self.hosts).allowed = hosts.into_iter().collect();
        self
    }

    /// Serves at most `max` `/ws` clients at once.
    pub fn with_max_live_clients(mut self, max: usize) -> Self {
        self.max_live_clients = max;
        self
    }

    /// Holds at most `total` connections at once, and `per_peer` from one peer (0: no
    /// cap per peer).
    pub fn with_max_connections(mut self, total: usize, per_peer: usize) -> Self {
        self.max_connections = total;
        self.max_connections_per_peer = per_peer;
        self
    }
}
