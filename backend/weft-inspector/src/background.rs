//! The inspector's background thread: opens the store, binds the dashboard, runs the
//! history pipeline and the dashboard until told to stop, then flushes the store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use prometheus::IntCounter;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use weft_dashboard::DashboardState;
use weft_store::Store;
use weft_telemetry::{Feed, Hub};

use crate::history;
use crate::inspector::{InspectorConfig, InspectorError};
use crate::notify;
use crate::otlp;
use crate::post::PostMetrics;
use crate::store_metrics::StoreCollector;

/// How long exit waits for the tasks: browsers holding connections open must not hold it
/// up for long.
const DRAIN: Duration = Duration::from_secs(5);

/// How long exit waits for history's last writes: a database that stopped answering (a
/// PostgreSQL server paused, a network partition) must not hold the process for ever.
const FLUSH: Duration = Duration::from_secs(10);

/// What the background thread reports once it is serving.
pub(crate) struct Ready {
    pub(crate) store: Option<Store>,
    pub(crate) dashboard: Option<SocketAddr>,
    /// The highest connection or Deferred id in the history (0 without one).
    pub(crate) last_id: u64,
    /// The highest event number in the history (0 without one).
    pub(crate) last_seq: u64,
}

/// The background thread's work.
pub(crate) struct Background {
    pub(crate) hub: Arc<Hub>,
    pub(crate) config: InspectorConfig,
    /// The dashboard's endpoint as configured (for errors) and the address it binds.
    pub(crate) dashboard: Option<(String, SocketAddr)>,
    /// Where the dashboard's actions (close, cancel) are sent.
    pub(crate) reactor: weft::ReactorHandle,
    /// The bus reader `notify`, when detections are posted.
    pub(crate) notify: Option<Feed>,
    /// The bus reader `otlp` and the DNS services' queries, when spans are exported.
    pub(crate) otlp: Option<(Feed, otlp::Queries)>,
    /// Cancelled by [`Inspector`](crate::Inspector) to stop everything here.
    pub(crate) stop: CancellationToken,
    /// Cancelled here once everything is stopped and flushed.
    pub(crate) done: CancellationToken,
}

impl Background {
    pub(crate) async fn run(
        self,
        ready: std_mpsc::Sender<Result<Ready, InspectorError>>,
        events: Option<Feed>,
    ) {
        let done = self.done.clone();
        self.serve(ready, events).await;
        done.cancel();
    }

    /// Starts everything, reports to `ready`, serves until `stop`, then drains and
    /// flushes. What fails to start is reported and nothing is left running.
    async fn serve(
        mut self,
        ready: std_mpsc::Sender<Result<Ready, InspectorError>>,
        events: Option<Feed>,
    ) {
        let (store, listener) = match self.open().await {
            Ok(opened) => opened,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let mut tasks = JoinSet::new();
        let work = CancellationToken::new();
        if let Some(store) = &store {
            self.spawn_history(store, events, &mut tasks, &work);
        }
        self.spawn_notify(&mut tasks, &work);
        self.spawn_otlp(&mut tasks, &work);
        let dashboard = listener.as_ref().and_then(|l| l.local_addr().ok());
        if let Some(listener) = listener {
            self.spawn_dashboard(listener, dashboard, store.as_ref(), &mut tasks, &work);
        }
        let (last_id, last_seq) = last_ids(store.as_ref()).await;
        if let Some(store) = &store {
            // Numbering continues above it: history is complete up to here.
            store.writer().mark(last_seq);
        }
        let _ = ready.send(Ok(Ready {
            store: store.clone(),
            dashboard,
            last_id,
            last_seq,
        }));
        self.stop.cancelled().await;
        work.cancel();
        let _ =
            tokio::time::timeout(DRAIN, async { while tasks.join_next().await.is_some() {} }).await;
        if let Some(store) = store {
            match tokio::time::timeout(FLUSH, store.shutdown()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "history not fully flushed at exit"),
                Err(_) => tracing::warn!(
                    location = %store.options().location(),
                    // The batch the database holds as well as the queue behind it.
                    unwritten = store.writer().stats().unwritten(),
                    "history not fully flushed at exit: the database did not answer within \
                     {FLUSH:?}; what was not written is lost"
                ),
            }
        }
    }

    /// Opens the store and binds the dashboard, as configured; a store opened before the
    /// dashboard failed to bind is closed again.
    async fn open(
        &self,
    ) -> Result<(Option<Store>, Option<tokio::net::TcpListener>), InspectorError> {
        let store = match &self.config.store {
            Some(options) => Some(Store::open_with(options.clone()).await?),
            None => None,
        };
        let listener = match &self.dashboard {
            Some((endpoint, addr)) => match weft_dashboard::bind(*addr) {
                Ok(l) => Some(l),
                Err(source) => {
                    if let Some(store) = &store {
                        let _ = store.shutdown().await;
                    }
                    return Err(InspectorError::Bind {
                        endpoint: endpoint.clone(),
                        source,
                    });
                }
            },
            None => None,
        };
        Ok((store, listener))
    }

    /// The store's metrics, and the tasks that write history: events as they come (when
    /// subscribed) and open connections and chains every `snapshot_interval`.
    fn spawn_history(
        &self,
        store: &Store,
        events: Option<Feed>,
        tasks: &mut JoinSet<()>,
        work: &CancellationToken,
    ) {
        if let Err(e) = StoreCollector::new(store.clone())
            .and_then(|c| self.hub.registry().register(Box::new(c)))
        {
            tracing::warn!(error = %e, "store metrics unavailable");
        }
        let snapshotted = Arc::new(history::Snapshotted::default());
        if let Some(events) = events {
            let skipped = IntCounter::new(
                "weft_store_connections_skipped_total",
                "Short, cleanly closed connections left out of history over its per-second budget.",
            )
            .expect("a valid metric name");
            if let Err(e) = self.hub.registry().register(Box::new(skipped.clone())) {
                tracing::warn!(error = %e, "history budget metric unavailable");
            }
            let budget = history::Budget::new(self.config.history_connections_per_s, skipped);
            tasks.spawn(history::convert(
                events,
                store.writer(),
                (budget, snapshotted.clone()),
                work.clone(),
            ));
        }
        tasks.spawn(history::snapshots(
            (self.hub.clone(), snapshotted),
            store.writer(),
            self.config.snapshot_interval,
            work.clone(),
        ));
    }

    /// The sender of notifications, when `[inspect] notify` is set.
    fn spawn_notify(&mut self, tasks: &mut JoinSet<()>, work: &CancellationToken) {
        let (Some(feed), Some(config)) = (self.notify.take(), self.config.notify.clone()) else {
            return;
        };
        match PostMetrics::register(self.hub.registry(), &notify::FAMILIES) {
            Ok(metrics) => {
                tasks.spawn(notify::run(feed, config, metrics, work.clone()));
            }
            Err(e) => tracing::warn!(error = %e, "notifications are off: their metrics clash"),
        }
    }

    /// The span exporter, when `[otlp]` is set.
    fn spawn_otlp(&mut self, tasks: &mut JoinSet<()>, work: &CancellationToken) {
        let (Some((feed, queries)), Some(config)) = (self.otlp.take(), self.config.otlp.clone())
        else {
            return;
        };
        match PostMetrics::register(self.hub.registry(), &otlp::FAMILIES) {
            Ok(metrics) => {
                tasks.spawn(otlp::run(
                    feed,
                    Some(queries),
                    config,
                    metrics,
                    work.clone(),
                ));
            }
            Err(e) => tracing::warn!(error = %e, "span export is off: its metrics clash"),
        }
    }

    /// The dashboard's server and its background work (sampler, live feed).
    fn spawn_dashboard(
        &self,
        listener: tokio::net::TcpListener,
        addr: Option<SocketAddr>,
        store: Option<&Store>,
        tasks: &mut JoinSet<()>,
        work: &CancellationToken,
    ) {
        let config = &self.config;
        let mut state = DashboardState::new(self.hub.clone())
            .with_reactor(self.reactor.clone())
            .with_allowed_hosts(config.allowed_hosts.iter().cloned())
            .with_max_live_clients(config.max_live_clients)
            .with_max_connections(config.max_connections, config.max_connections_per_peer);
        if let Some(addr) = addr {
            state = state.with_listen_addr(addr);
        }
        if let Some(store) = store {
            state = state.with_store(store.clone());
        }
        if let Some(token) = &config.token {
            state = state.with_token(token.as_str());
        }
        if let Some(reloader) = &config.reloader {
            state = state.with_reloader(reloader.clone());
        }
        tasks.spawn(weft_dashboard::background(
            state.clone(),
            work.clone().cancelled_owned(),
        ));
        tracing::info!(address = %addr.map(|a| a.to_string()).unwrap_or_default(), "dashboard serving");
        tasks.spawn(weft_dashboard::serve(
            listener,
            state,
            work.clone().cancelled_owned(),
        ));
    }
}

/// The highest connection or Deferred id and the highest event number in the history, so
/// a history file shared across runs continues above them; (0, 0) without one. When the
/// history cannot be read (a database out of reach at start), numbering starts from
/// [`above_any_history`], so rows written once it can be are not taken for an earlier
/// run's.
async fn last_ids(store: Option<&Store>) -> (u64, u64) {
    let positive = |n: i64| u64::try_from(n).unwrap_or(0);
    match store {
        Some(store) => match store.last_ids().await {
            Ok((id, seq)) => (positive(id), positive(seq)),
            Err(e) => {
                let from = above_any_history();
                tracing::warn!(error = %e, from, "cannot read the history's last ids; numbering from the clock");
                (from, from)
            }
        },
        None => (0, 0),
    }
}

/// A number above any id or event number a history holds: the milliseconds since 1970
/// times 1,000. An earlier run numbered below it, unless it was numbered this way too and
/// made more than a thousand ids for each millisecond since it started; a later run
/// continues above what this one writes. About 1.8 × 10^15 today, below 2^53, so a
/// browser reads it whole.
fn above_any_history() -> u64 {
    let since_1970 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_1970.as_millis())
        .unwrap_or(u64::MAX)
        .saturating_mul(1000)
}
