//! [`HttpService`]: one service's state (its files, routes, proxy, recorder and access
//! log, built once) and its listeners; the life of a connection is `connection`'s, that
//! of a request `request`'s.
//!
//! Each accepted connection is an [`InspectedStream`](weft::InspectedStream) served by
//! hyper's HTTP/1.1 server (keep-alive, header size, header count and header time limits)
//! or its HTTP/2 server, whose request heads `heads` times as hyper does not. Each
//! request is checked against the message rules and its path put in normal form, once,
//! before it is routed; it is a traced Deferred (label `http
//! request`, tied to its connection) while it is being handled, so a slow handler or a
//! stuck upstream shows in the inspector with its age; when the response head is ready it
//! is timed and recorded, and when its body ends it is written to the access log with the
//! bytes actually sent.
//!
//! When the connection is asked to close (at shutdown), the exchange in flight finishes
//! and the connection closes after it; an idle keep-alive connection closes at once.
//! After a 101 from the proxy the connection is a tunnel (`proxy::upgrade`), still this
//! task's, so it stays listed, and closable, until the tunnel ends.

mod connection;
mod frames;
mod head_timer;
pub(crate) mod heads;
mod policy;
mod rates;
mod request;

pub use policy::Handover;
pub(crate) mod streams;

use std::rc::Rc;
use std::sync::Arc;

use http::HeaderValue;
use weft::defer::StepDetail;
use weft::{ListenError, ListenOptions, ListeningPort, Reactor};

use self::connection::serve_connection;
use crate::access_log::AccessLog;
use crate::config::{ConfigError, Route, WebConfig};
use crate::files;
use crate::metrics::Recorder;
use crate::protocol;
use crate::proxy::{self, BodiesView, UpstreamsView};
use crate::routes::{self as route_series, RouteEntry, RouteFigures, RouteMetrics};

/// The static files a [`WebConfig`] names, checked: its root canonicalized and listed
/// once, or its embedded files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticFiles(Option<files::Source>);

impl StaticFiles {
    /// Whether a request for `path` (in normal form) would find a file here, by the
    /// lookup that serves requests (hidden names, symlinks out of the root and all).
    pub fn has_file(&self, path: &str) -> bool {
        self.0.as_ref().is_some_and(|source| source.has_file(path))
    }

    /// Checks that `config`'s root is a readable directory, that there are not both
    /// a root and embedded files, and that the compression bounds leave some size.
    pub fn of(config: &WebConfig) -> Result<Self, ConfigError> {
        config.files.compression.check()?;
        let source = match (&config.root, &config.embedded) {
            (Some(_), Some(_)) => return Err(ConfigError::RootAndEmbedded),
            (Some(path), None) => {
                let err = |reason: String| ConfigError::Root {
                    path: path.clone(),
                    reason,
                };
                let canonical = path.canonicalize().map_err(|e| err(e.to_string()))?;
                std::fs::read_dir(&canonical).map_err(|e| err(e.to_string()))?;
                Some(files::Source::Dir(files::Root::new(canonical)))
            }
            (None, Some(embedded)) => Some(files::Source::Memory(embedded.clone())),
            (None, None) => None,
        };
        Ok(Self(source))
    }
}

/// An HTTP service: static files, proxy routes, limits, and where it reports.
#[derive(Clone)]
pub struct HttpService {
    state: Rc<State>,
}

impl std::fmt::Debug for HttpService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpService")
            .field("name", &self.state.name)
            .field("config", &self.state.config)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct State {
    name: Arc<str>,
    config: WebConfig,
    /// Where static files come from, if anywhere.
    files: Option<files::Source>,
    recorder: Rc<dyn Recorder>,
    access_log: AccessLog,
    /// `Strict-Transport-Security`, built once, for responses over TLS.
    hsts: Option<HeaderValue>,
    /// What the service adds to `Via` in the requests it forwards.
    via: crate::headers::Via,
    /// The routes' upstreams: pools and health.
    proxy: Rc<proxy::Proxy>,
    /// Each route's series, resolved once.
    routes: RouteSlots,
    /// What each route's named steps say (its prefix, its upstream), built once, in the
    /// order of `config.routes`.
    route_details: Rc<[RouteDetails]>,
    /// HTTP/2 requests in flight by peer, over all the service's connections on this
    /// reactor (until their response bodies end), capped at the listeners' per-peer
    /// connection cap: a peer's streams give it no more files and upstream connections
    /// at once than as many HTTP/1.1 connections would. Set by the first listener with a
    /// per-peer cap.
    h2_requests: std::cell::OnceCell<weft::policies::PeerLimit>,
    /// Its client policy (`allow`, `deny` and the `rate_limit` budgets of the service and
    /// its routes) on this reactor, with the one in force, shared with the service's
    /// later generations.
    policy: Rc<policy::ClientPolicy>,
}

/// Each route's series, in the order of the configuration's routes, and those of the
/// requests no route matched and of those refused before routing.
#[derive(Clone)]
struct RouteSlots {
    configured: Vec<Arc<RouteMetrics>>,
    files: Arc<RouteMetrics>,
    unrouted: Arc<RouteMetrics>,
}

impl RouteSlots {
    fn new(config: &WebConfig, recorder: &dyn Recorder) -> Self {
        Self {
            configured: config
                .routes
                .iter()
                .map(|r| recorder.route(&r.prefix))
                .collect(),
            files: recorder.route(route_series::FILES),
            unrouted: recorder.route(route_series::UNROUTED),
        }
    }

    /// The series of `route`, one of `config`'s routes, or of the files for none.
    fn of(&self, config: &WebConfig, route: Option<&Route>) -> &Arc<RouteMetrics> {
        route_index(config, route).map_or(&self.files, |i| &self.configured[i])
    }
}

/// The position of `route`, one of `config`'s routes, among them.
fn route_index(config: &WebConfig, route: Option<&Route>) -> Option<usize> {
    route.and_then(|route| config.routes.iter().position(|r| std::ptr::eq(r, route)))
}

/// The details a route's requests give their named steps.
struct RouteDetails {
    prefix: StepDetail,
    /// Each upstream's URL, in the route's order.
    upstreams: Vec<StepDetail>,
}

impl HttpService {
    /// A service named `name` (its connections, metrics and log lines carry it). Checks
    /// that the root is a readable directory, that there are not both a root and
    /// embedded files, and the routes' settings ([`WebConfig::check_proxy`]).
    pub fn new(
        name: &str,
        config: WebConfig,
        recorder: Rc<dyn Recorder>,
    ) -> Result<Self, ConfigError> {
        config.check_proxy()?;
        let files = StaticFiles::of(&config)?;
        Ok(Self::with_files(name, config, files, recorder))
    }

    /// A service named `name` serving the static files `files`, checked from `config`
    /// earlier ([`StaticFiles::of`], [`WebConfig::check_proxy`]): a program that checks
    /// its configuration before it starts anything has nothing left to fail on here.
    /// Active health checks, if any route has them, start here (on the reactor thread).
    pub fn with_files(
        name: &str,
        config: WebConfig,
        files: StaticFiles,
        recorder: Rc<dyn Recorder>,
    ) -> Self {
        let hsts = hsts_header(&config.hsts_max_age);
        let proxy = Rc::new(proxy::Proxy::start(name, &config, &recorder));
        let routes = RouteSlots::new(&config, &*recorder);
        let policy = Rc::new(policy::ClientPolicy::new(&config));
        let route_details = config
            .routes
            .iter()
            .map(|r| RouteDetails {
                prefix: StepDetail::new(&r.prefix),
                upstreams: r
                    .upstreams
                    .iter()
                    .map(|u| StepDetail::new(&u.url))
                    .collect(),
            })
            .collect();
        Self {
            state: Rc::new(State {
                route_details,
                name: name.into(),
                config,
                files: files.0,
                recorder,
                access_log: AccessLog::default(),
                hsts,
                via: crate::headers::Via::of_service(name),
                proxy,
                routes,
                h2_requests: std::cell::OnceCell::new(),
                policy,
            }),
        }
    }

    /// The state of every upstream of every route, readable from any thread (for a
    /// dashboard): health, pool connections, requests and recent errors. The handle
    /// stays valid for the service's life; take a
    /// [`snapshot`](UpstreamsView::snapshot) whenever it is needed.
    pub fn upstreams(&self) -> UpstreamsView {
        self.state.proxy.view().clone()
    }

    /// What other threads (a dashboard) may read of the request bodies its proxy routes
    /// read ahead of their upstreams: buffers and files against their totals. `None`
    /// without routes.
    pub fn bodies(&self) -> Option<BodiesView> {
        self.state.proxy.bodies().cloned()
    }

    /// Writes the access log to `to` rather than as [`AccessLog::Line`]s. Call it before
    /// listening: connections accepted earlier keep the log they started with.
    #[must_use]
    pub fn with_access_log(self, to: AccessLog) -> Self {
        let mut state = (*self.state).clone();
        state.access_log = to;
        Self {
            state: Rc::new(state),
        }
    }

    /// Its requests refused, by reason, readable from any thread (for a dashboard).
    pub fn refusals(&self) -> crate::metrics::RefusalFigures {
        self.state.recorder.refusal_figures()
    }

    /// What it hands to the service that replaces it on this reactor (a reload): the
    /// cell of its client policy in force (`allow`, `deny` and the `rate_limit` budgets).
    pub fn handover(&self) -> Handover {
        self.state.policy.handover()
    }

    /// Takes over from the service `previous` was handed over by (on the same reactor):
    ///
    /// - the cell of the client policy in force (`allow`, `deny` and the `rate_limit`
    ///   budgets), which every generation reads: this one's policy goes into it with
    ///   [`put_in_force`](Self::put_in_force), at the reload's commit, and from then on
    ///   judges the old service's connections too;
    /// - the `rate_limit` buckets in force that count as this one's do: after a reload a
    ///   client spends on where it left off rather than with a fresh burst; a budget
    ///   whose settings changed, or a route that is new, starts afresh.
    ///
    /// Call it before listening.
    #[must_use]
    pub fn taking_over(self, previous: &Handover) -> Self {
        let mut state = (*self.state).clone();
        state.policy = Rc::new(policy::ClientPolicy::joining(&state.config, previous));
        Self {
            state: Rc::new(state),
        }
    }

    /// Puts its client policy (`allow`, `deny`, `rate_limit`) in force for every
    /// generation of the service on this reactor: call it when it replaces the one it took over from (the reload
    /// committed), and never if it does not.
    pub fn put_in_force(&self) {
        self.state.policy.put_in_force();
    }

    /// Its routes with their series, for a view of the service on another thread.
    pub fn routes(&self) -> RouteFigures {
        let state = &self.state;
        let configured = state
            .config
            .routes
            .iter()
            .zip(&state.routes.configured)
            .map(|(route, metrics)| RouteEntry {
                route: route.prefix.clone(),
                upstream: route.upstreams.first().map(|u| u.url.clone()),
                metrics: metrics.clone(),
            });
        let others = [&state.routes.files, &state.routes.unrouted].map(|metrics| RouteEntry {
            route: metrics.route().to_owned(),
            upstream: None,
            metrics: metrics.clone(),
        });
        RouteFigures(configured.chain(others).collect())
    }

    /// Serves on a stream endpoint string (`tcp:8080:interface=127.0.0.1`, `unix:`, `ssl:`).
    pub fn listen(&self, reactor: &Reactor, endpoint: &str) -> Result<ListeningPort, ListenError> {
        self.listen_with(reactor, endpoint, &ListenOptions::default())
    }

    /// Like [`listen`](Self::listen), accepting connections under `options` (idle
    /// timeout, per-peer cap).
    pub fn listen_with(
        &self,
        reactor: &Reactor,
        endpoint: &str,
        options: &ListenOptions,
    ) -> Result<ListeningPort, ListenError> {
        let state = self.state.clone();
        if let Some(per_peer) = options.get_peer_limit() {
            state
                .h2_requests
                .get_or_init(|| weft::policies::PeerLimit::new(per_peer.max()));
        }
        // Offered by `ssl:` listeners in the TLS handshake; plain ones ignore it.
        let options = options.clone().alpn_protocols(&protocol::ALPN);
        reactor.listen_stream_with(&self.state.name, endpoint, &options, move |stream| {
            serve_connection(state.clone(), stream)
        })
    }
}

/// `max-age` in seconds (RFC 6797 §6.1), or nothing when HSTS is off.
fn hsts_header(max_age: &Option<std::time::Duration>) -> Option<HeaderValue> {
    max_age.and_then(|age| HeaderValue::try_from(format!("max-age={}", age.as_secs())).ok())
}
