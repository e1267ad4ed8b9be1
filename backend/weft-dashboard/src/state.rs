//! What the dashboard's handlers share.

use std::sync::Arc;
use std::time::Instant;

use weft_store::Store;
use weft_telemetry::Hub;

/// The dashboard's state: cheap to clone, shared by every request.
#[derive(Debug, Clone)]
pub struct DashboardState {
    /// Live connections, metrics and the live feed.
    pub hub: Arc<Hub>,
    /// History, when a store is open.
    pub store: Option<Store>,
    /// When set, every route but `/healthz` needs `Authorization: Bearer TOKEN`.
    pub token: Option<Arc<str>>,
    /// When the dashboard started, for `/healthz`.
    pub started: Instant,
}

impl DashboardState {
    /// A state over `hub`, with no store and no token.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self {
            hub,
            store: None,
            token: None,
            started: Instant::now(),
        }
    }

    /// Adds the history store.
    pub fn with_store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// Requires `token` on every route but `/healthz`.
    pub fn with_token(mut self, token: impl Into<Arc<str>>) -> Self {
        self.token = Some(token.into());
        self
    }
}
