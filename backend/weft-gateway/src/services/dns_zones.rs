//! DNS zones across a reload, one zone at a time.
//!
//! A reload re-reads every zone file. A file that loads replaces its zone; one that does
//! not (unreadable, or a bad record) leaves the zone it had in service, and the failure is
//! logged, reported in the reload's message with the file and line, and counted in
//! `weft_dns_zone_reloads_total{result="failed"}`; the other zones and the rest of the
//! configuration apply. A file that does not load and had no zone in service (a new
//! service's, or one added to a service) refuses the reload: there is nothing to keep.
//! `weft check` and `weft run` refuse such a file outright ([`first_failure`]). When a reload is applied, each zone whose serial changed is
//! announced to the service's `notify` peers (RFC 1996); an unchanged serial sends nothing.

use std::sync::Arc;

use weft::Reactor;
use weft_names::transfer::{ZoneReload, notify};
use weft_names::{Catalog, ServiceMetrics, Zone};

use super::dns::{DnsKind, DnsSettings};
use super::{ServiceEnv, ServiceError, ServiceKind};
use crate::config::{ConfigError, ServiceConfig};
use crate::running::{StartError, registered_gauges};

/// The first zone file of `services` that did not load.
pub(crate) fn first_failure(services: &[ServiceConfig]) -> Option<ConfigError> {
    services.iter().find_map(|s| match &s.kind {
        ServiceKind::Dns(d) => d.failed.first().map(|f| f.error.clone()),
        _ => None,
    })
}

fn dns(service: &ServiceConfig) -> Option<&DnsSettings> {
    match &service.kind {
        ServiceKind::Dns(d) => Some(d),
        _ => None,
    }
}

pub(crate) fn metrics(env: &ServiceEnv, name: &str) -> ServiceMetrics {
    match &env.metrics::<DnsKind>().families {
        Some(m) => m.service(name),
        None => ServiceMetrics::detached(name),
    }
}

/// The zones each DNS service serves, by service name: what a reload compares the zones it
/// reads with.
#[derive(Debug, Default)]
pub(crate) struct InService(Vec<(String, Catalog)>);

impl InService {
    pub(crate) fn of(services: &[ServiceConfig]) -> Self {
        let catalogs = services
            .iter()
            .filter_map(|s| Some((s.name.clone(), dns(s)?.config.zones.clone())));
        Self(catalogs.collect())
    }

    /// Makes each zone of `new` that its service serves unchanged the one in service, for
    /// a reload to find it unchanged without comparing records. Called where the reload
    /// reads the files (a blocking thread), as comparing a large zone takes long.
    pub(crate) fn share(&self, new: &mut [ServiceConfig]) {
        for service in new {
            let ServiceKind::Dns(settings) = &mut service.kind else {
                continue;
            };
            if let Some((_, running)) = self.0.iter().find(|(name, _)| *name == service.name) {
                settings.config.zones.share_unchanged(running);
            }
        }
    }
}

/// Gives each DNS service of `new` whose zone file did not load the zone that file gave
/// the running service of the same name in `old`, and returns what happened to every zone
/// file re-read, to be [reported](ZoneReloads::report) once the reload is applied (a
/// reload that fails later, on a port in use say, changed no zone and counts none).
///
/// A file that did not load and gave the running service no zone (a new service's, or one
/// added to a running service) refuses the reload, as `weft check` and `weft run` refuse
/// it: there is nothing to keep serving, and a reload that went on would answer for the
/// zone with REFUSED. So does a zone kept or loaded for an origin another of the service's
/// files gives too (a file added for a zone whose own file is broken and kept): `check`
/// and `run` refuse two files of one origin.
pub(crate) fn carry_over(
    old: &[ServiceConfig],
    new: &mut [ServiceConfig],
) -> Result<ZoneReloads, StartError> {
    never_loaded(old, new)?;
    // Every service's zones are put together before any is put in place.
    let mut built = Vec::new();
    for (i, service) in new.iter().enumerate() {
        let Some(settings) = dns(service) else {
            continue;
        };
        let running = old.iter().find(|s| s.name == service.name).and_then(dns);
        let before = running.map(|r| r.config.zones.zones());
        let old_zone = |file: &std::path::Path| -> Option<&Arc<Zone>> {
            before?.iter().find(|z| z.file() == file)
        };
        let mut zones = Catalog::default();
        let mut outcomes = Vec::new();
        for file in &settings.zone_files {
            let (zone, outcome) = match settings.failed.iter().find(|f| f.file == *file) {
                Some(failure) => {
                    let kept = old_zone(file);
                    (kept, Err((failure.error.clone(), kept.cloned())))
                }
                None => {
                    let loaded = settings
                        .config
                        .zones
                        .zones()
                        .iter()
                        .find(|z| z.file() == file);
                    // An unchanged zone is the running one ([`InService::share`]).
                    let result = match (loaded, old_zone(file)) {
                        (Some(new), Some(old)) if Arc::ptr_eq(new, old) => ZoneReload::Unchanged,
                        _ => ZoneReload::Changed,
                    };
                    (loaded, Ok(result))
                }
            };
            if let Some(zone) = zone {
                zones.add(zone.clone()).map_err(|e| StartError {
                    service: service.name.clone(),
                    source: e.into(),
                })?;
            }
            outcomes.push(outcome);
        }
        // Zones no file of the configuration gives (the demo's built-in one) come as
        // they are.
        for zone in settings.config.zones.zones() {
            if !settings.zone_files.iter().any(|f| f == zone.file()) {
                zones.add(zone.clone()).map_err(|e| StartError {
                    service: service.name.clone(),
                    source: e.into(),
                })?;
            }
        }
        built.push((i, zones, outcomes));
    }
    let mut reloads = ZoneReloads::default();
    for (i, zones, outcomes) in built {
        if let ServiceKind::Dns(settings) = &mut new[i].kind {
            settings.config.zones = zones;
        }
        reloads.0.push((new[i].name.clone(), outcomes));
    }
    Ok(reloads)
}

/// What became of one zone file in a reload: reloaded (changed or not), or failed with
/// the zone kept in service, if the file had given one.
type ZoneOutcome = Result<ZoneReload, (ConfigError, Option<Arc<Zone>>)>;

/// What a reload did to each DNS service's zone files ([`carry_over`]).
#[derive(Default)]
#[must_use = "a reload applied reports its zone reloads"]
pub(crate) struct ZoneReloads(Vec<(String, Vec<ZoneOutcome>)>);

impl ZoneReloads {
    /// Counts every zone file re-read in `weft_dns_zone_reloads_total` and logs each that
    /// failed; returns a line for each failure, naming the file and its line.
    pub(crate) fn report(self, env: &ServiceEnv) -> Vec<String> {
        let mut notes = Vec::new();
        for (name, outcomes) in self.0 {
            let counters = metrics(env, &name);
            for outcome in outcomes {
                match outcome {
                    Ok(result) => counters.transfer().zone_reload(result),
                    Err((error, kept)) => {
                        counters.transfer().zone_reload(ZoneReload::Failed);
                        let outcome = match kept {
                            Some(z) => format!(
                                "the zone {} keeps serving serial {}",
                                z.origin(),
                                z.serial()
                            ),
                            None => "it is not served".to_owned(),
                        };
                        tracing::warn!(service = %name, %error, "a zone file did not load; {outcome}");
                        notes.push(format!("service {name:?}: {error}; {outcome}"));
                    }
                }
            }
        }
        notes
    }

    /// Logs each zone file that did not load, for a reload that failed on something else
    /// (a port): nothing was applied, so nothing is counted, but the file is still broken
    /// and the next reload will meet it.
    pub(crate) fn warn_unapplied(&self) {
        for (name, outcomes) in &self.0 {
            for (error, _) in outcomes.iter().filter_map(|o| o.as_ref().err()) {
                tracing::warn!(service = %name, %error, "a zone file did not load (the reload failed, so nothing changed)");
            }
        }
    }
}

/// The first zone file of `new` that did not load and that the running service of the
/// same name in `old` did not serve.
fn never_loaded(old: &[ServiceConfig], new: &[ServiceConfig]) -> Result<(), StartError> {
    for service in new {
        let Some(settings) = dns(service) else {
            continue;
        };
        let running = old.iter().find(|s| s.name == service.name).and_then(dns);
        let served = |file: &std::path::Path| {
            running.is_some_and(|r| r.config.zones.zones().iter().any(|z| z.file() == file))
        };
        if let Some(failure) = settings.failed.iter().find(|f| !served(&f.file)) {
            return Err(StartError {
                service: service.name.clone(),
                source: ServiceError::ZoneNeverLoaded(Box::new(failure.error.clone())),
            });
        }
    }
    Ok(())
}

/// After a reload applied `new` in place of `old`: sends a NOTIFY to the `notify` peers of
/// each DNS service for each zone whose serial changed, and warns of a zone that changed
/// with its serial the same where secondaries may transfer it (they would not see it).
pub(crate) fn announce_changes(
    reactor: &Reactor,
    env: &ServiceEnv,
    old: &[ServiceConfig],
    new: &[ServiceConfig],
) {
    for service in new {
        let Some(settings) = dns(service) else {
            continue;
        };
        let transfer = &settings.config.transfer;
        let peers = &transfer.notify;
        let Some(running) = old.iter().find(|s| s.name == service.name).and_then(dns) else {
            continue;
        };
        if peers.is_empty() && transfer.allow.is_empty() {
            continue;
        }
        let counters = metrics(env, &service.name);
        for zone in settings.config.zones.zones() {
            let before = running
                .config
                .zones
                .zones()
                .iter()
                .find(|z| z.origin() == zone.origin());
            // An unchanged zone is the running one ([`InService::share`]).
            let changed = |b: &&Arc<Zone>| !Arc::ptr_eq(b, zone);
            if let Some(before) = before.filter(|b| b.serial() == zone.serial() && changed(b)) {
                tracing::warn!(service = %service.name, zone = %zone.origin(), serial = before.serial(), "the zone changed but its serial did not: secondaries will not transfer the change; raise the serial");
                continue;
            }
            // Not newer in serial arithmetic (RFC 1982): every secondary keeps the copy it
            // has, and never transfers this one (BIND: "zone serial has gone backward").
            if let Some(before) = before.filter(|b| {
                b.serial() != zone.serial() && (zone.serial().wrapping_sub(b.serial()) as i32) <= 0
            }) {
                tracing::warn!(service = %service.name, zone = %zone.origin(), from = before.serial(), to = zone.serial(), "the zone's serial went back: secondaries keep the copy they have and will not transfer this one; give it a serial above the one before");
            }
            let Some(before) = before.filter(|b| b.serial() != zone.serial() && !peers.is_empty())
            else {
                continue;
            };
            tracing::info!(service = %service.name, zone = %zone.origin(), from = before.serial(), to = zone.serial(), peers = peers.len(), "zone serial changed; sending NOTIFY");
            if let Err(error) =
                notify::announce(reactor, &service.name, zone.soa(), peers, &counters)
            {
                tracing::warn!(service = %service.name, zone = %zone.origin(), %error, "NOTIFY could not be sent");
            }
        }
    }
}

/// `weft_dns_zone_serial{service,zone}` and
/// `weft_dns_zone_signatures_expire_timestamp_seconds{service,zone}`, on reactor 0's
/// registry only (the zones are the same on every reactor), set at start and after each
/// reload applied: what each DNS service serves now, for alerting on a signed zone whose
/// signatures near their end (weft serves them; the signer must renew them) and on a
/// serial that does not follow its primary's.
pub(crate) struct ZoneGauges {
    serial: prometheus::IntGaugeVec,
    expiry: prometheus::IntGaugeVec,
}

impl ZoneGauges {
    /// The two families, registered on `registry`; `None` (and a warning) if they cannot be.
    pub(crate) fn register(registry: &prometheus::Registry) -> Option<Self> {
        let labels = ["service", "zone"];
        let gauge = |name: &str, help: &str| registered_gauges(registry, name, help, &labels);
        let gauges = gauge(
            "weft_dns_zone_serial",
            "The SOA serial of each zone a DNS service serves.",
        )
        .and_then(|serial| {
            let expiry = gauge(
                "weft_dns_zone_signatures_expire_timestamp_seconds",
                "When the first signature of each signed zone a DNS service serves expires, \
                 unix seconds: alert on it minus time().",
            )?;
            Ok(Self { serial, expiry })
        });
        match gauges {
            Ok(gauges) => Some(gauges),
            Err(error) => {
                tracing::warn!(%error, "zone serials and signature expiry are not on /metrics");
                None
            }
        }
    }

    /// Sets both to the zones `services` serve, and drops the series of zones they no
    /// longer serve.
    pub(crate) fn publish(&self, services: &[ServiceConfig]) {
        self.serial.reset();
        self.expiry.reset();
        for service in services {
            let Some(settings) = dns(service) else {
                continue;
            };
            for zone in settings.config.zones.zones() {
                let labels = [service.name.as_str(), &zone.origin().to_string()];
                self.serial
                    .with_label_values(&labels)
                    .set(i64::from(zone.serial()));
                if let Some((at, _, _)) = zone.first_expiry() {
                    let seconds = weft_telemetry::live::unix_ms(at) / 1000;
                    self.expiry.with_label_values(&labels).set(seconds);
                }
            }
        }
    }
}
