//! What the dashboard's handlers share.

use std::sync::Arc;
use std::time::Instant;

use weft::ReactorHandle;
use weft_store::Store;
use weft_telemetry::Hub;

use crate::live::Fanout;
use crate::series::Series;

/// The dashboard's state: cheap to clone, shared by every request.
#[derive(Debug, Clone)]
pub struct DashboardState {
    /// Live connections, metrics and the live feed.
    pub hub: Arc<Hub>,
    /// History, when a store is open.
    pub store: Option<Store>,
    /// When set, every route but `/healthz` and `/login` needs the token, as
    /// `Authorization: Bearer TOKEN` or as the cookie `/login` sets.
    pub token: Option<Arc<str>>,
    /// The reactor the actions (close a connection, cancel a Deferred) are sent to; without
    /// one they answer `503`.
    pub reactor: Option<ReactorHandle>,
    /// When the dashboard started, for `/healthz`.
    pub started: Instant,
    /// The last minutes of per-service figures, filled by [`crate::background`].
    pub series: Arc<Series>,
    /// Encoded live frames shared by every `/ws` client, filled by [`crate::background`].
    pub fanout: Arc<Fanout>,
}

impl DashboardState {
    /// A state over `hub`, with no store, no token and no reactor.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self {
            hub,
            store: None,
            token: None,
            reactor: None,
            started: Instant::now(),
            series: Arc::new(Series::default()),
            fanout: Arc::new(Fanout::default()),
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
}
