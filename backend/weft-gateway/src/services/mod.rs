//! The services a configuration can name; one module each, with its settings, its
//! protocol and its tests.
//!
//! A kind is a type implementing `Kind`: its `kind` string, its default idle timeout,
//! how its keys are read and checked into its settings, the metrics its services share,
//! how a service starts on a reactor and how it describes itself. `kinds!` registers
//! every kind in one list, from which [`ServiceKind`] (a configured service's kind with
//! its settings), the list of names, the kinds' `mod` declarations and every dispatch
//! are made. Adding a kind is a module, one line in that list, and its keys in the
//! config's `raw` module (one serde table for every kind, so a key of the wrong kind is
//! named as such).

pub(crate) mod access_log;
pub(crate) mod dns_edns;
pub(crate) mod dns_forwarding;
pub(crate) mod dns_secondary;
pub(crate) mod dns_signed;
pub(crate) mod dns_view;
pub(crate) mod dns_zones;
pub(crate) mod http_routes;
pub(crate) mod http_view;
pub mod limits;
pub(crate) mod rate_limit;
pub(crate) mod tls_certificates;

pub use limits::ServiceLimits;

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use weft::observe::exemplar::ExemplarIndex;
use weft::{Address, ListenError, ListenOptions, Reactor};

use crate::config::validate::ServiceCtx;
use crate::config::{ConfigError, ServiceConfig};

/// Why a service could not start: a listener, or something else it needs, named by its
/// key.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A listener could not be opened.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// A file the service writes could not be opened; `key` names its setting.
    #[error("{key}: cannot open {}: {source}", path.display())]
    File {
        /// The setting that names the file (`access_log`).
        key: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A DNS service's zones could not be put in service.
    #[error(transparent)]
    Names(Box<weft_names::NamesError>),
    /// A listener of a reload on the running dashboard's port, which only a restart moves.
    #[error(
        "cannot listen on {endpoint}: the running dashboard listens there ({dashboard}), and \
         a reload does not move the dashboard; restart to move it, or give the service \
         another port"
    )]
    OnTheDashboard {
        /// The service's endpoint.
        endpoint: String,
        /// The running dashboard's.
        dashboard: String,
    },
    /// A listener of a reload on a port a running service listens on at another address
    /// (`0.0.0.0` for `127.0.0.1`, or back): the running socket stays open until the
    /// reload is done, so the new one cannot be bound beside it.
    #[error(
        "cannot listen on {endpoint}: service {owner:?} listens on the same port at another \
         address ({running}) until the reload is done, and a reload takes over a socket only \
         at the same address; restart to move it"
    )]
    ElsewhereOnThePort {
        /// The new listener's endpoint.
        endpoint: String,
        /// The running one's.
        running: String,
        /// The service running it.
        owner: String,
    },
    /// A zone file that never loaded, in a reload: there is no zone to keep serving.
    #[error("{0}; a zone file is served once it loads")]
    ZoneNeverLoaded(Box<ConfigError>),
}

impl From<weft_names::NamesError> for ServiceError {
    fn from(e: weft_names::NamesError) -> Self {
        match e {
            weft_names::NamesError::Listen(e) => Self::Listen(e),
            other => Self::Names(Box::new(other)),
        }
    }
}

/// A service kind.
///
/// Reloading: a reload replaces a running service whose settings differ from the new
/// ones (`Settings: PartialEq`, through [`ServiceConfig`]'s equality) by calling
/// [`start`](Self::start) again with listener options that take over the old instance's
/// sockets and per-peer counts; the kind's [`Metrics`](Self::Metrics) are made once per
/// [`ServiceEnv`] and kept across reloads, so a replaced service counts on in the same
/// series.
pub(crate) trait Kind: 'static {
    /// The `kind` string of the configuration.
    const NAME: &'static str;
    /// The keys of a `[[service]]` of this kind besides [`EVERY_KIND`]'s.
    const KEYS: &'static [&'static str];
    /// Connections idle this long are closed unless the service sets `idle_timeout`.
    const IDLE_TIMEOUT: Duration;
    /// Its settings, as validated.
    type Settings;
    /// What its services share: metric families registered once, per-service series.
    type Metrics: 'static;

    /// Reads and checks this kind's keys of one `[[service]]`; errors name the key.
    fn validate(ctx: &ServiceCtx<'_>) -> Result<Self::Settings, ConfigError>;

    /// Its shared metrics, on `registry` (`None`: counted nowhere), with the exemplars of
    /// its latency histograms listed in `exemplars`.
    fn metrics(registry: Option<&prometheus::Registry>, exemplars: &ExemplarIndex)
    -> Self::Metrics;

    /// Listens on every endpoint of `on` with `settings`; returns the addresses bound.
    fn start(
        on: &Listeners<'_>,
        settings: &Self::Settings,
        env: &ServiceEnv,
    ) -> Result<Vec<Address>, ServiceError>;

    /// Its settings as a JSON object, for `/api/services` and the history store.
    fn describe(settings: &Self::Settings) -> serde_json::Value;
}

/// Makes the kinds' modules, [`ServiceKind`], [`KINDS`] and their dispatch from the one
/// list of kinds: each entry is a variant, with the settings it carries if any, and the
/// module and [`Kind`] it is.
macro_rules! kinds {
    (@pat $variant:ident ($settings:ty) $s:tt) => { Self::$variant($s) };
    (@pat $variant:ident $s:tt) => { Self::$variant };
    (@settings $s:ident ($settings:ty)) => { $s };
    (@settings $s:ident) => { &() };
    (@make $variant:ident ($settings:ty) $s:ident) => { Self::$variant($s) };
    (@make $variant:ident $s:ident) => {{ let () = $s; Self::$variant }};
    ($( $(#[$doc:meta])* $variant:ident $(($settings:ty))? => $module:ident::$kind:ident, )*) => {
        $( pub mod $module; )*

        /// What a service is, with its kind's settings.
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum ServiceKind {
            $( $(#[$doc])* $variant $(($settings))?, )*
        }

        /// The `kind` strings this build runs.
        const KINDS: &[&str] = &[$( <$module::$kind as Kind>::NAME ),*];

        /// The keys of a `[[service]]` of kind `name` besides [`EVERY_KIND`]'s, if it is
        /// a kind.
        pub(crate) fn keys_of(name: &str) -> Option<&'static [&'static str]> {
            $(
                if name == <$module::$kind as Kind>::NAME {
                    return Some(<$module::$kind as Kind>::KEYS);
                }
            )*
            None
        }

        impl ServiceKind {
            /// The kind named `name` read from `ctx`, or `None` for no such kind.
            fn read(name: &str, ctx: &ServiceCtx<'_>) -> Option<Result<Self, ConfigError>> {
                $(
                    if name == <$module::$kind as Kind>::NAME {
                        return Some(
                            <$module::$kind as Kind>::validate(ctx).map(|s| kinds!(@make $variant $(($settings))? s)),
                        );
                    }
                )*
                None
            }

            /// Calls `f` with this kind and its settings.
            fn with<R>(&self, f: impl FnOnce(&dyn Configured) -> R) -> R {
                match self {
                    $(
                        kinds!(@pat $variant $(($settings))? s) => {
                            f(&Of::<$module::$kind>(kinds!(@settings s $(($settings))?)))
                        }
                    )*
                }
            }
        }
    };
}

kinds! {
    /// Sends back what it receives, over TCP and UDP.
    Echo => echo::EchoKind,
    /// Reads and throws away, over TCP and UDP.
    Discard => discard::DiscardKind,
    /// Forwards TCP connections to an upstream.
    TcpProxy(tcp_proxy::TcpProxyConfig) => tcp_proxy::TcpProxyKind,
    /// Serves static files and proxies routes over HTTP.
    Http(Box<http::HttpConfig>) => http::HttpKind,
    /// Answers DNS queries from zone files and forwards the rest.
    Dns(Box<dns::DnsSettings>) => dns::DnsKind,
}

/// A kind with the settings of one service, as one object: what [`ServiceKind`]
/// dispatches to.
trait Configured {
    fn name(&self) -> &'static str;
    fn idle_timeout(&self) -> Duration;
    fn prepare(&self, env: &ServiceEnv);
    fn start(&self, on: &Listeners<'_>, env: &ServiceEnv) -> Result<Vec<Address>, ServiceError>;
    fn describe(&self) -> serde_json::Value;
}

/// The settings of a service of kind `K`.
struct Of<'a, K: Kind>(&'a K::Settings);

impl<K: Kind> Configured for Of<'_, K> {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn idle_timeout(&self) -> Duration {
        K::IDLE_TIMEOUT
    }

    fn prepare(&self, env: &ServiceEnv) {
        env.metrics::<K>();
    }

    fn start(&self, on: &Listeners<'_>, env: &ServiceEnv) -> Result<Vec<Address>, ServiceError> {
        K::start(on, self.0, env)
    }

    fn describe(&self) -> serde_json::Value {
        K::describe(self.0)
    }
}

/// The further certificates a service's `ssl:` listeners serve by SNI.
pub(crate) fn sni_certificates(kind: &ServiceKind) -> &[weft::net::SniCertificate] {
    match kind {
        ServiceKind::Http(http) => &http.tls_certificates,
        _ => &[],
    }
}

/// The CA files a service's upstream connections trust: an HTTP route's `ca`, a
/// tcp-proxy upstream's `caCerts=`.
pub(crate) fn ca_files(kind: &ServiceKind) -> Vec<std::path::PathBuf> {
    match kind {
        ServiceKind::Http(http) => http
            .web
            .routes
            .iter()
            .filter_map(|r| r.ca.clone())
            .collect(),
        ServiceKind::TcpProxy(proxy) => match proxy.upstream.parse() {
            Ok(weft::endpoint::ClientEndpoint::Ssl {
                ca_certs: Some(ca), ..
            }) => vec![ca],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

impl ServiceKind {
    /// The `kind` string of the configuration.
    pub fn as_str(&self) -> &'static str {
        self.with(|k| k.name())
    }

    /// The kind's settings as a JSON object, for the history store.
    pub fn settings_json(&self) -> String {
        self.with(|k| k.describe()).to_string()
    }

    /// How long its connections may stay idle unless the service says otherwise.
    pub(crate) fn idle_timeout(&self) -> Duration {
        self.with(|k| k.idle_timeout())
    }
}

/// The keys every kind of `[[service]]` takes.
pub(crate) const EVERY_KIND: [&str; 8] = [
    "name",
    "kind",
    "listen",
    "idle_timeout",
    "max_connections_per_peer",
    "max_connections",
    "send_buffer",
    "receive_buffer",
];

/// Checks a `[[service]]`'s kind and its kind's keys.
pub(crate) fn validate(ctx: &ServiceCtx<'_>) -> Result<ServiceKind, ConfigError> {
    let kind = &ctx.raw.kind;
    ServiceKind::read(kind.get_ref(), ctx).unwrap_or_else(|| {
        Err(ctx.error(
            kind.span(),
            "kind",
            match crate::config::wording::closest(kind.get_ref(), KINDS) {
                Some(meant) => format!(
                    "unknown kind {:?}; did you mean {meant:?}? (expected one of: {})",
                    kind.get_ref(),
                    KINDS.join(", ")
                ),
                None => format!(
                    "unknown kind {:?}; expected one of: {}",
                    kind.get_ref(),
                    KINDS.join(", ")
                ),
            },
        ))
    })
}

impl ServiceConfig {
    /// Its settings as a JSON object, for the services table: the kind's, with the limits
    /// every kind has.
    pub fn settings_json(&self) -> String {
        let mut settings = self.kind.with(|k| k.describe());
        if let (Some(settings), serde_json::Value::Object(limits)) =
            (settings.as_object_mut(), self.limits.settings_json())
        {
            settings.extend(limits);
        }
        settings.to_string()
    }
}

/// What the services of one gateway share: each kind's metrics, made on the hub's
/// registry once and kept across reloads, and the HTTP access log files.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ServiceEnv {
    /// The registry kinds register their families on; `None` keeps their counters off
    /// `/metrics`.
    registry: Option<prometheus::Registry>,
    /// Where latency histograms list their exemplars for the OpenMetrics exposition (the
    /// hub's, in the gateway).
    exemplars: ExemplarIndex,
    /// Each kind's [`Kind::Metrics`], by the kind's type, made on first use: a registry
    /// takes one registration of a family, and a service replaced by a reload counts on
    /// in the same series.
    metrics: KindMetrics,
    /// The access log files HTTP services open, reopened together on SIGUSR1 and closed
    /// together at exit.
    pub access_logs: weft_web::AccessLogFiles,
    /// HTTP services without a file log each request as fields rather than as a Combined
    /// Log Format message (for `[log] format = "json"`).
    pub access_log_fields: bool,
    /// Where services register what the dashboard shows of them beyond their connections
    /// (the hub's, in the gateway).
    pub views: weft_telemetry::ServiceViews,
    /// Where DNS services write their query log; `None` without a store and `[otlp]`.
    pub query_log: Option<QueryLogTo>,
}

/// Where DNS services write their query log: the store's `queries` table, `dns query`
/// spans (`[otlp]`), or both.
#[derive(Debug, Clone)]
pub struct QueryLogTo {
    /// The store's writer, with a store.
    pub writer: Option<weft_store::Writer>,
    /// The span exporter's queue, with `[otlp]`.
    pub spans: Option<weft_inspector::QuerySpans>,
    /// Routine answers logged per second (`[store] queries_per_second`).
    pub per_second: u32,
}

/// [`Kind::Metrics`] of every kind used so far, by the kind's type.
#[derive(Clone, Default)]
struct KindMetrics(Rc<RefCell<HashMap<TypeId, Rc<dyn Any>>>>);

impl std::fmt::Debug for KindMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KindMetrics")
            .field("kinds", &self.0.borrow().len())
            .finish()
    }
}

impl ServiceEnv {
    /// Registers the families `services` need on `registry`, their exemplars listed in
    /// `exemplars`; a family that cannot be registered is logged and left off `/metrics`.
    pub fn register(
        registry: &prometheus::Registry,
        exemplars: &ExemplarIndex,
        services: &[ServiceConfig],
    ) -> Self {
        let env = Self {
            registry: Some(registry.clone()),
            exemplars: exemplars.clone(),
            ..Self::default()
        };
        env.extend(services);
        env
    }

    /// Registers what `services` need and is not registered yet (a reload that adds the
    /// first service of a kind).
    pub fn extend(&self, services: &[ServiceConfig]) {
        for service in services {
            service.kind.with(|k| k.prepare(self));
        }
    }

    /// The metrics of kind `K`, made the first time.
    pub(crate) fn metrics<K: Kind>(&self) -> Rc<K::Metrics> {
        let made = self
            .metrics
            .0
            .borrow_mut()
            .entry(TypeId::of::<K>())
            .or_insert_with(|| Rc::new(K::metrics(self.registry.as_ref(), &self.exemplars)))
            .clone();
        made.downcast().expect("stored under its kind's type")
    }
}

/// Listens on every endpoint of `service`; returns the addresses bound, in order.
pub fn start(reactor: &Reactor, service: &ServiceConfig) -> Result<Vec<Address>, ServiceError> {
    start_with(reactor, service, &ServiceEnv::default())
}

/// [`start`] with the gateway's shared metric families.
pub fn start_with(
    reactor: &Reactor,
    service: &ServiceConfig,
    env: &ServiceEnv,
) -> Result<Vec<Address>, ServiceError> {
    start_with_options(reactor, service, env, service.limits.listen_options())
}

/// [`start_with`] under `options` (the service's limits; a service replacing another
/// passes options that go on counting the connections the old one admitted).
pub fn start_with_options(
    reactor: &Reactor,
    service: &ServiceConfig,
    env: &ServiceEnv,
    options: ListenOptions,
) -> Result<Vec<Address>, ServiceError> {
    let on = Listeners {
        reactor,
        name: &service.name,
        endpoints: &service.listen,
        options,
    };
    service.kind.with(|k| k.start(&on, env))
}

/// Where a service listens and how its listeners treat connections.
pub(crate) struct Listeners<'a> {
    pub(crate) reactor: &'a Reactor,
    /// The service's name.
    pub(crate) name: &'a str,
    pub(crate) endpoints: &'a [String],
    /// One value for all of the service's listeners, so a peer's connections are
    /// counted across them.
    pub(crate) options: ListenOptions,
}

/// A kind with no keys and no metrics of its own that answers with one protocol over
/// streams and one over UDP (echo, discard): a [`Kind`] by the impl below.
pub(crate) trait Plain: 'static {
    /// The `kind` string of the configuration.
    const NAME: &'static str;
    /// What serves each stream connection.
    type Stream: weft::Protocol + Default + 'static;
    /// What serves each UDP endpoint.
    type Datagram: weft::DatagramProtocol + Default + 'static;
}

impl<P: Plain> Kind for P {
    const NAME: &'static str = <P as Plain>::NAME;
    const KEYS: &'static [&'static str] = &[];
    const IDLE_TIMEOUT: Duration = limits::STREAM_IDLE_TIMEOUT;
    type Settings = ();
    type Metrics = ();

    fn validate(ctx: &ServiceCtx<'_>) -> Result<(), ConfigError> {
        ctx.only_keys(Self::KEYS)
    }

    fn metrics(_: Option<&prometheus::Registry>, _: &ExemplarIndex) {}

    fn start(on: &Listeners<'_>, (): &(), _: &ServiceEnv) -> Result<Vec<Address>, ServiceError> {
        let mut bound = Vec::with_capacity(on.endpoints.len());
        for endpoint in on.endpoints {
            if ServiceCtx::is_udp(endpoint) {
                let port = on
                    .reactor
                    .listen_udp(on.name, endpoint, P::Datagram::default())?;
                bound.push(port.transport().host().clone());
            } else {
                let stream = weft::factory(P::Stream::default);
                let port = on
                    .reactor
                    .listen_with(on.name, endpoint, &on.options, stream)?;
                bound.push(port.local_address().clone());
            }
        }
        Ok(bound)
    }

    fn describe((): &()) -> serde_json::Value {
        serde_json::json!({})
    }
}
