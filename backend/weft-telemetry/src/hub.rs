//! [`Hub`]: the reactor's observer, routing each event to metrics, the live registry and the bus.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use prometheus::Registry;
use weft::observe::exemplar::ExemplarIndex;
use weft::observe::{ConnectionId, Event, ListenerInfo, Observer};
use weft::{Address, Phase, Reactor, ReactorHandle};

use crate::NO_SERVICE;
use crate::bus::{Bus, EventKind, Feed};
use crate::config::{HubConfig, TelemetryError};
use crate::deferred::DeferredTracker;
use crate::live::{ByteCollector, ConnectionSnapshot, LiveRegistry};
use crate::metrics::Metrics;
use crate::profile::{LagSpike, RecentSpikes};
use crate::ready::{Readiness, ReadinessReport};
use crate::recent::Recent;
use crate::refusals::{ERROR_EVENTS, ErrorGate, REFUSAL_EVENTS, RefusalGate};
use crate::reload::{ReloadOutcome, Reloads};
use crate::views::ServiceViews;

/// The telemetry hub. Install it on a reactor; read it from any thread.
pub struct Hub {
    config: HubConfig,
    metrics: Metrics,
    live: Arc<LiveRegistry>,
    /// Feeds the history writer and the /ws feed; a slow reader drops events instead of slowing the
    /// hub.
    bus: Bus,
    deferreds: DeferredTracker,
    /// The last chains that ended or were flagged, for the API to list before history has
    /// them.
    recent: Recent,
    /// What `/readyz` answers: the listeners expected, those up, and the reactor's phase.
    ready: Readiness,
    /// Which refusals go on the bus: a flood must not fill it.
    refusals: RefusalGate,
    /// Which handled errors reach the bus: a flood of bad input must not fill it.
    errors: ErrorGate,
    /// `NO_SERVICE` allocated once, so labelling an event outside any service allocates nothing.
    no_service: Arc<str>,
    /// Registered by the first [`track_reloads`](Self::track_reloads); `None` if that
    /// failed (logged).
    reloads: OnceLock<Option<Reloads>>,
    /// Services the program no longer serves (see
    /// [`set_expected_listeners`](Self::set_expected_listeners)). A std mutex: taken briefly,
    /// by a reload and by the dashboard's sampler, never across an await.
    retired: Mutex<BTreeSet<String>>,
    /// What each service shows of itself beyond its connections, set by the program.
    views: ServiceViews,
    /// The latest reactor-lag spikes, for the profile page without a store.
    spikes: RecentSpikes,
    /// The handle of every reactor the hub is installed on, by index, so an action on a
    /// connection or chain goes to the reactor that owns it. Taken by an action, not per
    /// event.
    /// Shared with the collector of `weft_reactor_calls_refused_total`.
    reactors: crate::calls::Handles,
    /// Where latency histograms list their exemplars, for the OpenMetrics exposition.
    exemplars: ExemplarIndex,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("config", &self.config)
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub with its own Prometheus registry.
    pub fn new(config: HubConfig) -> Result<Arc<Self>, TelemetryError> {
        config.validate()?;
        let metrics = Metrics::new()?;
        crate::process::register(metrics.registry())?;
        let live = Arc::new(LiveRegistry::default());
        metrics
            .registry()
            .register(Box::new(ByteCollector::new(live.clone())?))?;
        let reactors = crate::calls::Handles::default();
        metrics
            .registry()
            .register(Box::new(crate::calls::CallsCollector::new(
                reactors.clone(),
            )?))?;
        let deferreds = DeferredTracker::new(
            metrics.registry(),
            config.sample,
            (config.sample_per_second, config.failed_per_second),
            live.clone(),
        )?;
        let bus = Bus::new(config.bus_capacity);
        Ok(Arc::new(Self {
            config,
            metrics,
            live,
            bus,
            deferreds,
            recent: Recent::default(),
            ready: Readiness::default(),
            refusals: RefusalGate::new(REFUSAL_EVENTS),
            errors: ErrorGate::new(ERROR_EVENTS),
            no_service: NO_SERVICE.into(),
            reloads: OnceLock::new(),
            retired: Mutex::default(),
            views: ServiceViews::default(),
            spikes: RecentSpikes::default(),
            reactors,
            exemplars: ExemplarIndex::default(),
        }))
    }

    /// The latest reactor-lag spikes, newest first, each with what was running.
    pub fn lag_spikes(&self) -> Vec<LagSpike> {
        self.spikes.list()
    }

    /// Starts event sequence numbers at `seq` (for example one above the highest number a
    /// history file holds, so numbers keep increasing across restarts that share it).
    pub fn with_first_seq(self: Arc<Self>, seq: u64) -> Arc<Self> {
        self.bus.set_first_seq(seq);
        self
    }

    /// Makes this hub the observer of `reactor` (and of its thread); the detections it
    /// counts use the reactor's thresholds ([`ReactorConfig`](weft::ReactorConfig)). Call it
    /// on the reactor's thread. From then on the hub's [`readiness`](Self::readiness)
    /// follows the reactor: starting until it runs, stopping once it shuts down.
    ///
    /// Several reactors of a [`ReactorPool`](weft::ReactorPool) share one hub: install it
    /// on each, on its thread.
    pub fn install(self: &Arc<Self>, reactor: &Reactor) {
        reactor.set_observer(self.clone());
        {
            let index = usize::from(reactor.index());
            let mut reactors = self.reactors.lock().unwrap_or_else(|p| p.into_inner());
            if reactors.len() <= index {
                reactors.resize(index + 1, None);
            }
            reactors[index] = Some(reactor.handle());
        }
        let hub = self.clone();
        reactor.call_when_running(move || hub.ready.serving());
        let hub = self.clone();
        reactor.add_shutdown_hook(Phase::Before, move || hub.ready.stopping());
    }

    /// The handle of reactor `index`, if the hub is installed on it.
    pub fn reactor(&self, index: u16) -> Option<ReactorHandle> {
        let reactors = self.reactors.lock().unwrap_or_else(|p| p.into_inner());
        reactors.get(usize::from(index)).cloned().flatten()
    }

    /// How many reactors the hub is installed on (the highest index, plus one).
    pub fn reactor_count(&self) -> usize {
        self.reactors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Renders `registry`'s families on `/metrics` too, each series added to the one of
    /// the same name and labels: a program running several reactors registers what it
    /// makes once per reactor (a service's counters) on a registry of that reactor's, and
    /// scrapes see one series as with one reactor.
    pub fn sum_registry(&self, registry: Registry) {
        self.metrics.sum_registry(registry);
    }

    /// Every metric family, with the summed registries' series added in.
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.metrics.gather()
    }

    /// Declares a listener the program is about to start (`endpoint` as it will be asked
    /// for, e.g. `tcp:8000`): [`readiness`](Self::readiness) is not ready until it is up.
    pub fn expect_listener(&self, service: &str, endpoint: &str) {
        self.ready.expect(service, endpoint);
    }

    /// Declares every listener the program serves from now on, replacing what was declared
    /// before (after a reload): [`readiness`](Self::readiness) waits for the new ones. A
    /// service left with none is retired: the live views ([`is_retired`](Self::is_retired))
    /// stop listing it, while its draining connections stay listed and its counters stay on
    /// `/metrics`; a service declared again is listed again.
    pub fn set_expected_listeners(&self, listeners: impl IntoIterator<Item = (String, String)>) {
        let listeners: Vec<_> = listeners.into_iter().collect();
        let gone = self.ready.expect_only(listeners.iter().cloned());
        let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        for (service, _) in &listeners {
            retired.remove(service);
        }
        retired.extend(gone);
    }

    /// Whether `service` was retired by [`set_expected_listeners`](Self::set_expected_listeners).
    pub fn is_retired(&self, service: &str) -> bool {
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(service)
    }

    /// Registers `weft_config_reloads_total{result}` and
    /// `weft_config_last_reload_successful` (once), so they exist at zero before the first
    /// reload. A program that reloads its configuration calls it at start.
    pub fn track_reloads(&self) {
        self.reloads();
    }

    fn reloads(&self) -> Option<&Reloads> {
        self.reloads
            .get_or_init(|| match Reloads::register(self.registry()) {
                Ok(r) => Some(r),
                Err(error) => {
                    tracing::warn!(%error, "configuration reload metrics are not on /metrics");
                    None
                }
            })
            .as_ref()
    }

    /// Counts a reload by its result, keeps it as the last one and publishes it as a
    /// `config_reloaded` event.
    pub fn record_reload(&self, outcome: ReloadOutcome) {
        if let Some(reloads) = self.reloads() {
            reloads.record(&outcome);
        }
        self.publish(|| EventKind::ConfigReloaded {
            result: outcome.result,
            message: outcome.message.clone(),
            added: outcome.added.clone(),
            removed: outcome.removed.clone(),
            changed: outcome.changed.clone(),
        });
    }

    /// The last reload recorded, if any (for the dashboard's banner).
    pub fn last_reload(&self) -> Option<ReloadOutcome> {
        self.reloads.get()?.as_ref()?.last()
    }

    /// Whether the program serves: the reactor runs, is not shutting down, and every
    /// expected listener is up; if not, what is missing.
    pub fn readiness(&self) -> ReadinessReport {
        self.ready.report()
    }

    /// The views services register of themselves (routes, upstreams), for the dashboard.
    pub fn views(&self) -> &ServiceViews {
        &self.views
    }

    /// The settings it was built with.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// The registry every metric is on; register your own collectors here to have them on
    /// the same `/metrics`.
    pub fn registry(&self) -> &Registry {
        self.metrics.registry()
    }

    /// Every metric in Prometheus' text format.
    pub fn encode_metrics(&self) -> String {
        self.metrics.encode()
    }

    /// Every metric in the OpenMetrics text format, latency buckets with their exemplars
    /// ([`openmetrics::CONTENT_TYPE`](crate::openmetrics::CONTENT_TYPE)).
    pub fn encode_openmetrics(&self) -> String {
        crate::openmetrics::encode(&self.gather(), &self.exemplars)
    }

    /// Where a program lists the exemplars of the latency histograms it registers on
    /// [`registry`](Self::registry) (or on a summed one), so the OpenMetrics exposition
    /// carries them.
    pub fn exemplars(&self) -> &ExemplarIndex {
        &self.exemplars
    }

    /// The open connections now, oldest first.
    pub fn connections(&self) -> Vec<ConnectionSnapshot> {
        self.live.snapshot()
    }

    /// One open connection now.
    pub fn connection(&self, id: ConnectionId) -> Option<ConnectionSnapshot> {
        self.live.get(id)
    }

    /// How many connections are open.
    pub fn open_connections(&self) -> usize {
        self.live.len()
    }

    /// Every pending Deferred chain now, oldest first.
    pub fn pending_deferreds(&self) -> Vec<crate::DeferredSnapshot> {
        self.deferreds.pending_chains()
    }

    /// One pending Deferred chain now.
    pub fn deferred(&self, id: u64) -> Option<crate::DeferredSnapshot> {
        self.deferreds.chain(id)
    }

    /// The Deferred metrics and sampler.
    pub fn deferreds(&self) -> &DeferredTracker {
        &self.deferreds
    }

    /// The last chains that ended or were flagged, as published, before history has them.
    pub fn recent(&self) -> &Recent {
        &self.recent
    }

    /// A reader of every event from now on. `name` is a short, fixed label: events this
    /// reader loses by falling behind are counted under `weft_events_dropped_total{consumer}`.
    pub fn subscribe(&self, name: &'static str) -> Feed {
        self.bus.subscribe(self.metrics.dropped(name))
    }

    /// Publishes the refusals and handled errors left out of the bus since the last of
    /// their service and reason went out, once a second has passed without another: one
    /// event each, for the peer refused last (the error seen last), with `suppressed`
    /// counting the others. Call it about once a second (the dashboard's sampler does), so
    /// a burst's tail reaches the feed and history too.
    pub fn publish_overdue_refusals(&self) {
        let now = Instant::now();
        for due in self.refusals.overdue(now) {
            self.publish(|| refused_event(&due.service, &due.last, due.reason, due.suppressed));
        }
        for due in self.errors.overdue(now) {
            let (kind, connection, message) = due.last;
            self.publish(|| EventKind::ProtocolError {
                service: due.service.to_string(),
                connection,
                kind,
                message,
                suppressed: due.suppressed,
            });
        }
    }

    fn publish(&self, kind: impl FnOnce() -> EventKind) {
        if self.bus.has_listeners() {
            self.bus.publish(kind());
        }
    }

    fn listener(info: &ListenerInfo, started: bool) -> EventKind {
        let (service, endpoint, transport, local) = (
            info.service.to_string(),
            info.endpoint.clone(),
            info.transport,
            info.local.to_string(),
        );
        if started {
            EventKind::ListenerStarted {
                service,
                endpoint,
                transport,
                local,
            }
        } else {
            EventKind::ListenerStopped {
                service,
                endpoint,
                transport,
                local,
            }
        }
    }
}

impl Observer for Hub {
    /// The sampler decides as a chain is made whether history keeps it if it ends well;
    /// one it passes over and that ends well within 100 ms is never reported.
    fn sample_chain(&self) -> bool {
        self.deferreds.sampler().keep_success()
    }

    fn on_event(&self, event: &Event<'_>) {
        match event {
            Event::ConnectionOpened(info) => {
                let m = self.metrics.conn(&info.service, info.transport);
                m.opened.inc();
                m.active.inc();
                self.metrics.reactor(info.reactor).connections.inc();
                self.live.insert(info);
                self.publish(|| EventKind::ConnectionOpened {
                    connection: ConnectionSnapshot::of(info),
                });
            }
            Event::ConnectionClosed(closed) => {
                let info = &closed.info;
                let m = self.metrics.conn(&info.service, info.transport);
                m.active.dec();
                self.metrics.reactor(info.reactor).connections.dec();
                m.closed.get(closed.reason.label()).inc();
                // Kept too, for readers of a connection between its leaving the registry
                // and history having its close (`Recent::closed_connection`): before it
                // leaves, so a reader finds it in one or the other. Only while the bus has
                // readers: history's writer is one, and without history there is no row
                // to be late.
                if self.bus.has_listeners()
                    && let Some(published) = self.bus.publish_kept(EventKind::ConnectionClosed {
                        connection: ConnectionSnapshot::of(info),
                        reason: closed.reason.kind(),
                        detail: closed.reason.describe(),
                    })
                {
                    self.recent.keep(published);
                }
                self.live.remove(info);
            }
            Event::Refused(refused) => {
                self.metrics
                    .service(&refused.service)
                    .refused
                    .get(refused.reason)
                    .inc();
                if self.bus.has_listeners()
                    && let Some(suppressed) = self.refusals.admit(
                        &refused.service,
                        refused.reason,
                        refused.peer.clone(),
                        Instant::now(),
                    )
                {
                    self.bus.publish(refused_event(
                        &refused.service,
                        &refused.peer,
                        refused.reason,
                        suppressed,
                    ));
                }
            }
            Event::ProtocolError(error) => {
                self.metrics
                    .service(&error.service)
                    .errors
                    .get(error.kind.as_str())
                    .inc_by(error.count);
                // A flood of bad input is one error each: at most `ERROR_EVENTS` a second
                // for a service and kind reach the feed and history, the next saying how
                // many were left out; the metric above counts them all.
                let connection = error.connection.map(|c| c.0);
                if self.bus.has_listeners()
                    && let Some(suppressed) = self.errors.admit(
                        &error.service,
                        error.kind.as_str(),
                        (error.kind, connection, error.message.clone()),
                        Instant::now(),
                    )
                {
                    self.bus.publish(EventKind::ProtocolError {
                        service: error.service.to_string(),
                        connection,
                        kind: error.kind,
                        message: error.message.clone(),
                        suppressed,
                    });
                }
            }
            Event::SlowCallback(slow) => {
                let service = slow.service.as_ref().unwrap_or(&self.no_service);
                self.metrics.service(service).slow_callbacks.inc();
                self.publish(|| EventKind::SlowCallback {
                    callback: slow.callback.clone(),
                    service: slow.service.as_ref().map(|s| s.to_string()),
                    connection: slow.connection.map(|c| c.0),
                    duration_ms: slow.duration.as_secs_f64() * 1e3,
                });
            }
            Event::ReactorLag(lag) => {
                // The probe runs on the reactor it measures.
                self.metrics
                    .observe_lag(weft::reactor::current_index(), lag.lag);
                // The observer runs on the reactor's thread: its slow-callback threshold.
                if let Some(spike) = LagSpike::of(lag, weft::observe::slow_threshold()) {
                    self.spikes.push(spike.clone());
                    self.publish(|| EventKind::ReactorLag { spike });
                }
            }
            Event::ListenerStarted(info) => {
                self.metrics.declare(&info.service, info.transport);
                self.live.declare(&info.service, info.transport);
                self.ready.listener(&info.service, &info.endpoint, true);
                self.publish(|| Self::listener(info, true));
            }
            Event::ListenerStopped(info) => {
                self.ready.listener(&info.service, &info.endpoint, false);
                self.publish(|| Self::listener(info, false));
            }
            Event::Deferred(event) => {
                if let Some(kind) = self.deferreds.on_event(event)
                    && let Some(published) = self.bus.publish_kept(kind)
                {
                    self.recent.keep(published);
                }
            }
            // A kind of event this version does not know yet: nothing to count.
            _ => {}
        }
    }
}

/// A `refused` event: `service` turned `peer` away for `reason`, `suppressed` more of the
/// kind left off the bus before it.
fn refused_event(
    service: &str,
    peer: &Address,
    reason: &'static str,
    suppressed: u64,
) -> EventKind {
    EventKind::Refused {
        service: service.to_owned(),
        peer: peer.to_string(),
        reason,
        suppressed,
    }
}
