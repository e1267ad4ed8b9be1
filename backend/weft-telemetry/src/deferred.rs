//! Deferred chains: their metrics, the detections, and the sampling of successful chains.
//!
//! `DeferredTracker::on_event` is the one place a [`DeferredEvent`] is handled. Each
//! detection (stalled, slow, unhandled, leaked, deadlock: one per member) is one event on the bus, one increment of
//! `weft_deferred_detections_total{service,detector}` and, through the store consumer, one
//! row; a chain that ends is published (and so stored) when it failed, was flagged, or the
//! [`Sampler`] picked it when it was made.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use weft::defer::{
    Created, DeferredEvent, DeferredId, DeferredState, Detector, FailureInfo, Leaked, Outcome,
    SlowCallback, Stalled, StepFinished, Subject, WaitsOn,
};
use weft::observe::ConnectionId;

use crate::NO_SERVICE;
use crate::bus::EventKind;
use crate::chains::{
    Chain, ChainTrace, Chains, DeferredSnapshot, NamedStepSnapshot, Origin, QueuedStep,
    StepSnapshot, now_ms,
};
use crate::live::{LiveRegistry, unix_ms};

/// Buckets for callback durations, in seconds: ten microseconds to a few seconds.
const CALLBACK_BUCKETS: [f64; 12] = [
    0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
];

/// Decides which successful chains are kept in history: each with probability `rate`,
/// and at most `per_second` of them in any second, so a busy service's history costs the
/// same at 1,000 requests a second as at 100,000. It is asked as each chain is made
/// (through [`Observer::sample_chain`](weft::observe::Observer::sample_chain)), so a chain
/// it passes over that ends well within 100 ms is never even reported.
#[derive(Debug)]
pub struct Sampler {
    /// Probability of keeping a successful chain; failed and flagged chains are kept without
    /// asking.
    rate: f64,
    /// Successful chains kept in one second at most.
    budget: PerSecond,
}

impl Sampler {
    /// Keeps each successful chain with probability `rate` (clamped to 0.0..=1.0), at most
    /// `per_second` a second (0: no cap); the rest of those picked are counted in `skipped`.
    pub fn new(rate: f64, per_second: u32, skipped: IntCounter) -> Self {
        Self {
            rate: rate.clamp(0.0, 1.0),
            budget: PerSecond::new(per_second, skipped),
        }
    }

    /// The rate.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Whether to keep a chain if it ends well; a chain any detector flagged, or that
    /// failed, is kept whatever this said.
    pub fn keep_success(&self) -> bool {
        let picked = self.rate >= 1.0 || (self.rate > 0.0 && fastrand::f64() < self.rate);
        picked && self.budget.take()
    }
}

/// At most so many of something in any second (0: no cap), the rest counted.
#[derive(Debug)]
struct PerSecond {
    per_second: u32,
    /// The second the budget is counted in (high 32 bits, seconds since `start`) and the
    /// ones taken in it so far (low 32 bits): one word, so the check takes no lock.
    window: AtomicU64,
    start: Instant,
    /// Those the budget left out.
    skipped: IntCounter,
}

impl PerSecond {
    fn new(per_second: u32, skipped: IntCounter) -> Self {
        Self {
            per_second,
            window: AtomicU64::new(0),
            start: Instant::now(),
            skipped,
        }
    }

    /// Takes one from this second's budget: `false`, counted, when none is left.
    fn take(&self) -> bool {
        if self.per_second == 0 {
            return true;
        }
        let second = self.start.elapsed().as_secs() & 0xffff_ffff;
        let mut seen = self.window.load(Ordering::Relaxed);
        loop {
            let taken = if seen >> 32 == second {
                seen & 0xffff_ffff
            } else {
                0
            };
            if taken >= u64::from(self.per_second) {
                self.skipped.inc();
                return false;
            }
            let next = (second << 32) | (taken + 1);
            match self.window.compare_exchange_weak(
                seen,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => seen = now,
            }
        }
    }
}

/// One service's Deferred metric handles, resolved once.
pub(crate) struct ServiceHandles {
    pending: IntGauge,
    pub(crate) stalled: IntGauge,
    /// One counter per detector, indexed by [`Detector::index`].
    detections: [IntCounter; Detector::ALL.len()],
    /// The service's failed chains, neither sampled nor flagged, published in one second
    /// at most: a peer that makes one service's chains fail (questions no upstream
    /// answers) uses its own budget, not another service's real outage's.
    failures: PerSecond,
}

/// The Deferred families, the live chains and the sampler.
pub struct DeferredTracker {
    /// Deferreds not fired yet, by service.
    pub pending: IntGaugeVec,
    /// Deferreds pending or paused past `stall_after` now, by service.
    pub stalled: IntGaugeVec,
    /// Detections, by service and detector.
    pub detections: IntCounterVec,
    /// How long each callback ran.
    pub callback_duration: Histogram,
    /// Decides which successful chains reach history.
    sampler: Sampler,
    /// Failed chains neither sampled nor flagged that are published in one second at
    /// most, per service (each service's [`ServiceHandles`] keeps its own count): a peer
    /// that makes chains fail (questions no upstream answers) would otherwise write a row
    /// and an event of a kilobyte or more for each packet of a few dozen bytes.
    failed_per_second: u32,
    /// The failed chains those budgets left out.
    failures_skipped: IntCounter,
    chains: Chains,
    /// Each service's handles, resolved on its first Deferred so later events skip the label
    /// lookup.
    handles: Mutex<HashMap<Arc<str>, Arc<ServiceHandles>>>,
    /// Where a chain's connection is looked up to label it with the connection's service.
    live: Arc<LiveRegistry>,
    /// The latest wait-for graph of locks, semaphores and queues.
    waits: crate::waits::Waits,
}

impl std::fmt::Debug for DeferredTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeferredTracker")
            .field("sampler", &self.sampler)
            .finish_non_exhaustive()
    }
}

fn failure_text(f: &FailureInfo) -> String {
    format!("{}: {} ({})", f.type_name, f.message, f.site)
}

fn duration_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl DeferredTracker {
    pub(crate) fn new(
        registry: &Registry,
        sample: f64,
        (sample_per_second, failed_per_second): (u32, u32),
        live: Arc<LiveRegistry>,
    ) -> Result<Self, prometheus::Error> {
        let pending = IntGaugeVec::new(
            Opts::new(
                "weft_deferreds_pending",
                "Deferreds created and not fired yet, by service.",
            ),
            &["service"],
        )?;
        let stalled = IntGaugeVec::new(
            Opts::new(
                "weft_deferreds_stalled",
                "Deferreds pending or paused longer than the stall threshold, by service.",
            ),
            &["service"],
        )?;
        let detections = IntCounterVec::new(
            Opts::new(
                "weft_deferred_detections_total",
                "Deferreds a detector flagged (stalled, slow, unhandled, leaked, deadlock), by service.",
            ),
            &["service", "detector"],
        )?;
        let callback_duration = Histogram::with_opts(
            HistogramOpts::new(
                "weft_deferred_callback_duration_seconds",
                "How long each Deferred callback ran.",
            )
            .buckets(CALLBACK_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(pending.clone()))?;
        registry.register(Box::new(stalled.clone()))?;
        registry.register(Box::new(detections.clone()))?;
        registry.register(Box::new(callback_duration.clone()))?;
        let skipped = IntCounter::new(
            "weft_deferred_samples_skipped_total",
            "Chains the sample rate picked, as they were made, for history should they end well, but its per-second cap left out.",
        )?;
        registry.register(Box::new(skipped.clone()))?;
        let failures_skipped = IntCounter::new(
            "weft_deferred_failures_skipped_total",
            "Failed chains, neither sampled nor flagged, that the per-second cap of failures kept out of history and the live feed.",
        )?;
        registry.register(Box::new(failures_skipped.clone()))?;
        Ok(Self {
            pending,
            stalled,
            detections,
            callback_duration,
            sampler: Sampler::new(sample, sample_per_second, skipped),
            failed_per_second,
            failures_skipped,
            chains: Chains::default(),
            handles: Mutex::default(),
            live,
            waits: crate::waits::Waits::default(),
        })
    }

    /// The sampler of successful chains.
    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    /// Every pending chain and live task now, oldest first.
    pub fn pending_chains(&self) -> Vec<DeferredSnapshot> {
        self.with_services(self.chains.pending())
    }

    /// The pending chains a history snapshot writes (every chain, and a task a detector
    /// flagged), each then published when it ends, however it ends: its row says how.
    pub fn pending_for_history(&self) -> Vec<DeferredSnapshot> {
        self.with_services(self.chains.pending_for_history())
    }

    /// `snapshots` with the service of each task's connection filled in.
    fn with_services(&self, mut snapshots: Vec<DeferredSnapshot>) -> Vec<DeferredSnapshot> {
        for snapshot in &mut snapshots {
            crate::tasks::with_service(snapshot, |c| self.live.service_of(ConnectionId(c)));
        }
        snapshots
    }

    /// One pending chain or live task now.
    pub fn chain(&self, id: u64) -> Option<DeferredSnapshot> {
        let mut snapshot = self.chains.get(id)?;
        crate::tasks::with_service(&mut snapshot, |c| self.live.service_of(ConnectionId(c)));
        Some(snapshot)
    }

    pub(crate) fn live(&self) -> &LiveRegistry {
        &self.live
    }

    pub(crate) fn chains(&self) -> &Chains {
        &self.chains
    }

    /// The handles of `service`, or of Deferreds outside any connection.
    pub(crate) fn service_handles(&self, service: Option<Arc<str>>) -> Arc<ServiceHandles> {
        self.handles(service.as_ref())
    }

    /// The wait-for graph, as the reactor's last scan that saw it change handed it over.
    pub fn waits(&self) -> Arc<crate::waits::WaitsSnapshot> {
        self.waits.get()
    }

    /// The handles of `service`, or of Deferreds outside any connection. Looked up by
    /// name, so the usual case (the service is known) takes no allocation and no
    /// reference count.
    fn handles(&self, service: Option<&Arc<str>>) -> Arc<ServiceHandles> {
        let name = service.map_or(NO_SERVICE, |s| &**s);
        let mut handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(kept) = handles.get(name) {
            return kept.clone();
        }
        let made = Arc::new(ServiceHandles {
            pending: self.pending.with_label_values(&[name]),
            stalled: self.stalled.with_label_values(&[name]),
            detections: Detector::ALL
                .map(|d| self.detections.with_label_values(&[name, d.as_str()])),
            failures: PerSecond::new(self.failed_per_second, self.failures_skipped.clone()),
        });
        let key = service.cloned().unwrap_or_else(|| Arc::from(NO_SERVICE));
        handles.insert(key, made.clone());
        made
    }

    /// Handles one Deferred event; returns what to publish on the bus, if anything.
    ///
    /// Lifecycle events update the chain's snapshot and publish only when a chain ends;
    /// detections flag the chain and are always published.
    pub(crate) fn on_event(&self, event: &DeferredEvent) -> Option<EventKind> {
        match event {
            DeferredEvent::Created(c) => self.created(c),
            DeferredEvent::Queued(q) => self.update(q.id, |chain| {
                chain.queue_step(QueuedStep {
                    index: q.index,
                    kind: q.kind,
                    site: q.site.to_string(),
                    at_ms: now_ms(),
                });
            }),
            DeferredEvent::Step(step) => self.step(step),
            DeferredEvent::Paused(p) => self.update(p.id, |chain| {
                chain.snapshot.waiting_on = p.waiting_on.map(|c| c.0);
                chain.snapshot.state = if p.waiting_on.is_some() {
                    DeferredState::Waiting
                } else {
                    DeferredState::Paused
                };
            }),
            DeferredEvent::Resumed(r) => self.update(r.id, |chain| {
                chain.snapshot.waiting_on = None;
                chain.snapshot.state = DeferredState::Running;
                chain.resumed();
            }),
            DeferredEvent::Named(n) => self.update(n.id, |chain| {
                chain.name_step(NamedStepSnapshot {
                    index: n.step.index,
                    name: n.step.name,
                    detail: n.step.detail.as_ref().map(|d| d.as_str().to_owned()),
                    waiting_on_connection: n
                        .step
                        .waits_on
                        .and_then(WaitsOn::connection)
                        .map(|c| c.0),
                    waiting_on_deferred: n.step.waits_on.and_then(WaitsOn::deferred).map(|d| d.0),
                    started_at_ms: unix_ms(n.at),
                    duration_ms: None,
                });
            }),
            DeferredEvent::Fired(f) => self.update(f.id, |chain| {
                chain.end_named_step(unix_ms(f.at));
                chain.snapshot.fired_at_ms = Some(unix_ms(f.at));
                chain.snapshot.state = DeferredState::Running;
                if let Some(failure) = f.outcome.failure() {
                    chain.snapshot.failure = Some(failure_text(failure));
                }
            }),
            DeferredEvent::Settled(s) => self.settled(s.id, &s.outcome),
            DeferredEvent::Dropped(d) => self.dropped(d.id),
            DeferredEvent::Stalled(s) => {
                self.detect(&s.subject, Detector::Stalled, stalled_detail(s), |snap| {
                    snap.stalled = true
                })
            }
            DeferredEvent::SlowCallback(s) => {
                self.detect(&s.subject, Detector::Slow, slow_detail(s), |snap| {
                    snap.slow = true
                })
            }
            DeferredEvent::Unhandled(u) => {
                let detail = format!("unhandled failure: {}", failure_text(&u.failure));
                let failure = failure_text(&u.failure);
                // Reported once the chain has ended (failed, or cancelled): its state stays.
                self.detect(&u.subject, Detector::Unhandled, detail, move |snap| {
                    snap.unhandled = true;
                    snap.failure = Some(failure);
                })
            }
            DeferredEvent::Leaked(l) => {
                self.detect(&l.subject, Detector::Leaked, leaked_detail(l), |snap| {
                    snap.leaked = true
                })
            }
            DeferredEvent::TaskSpawned(t) => self.task_spawned(t),
            DeferredEvent::TaskEnded(t) => self.task_ended(t),
            DeferredEvent::Deadlock(d) => self.detect(
                &d.subject,
                Detector::Deadlock,
                crate::waits::deadlock_detail(d),
                |snap| snap.deadlock = true,
            ),
            DeferredEvent::Traced(t) => self.update(t.id, |chain| {
                chain.snapshot.trace = Some(ChainTrace {
                    root: t.id.0,
                    remote: Some(t.context.clone()),
                });
            }),
            DeferredEvent::Waits(graph) => {
                self.waits.set(graph);
                None
            }
            _ => None,
        }
    }

    /// Applies `change` to a pending chain, if it is still tracked; publishes nothing.
    fn update(&self, id: DeferredId, change: impl FnOnce(&mut Chain)) -> Option<EventKind> {
        if let Some(chain) = self.chains.lock().get_mut(&id.0) {
            change(chain);
        }
        None
    }

    /// Starts tracking a new chain and counts it pending under its connection's service.
    fn created(&self, c: &Created) -> Option<EventKind> {
        let service = c.connection.and_then(|id| self.live.service_of(id));
        let metrics = self.handles(service.as_ref());
        metrics.pending.inc();
        let mut snapshot =
            blank_snapshot(c.id, c.connection, unix_ms(c.at), DeferredState::Pending);
        snapshot.parent = c.parent.map(|p| p.0);
        let mut chains = self.chains.lock();
        if let Some(parent) = c.parent
            && weft::observe::trace::enabled()
        {
            // A child's span joins its parent's trace; a parent already gone leaves it
            // rooting its own.
            snapshot.trace = chains.get(&parent.0).map(|p| {
                p.snapshot.trace.clone().unwrap_or(ChainTrace {
                    root: parent.0,
                    remote: None,
                })
            });
        }
        let chain = Chain {
            snapshot,
            origin: Origin {
                label: c.label,
                site: c.site,
                service,
            },
            // As old as the event says: a chain the sampler passed over is announced
            // only once it has been pending a while, dated at its creation.
            created: std::time::SystemTime::now()
                .duration_since(c.at)
                .ok()
                .and_then(|age| std::time::Instant::now().checked_sub(age))
                .unwrap_or_else(std::time::Instant::now),
            metrics,
            task: None,
            current_step: None,
            sampled: c.sampled,
            in_history: false,
        };
        chains.insert(c.id.0, chain);
        None
    }

    /// Times a step and adds it to its chain, with the failure it returned.
    fn step(&self, step: &StepFinished) -> Option<EventKind> {
        self.callback_duration.observe(step.duration.as_secs_f64());
        let failure = step.outcome.failure().map(failure_text);
        self.update(step.id, |chain| {
            if failure.is_some() {
                chain.snapshot.failure.clone_from(&failure);
            }
            chain.snapshot.state = DeferredState::Running;
            // A step reported queued has its site written out already: reuse it.
            let site = match chain.snapshot.queued.first_mut() {
                Some(queued) if queued.index == step.index => std::mem::take(&mut queued.site),
                _ => step.site.to_string(),
            };
            chain.push_step(
                StepSnapshot {
                    index: step.index,
                    kind: step.kind,
                    site,
                    at_ms: now_ms(),
                    duration_us: u64::try_from(step.duration.as_micros()).unwrap_or(u64::MAX),
                    outcome: step.outcome.status(),
                    failure,
                    child: step.outcome.child().map(|c| c.0),
                },
                step.site,
            );
        })
    }

    /// Ends a chain that got its final result: published when it failed, was flagged, is
    /// sampled or has a row in history already; a failed one is remembered for an
    /// unhandled report that may follow.
    fn settled(&self, id: DeferredId, outcome: &Outcome) -> Option<EventKind> {
        let chain = self.chains.lock().remove(&id.0)?;
        let failed = outcome.state() != DeferredState::Succeeded;
        let kept = chain.snapshot.flagged() || chain.sampled || chain.in_history;
        if !(kept || failed) {
            // Neither published nor remembered: its record is never made.
            uncount(&chain);
            return None;
        }
        let (mut snapshot, metrics) = self.end(chain);
        snapshot.state = outcome.state();
        snapshot.ended_at_ms = Some(unix_ms(std::time::SystemTime::now()));
        if let Some(f) = outcome.failure() {
            snapshot.failure = Some(failure_text(f));
        }
        snapshot.waiting_on = None;
        let published = kept || metrics.failures.take();
        if failed {
            // Its failure may yet be reported unhandled, when its last handle goes: the
            // report then publishes it, budget or not.
            self.chains.remember_ended(&snapshot, metrics);
        }
        published.then_some(EventKind::DeferredEnded { deferred: snapshot })
    }

    /// Ends a chain freed while pending.
    fn dropped(&self, id: DeferredId) -> Option<EventKind> {
        let chain = self.chains.lock().remove(&id.0)?;
        // A Deferred freed while pending is kept when something flagged it (leaked,
        // stalled), the sampler picked it, or history has a row of it (pending chains are
        // written as they go: that row must end); otherwise nobody waits on it any more.
        if !(chain.snapshot.flagged() || chain.sampled || chain.in_history) {
            uncount(&chain);
            return None;
        }
        let (mut snapshot, _) = self.end(chain);
        // It ended here and will never fire: history ends it (a row left pending would be
        // taken, at the next start, for one a killed process left, and is never pruned).
        snapshot.state = DeferredState::Cancelled;
        let now = unix_ms(std::time::SystemTime::now());
        snapshot.fired_at_ms = Some(now);
        snapshot.ended_at_ms = Some(now);
        snapshot.waiting_on = None;
        snapshot
            .failure
            .get_or_insert_with(|| "Dropped: freed while pending; it never fired".to_owned());
        Some(EventKind::DeferredEnded { deferred: snapshot })
    }

    /// Uncounts a chain that left the pending set, and takes its snapshot.
    fn end(&self, chain: Chain) -> (DeferredSnapshot, Arc<ServiceHandles>) {
        uncount(&chain);
        let metrics = chain.metrics.clone();
        (chain.into_snapshot(), metrics)
    }

    /// Flags a chain, counts the detection and describes it for the bus.
    fn detect(
        &self,
        subject: &Subject,
        detector: Detector,
        mut detail: String,
        flag: impl FnOnce(&mut DeferredSnapshot),
    ) -> Option<EventKind> {
        let mut chains = self.chains.lock();
        let snapshot = match chains.get_mut(&subject.id.0) {
            Some(chain) => {
                let was_stalled = chain.snapshot.stalled;
                if chain.task.is_some() {
                    // A task learns its connection at its first poll (a connection's own
                    // task is spawned before it is registered): from then on it is counted,
                    // shown and kept under that connection's service.
                    if chain.snapshot.connection.is_none() {
                        chain.snapshot.connection = subject.connection.map(|c| c.0);
                    }
                    if chain.origin.service.is_none()
                        && let Some(service) = chain
                            .snapshot
                            .connection
                            .and_then(|c| self.live.service_of(ConnectionId(c)))
                    {
                        let to = self.handles(Some(&service));
                        if was_stalled {
                            chain.metrics.stalled.dec();
                            to.stalled.inc();
                        }
                        chain.metrics = to;
                        chain.origin.service = Some(service);
                    }
                    crate::tasks::with_service(&mut chain.snapshot, |c| {
                        self.live.service_of(ConnectionId(c))
                    });
                    detail = format!("task spawned at {}: {detail}", subject.site);
                }
                flag(&mut chain.snapshot);
                chain.metrics.detections[detector.index()].inc();
                if chain.snapshot.stalled && !was_stalled {
                    chain.metrics.stalled.inc();
                }
                chain.snapshot_now()
            }
            None => {
                // Reported after the chain ended (an unhandled failure at drop time): the
                // report extends the chain's record as it ended.
                drop(chains);
                if let Some(ended) = self.chains.take_ended(subject.id.0) {
                    let mut snapshot = ended.snapshot;
                    flag(&mut snapshot);
                    ended.metrics.detections[detector.index()].inc();
                    return Some(detected(subject, detector, snapshot, detail));
                }
                // Forgotten already: only what the report carries is known. The store
                // merges this into the chain's stored record (it keeps the creation time,
                // parent and the rest that these blanks stand in for).
                let service = subject.connection.and_then(|id| self.live.service_of(id));
                let metrics = self.handles(service.as_ref());
                metrics.detections[detector.index()].inc();
                let mut snapshot = blank_snapshot(
                    subject.id,
                    subject.connection,
                    now_ms(),
                    DeferredState::Failed,
                );
                let origin = Origin {
                    label: subject.label,
                    site: subject.site,
                    service,
                };
                origin.fill(&mut snapshot);
                flag(&mut snapshot);
                snapshot
            }
        };
        Some(detected(subject, detector, snapshot, detail))
    }
}

/// Uncounts a chain that left the pending set.
fn uncount(chain: &Chain) {
    chain.metrics.pending.dec();
    if chain.snapshot.stalled {
        chain.metrics.stalled.dec();
    }
}

/// A chain's record before anything happened to it, without the texts its [`Origin`]
/// fills in.
pub(crate) fn blank_snapshot(
    id: DeferredId,
    connection: Option<ConnectionId>,
    created_at_ms: i64,
    state: DeferredState,
) -> DeferredSnapshot {
    DeferredSnapshot {
        id: id.0,
        label: None,
        site: String::new(),
        connection: connection.map(|c| c.0),
        service: None,
        parent: None,
        created_at_ms,
        age_ms: 0,
        state,
        fired_at_ms: None,
        ended_at_ms: None,
        failure: None,
        waiting_on: None,
        current_step: None,
        stalled: false,
        slow: false,
        unhandled: false,
        leaked: false,
        deadlock: false,
        steps: Vec::new(),
        queued: Vec::new(),
        named_steps: Vec::new(),
        task: None,
        // Chains are created on their reactor's thread.
        reactor: weft::reactor::current_index(),
        trace: None,
    }
}

/// What the stall detector says about a chain: how long, in which state, where; and the
/// named step its code says it is at, with what that step waits on.
fn stalled_detail(s: &Stalled) -> String {
    let named = s.named.as_ref().map_or_else(String::new, |n| {
        let about = n
            .detail
            .as_ref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        let on = match n.waits_on {
            Some(WaitsOn::Connection(c)) => format!(" on connection {c}"),
            Some(WaitsOn::Deferred(d)) => format!(" on Deferred {d}"),
            None => String::new(),
        };
        format!(", at \"{}\"{about}{on}", n.name)
    });
    // A chain whose code names its steps is where it says; the index of its callback
    // steps (0 for one that has none, an HTTP request's) would read as another numbering.
    let at = match &s.named {
        Some(_) => String::new(),
        None => format!(
            " at step {}{}",
            s.step,
            s.step_site
                .map(|site| format!(" ({site})"))
                .unwrap_or_default()
        ),
    };
    format!(
        "{} for {:.1}s (threshold {:.1}s){at}{}{named}",
        s.state.as_str(),
        s.stalled_for.as_secs_f64(),
        s.threshold.as_secs_f64(),
        s.waiting_on
            .map(|c| format!(", waiting on Deferred {c}"))
            .unwrap_or_default(),
    )
}

/// What the slow-callback detector says: where, how long, against what threshold.
fn slow_detail(s: &SlowCallback) -> String {
    format!(
        "callback at {} ran {:.1} ms (threshold {:.1} ms)",
        s.callback_site,
        duration_ms(s.duration),
        duration_ms(s.threshold)
    )
}

/// What the leak detector says: how old the chain was when its firing side went.
fn leaked_detail(l: &Leaked) -> String {
    format!(
        "the firing side was dropped unfired after {:.1}s; the chain can never complete",
        l.age.as_secs_f64()
    )
}

/// Logs a detection (within the detector's budget of lines: the detection itself is
/// counted and published whole) and describes it for the bus.
fn detected(
    subject: &Subject,
    detector: Detector,
    snapshot: DeferredSnapshot,
    detail: String,
) -> EventKind {
    if let Some(suppressed) = weft::observe::detection_line_budget(detector, subject.label) {
        tracing::warn!(
            deferred = subject.id.0,
            site = %subject.site,
            %detector,
            suppressed,
            "{detail}"
        );
    }
    EventKind::DeferredDetected {
        detector,
        deferred: snapshot,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain whose code names its steps is said to be where it says, not at callback
    /// step 0 (an HTTP request has no callback steps); one without is at its step index.
    #[test]
    fn a_stall_is_described_at_its_named_step_or_its_callback_step() {
        let stalled = |named| Stalled {
            subject: weft::defer::Subject {
                id: weft::defer::DeferredId(7),
                label: None,
                site: weft::defer::Site(std::panic::Location::caller()),
                connection: None,
            },
            state: weft::defer::DeferredState::Pending,
            stalled_for: Duration::from_secs(6),
            threshold: Duration::from_secs(5),
            step: 0,
            step_site: None,
            waiting_on: None,
            named,
        };
        let named = weft::defer::NamedStep {
            index: 2,
            name: "response head",
            waits_on: Some(WaitsOn::Connection(ConnectionId(44))),
            detail: None,
        };
        assert_eq!(
            stalled_detail(&stalled(Some(named))),
            "pending for 6.0s (threshold 5.0s), at \"response head\" on connection 44"
        );
        assert_eq!(
            stalled_detail(&stalled(None)),
            "pending for 6.0s (threshold 5.0s) at step 0"
        );
    }

    fn sampler(rate: f64, per_second: u32) -> Sampler {
        Sampler::new(rate, per_second, IntCounter::new("s", "s").unwrap())
    }

    #[test]
    fn sampler_keeps_all_none_or_about_the_rate() {
        let all = sampler(1.0, 0);
        assert!((0..1000).all(|_| all.keep_success()));
        let none = sampler(0.0, 0);
        assert!((0..1000).all(|_| !none.keep_success()));
        let quarter = sampler(0.25, 0);
        let kept = (0..20_000).filter(|_| quarter.keep_success()).count();
        assert!(
            (4_000..6_000).contains(&kept),
            "kept {kept} of 20000 at 0.25"
        );
        assert_eq!(sampler(7.0, 0).rate(), 1.0);
    }

    #[test]
    fn sampler_keeps_at_most_its_budget_a_second_and_counts_the_rest() {
        let capped = sampler(1.0, 50);
        // Within one second (the test runs far faster than that, and a second boundary
        // crossed on the way only lets a few more through).
        let kept = (0..1000).filter(|_| capped.keep_success()).count();
        assert!((50..=100).contains(&kept), "kept {kept} of 1000 at 50/s");
        assert_eq!(capped.budget.skipped.get() as usize, 1000 - kept);
    }
}
