//! The services a configuration can name; one module each, with its settings, its
//! protocol and its tests. Adding one is a module, a [`ServiceKind`] variant with its arms
//! here (`KINDS`, `as_str`, `settings_json`, `validate`, [`start_with_options`]), its
//! default idle timeout in `limits`, and its keys in the config's `raw` module.

pub(crate) mod access_log;
pub mod discard;
pub mod dns;
pub mod echo;
pub mod http;
pub mod limits;
pub mod tcp_proxy;

pub use limits::ServiceLimits;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use weft::{Address, ListenError, ListenOptions, Reactor};

use crate::config::validate::ServiceCtx;
use crate::config::{ConfigError, ServiceConfig};

/// Kinds this build runs.
const KINDS: [&str; 5] = ["echo", "discard", "tcp-proxy", "http", "dns"];

/// What a service is, with its kind's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceKind {
    /// Sends back what it receives, over TCP and UDP.
    Echo,
    /// Reads and throws away, over TCP and UDP.
    Discard,
    /// Forwards TCP connections to an upstream.
    TcpProxy(tcp_proxy::TcpProxyConfig),
    /// Serves static files and proxies routes over HTTP.
    Http(Box<http::HttpConfig>),
    /// Answers DNS queries from zone files and forwards the rest.
    Dns(Box<dns::DnsSettings>),
}

impl ServiceKind {
    /// The `kind` string of the configuration.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::Discard => "discard",
            Self::TcpProxy(_) => "tcp-proxy",
            Self::Http(_) => "http",
            Self::Dns(_) => "dns",
        }
    }

    /// The kind's settings as a JSON object, for the history store.
    pub fn settings_json(&self) -> String {
        match self {
            Self::Echo | Self::Discard => "{}".into(),
            Self::TcpProxy(c) => serde_json::json!({ "upstream": c.upstream }).to_string(),
            Self::Http(c) => http::settings_json(c).to_string(),
            Self::Dns(d) => serde_json::json!({
                "zones": d.zone_files,
                "forward": d.config.forward,
                "cache_size": d.config.cache_size,
                "timeout_ms": d.config.timeout.as_millis() as u64,
            })
            .to_string(),
        }
    }
}

/// Checks a `[[service]]`'s kind and its kind's keys.
pub(crate) fn validate(ctx: &ServiceCtx<'_>) -> Result<ServiceKind, ConfigError> {
    let kind = &ctx.raw.kind;
    match kind.get_ref().as_str() {
        "echo" => echo::validate(ctx).map(|()| ServiceKind::Echo),
        "discard" => discard::validate(ctx).map(|()| ServiceKind::Discard),
        "tcp-proxy" => tcp_proxy::validate(ctx).map(ServiceKind::TcpProxy),
        "http" => http::validate(ctx).map(|c| ServiceKind::Http(Box::new(c))),
        "dns" => dns::validate(ctx).map(|d| ServiceKind::Dns(Box::new(d))),
        other => Err(ctx.error(
            kind.span(),
            "kind",
            format!(
                "unknown kind {other:?}; expected one of: {}",
                KINDS.join(", ")
            ),
        )),
    }
}

impl ServiceConfig {
    /// Its settings as a JSON object, for the services table: the kind's, with the limits
    /// every kind has.
    pub fn settings_json(&self) -> String {
        let mut settings: serde_json::Value =
            serde_json::from_str(&self.kind.settings_json()).unwrap_or_default();
        if let (Some(settings), serde_json::Value::Object(limits)) =
            (settings.as_object_mut(), self.limits.settings_json())
        {
            settings.extend(limits);
        }
        settings.to_string()
    }
}

/// What the services of one gateway share: the metric families kinds register on the
/// hub's registry once, and each HTTP service's series (registered once per name, kept
/// across reloads).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ServiceEnv {
    /// The DNS families; `None` keeps DNS counters off `/metrics`.
    pub dns_metrics: Option<weft_names::DnsMetrics>,
    /// Where HTTP services register their series (one set per service, told apart by the
    /// `service` label); `None` keeps HTTP counters off `/metrics`.
    pub http_registry: Option<prometheus::Registry>,
    /// The registry families are registered on when a reload needs them.
    registry: Option<prometheus::Registry>,
    http_recorders: PerService<Rc<dyn weft_web::Recorder>>,
    access_log_losses: PerService<Arc<dyn weft_web::LossRecorder>>,
    /// The access log files HTTP services open, reopened together on SIGUSR1 and closed
    /// together at exit.
    pub access_logs: weft_web::AccessLogFiles,
    /// HTTP services without a file log each request as fields rather than as a Combined
    /// Log Format message (for `[log] format = "json"`).
    pub access_log_fields: bool,
}

/// What each service registers once by name and keeps across reloads (a registry takes one
/// registration of a name, and a service replaced by a reload counts on in the same
/// series).
#[derive(Clone)]
struct PerService<T>(Rc<RefCell<HashMap<String, T>>>);

impl<T> Default for PerService<T> {
    fn default() -> Self {
        Self(Rc::default())
    }
}

impl<T: Clone> PerService<T> {
    /// `name`'s value, made by `make` the first time.
    fn get(&self, name: &str, make: impl FnOnce() -> T) -> T {
        self.0
            .borrow_mut()
            .entry(name.to_owned())
            .or_insert_with(make)
            .clone()
    }
}

impl<T> std::fmt::Debug for PerService<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.borrow().keys()).finish()
    }
}

impl ServiceEnv {
    /// Registers the families `services` need on `registry`; a family that cannot be
    /// registered is logged and left off `/metrics`.
    pub fn register(registry: &prometheus::Registry, services: &[ServiceConfig]) -> Self {
        let mut env = Self {
            registry: Some(registry.clone()),
            ..Self::default()
        };
        env.extend(services);
        env
    }

    /// Registers what `services` need and is not registered yet (a reload that adds the
    /// first DNS or HTTP service).
    pub fn extend(&mut self, services: &[ServiceConfig]) {
        let Some(registry) = &self.registry else {
            return;
        };
        let any = |f: fn(&ServiceKind) -> bool| services.iter().any(|s| f(&s.kind));
        if self.dns_metrics.is_none() && any(|k| matches!(k, ServiceKind::Dns(_))) {
            match weft_names::DnsMetrics::register(registry) {
                Ok(m) => self.dns_metrics = Some(m),
                Err(error) => tracing::warn!(%error, "DNS metrics are not on /metrics"),
            }
        }
        if self.http_registry.is_none() && any(|k| matches!(k, ServiceKind::Http(_))) {
            self.http_registry = Some(registry.clone());
        }
    }

    /// The series of the HTTP service `name`, registered on first use.
    pub(crate) fn http_recorder(&self, name: &str) -> Rc<dyn weft_web::Recorder> {
        self.http_recorders
            .get(name, || http::recorder(self.http_registry.as_ref(), name))
    }

    /// Where the HTTP service `name` counts access log lines it lost, registered on first
    /// use.
    pub(crate) fn access_log_losses(&self, name: &str) -> Arc<dyn weft_web::LossRecorder> {
        self.access_log_losses.get(name, || {
            access_log::losses(self.http_registry.as_ref(), name)
        })
    }
}

/// Listens on every endpoint of `service`; returns the addresses bound, in order.
pub fn start(reactor: &Reactor, service: &ServiceConfig) -> Result<Vec<Address>, ListenError> {
    start_with(reactor, service, &ServiceEnv::default())
}

/// [`start`] with the gateway's shared metric families.
pub fn start_with(
    reactor: &Reactor,
    service: &ServiceConfig,
    env: &ServiceEnv,
) -> Result<Vec<Address>, ListenError> {
    start_with_options(reactor, service, env, service.limits.listen_options())
}

/// [`start_with`] under `options` (the service's limits; a service replacing another
/// passes options that go on counting the connections the old one admitted).
pub fn start_with_options(
    reactor: &Reactor,
    service: &ServiceConfig,
    env: &ServiceEnv,
    options: ListenOptions,
) -> Result<Vec<Address>, ListenError> {
    let on = Listeners {
        reactor,
        name: &service.name,
        endpoints: &service.listen,
        options,
    };
    match &service.kind {
        ServiceKind::Echo => echo::start(&on),
        ServiceKind::Discard => discard::start(&on),
        ServiceKind::TcpProxy(c) => tcp_proxy::start(&on, c),
        ServiceKind::Http(c) => http::start(&on, c, env.http_recorder(&service.name), env),
        ServiceKind::Dns(d) => dns::start(&on, d, env.dns_metrics.as_ref()),
    }
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

/// Listens on stream and UDP endpoints with the protocols a kind gives.
fn listen_both<F, D>(
    on: &Listeners<'_>,
    stream: impl Fn() -> F,
    datagram: impl Fn() -> D,
) -> Result<Vec<Address>, ListenError>
where
    F: weft::Factory,
    D: weft::DatagramProtocol,
{
    let mut bound = Vec::with_capacity(on.endpoints.len());
    for endpoint in on.endpoints {
        if ServiceCtx::is_udp(endpoint) {
            let port = on.reactor.listen_udp(on.name, endpoint, datagram())?;
            bound.push(port.transport().host().clone());
        } else {
            let port = on
                .reactor
                .listen_with(on.name, endpoint, &on.options, stream())?;
            bound.push(port.local_address().clone());
        }
    }
    Ok(bound)
}
