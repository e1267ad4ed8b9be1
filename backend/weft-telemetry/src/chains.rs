//! The hub's picture of Deferred chains: every pending chain with its steps so far, and
//! the snapshot of a chain that ended or tripped a detector.
//!
//! One `std::sync::Mutex<HashMap>` holds the chains. Only the reactor thread writes it
//! (one short update per Deferred event), so the lock is uncontended except for the
//! moment a reader (the dashboard, the periodic store snapshot) copies the pending list.
//! Steps are kept up to [`MAX_STEPS`] per chain, so a runaway chain cannot grow memory; so
//! are the steps added and not run yet ([`QueuedStep`]), which show where a chain that has
//! not fired, is paused or waits on a child will go on.
//!
//! A chain that ended without success is remembered a while longer (`Ended`): its
//! unhandled failure is reported only when its last handle goes, and that report must
//! extend the chain's record, not replace it with a blank one.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use weft::defer::{DeferredState, Site, StepKind, StepStatus};

use crate::live::unix_ms;

/// Steps kept per chain; later ones are counted but not stored.
pub const MAX_STEPS: usize = 256;

/// One step of a chain, as shown and stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepSnapshot {
    /// Position in the chain, from 0.
    pub index: u32,
    /// `callback`, `errback` or `both`.
    pub kind: StepKind,
    /// The line that added the step.
    pub site: String,
    /// When it finished, unix milliseconds.
    pub at_ms: i64,
    /// How long it ran, microseconds.
    pub duration_us: u64,
    /// `ok`, `err`, `skipped`, `chained` or `waiting`.
    pub outcome: StepStatus,
    /// The failure it returned, `Type: message (site)`.
    pub failure: Option<String>,
    /// The Deferred it returned, which the chain waited on (or took at once).
    pub child: Option<u64>,
}

/// Named steps kept per chain; later ones only move the current step.
pub const MAX_NAMED_STEPS: usize = 32;

/// A step the chain's own code named (`weft::defer::Steps`): where async code says it
/// is, which the callback steps cannot show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedStepSnapshot {
    /// Position among the chain's named steps, from 0.
    pub index: u32,
    /// Its name, such as `connect upstream`.
    pub name: &'static str,
    /// What it is about (an upstream's name, a route's prefix), at most 128 bytes.
    pub detail: Option<String>,
    /// The connection it waits on.
    pub waiting_on_connection: Option<u64>,
    /// The Deferred it waits on.
    pub waiting_on_deferred: Option<u64>,
    /// When it began, unix milliseconds.
    pub started_at_ms: i64,
    /// How long it lasted, milliseconds; `None` while the chain is at it.
    pub duration_ms: Option<u64>,
}

/// A step added to a chain and not run yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueuedStep {
    /// The position it will run at, from 0.
    pub index: u32,
    /// `callback`, `errback` or `both`.
    pub kind: StepKind,
    /// The line that added the step.
    pub site: String,
    /// When it was added, unix milliseconds.
    pub at_ms: i64,
}

/// A Deferred chain, as shown and stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeferredSnapshot {
    /// The Deferred's id.
    pub id: u64,
    /// Its label, if it was given one.
    pub label: Option<String>,
    /// The line that created it.
    pub site: String,
    /// The connection it belongs to.
    pub connection: Option<u64>,
    /// The service of that connection.
    pub service: Option<String>,
    /// The Deferred whose callback created it.
    pub parent: Option<u64>,
    /// When it was created, unix milliseconds.
    pub created_at_ms: i64,
    /// How long it has existed (or existed), milliseconds.
    pub age_ms: u64,
    /// `pending`, `running`, `paused`, `waiting`, `succeeded`, `failed`, `cancelled`.
    pub state: DeferredState,
    /// When it got its result, unix milliseconds.
    pub fired_at_ms: Option<i64>,
    /// When it ended, unix milliseconds: its last step ran (a chain that fired at once
    /// and then waited on a Deferred a step returned ends long after it fired), or it was
    /// freed unfired; `None` while pending.
    pub ended_at_ms: Option<i64>,
    /// The failure it ended with, or the last one a step returned.
    pub failure: Option<String>,
    /// The child Deferred it waits on.
    pub waiting_on: Option<u64>,
    /// The site of the step it is at (or ended at).
    pub current_step: Option<String>,
    /// Flagged by the stall detector.
    pub stalled: bool,
    /// Flagged by the slow-callback detector.
    pub slow: bool,
    /// Ended in a failure nobody handled.
    pub unhandled: bool,
    /// Its firing side was dropped unfired.
    pub leaked: bool,
    /// It was found waiting, through locks, on chains that wait on it.
    pub deadlock: bool,
    /// Steps run so far (at most [`MAX_STEPS`]).
    pub steps: Vec<StepSnapshot>,
    /// Steps added and not run yet, in the order they will run (at most [`MAX_STEPS`]);
    /// the first is the one a chain that has not fired or is paused waits before.
    pub queued: Vec<QueuedStep>,
    /// The steps its code named, in order (at most [`MAX_NAMED_STEPS`]); the last is the
    /// one it is at, or ended at.
    pub named_steps: Vec<NamedStepSnapshot>,
    /// Set when this is an async task rather than a chain: its figures.
    pub task: Option<crate::tasks::TaskSnapshot>,
    /// The index of the reactor it runs on.
    pub reactor: u16,
    /// The trace it belongs to, when an exporter runs and it is not a trace's root of its
    /// own (`None`: it roots one); not shown or stored.
    #[serde(skip)]
    pub trace: Option<ChainTrace>,
}

/// Which trace a chain's span belongs to ([`weft::observe::trace`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTrace {
    /// The chain whose span roots the trace in this process.
    pub root: u64,
    /// The caller's trace that root continues, if its request carried one.
    pub remote: Option<Arc<weft::observe::trace::TraceContext>>,
}

impl DeferredSnapshot {
    /// Whether any detector flagged it.
    pub fn flagged(&self) -> bool {
        self.stalled || self.slow || self.unhandled || self.leaked || self.deadlock
    }

    /// A copy without its steps, run or queued: built field by field, since copying the
    /// steps (up to [`MAX_STEPS`] each way, each with its site) only to drop them would
    /// cost an allocation per step.
    pub(crate) fn without_steps(&self) -> DeferredSnapshot {
        DeferredSnapshot {
            id: self.id,
            label: self.label.clone(),
            site: self.site.clone(),
            connection: self.connection,
            service: self.service.clone(),
            parent: self.parent,
            created_at_ms: self.created_at_ms,
            age_ms: self.age_ms,
            state: self.state,
            fired_at_ms: self.fired_at_ms,
            ended_at_ms: self.ended_at_ms,
            failure: self.failure.clone(),
            waiting_on: self.waiting_on,
            current_step: self.current_step.clone(),
            stalled: self.stalled,
            slow: self.slow,
            unhandled: self.unhandled,
            leaked: self.leaked,
            deadlock: self.deadlock,
            steps: Vec::new(),
            queued: Vec::new(),
            named_steps: self.named_steps.clone(),
            task: self.task.clone(),
            reactor: self.reactor,
            trace: self.trace.clone(),
        }
    }

    /// The named step it is at, or ended at.
    pub fn named_step(&self) -> Option<&NamedStepSnapshot> {
        self.named_steps.last()
    }
}

pub(crate) struct Chain {
    /// Its record, without the texts `origin` gives it when it is taken.
    pub(crate) snapshot: DeferredSnapshot,
    pub(crate) origin: Origin,
    pub(crate) created: Instant,
    /// Per-service metric handles, resolved once when the chain was created.
    pub(crate) metrics: Arc<crate::deferred::ServiceHandles>,
    /// An async task's cell, read when a snapshot is taken.
    pub(crate) task: Option<std::sync::Weak<weft::tasks::TaskCell>>,
    /// The site of the step it is at, written out as the snapshot's `current_step` only
    /// when a snapshot is taken, not once per step.
    pub(crate) current_step: Option<Site>,
    /// The sampler picked it when it was created: kept in history even if it ends well.
    pub(crate) sampled: bool,
    /// History has a row of it, written while it was pending (`pending_for_history`): its
    /// end is published however it ends, or the row would say pending for ever.
    pub(crate) in_history: bool,
}

/// Where a chain comes from, kept as the event gave it and written into its snapshot only
/// when one is taken: most chains end unseen, and unkept, without it ever being formatted.
pub(crate) struct Origin {
    pub(crate) label: Option<&'static str>,
    pub(crate) site: Site,
    pub(crate) service: Option<Arc<str>>,
}

impl Origin {
    /// Writes the label, site and service into `snapshot`.
    pub(crate) fn fill(&self, snapshot: &mut DeferredSnapshot) {
        snapshot.label = self.label.map(str::to_owned);
        snapshot.site = self.site.to_string();
        snapshot.service = self.service.as_deref().map(str::to_owned);
    }
}

impl Chain {
    pub(crate) fn snapshot_now(&self) -> DeferredSnapshot {
        let mut snapshot = self.snapshot.clone();
        self.origin.fill(&mut snapshot);
        snapshot.current_step = self.current_step.map(|site| site.to_string());
        snapshot.age_ms = self.age_ms();
        if let Some(cell) = &self.task {
            crate::tasks::refresh(cell, &mut snapshot);
        }
        snapshot
    }

    /// Its snapshot as it ends, taken rather than copied.
    pub(crate) fn into_snapshot(self) -> DeferredSnapshot {
        let age_ms = self.age_ms();
        let mut snapshot = self.snapshot;
        self.origin.fill(&mut snapshot);
        snapshot.current_step = self.current_step.map(|site| site.to_string());
        snapshot.age_ms = age_ms;
        snapshot
    }

    fn age_ms(&self) -> u64 {
        u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn push_step(&mut self, step: StepSnapshot, site: Site) {
        self.current_step = Some(site);
        // Steps run in the order they were added: the ones queued up to this one are done.
        let ran = self
            .snapshot
            .queued
            .iter()
            .take_while(|q| q.index <= step.index)
            .count();
        self.snapshot.queued.drain(..ran);
        if self.snapshot.steps.len() < MAX_STEPS {
            self.snapshot.steps.push(step);
        }
    }

    /// Marks the named step `step` began at `at_ms`: a new one ends the current one; the
    /// same index again says what the current one now waits on.
    pub(crate) fn name_step(&mut self, step: NamedStepSnapshot) {
        let named = &mut self.snapshot.named_steps;
        if let Some(last) = named.last_mut() {
            if last.index == step.index {
                last.waiting_on_connection = step.waiting_on_connection;
                last.waiting_on_deferred = step.waiting_on_deferred;
                last.detail = step.detail;
                return;
            }
            last.duration_ms
                .get_or_insert(elapsed_ms(last.started_at_ms, step.started_at_ms));
        }
        if named.len() >= MAX_NAMED_STEPS {
            // The first steps stay (where it began); the last slot follows the current one.
            named.pop();
        }
        named.push(step);
    }

    /// The chain's work ended at `at_ms` (it fired): its current named step is over.
    pub(crate) fn end_named_step(&mut self, at_ms: i64) {
        if let Some(last) = self.snapshot.named_steps.last_mut() {
            last.duration_ms
                .get_or_insert(elapsed_ms(last.started_at_ms, at_ms));
        }
    }

    /// The chain goes on after the Deferred a step returned fired: that step no longer
    /// waits, it handed its child's result on.
    pub(crate) fn resumed(&mut self) {
        if let Some(step) = self
            .snapshot
            .steps
            .iter_mut()
            .rev()
            .find(|s| s.outcome == StepStatus::Waiting)
        {
            step.outcome = StepStatus::Chained;
        }
    }

    pub(crate) fn queue_step(&mut self, step: QueuedStep) {
        if self.snapshot.queued.len() < MAX_STEPS {
            self.snapshot.queued.push(step);
        }
    }
}

/// Chains that ended without success remembered at most, for a report that comes after
/// their end. Each is kept without its steps (the store has them): a few hundred bytes
/// plus its texts. A report about a chain forgotten beyond this is merged into the stored
/// record by the store instead.
pub const ENDED_KEPT: usize = 1024;

/// A chain that ended without success, as it ended.
pub(crate) struct EndedChain {
    /// Its record without steps.
    pub(crate) snapshot: DeferredSnapshot,
    /// Its service's metric handles.
    pub(crate) metrics: Arc<crate::deferred::ServiceHandles>,
}

/// The last [`ENDED_KEPT`] chains that ended without success, oldest first.
#[derive(Default)]
pub(crate) struct Ended {
    /// Ended chains by id, so a report arriving after a chain ended (an unhandled failure) still
    /// finds its record.
    by_id: HashMap<u64, EndedChain>,
    /// Insertion order, so the oldest is evicted once more than `ENDED_KEPT` are held.
    order: VecDeque<u64>,
}

impl Ended {
    fn insert(&mut self, chain: EndedChain) {
        let id = chain.snapshot.id;
        if self.by_id.insert(id, chain).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > ENDED_KEPT {
            if let Some(oldest) = self.order.pop_front() {
                self.by_id.remove(&oldest);
            }
        }
    }

    fn take(&mut self, id: u64) -> Option<EndedChain> {
        let chain = self.by_id.remove(&id)?;
        // Rare (one report per chain at most) and the queue is short: a scan is fine.
        self.order.retain(|&kept| kept != id);
        Some(chain)
    }
}

/// Every chain the hub has seen created and not yet ended, and the last ones that ended
/// without success.
#[derive(Default)]
pub(crate) struct Chains {
    /// Locked once per Deferred event; readers (`pending_chains`, `chain`) clone snapshots out of
    /// it.
    map: Mutex<ById<Chain>>,
    /// Failed chains kept after they ended, so a later unhandled-failure report still finds them.
    ended: Mutex<Ended>,
}

impl Chains {
    pub(crate) fn lock(&self) -> MutexGuard<'_, ById<Chain>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers a chain that ended without success, as `snapshot` shows it.
    pub(crate) fn remember_ended(
        &self,
        snapshot: &DeferredSnapshot,
        metrics: Arc<crate::deferred::ServiceHandles>,
    ) {
        let snapshot = snapshot.without_steps();
        self.ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(EndedChain { snapshot, metrics });
    }

    /// Takes back a chain remembered by [`remember_ended`](Self::remember_ended).
    pub(crate) fn take_ended(&self, id: u64) -> Option<EndedChain> {
        self.ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(id)
    }

    /// Every pending chain now, oldest first.
    pub(crate) fn pending(&self) -> Vec<DeferredSnapshot> {
        let chains = self.lock();
        let mut all: Vec<_> = chains
            .values()
            .map(|c| linked(&chains, c.snapshot_now()))
            .collect();
        all.sort_by_key(|d| (d.created_at_ms, d.id));
        all
    }

    /// The pending chains history keeps a row of while they are pending, marked as kept:
    /// their ends are published. Those it has a row of already, and the ones a detector
    /// flagged or the sampler picked (kept however they end); then, of the other chains
    /// (not tasks) pending [`HISTORY_PENDING_AFTER`] or longer, the oldest, at most
    /// [`HISTORY_NEW_PENDING`] a snapshot. Every chain pending at each snapshot was
    /// written, and so its end too, past the budget of failures: a peer asking questions
    /// no upstream answers (each pending until its timeout) had every one kept.
    pub(crate) fn pending_for_history(&self) -> Vec<DeferredSnapshot> {
        let mut chains = self.lock();
        let now = Instant::now();
        let mut newly: Vec<(Instant, u64)> = Vec::new();
        let mut kept: Vec<_> = Vec::new();
        for (id, c) in chains.iter_mut() {
            if c.in_history || c.snapshot.flagged() || (c.sampled && c.task.is_none()) {
                c.in_history = true;
                kept.push(c.snapshot_now());
            } else if c.task.is_none()
                && now.saturating_duration_since(c.created) >= HISTORY_PENDING_AFTER
            {
                newly.push((c.created, *id));
            }
        }
        newly.sort_unstable();
        for (_, id) in newly.into_iter().take(HISTORY_NEW_PENDING) {
            if let Some(c) = chains.get_mut(&id) {
                c.in_history = true;
                kept.push(c.snapshot_now());
            }
        }
        kept.sort_by_key(|d| (d.created_at_ms, d.id));
        kept
    }

    /// One pending chain now.
    pub(crate) fn get(&self, id: u64) -> Option<DeferredSnapshot> {
        let chains = self.lock();
        chains.get(&id).map(|c| linked(&chains, c.snapshot_now()))
    }
}

/// `snapshot` as listed: a task names as what it waits on only a chain that is pending. A
/// task is polled again only when woken, so the chain its last poll awaited may have
/// ended since (an upgraded request's, while the tunnel is quiet); named, it would lead
/// to a page that is not there.
fn linked(chains: &ById<Chain>, mut snapshot: DeferredSnapshot) -> DeferredSnapshot {
    if snapshot.task.is_some()
        && let Some(on) = snapshot.waiting_on
        && !chains.contains_key(&on)
    {
        snapshot.waiting_on = None;
    }
    snapshot
}

/// How long a chain is pending before a history snapshot writes it (unless flagged or
/// sampled): one that ends sooner is an ordinary exchange, not one to find after a crash.
pub const HISTORY_PENDING_AFTER: Duration = Duration::from_secs(1);

/// Pending chains a history snapshot writes that it had no row of, at most (the oldest
/// first): what a flood of chains pending at once costs history each second.
pub const HISTORY_NEW_PENDING: usize = 256;

/// A map keyed by Deferred id.
pub(crate) type ById<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Hashes a Deferred id with one multiplication (Fibonacci hashing) where the standard
/// hasher runs SipHash, twice per step. SipHash resists keys chosen to collide; an id is
/// drawn from the process's own sequence, which no peer chooses.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(byte));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        // 2^64 / the golden ratio: consecutive ids land far apart in both the low bits
        // (the bucket) and the high bits (the tag the table compares first).
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

fn elapsed_ms(from_ms: i64, to_ms: i64) -> u64 {
    u64::try_from(to_ms.saturating_sub(from_ms)).unwrap_or(0)
}

pub(crate) fn now_ms() -> i64 {
    unix_ms(SystemTime::now())
}
