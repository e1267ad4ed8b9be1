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
//! A reload makes a new generation of the service (a new [`HttpService`] taking over from
//! the old one, [`HttpService::taking_over`]), put in force when the reload commits: from
//! then on it serves every request, those that come on the keep-alive connections the
//! old generation accepted included, so no request after a reload is served by settings
//! it removed. A connection keeps what was settled when it was accepted: its TLS session,
//! the limits hyper was built with (header size and time, HTTP/2 settings) and its place
//! under the listener's caps.
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

pub(crate) mod streams;

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use http::HeaderValue;
use weft::defer::StepDetail;
use weft::{ListenError, ListenOptions, ListeningPort, Reactor};

use self::connection::serve_connection;
use crate::access_log::AccessLog;
use crate::behind::Behind;
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
    /// per-peer cap. The generations of a service share one count (a reload's listeners
    /// count on from the requests of the connections accepted before it), and every
    /// request is admitted under the cap of the generation in force (none if it has no
    /// per-peer cap).
    h2_requests: std::cell::OnceCell<weft::policies::PeerLimit>,
    /// The count of the generation taken over from, for the first listener's cap to
    /// count on.
    h2_counted: Option<weft::policies::PeerLimit>,
    /// Its client policy (`allow`, `deny` and the `rate_limit` budgets of the service and
    /// its routes) on this reactor.
    policy: Rc<policy::ClientPolicy>,
    /// The generation of the service in force on this reactor, shared by its generations
    /// (a reload puts its own there when it commits): what serves each request, on the
    /// connections of the generations before it too.
    in_force: InForce,
}

/// The cell naming the generation of a service in force on one reactor. Held weakly: a
/// generation lives as long as its listeners and connections, no longer.
type InForce = Rc<RefCell<Weak<State>>>;

impl State {
    /// The generation that serves a request on a connection `this` accepted: the one in
    /// force, or `this` when none is (the generation put in force is gone: the service
    /// was removed, or is no longer served over HTTP).
    fn newest(this: &Rc<Self>) -> Rc<Self> {
        this.in_force
            .borrow()
            .upgrade()
            .unwrap_or_else(|| this.clone())
    }

    /// The client a trusted proxy in front names for a request with `headers` on `conn`,
    /// by its `trusted_proxies`.
    fn behind(&self, conn: &connection::Conn, headers: &http::HeaderMap) -> Option<Rc<Behind>> {
        let config = &self.config;
        Behind::of(
            (&config.trusted_proxies, config.trust_unix_peers),
            conn.peer,
            conn.secure,
            headers,
        )
    }

    /// `state`, which replaces `old` before it serves (a builder step): in force in its
    /// place if `old` was.
    fn replacing(old: &Rc<Self>, state: Self) -> Rc<Self> {
        let new = Rc::new(state);
        let mut in_force = new.in_force.borrow_mut();
        if std::ptr::eq(in_force.as_ptr(), Rc::as_ptr(old)) {
            *in_force = Rc::downgrade(&new);
        }
        drop(in_force);
        new
    }
}

/// What an [`HttpService`] hands to the service that replaces it on the same reactor
/// ([`handover`](HttpService::handover)): the cell naming the generation in force, held
/// weakly (nothing is kept alive once every generation is gone).
#[derive(Clone)]
pub struct Handover {
    in_force: Weak<RefCell<Weak<State>>>,
}

impl std::fmt::Debug for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handover")
            .field("alive", &(self.in_force.strong_count() > 0))
            .finish()
    }
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
        let proxy = Rc::new(proxy::Proxy::start(name, &config, &recorder, None));
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
            state: Rc::new_cyclic(|me| State {
                in_force: Rc::new(RefCell::new(me.clone())),
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
                h2_counted: None,
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
    /// listening.
    #[must_use]
    pub fn with_access_log(self, to: AccessLog) -> Self {
        let mut state = (*self.state).clone();
        state.access_log = to;
        Self {
            state: State::replacing(&self.state, state),
        }
    }

    /// Its requests refused, by reason, readable from any thread (for a dashboard).
    pub fn refusals(&self) -> crate::metrics::RefusalFigures {
        self.state.recorder.refusal_figures()
    }

    /// What it hands to the service that replaces it on this reactor (a reload): the cell
    /// naming the generation in force.
    pub fn handover(&self) -> Handover {
        Handover {
            in_force: Rc::downgrade(&self.state.in_force),
        }
    }

    /// Takes over from the service `previous` was handed over by (on the same reactor):
    ///
    /// - the cell naming the generation in force, which serves every request of every
    ///   generation's connections: this one goes into it with
    ///   [`put_in_force`](Self::put_in_force), at the reload's commit, and from then on
    ///   serves the requests that come on the old service's keep-alive connections too
    ///   (the connections keep the limits hyper and the listener were given when they
    ///   were accepted: header sizes and times, HTTP/2 settings, TLS);
    /// - the `rate_limit` buckets in force that count as this one's do: after a reload a
    ///   client spends on where it left off rather than with a fresh burst; a budget
    ///   whose settings changed, or a route that is new, starts afresh;
    /// - the count of each peer's HTTP/2 requests in flight: its old connections' requests
    ///   and its new ones' count against the cap together;
    /// - each proxy upstream's state where its route, URL and `ca` are unchanged: an
    ///   upstream ejected stays out for the rest of its time (its failures in a row,
    ///   requests, failures and recent errors go on too); its pool starts empty.
    ///
    /// Call it before listening. Without an earlier generation still alive, it changes
    /// nothing.
    #[must_use]
    pub fn taking_over(self, previous: &Handover) -> Self {
        let Some(in_force) = previous.in_force.upgrade() else {
            return self;
        };
        let mut state = (*self.state).clone();
        let newest = in_force.borrow().upgrade();
        if let Some(newest) = newest {
            state.policy = Rc::new(policy::ClientPolicy::succeeding(
                &state.config,
                &newest.policy,
            ));
            // Made again, taking over each unchanged upstream's health and counts (the
            // first one's pools are empty, and its checks end as it is dropped).
            state.proxy = Rc::new(proxy::Proxy::start(
                &state.name,
                &state.config,
                &state.recorder,
                Some(&newest.proxy),
            ));
            // Through a generation without a cap too: its predecessors' requests may still
            // be in flight.
            state.h2_counted = newest
                .h2_requests
                .get()
                .or(newest.h2_counted.as_ref())
                .cloned();
        }
        state.in_force = in_force;
        Self {
            state: Rc::new(state),
        }
    }

    /// Puts it in force for every generation of the service on this reactor: from now on
    /// it serves the requests of their connections too. Call it when it replaces the one
    /// it took over from (the reload committed), and never if it does not.
    pub fn put_in_force(&self) {
        let mine = Rc::downgrade(&self.state);
        let previous = std::mem::replace(&mut *self.state.in_force.borrow_mut(), mine);
        // What the one it replaces goes on doing for requests under way is theirs; its
        // health checks of upstreams the reload may have removed end.
        if let Some(previous) = previous.upgrade()
            && !Rc::ptr_eq(&previous, &self.state)
        {
            previous.proxy.retire();
        }
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
            state.h2_requests.get_or_init(|| match &state.h2_counted {
                Some(counted) => counted.with_max(per_peer.max()),
                None => weft::policies::PeerLimit::new(per_peer.max()),
            });
        }
        // Offered by `ssl:` listeners in the TLS handshake; plain ones ignore it.
        let options = options
            .clone()
            .alpn_protocols(&protocol::ALPN)
            .reply_to_plain_text(protocol::PLAIN_TEXT_REPLY);
        reactor.listen_stream_with(&self.state.name, endpoint, &options, move |stream| {
            serve_connection(state.clone(), stream)
        })
    }
}

/// `max-age` in seconds (RFC 6797 §6.1), or nothing when HSTS is off.
fn hsts_header(max_age: &Option<std::time::Duration>) -> Option<HeaderValue> {
    max_age.and_then(|age| HeaderValue::try_from(format!("max-age={}", age.as_secs())).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::NoRecorder;

    fn service() -> HttpService {
        HttpService::with_files(
            "web",
            WebConfig::default(),
            StaticFiles(None),
            Rc::new(NoRecorder),
        )
        .with_access_log(AccessLog::Fields)
    }

    fn served_by(connections_of: &HttpService, generation: &HttpService) -> bool {
        Rc::ptr_eq(&State::newest(&connections_of.state), &generation.state)
    }

    #[test]
    fn the_generation_in_force_serves_the_requests_of_every_generation() {
        let first = service();
        assert!(served_by(&first, &first));
        let second = service().taking_over(&first.handover());
        // Not before the reload commits: a reload that fails changes nothing.
        assert!(served_by(&first, &first));
        second.put_in_force();
        assert!(served_by(&first, &second));
        assert!(served_by(&second, &second));
        drop(service().taking_over(&second.handover()));
        assert!(served_by(&first, &second));
        let third = service().taking_over(&second.handover());
        third.put_in_force();
        assert!(served_by(&first, &third) && served_by(&second, &third));
        // Once the generation in force is gone (its service removed, or no longer served
        // over HTTP), each serves its own connections' requests.
        drop(third);
        assert!(served_by(&first, &first) && served_by(&second, &second));
    }

    #[test]
    fn a_peer_s_http2_requests_count_against_one_cap_across_a_reload() {
        let reactor = weft::Reactor::new().unwrap();
        let capped = |n| ListenOptions::default().max_connections_per_peer(Some(n));
        let endpoint = "tcp:0:interface=127.0.0.1";
        let first = service();
        let _old = first.listen_with(&reactor, endpoint, &capped(2)).unwrap();
        let peer = weft::Address::Ip(([127, 0, 0, 1], 40000).into());
        let old_request = first.state.h2_requests.get().unwrap().admit(&peer);
        assert!(old_request.is_some());

        // The reload lowers the cap to one: the request still in flight on a connection
        // accepted before it fills the peer's place.
        let second = service().taking_over(&first.handover());
        let _new = second.listen_with(&reactor, endpoint, &capped(1)).unwrap();
        let limit = second.state.h2_requests.get().unwrap();
        assert_eq!(limit.max(), 1);
        assert!(limit.admit(&peer).is_none());
        drop(old_request);
        let new_request = limit.admit(&peer);
        assert!(new_request.is_some());

        // A generation without a per-peer cap between two with one loses no count.
        second.put_in_force();
        let uncapped = service().taking_over(&second.handover());
        let _open = uncapped
            .listen_with(&reactor, endpoint, &ListenOptions::default())
            .unwrap();
        assert!(uncapped.state.h2_requests.get().is_none());
        uncapped.put_in_force();
        let third = service().taking_over(&uncapped.handover());
        let _capped = third.listen_with(&reactor, endpoint, &capped(1)).unwrap();
        assert!(
            third
                .state
                .h2_requests
                .get()
                .unwrap()
                .admit(&peer)
                .is_none()
        );
    }

    #[test]
    fn a_handover_keeps_nothing_alive() {
        let first = service();
        let handover = first.handover();
        let gone = Rc::downgrade(&first.state);
        drop(first);
        assert!(gone.upgrade().is_none());
        let next = service().taking_over(&handover);
        assert!(served_by(&next, &next));
    }
}
