//! The services a configuration can name; one module each, with its settings, its
//! protocol and its tests. Adding one is a module, a [`ServiceKind`] variant and an arm in
//! `validate` and [`start`].

pub mod discard;
pub mod dns;
pub mod echo;
pub mod tcp_proxy;

use weft::{Address, ListenError, Reactor};

use crate::config::validate::ServiceCtx;
use crate::config::{ConfigError, ServiceConfig};

/// Kinds DESIGN.md names that this build does not have yet.
const LATER: [&str; 1] = ["http"];
/// Kinds this build runs.
const KINDS: [&str; 4] = ["echo", "discard", "tcp-proxy", "dns"];

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
            Self::Dns(_) => "dns",
        }
    }

    /// The kind's settings as a JSON object, for the history store.
    pub fn settings_json(&self) -> String {
        match self {
            Self::Echo | Self::Discard => "{}".into(),
            Self::TcpProxy(c) => serde_json::json!({ "upstream": c.upstream }).to_string(),
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
        "dns" => dns::validate(ctx).map(|d| ServiceKind::Dns(Box::new(d))),
        later if LATER.contains(&later) => Err(ctx.error(
            kind.span(),
            "kind",
            format!(
                "kind {later:?} is not available in this build; available kinds: {}",
                KINDS.join(", ")
            ),
        )),
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

/// What the services of one gateway share: the metric families kinds register on the
/// hub's registry once.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ServiceEnv {
    /// The DNS families; `None` keeps DNS counters off `/metrics`.
    pub dns_metrics: Option<weft_names::DnsMetrics>,
}

impl ServiceEnv {
    /// Registers the families `services` need on `registry`; a family that cannot be
    /// registered is logged and left off `/metrics`.
    pub fn register(registry: &prometheus::Registry, services: &[ServiceConfig]) -> Self {
        let mut env = Self::default();
        if services
            .iter()
            .any(|s| matches!(s.kind, ServiceKind::Dns(_)))
        {
            match weft_names::DnsMetrics::register(registry) {
                Ok(m) => env.dns_metrics = Some(m),
                Err(error) => tracing::warn!(%error, "DNS metrics are not on /metrics"),
            }
        }
        env
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
    match &service.kind {
        ServiceKind::Echo => echo::start(reactor, &service.name, &service.listen),
        ServiceKind::Discard => discard::start(reactor, &service.name, &service.listen),
        ServiceKind::TcpProxy(c) => tcp_proxy::start(reactor, &service.name, &service.listen, c),
        ServiceKind::Dns(d) => dns::start(
            reactor,
            &service.name,
            &service.listen,
            d,
            env.dns_metrics.as_ref(),
        ),
    }
}

/// Listens on stream and UDP endpoints with the protocols a kind gives.
fn listen_both<F, D>(
    reactor: &Reactor,
    name: &str,
    endpoints: &[String],
    stream: impl Fn() -> F,
    datagram: impl Fn() -> D,
) -> Result<Vec<Address>, ListenError>
where
    F: weft::Factory,
    D: weft::DatagramProtocol,
{
    let mut bound = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints {
        if ServiceCtx::is_udp(endpoint) {
            let port = reactor.listen_udp(name, endpoint, datagram())?;
            bound.push(port.transport().host().clone());
        } else {
            let port = reactor.listen_as(name, endpoint, stream())?;
            bound.push(port.local_address().clone());
        }
    }
    Ok(bound)
}
