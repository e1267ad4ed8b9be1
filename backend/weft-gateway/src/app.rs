//! What `weft run` does: a reactor, the inspector, the services; reload on SIGHUP and on
//! the dashboard's request; run until SIGINT or SIGTERM; drain connections with a
//! deadline; flush the store.

use weft::{PoolError, ReactorConfig, ReactorError, ReactorPool};
use weft_inspector::{Inspector, InspectorConfig, InspectorError};
use weft_store::StoreOptions;
use weft_telemetry::HubConfig;

use crate::config::Config;
use crate::notify;
use crate::reload::{self, Hangups, Source};
use crate::running::{Running, StartError};

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The reactor could not start.
    #[error(transparent)]
    Reactor(#[from] ReactorError),
    /// The inspector (store or dashboard) could not start.
    #[error(transparent)]
    Inspector(#[from] InspectorError),
    /// A reactor after the first could not start, or start its services.
    #[error(transparent)]
    Replica(#[from] PoolError<StartError>),
    /// A service could not start.
    #[error("service {service:?}: {source}")]
    Start {
        /// The service's name.
        service: String,
        /// Why.
        #[source]
        source: crate::services::ServiceError,
    },
}

/// The inspector's settings for `config`.
pub fn inspector_config(config: &Config) -> InspectorConfig {
    let mut hub = HubConfig::default();
    hub.sample = config.inspect.sample;
    hub.sample_per_second = config.inspect.sample_per_second;
    hub.failed_per_second = config.inspect.failed_per_second;
    let mut store = StoreOptions::new(&config.store.path);
    store.url = config.store.url.clone();
    store.instance = config.gateway.instance.clone();
    store.retention = config.store.retention;
    // Field by field: the inspector's settings may grow (`#[non_exhaustive]`).
    let mut inspector = InspectorConfig::default();
    inspector.hub = hub;
    inspector.store = Some(store);
    inspector.dashboard = Some(config.dashboard.listen.clone());
    inspector.token = config.dashboard.token.clone();
    inspector.allowed_hosts = config.dashboard.allowed_hosts.clone();
    inspector.max_live_clients = config.dashboard.max_live_clients;
    inspector.max_connections = config.dashboard.max_connections;
    inspector.max_connections_per_peer = config.dashboard.max_connections_per_peer;
    inspector.history_connections_per_s = config.store.connections_per_second;
    inspector.notify = config.inspect.notify.clone();
    inspector.otlp = config.otlp.clone();
    inspector
}

/// Runs `config` until SIGINT or SIGTERM, then shuts down cleanly; reloads from `source`
/// on SIGHUP and `POST /api/reload`.
pub fn run(config: &Config, source: Source) -> Result<(), GatewayError> {
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let open_files = raise_open_files_limit();
    // What the open-files limit leaves room for: the cap unless the file sets one.
    let fits =
        open_files.map(|files| process_connection_cap(files, config.dashboard.max_connections));
    let cap = config.gateway.max_connections.or(fits);
    if let (Some(set), Some(fits)) = (config.gateway.max_connections, fits)
        && set > fits
    {
        tracing::warn!(
            max_connections = set,
            open_files = open_files,
            fits,
            "[gateway] max_connections is more than the open files limit leaves room for; descriptors may run out first"
        );
    }
    weft::policies::set_process_connection_limit(cap);
    if let Some(cap) = cap {
        tracing::info!(
            max_connections = cap,
            "connections accepted by every service together, at most"
        );
    }
    let mut pool = ReactorPool::new(
        config.gateway.reactors,
        ReactorConfig {
            slow_callback: config.inspect.slow_callback,
            stall_after: config.inspect.stall_after,
            ..ReactorConfig::default()
        },
    )?;
    let reactor = pool.first().clone();
    // First of what runs when the reactor starts: the inspector marks the process ready.
    let hangups = Hangups::catch(&reactor);
    let (reloader, requests) = weft_dashboard::Reloader::channel(reload::QUEUE);
    let mut settings = inspector_config(config);
    settings.reloader = Some(reloader);
    // The dashboard's connections are files too: under a small open-files limit they
    // get their share of what is kept for the rest, or idle ones from enough addresses
    // would take the descriptors the services' connections need.
    if let Some(room) =
        open_files.map(|files| dashboard_room(files, config.dashboard.max_connections))
        && room < settings.max_connections
    {
        tracing::warn!(
            configured = settings.max_connections,
            max_connections = room,
            "the open files limit leaves room for fewer dashboard connections than [dashboard] max_connections; lowered"
        );
        settings.max_connections = room;
    }
    let inspector = Inspector::start(&reactor, settings)?;
    if let Some(addr) = inspector.dashboard_addr() {
        tracing::info!("dashboard on http://{addr}/ (metrics at /metrics)");
    }
    let mut running = Running::start(
        &reactor,
        inspector.hub().clone(),
        inspector.store().cloned(),
        inspector.query_spans().cloned(),
        config,
    )
    .map_err(|e| GatewayError::Start {
        service: e.service,
        source: e.source,
    })?;
    let access_logs = running.access_logs().clone();
    if pool.size() > 1 {
        let (hub, store, spans, others) = (
            inspector.hub().clone(),
            inspector.store().cloned(),
            inspector.query_spans().cloned(),
            config.clone(),
        );
        let logs = access_logs.clone();
        pool.start_others(move |reactor| {
            let (store, spans) = (store.clone(), spans.clone());
            crate::replicas::start(reactor, hub.clone(), store, spans, &others, logs.clone())
        })?;
        tracing::info!(reactors = pool.size(), "every service runs on each reactor");
        running.set_replicas(crate::replicas::Replicas::new(pool.handles()));
    }
    let notifier = notify::install(&reactor, inspector.hub());
    reload::serve(&reactor, running, source, hangups, Some(requests), notifier);
    // `[demo] traffic`: the demo's upstreams and traffic, once the services listen.
    let demo = config
        .demo
        .traffic
        .then(|| crate::demo::start(&reactor, config, &inspector))
        .transpose()?;
    if let Some(demo) = &demo {
        use std::io::Write as _;
        // Where to look, for whoever reads stdout; nobody may (a full disk, a closed pipe).
        let _ = writeln!(std::io::stdout(), "{}", demo.banner());
    }
    pool.run()?;
    if !access_logs.close(reactor.config().shutdown_deadline) {
        tracing::warn!("an access log file was still being written at exit");
    }
    inspector.join();
    tracing::info!("stopped");
    Ok(())
}

/// Files kept for what is not a connection a service accepted: listening sockets, DNS
/// ports, the history database and its journal, access logs, configuration reads.
const FILES_KEPT: u64 = 256;

/// The connections every service may accept together under an open-files limit of
/// `files` (`[gateway] max_connections = "auto"`): half of what is left once the
/// dashboard's connections and [`FILES_KEPT`] have room (at most half the files), since
/// each accepted connection may open one of its own (a tcp-proxy's upstream, an HTTP
/// request's upstream connection), as HAProxy derives its `maxconn`. One descriptor
/// short, every service stops accepting and the connections out fail.
fn process_connection_cap(files: u64, dashboard: usize) -> usize {
    let kept = kept_files(files, dashboard);
    usize::try_from((files - kept) / 2)
        .unwrap_or(usize::MAX)
        .max(1)
}

/// The files kept for what is not a service's connection under an open-files limit of
/// `files`: [`FILES_KEPT`] and the dashboard's connections, at most half of them.
fn kept_files(files: u64, dashboard: usize) -> u64 {
    (FILES_KEPT + dashboard as u64).min(files / 2)
}

/// The dashboard's connections that fit in the files kept (all it asks for, unless the
/// limit is small): what is kept less [`FILES_KEPT`], or half of it when that is less.
fn dashboard_room(files: u64, dashboard: usize) -> usize {
    let kept = kept_files(files, dashboard);
    usize::try_from(kept - FILES_KEPT.min(kept / 2))
        .unwrap_or(usize::MAX)
        .max(1)
}

/// Raises the soft limit on open files to the hard limit: every connection is a file, and
/// the soft default (often 1,024) is a few hundred idle peers away. Logs the figure and
/// returns it (`None`: unlimited).
fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = match (limit.current, limit.maximum) {
        (Some(current), Some(maximum)) if current < maximum => {
            match setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(maximum),
                    maximum: Some(maximum),
                },
            ) {
                Ok(()) => Some(maximum),
                Err(error) => {
                    tracing::warn!(%error, current, maximum, "cannot raise the open files limit");
                    Some(current)
                }
            }
        }
        (current, _) => current,
    };
    match raised {
        Some(n) => tracing::info!(open_files = n, "open files limit"),
        None => tracing::info!("open files limit: unlimited"),
    }
    raised
}
