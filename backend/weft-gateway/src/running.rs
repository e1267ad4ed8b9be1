//! [`Running`]: the services the gateway runs now, started from a configuration and changed
//! to another one by [`Running::apply`] without touching what stays the same.
//!
//! Applying a configuration compares its services with the running ones by name:
//!
//! - unchanged (the same kind, settings, endpoints and limits, zones and routes included):
//!   not touched at all;
//! - added: started;
//! - changed: started again from the new settings, taking over the sockets of the
//!   endpoints that stay (a [`weft::Handover`]: never closed, so nothing waiting to be
//!   accepted is reset), binding the endpoints that are new; the old endpoints that are no
//!   longer listed stop accepting. An HTTP service's keep-alive connections already open
//!   are served by the new settings from their next request on (a request in flight
//!   finishes under the old; the connection keeps its TLS session and the limits it was
//!   accepted with); a DNS service's TCP connections are answered by the new settings
//!   from their next question on (a question waiting upstream, or a zone transfer being
//!   sent, finishes under the old); other kinds' connections finish under the settings
//!   they were accepted with. A service whose kind changes drains the connections it had, as a
//!   removed one does. The per-peer cap of the new settings counts the connections the
//!   old instance admitted;
//! - removed: its listeners stop and its connections are drained: closed cleanly, and
//!   aborted if still open after `ReactorConfig::shutdown_deadline` (with the reason
//!   `service_stopped`). Sockets that are not configured endpoints (a DNS service's
//!   upstream ports) stop after that deadline too, so answers still on their way arrive.
//!
//! A DNS zone file that no longer loads does not stop the rest: the new settings take the
//! zone the running service has from that file (`services::dns_zones`), and the failure
//! is in [`Applied::notes`]; once applied, zones whose serial changed are announced to
//! the service's `notify` peers.
//!
//! Everything that can fail (binding an address in use, loading a certificate) happens
//! before anything running is touched: the handover rolls back, the old services go on
//! serving, and the error names the service and the endpoint. Then the history store, the
//! expected listeners of `/readyz` and the live views follow the new set. None of it waits
//! on the store: a history file locked by another process holds nothing up.
//!
//! Only `[[service]]` tables are applied; a changed `[dashboard]`, `[gateway]`, `[store]`,
//! `[inspect]`, `[otlp]`, `[demo]` or `[log]` is reported as needing a restart, and a
//! service on the running dashboard's port is refused (only a restart moves it).

use std::collections::HashMap;
use std::sync::Arc;

use weft::{Address, CloseReason, ListenOptions, Reactor};
use weft_inspector::QuerySpans;
use weft_store::{ServiceRecord, Store};
use weft_telemetry::Hub;

use crate::config::{Config, LogFormat, ServiceConfig};
use crate::logging::Installed;
use crate::services::{self, ServiceEnv};

/// The services running now.
pub struct Running {
    reactor: Reactor,
    hub: Arc<Hub>,
    store: Option<Store>,
    env: ServiceEnv,
    /// What runs: the services as applied last, the other sections as at start (they are
    /// not reloaded).
    config: Config,
    /// Each running service's listener options, by name: a service that replaces it goes
    /// on counting its peers' connections in them.
    options: HashMap<String, ListenOptions>,
    /// The other reactors, which follow what this one applies (reactor 0's only).
    replicas: crate::replicas::Replicas,
    /// Whether this is reactor 0's, which also keeps the store, `/readyz` and the live
    /// views up to date and announces zone changes; the other reactors' only serve.
    primary: bool,
    /// `weft_tls_certificate_expiry_timestamp_seconds`, reactor 0's only.
    expiry: Option<prometheus::IntGaugeVec>,
    /// The DNS zones' serials and signature expiry, reactor 0's only.
    zone_gauges: Option<services::dns_zones::ZoneGauges>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("services", &self.config.services.len())
            .finish_non_exhaustive()
    }
}

/// A service that could not start.
#[derive(Debug, thiserror::Error)]
#[error("service {service:?}: {source}")]
pub struct StartError {
    /// The service's name.
    pub service: String,
    /// Why.
    #[source]
    pub source: services::ServiceError,
}

/// What [`Running::apply`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Services started.
    pub added: Vec<String>,
    /// Services stopped, their connections draining.
    pub removed: Vec<String>,
    /// Services replaced by their new settings.
    pub changed: Vec<String>,
    /// Services left as they were.
    pub unchanged: usize,
    /// Sections that changed but apply only at the next start (`[dashboard]`, ...).
    pub need_restart: Vec<&'static str>,
    /// What else the reload reports: zone files that did not load, by file and line,
    /// and the zones they keep serving.
    pub notes: Vec<String>,
}

impl Running {
    /// Starts every service of `config` (call it before the reactor runs), records each in
    /// the store and declares its listeners to `/readyz`.
    pub fn start(
        reactor: &Reactor,
        hub: Arc<Hub>,
        store: Option<Store>,
        query_spans: Option<QuerySpans>,
        config: &Config,
    ) -> Result<Self, StartError> {
        hub.track_reloads();
        let mut env = ServiceEnv::register(hub.registry(), hub.exemplars(), &config.services);
        env.views = hub.views().clone();
        services::access_log::reopen_on_sigusr1(reactor, env.access_logs.clone());
        // `/readyz` stays 503 until each of these is up and the reactor runs.
        for service in &config.services {
            for endpoint in &service.listen {
                hub.expect_listener(&service.name, endpoint);
            }
        }
        env.query_log = query_log_to(store.as_ref(), query_spans, config);
        let expiry = certificate_expiry(hub.registry());
        let zone_gauges = services::dns_zones::ZoneGauges::register(hub.registry());
        // Before any request: no name a root gives them later serves these.
        weft_web::keep_private(config.private_files.clone());
        let mut running = Self::serve(reactor, hub, store, env, config, true)?;
        running.expiry = expiry;
        running.zone_gauges = zone_gauges;
        running.publish_certificates();
        running.publish_zones();
        Ok(running)
    }

    /// Sets the zone gauges to the zones the DNS services now serve.
    fn publish_zones(&self) {
        if let Some(gauges) = &self.zone_gauges {
            gauges.publish(&self.config.services);
        }
    }

    /// Sets the expiry gauge to the certificates the services now serve.
    fn publish_certificates(&self) {
        let Some(expiry) = &self.expiry else {
            return;
        };
        expiry.reset();
        for service in &self.config.services {
            for (certificate, not_after) in &service.certificates {
                let seconds = match not_after.duration_since(std::time::UNIX_EPOCH) {
                    Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
                    Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
                };
                expiry
                    .with_label_values(&[service.name.as_str(), certificate.as_str()])
                    .set(seconds);
            }
        }
    }

    /// Starts every service of `config` on `reactor`, one more reactor beside the one
    /// [`start`](Self::start) started them on first: the same services on the same
    /// addresses, writing to the same `access_logs`. Their counters go on a registry of
    /// this reactor's that `/metrics` sums with the others'; the store, `/readyz` and the
    /// dashboard's service views are kept by the first reactor's.
    pub fn start_replica(
        reactor: &Reactor,
        hub: Arc<Hub>,
        store: Option<Store>,
        query_spans: Option<QuerySpans>,
        config: &Config,
        access_logs: weft_web::AccessLogFiles,
    ) -> Result<Self, StartError> {
        let registry = prometheus::Registry::new();
        hub.sum_registry(registry.clone());
        let mut env = ServiceEnv::register(&registry, hub.exemplars(), &config.services);
        env.access_logs = access_logs;
        env.query_log = query_log_to(store.as_ref(), query_spans, config);
        Self::serve(reactor, hub, store, env, config, false)
    }

    fn serve(
        reactor: &Reactor,
        hub: Arc<Hub>,
        store: Option<Store>,
        mut env: ServiceEnv,
        config: &Config,
        primary: bool,
    ) -> Result<Self, StartError> {
        // How the process logs is set at start (`--log-format` over the file's `[log]`); a
        // reload that changes it says restart.
        env.access_log_fields = crate::logging::installed()
            .map_or(config.log.format, |installed| installed.format)
            == LogFormat::Json;
        let mut running = Self {
            reactor: reactor.clone(),
            hub,
            store: store.filter(|_| primary),
            env,
            config: config.clone(),
            options: HashMap::new(),
            replicas: Default::default(),
            primary,
            expiry: None,
            zone_gauges: None,
        };
        for service in &config.services {
            let options = service.limits.listen_options();
            let bound = running.start_one(service, &options)?;
            log_serving(service, &bound);
            running.options.insert(service.name.clone(), options);
            running.record(service);
        }
        Ok(running)
    }

    /// Makes the reactors of `replicas` follow what [`apply`](Self::apply) applies here,
    /// through [`follow`](Self::follow).
    pub fn set_replicas(&mut self, replicas: crate::replicas::Replicas) {
        self.replicas = replicas;
    }

    /// Applies on the other reactors what this one runs now (after an
    /// [`apply`](Self::apply)); returns what failed there.
    pub async fn follow(&self) -> Vec<String> {
        self.replicas.apply(&self.config).await
    }

    /// The configuration running now.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The access log files the HTTP services write, for closing at exit.
    pub fn access_logs(&self) -> &weft_web::AccessLogFiles {
        &self.env.access_logs
    }

    /// The history file the process writes (until a restart moves it), if a file.
    pub(crate) fn history_file(&self) -> Option<std::path::PathBuf> {
        self.config.history_file().map(std::path::Path::to_path_buf)
    }

    /// The services running now, as last applied.
    pub(crate) fn services(&self) -> &[ServiceConfig] {
        &self.config.services
    }

    /// The DNS counters of service `name`.
    pub(crate) fn dns_metrics(&self, name: &str) -> weft_names::ServiceMetrics {
        services::dns_zones::metrics(&self.env, name)
    }

    /// The hub the services report to.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Starts `service` under `options`; where it listens.
    fn start_one(
        &self,
        service: &ServiceConfig,
        options: &ListenOptions,
    ) -> Result<Vec<Address>, StartError> {
        services::start_with_options(&self.reactor, service, &self.env, options.clone()).map_err(
            |source| StartError {
                service: service.name.clone(),
                source,
            },
        )
    }

    fn record(&self, service: &ServiceConfig) {
        if let Some(store) = &self.store {
            store.try_send(ServiceRecord {
                name: service.name.clone(),
                kind: service.kind.as_str().into(),
                endpoints: service.listen.clone(),
                config_json: service.settings_json(),
            });
        }
    }

    /// Changes what runs to `config`'s services (see the [module documentation](self)).
    /// On an error nothing changed.
    ///
    /// On a replica ([`start_replica`](Self::start_replica)), `config` is what the first
    /// reactor's applied (with the zones it carried over).
    pub fn apply(&mut self, mut config: Config) -> Result<Applied, StartError> {
        self.bindable_beside_the_running(&config)?;
        let zone_reloads = if self.primary {
            services::dns_zones::carry_over(&self.config.services, &mut config.services)?
        } else {
            services::dns_zones::ZoneReloads::default()
        };
        let old = std::mem::take(&mut self.config.services);
        let by_name = |list: &[ServiceConfig], name: &str| list.iter().position(|s| s.name == name);
        let mut applied = Applied::default();
        for service in &config.services {
            match by_name(&old, &service.name) {
                None => applied.added.push(service.name.clone()),
                Some(i) if old[i] != *service => applied.changed.push(service.name.clone()),
                Some(_) => applied.unchanged += 1,
            }
        }
        applied.removed = old
            .iter()
            .filter(|s| by_name(&config.services, &s.name).is_none())
            .map(|s| s.name.clone())
            .collect();
        let result = self.switch(&old, &config, &applied);
        match &result {
            Ok(()) if self.primary => {
                applied.notes = zone_reloads.report(&self.env);
                services::dns_zones::announce_changes(
                    &self.reactor,
                    &self.env,
                    &old,
                    &config.services,
                );
            }
            Ok(()) => {}
            Err(_) => zone_reloads.warn_unapplied(),
        }
        self.config.services = match result {
            Ok(()) => config.services.clone(),
            Err(_) => old,
        };
        result?;
        if self.primary {
            weft_web::keep_private(config.private_files.clone());
        }
        self.publish_certificates();
        self.publish_zones();
        applied.need_restart = restart_needed(&self.config, &config, crate::logging::installed());
        Ok(applied)
    }

    /// Refuses a service of `new` on the running dashboard's port: a reload does not move
    /// the dashboard (a file that swaps its port with a service's, say), so the service
    /// could not listen there; and one on a running service's port at another address,
    /// which could not be bound beside it.
    fn bindable_beside_the_running(&self, new: &Config) -> Result<(), StartError> {
        let running = &self.config.dashboard.listen;
        // The new services overlap no other (the file validated), so a clash is with it.
        let mut taken = crate::config::preflight::Listeners::default();
        if let Ok(dashboard) = running.parse::<weft::endpoint::ServerEndpoint>() {
            let _ = taken.claim(running, &dashboard, "the running dashboard".into());
        }
        // The running services' listeners: a new one at another address of a port one of
        // them listens on could not be bound while it is.
        let mut old = crate::config::preflight::Listeners::default();
        for service in &self.config.services {
            for endpoint in &service.listen {
                if let Ok(parsed) = endpoint.parse() {
                    let _ = old.claim(endpoint, &parsed, service.name.clone());
                }
            }
        }
        for service in &new.services {
            for endpoint in &service.listen {
                let Ok(parsed) = endpoint.parse() else {
                    continue;
                };
                let refused = |source| StartError {
                    service: service.name.clone(),
                    source,
                };
                if taken
                    .claim(endpoint, &parsed, service.name.clone())
                    .is_err()
                {
                    return Err(refused(services::ServiceError::OnTheDashboard {
                        endpoint: endpoint.clone(),
                        dashboard: running.clone(),
                    }));
                }
                if let Some((running, owner)) = old.elsewhere_on_the_port(&parsed) {
                    return Err(refused(services::ServiceError::ElsewhereOnThePort {
                        endpoint: endpoint.clone(),
                        running: running.to_owned(),
                        owner: owner.to_owned(),
                    }));
                }
            }
        }
        Ok(())
    }

    /// Starts the added and changed services of `new` in a handover of the ports of the
    /// changed and removed ones, commits it, then retires what the old ones leave.
    fn switch(
        &mut self,
        old: &[ServiceConfig],
        new: &Config,
        applied: &Applied,
    ) -> Result<(), StartError> {
        let replaced = |name: &str| {
            applied.changed.iter().any(|n| n == name) || applied.removed.iter().any(|n| n == name)
        };
        self.env.extend(&new.services);
        let offered: Vec<_> = self
            .reactor
            .listening_ports()
            .into_iter()
            .filter(|p| replaced(&p.info().service))
            .collect();
        // A service whose kind changes is gone as what it was: its connections are
        // drained as a removed service's are (an HTTP service's would otherwise go on
        // under settings a reload replaced). Listed now: the new service may open
        // connections of its own under the name as it starts.
        let kind = |services: &[ServiceConfig], name: &str| {
            services
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.kind.as_str())
        };
        let retyped: Vec<_> = applied
            .changed
            .iter()
            .filter(|name| kind(old, name) != kind(&new.services, name))
            .map(|name| (name, self.reactor.service_connections(name)))
            .collect();
        let handover = self.reactor.handover(offered);
        let views = self.env.views.saved();
        let mut started = Vec::new();
        for service in &new.services {
            if !applied.added.contains(&service.name) && !applied.changed.contains(&service.name) {
                continue;
            }
            let options = successor_options(service, self.options.get(&service.name));
            // An error here drops the handover: nothing started, nothing stopped, and the
            // views show the services that go on.
            match self.start_one(service, &options) {
                Ok(bound) => started.push((service, options, bound)),
                Err(e) => {
                    self.env.views.restore(views);
                    return Err(e);
                }
            }
        }
        let kept = handover.commit();
        self.env.views.retain(|name, kind| {
            new.services
                .iter()
                .any(|s| s.name == name && s.kind.as_str() == kind)
        });

        let deadline = self.reactor.config().shutdown_deadline;
        for port in kept {
            let info = port.info();
            let configured = old
                .iter()
                .any(|s| *s.name == *info.service && s.listen.contains(&info.endpoint));
            if configured {
                tracing::info!(service = %info.service, endpoint = %info.endpoint, "stopped listening");
                port.stop_listening();
            } else {
                self.reactor
                    .call_later(deadline, move || port.stop_listening());
            }
        }
        for (name, open) in retyped {
            let draining = self
                .reactor
                .drain(open, deadline, CloseReason::ServiceStopped);
            tracing::info!(service = %name, connections = draining, "service changed its kind; draining the connections it had");
        }
        for name in &applied.removed {
            self.options.remove(name);
            let draining =
                self.reactor
                    .drain_connections(name, deadline, CloseReason::ServiceStopped);
            tracing::info!(service = %name, connections = draining, "service removed; draining its connections");
            if let Some(store) = &self.store {
                store.remove_service(name);
            }
        }
        // Said only now: a service bound before a later one failed was never served.
        for (service, options, bound) in started {
            log_serving(service, &bound);
            self.options.insert(service.name.clone(), options);
            self.record(service);
        }
        if self.primary {
            self.hub.set_expected_listeners(
                new.services
                    .iter()
                    .flat_map(|s| s.listen.iter().map(|e| (s.name.clone(), e.clone()))),
            );
        }
        Ok(())
    }
}

/// Logs where `service` serves: its endpoints, each `bound` at an address.
fn log_serving(service: &ServiceConfig, bound: &[Address]) {
    for (endpoint, local) in service.listen.iter().zip(bound) {
        tracing::info!(service = %service.name, kind = service.kind.as_str(), %endpoint, %local, "serving");
    }
}

/// The listener options of `service` replacing a service that had `previous`: its own
/// limits, with caps per peer and in total that go on counting the connections the old
/// one admitted (a lowered cap refuses new ones until enough of those have closed).
fn successor_options(service: &ServiceConfig, previous: Option<&ListenOptions>) -> ListenOptions {
    let limits = &service.limits;
    let mut options = limits.listen_options();
    if let (Some(counted), Some(max)) = (
        previous.and_then(ListenOptions::get_peer_limit),
        limits.max_connections_per_peer,
    ) {
        options = options.peer_limit(counted.with_max(max));
    }
    if let Some(counted) = previous.and_then(ListenOptions::get_total_limit) {
        options = options.total_limit(counted.with_max(limits.max_connections));
    }
    options
}

/// Where DNS services' query logs go: the store's `queries` table, `dns query` spans, or
/// both; nowhere (no log at all) without a store and `[otlp]`.
fn query_log_to(
    store: Option<&Store>,
    spans: Option<QuerySpans>,
    config: &Config,
) -> Option<services::QueryLogTo> {
    let writer = store.map(Store::writer);
    (writer.is_some() || spans.is_some()).then(|| services::QueryLogTo {
        writer,
        spans,
        per_second: config.store.queries_per_second,
    })
}

/// The sections of `new` that differ from `running`'s and take a restart to apply: only
/// the services are started again by a reload. `log` is how the process log was set up:
/// a file asking for the format in effect changes nothing, nor does any `[log]` while
/// `--log-format` overrides it (a restart with the flag logs as it does now).
fn restart_needed(running: &Config, new: &Config, log: Option<Installed>) -> Vec<&'static str> {
    [
        ("[dashboard]", running.dashboard == new.dashboard),
        ("[gateway]", running.gateway == new.gateway),
        ("[store]", running.store == new.store),
        ("[inspect]", running.inspect == new.inspect),
        ("[otlp]", running.otlp == new.otlp),
        // The demo's upstreams and traffic start with the process.
        ("[demo]", running.demo == new.demo),
        (
            "[log]",
            running.log == new.log
                || log.is_some_and(|log| log.by_flag || log.format == new.log.format),
        ),
    ]
    .into_iter()
    .filter(|(_, same)| !same)
    .map(|(section, _)| section)
    .collect()
}

/// A family of gauges `name` with `labels`, registered on `registry`: what reactor 0 sets
/// of what the configuration holds (certificates, zones) at start and after each reload.
pub(crate) fn registered_gauges(
    registry: &prometheus::Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<prometheus::IntGaugeVec> {
    let gauge = prometheus::IntGaugeVec::new(prometheus::Opts::new(name, help), labels)?;
    registry.register(Box::new(gauge.clone()))?;
    Ok(gauge)
}

/// `weft_tls_certificate_expiry_timestamp_seconds{service,certificate}`, registered on
/// `registry`; `None` (and logged) if it cannot be.
fn certificate_expiry(registry: &prometheus::Registry) -> Option<prometheus::IntGaugeVec> {
    let gauge = registered_gauges(
        registry,
        "weft_tls_certificate_expiry_timestamp_seconds",
        "When each certificate a service's ssl: listeners serve stops being valid \
         (its notAfter), unix seconds: alert on it minus time().",
        &["service", "certificate"],
    );
    match gauge {
        Ok(gauge) => Some(gauge),
        Err(error) => {
            tracing::warn!(%error, "certificate expiry is not on /metrics");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::parse(
            "weft.toml",
            &format!("{extra}\n[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = \"tcp:0\"\n"),
        )
        .unwrap()
    }

    #[test]
    fn a_reload_names_each_section_it_cannot_apply() {
        let plain = config("");
        assert!(restart_needed(&plain, &config(""), None).is_empty());
        let json = config("[log]\nformat = \"json\"\n");
        let from_file = |format| {
            Some(Installed {
                format,
                by_flag: false,
            })
        };
        assert_eq!(
            restart_needed(&plain, &json, from_file(LogFormat::Text)),
            ["[log]"]
        );
        // The process logs JSON already.
        assert!(restart_needed(&plain, &json, from_file(LogFormat::Json)).is_empty());
        // `--log-format json` wins over any file, now and after a restart.
        let flag = Some(Installed {
            format: LogFormat::Json,
            by_flag: true,
        });
        assert!(restart_needed(&json, &plain, flag).is_empty());
        let demo = config("[demo]\ntraffic = true\n");
        assert_eq!(restart_needed(&plain, &demo, None), ["[demo]"]);
        assert_eq!(restart_needed(&demo, &plain, None), ["[demo]"]);
        let inspect = config("[inspect]\nstall_after = \"9s\"\n");
        assert_eq!(restart_needed(&plain, &inspect, None), ["[inspect]"]);
    }
}
