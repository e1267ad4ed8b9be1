//! What a Deferred reports to the observer: its life and the detectors' findings.
//!
//! A hub keeps a live registry from `Created` … `Settled`/`Dropped`, writes steps and
//! detections to its store, and counts outcomes. Every event names its Deferred by
//! [`DeferredId`]; detections also carry the label, site and connection so they can be
//! shown without a lookup.

use std::fmt;
use std::panic::Location;
use std::time::{Duration, SystemTime};

use super::Failure;
use super::named::NamedStep;
use crate::observe::ConnectionId;

/// Identifies one Deferred; drawn from the same sequence as connection ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeferredId(pub u64);

impl fmt::Display for DeferredId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A place in the source: `file:line`, from `#[track_caller]`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Site(pub &'static Location<'static>);

impl Site {
    /// The source file.
    pub fn file(&self) -> &'static str {
        self.0.file()
    }

    /// The line in that file.
    pub fn line(&self) -> u32 {
        self.0.line()
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0.file(), self.0.line())
    }
}

impl fmt::Debug for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A failure, described for an event: type, message and where it was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureInfo {
    /// The error's type name (`TimeoutError`).
    pub type_name: &'static str,
    /// The error's message.
    pub message: String,
    /// Where the failure was created.
    pub site: Site,
}

impl FailureInfo {
    /// Describes `failure`.
    pub fn of(failure: &Failure) -> Self {
        Self {
            type_name: failure.type_name(),
            message: failure.error().to_string(),
            site: failure.site(),
        }
    }
}

/// Where a Deferred is in its life; serialised as [`as_str`](Self::as_str).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeferredState {
    /// Not fired yet.
    Pending,
    /// A callback is running now.
    Running,
    /// Fired, but `pause` holds the chain.
    Paused,
    /// Fired; a callback returned another Deferred and the chain waits for it.
    Waiting,
    /// The chain ran to its end with a value.
    Succeeded,
    /// The chain ran to its end with a failure.
    Failed,
    /// Cancelled before it fired.
    Cancelled,
}

impl DeferredState {
    /// Every state.
    pub const ALL: [Self; 7] = [
        Self::Pending,
        Self::Running,
        Self::Paused,
        Self::Waiting,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The state whose [`as_str`](Self::as_str) is `label`, as read back from the store.
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == label)
    }

    /// Whether it has not ended yet: not fired, running, paused, or waiting on a child.
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            Self::Pending | Self::Running | Self::Paused | Self::Waiting
        )
    }

    /// A bounded label for metrics and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Waiting => "waiting",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Which path a step serves; serialised as [`as_str`](Self::as_str).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepKind {
    /// Runs on success (`add_callback`, `and_then`).
    Callback,
    /// Runs on failure (`add_errback`).
    Errback,
    /// Runs on both (`add_both`, `add_callbacks`).
    Both,
}

impl StepKind {
    /// A bounded label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Callback => "callback",
            Self::Errback => "errback",
            Self::Both => "both",
        }
    }
}

/// What flagged a Deferred chain: the inspector's detectors; serialised as
/// [`as_str`](Self::as_str), the `detector` label of metrics and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Detector {
    /// Pending or paused for longer than the stall threshold.
    Stalled,
    /// One of its callbacks ran longer than the slow-callback threshold.
    Slow,
    /// It ended in a failure nobody handled.
    Unhandled,
    /// Its firing side was dropped unfired.
    Leaked,
    /// It waits, through locks, on chains that wait on it.
    Deadlock,
}

impl Detector {
    /// Every detector, so counters by detector can exist at zero before the first detection.
    pub const ALL: [Self; 5] = [
        Self::Stalled,
        Self::Slow,
        Self::Unhandled,
        Self::Leaked,
        Self::Deadlock,
    ];

    /// The label, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stalled => "stalled",
            Self::Slow => "slow",
            Self::Unhandled => "unhandled",
            Self::Leaked => "leaked",
            Self::Deadlock => "deadlock",
        }
    }

    /// Its position in [`ALL`](Self::ALL).
    pub fn index(self) -> usize {
        match self {
            Self::Stalled => 0,
            Self::Slow => 1,
            Self::Unhandled => 2,
            Self::Leaked => 3,
            Self::Deadlock => 4,
        }
    }
}

impl std::fmt::Display for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StepOutcome {
    /// It returned a value.
    Succeeded,
    /// It returned (or passed on) a failure.
    Failed(FailureInfo),
    /// It was not for this path (a callback on a failure, an errback on a value).
    Skipped,
    /// It returned a Deferred that already had its result; the chain went on at once.
    Chained {
        /// The child Deferred.
        child: DeferredId,
    },
    /// It returned a Deferred without a result; the chain waits for it.
    Waiting {
        /// The child Deferred.
        child: DeferredId,
    },
}

/// What a step did, without the details, or that it has not run yet; serialised as
/// [`as_str`](Self::as_str), the `outcome` the API and pages show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepStatus {
    /// [`StepOutcome::Succeeded`].
    Ok,
    /// [`StepOutcome::Failed`].
    Err,
    /// [`StepOutcome::Skipped`].
    Skipped,
    /// [`StepOutcome::Chained`].
    Chained,
    /// [`StepOutcome::Waiting`]: the chain waits on the Deferred it returned.
    Waiting,
    /// Added and not run yet.
    Queued,
}

impl StepStatus {
    /// The label, as serialised.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Err => "err",
            Self::Skipped => "skipped",
            Self::Chained => "chained",
            Self::Waiting => "waiting",
            Self::Queued => "queued",
        }
    }
}

impl StepOutcome {
    /// What the step did, without the details.
    pub fn status(&self) -> StepStatus {
        match self {
            Self::Succeeded => StepStatus::Ok,
            Self::Failed(_) => StepStatus::Err,
            Self::Skipped => StepStatus::Skipped,
            Self::Chained { .. } => StepStatus::Chained,
            Self::Waiting { .. } => StepStatus::Waiting,
        }
    }

    /// The failure the step returned or passed on.
    pub fn failure(&self) -> Option<&FailureInfo> {
        match self {
            Self::Failed(f) => Some(f),
            Self::Succeeded | Self::Skipped | Self::Chained { .. } | Self::Waiting { .. } => None,
        }
    }

    /// The Deferred the step returned, whether it had its result or the chain waits on it.
    pub fn child(&self) -> Option<DeferredId> {
        match self {
            Self::Chained { child } | Self::Waiting { child } => Some(*child),
            Self::Succeeded | Self::Failed(_) | Self::Skipped => None,
        }
    }
}

/// How a Deferred (or its chain) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// With a value.
    Succeeded,
    /// With a failure.
    Failed(FailureInfo),
    /// Cancelled before it fired: the `CancelledError`, with where it was cancelled.
    Cancelled(FailureInfo),
}

impl Outcome {
    /// The state of a chain that ended so.
    pub fn state(&self) -> DeferredState {
        match self {
            Self::Succeeded => DeferredState::Succeeded,
            Self::Failed(_) => DeferredState::Failed,
            Self::Cancelled(_) => DeferredState::Cancelled,
        }
    }

    /// The failure it ended with (a cancelled one's `CancelledError`).
    pub fn failure(&self) -> Option<&FailureInfo> {
        match self {
            Self::Failed(f) | Self::Cancelled(f) => Some(f),
            Self::Succeeded => None,
        }
    }
}

/// Something that happened to a Deferred, reported through [`observe::emit`](crate::observe::emit).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DeferredEvent {
    /// A Deferred was created.
    Created(Created),
    /// A step was added that cannot run yet: the chain has not fired, is paused, waits on
    /// a child, or is running another step. Its [`Step`](Self::Step) follows when it runs.
    Queued(StepQueued),
    /// One step of its chain ran.
    Step(StepFinished),
    /// Its chain stopped: waiting on a child, or `pause`d.
    Paused(Paused),
    /// Its chain went on after a pause or a child's result.
    Resumed(Resumed),
    /// The code marked the named step its chain is at, or what that step waits on
    /// ([`Steps`](super::Steps)); a step ends when the next one is marked or the chain ends.
    Named(StepNamed),
    /// It got its first result (`callback`, `errback`, or a cancellation).
    Fired(Fired),
    /// Its chain ran out of steps with a result: it is no longer pending.
    Settled(Settled),
    /// It was freed while still pending (never fired, or waiting on a child nobody fires).
    Dropped(Dropped),
    /// Detector: pending or paused longer than its threshold.
    Stalled(Stalled),
    /// Detector: a callback blocked the reactor longer than the slow threshold.
    SlowCallback(SlowCallback),
    /// Detector: the chain ended in a failure and nobody can handle it any more.
    Unhandled(Unhandled),
    /// Detector: the firing side was dropped unfired; the chain can never complete.
    Leaked(Leaked),
    /// An async task was spawned ([`crate::tasks`]); its detections are the variants
    /// above with the task as their subject.
    TaskSpawned(crate::tasks::TaskSpawned),
    /// An async task returned or was dropped.
    TaskEnded(crate::tasks::TaskEnded),
    /// Detector: chains wait on each other through locks; one per member of the cycle.
    Deadlock(super::Deadlock),
    /// The wait-for graph changed ([`wait_graph`](super::wait_graph)); sent by the stall
    /// scan, at most once per scan.
    Waits(std::sync::Arc<super::WaitGraph>),
    /// The chain continues a caller's trace ([`observe::trace`](crate::observe::trace)).
    Traced(crate::observe::trace::Traced),
}

/// A Deferred was created.
#[derive(Debug, Clone)]
pub struct Created {
    /// Its id.
    pub id: DeferredId,
    /// Its label, if given.
    pub label: Option<&'static str>,
    /// The line that created it.
    pub site: Site,
    /// The connection it belongs to.
    pub connection: Option<ConnectionId>,
    /// The Deferred whose callback was running when it was created, if any.
    pub parent: Option<DeferredId>,
    /// Wall-clock creation time.
    pub at: SystemTime,
    /// What [`Observer::sample_chain`](crate::observe::Observer::sample_chain) answered
    /// when it was created: whether its record is wanted even if it ends well.
    pub sampled: bool,
}

/// A step was added to a chain that cannot run it yet.
#[derive(Debug, Clone)]
pub struct StepQueued {
    /// The Deferred.
    pub id: DeferredId,
    /// The position the step will run at, from 0: the `index` of its [`StepFinished`].
    pub index: u32,
    /// Callback, errback or both.
    pub kind: StepKind,
    /// The line that added the step.
    pub site: Site,
}

/// One step of a chain ran (or was skipped).
#[derive(Debug, Clone)]
pub struct StepFinished {
    /// The Deferred.
    pub id: DeferredId,
    /// The step's position in the chain, from 0.
    pub index: u32,
    /// Callback, errback or both.
    pub kind: StepKind,
    /// The line that added the step.
    pub site: Site,
    /// How long it ran.
    pub duration: Duration,
    /// What it did.
    pub outcome: StepOutcome,
}

/// A chain stopped.
#[derive(Debug, Clone)]
pub struct Paused {
    /// The Deferred.
    pub id: DeferredId,
    /// Steps run so far.
    pub index: u32,
    /// The child it waits on; `None` for an explicit `pause`.
    pub waiting_on: Option<DeferredId>,
}

/// A chain is at a named step (a new one, or the same `index` now waiting on something).
#[derive(Debug, Clone)]
pub struct StepNamed {
    /// The Deferred.
    pub id: DeferredId,
    /// The step.
    pub step: NamedStep,
    /// Wall-clock time of the mark.
    pub at: SystemTime,
}

/// A chain went on.
#[derive(Debug, Clone)]
pub struct Resumed {
    /// The Deferred.
    pub id: DeferredId,
    /// How long it was stopped.
    pub paused_for: Duration,
}

/// A Deferred got its first result.
#[derive(Debug, Clone)]
pub struct Fired {
    /// The Deferred.
    pub id: DeferredId,
    /// Success, failure or cancellation.
    pub outcome: Outcome,
    /// Time from creation to firing.
    pub age: Duration,
    /// Wall-clock time of firing.
    pub at: SystemTime,
}

/// A chain has nothing left to run.
#[derive(Debug, Clone)]
pub struct Settled {
    /// The Deferred.
    pub id: DeferredId,
    /// The chain's result.
    pub outcome: Outcome,
    /// Steps run.
    pub steps: u32,
    /// Time from creation.
    pub age: Duration,
}

/// A pending Deferred was freed.
#[derive(Debug, Clone)]
pub struct Dropped {
    /// The Deferred.
    pub id: DeferredId,
    /// Time from creation.
    pub age: Duration,
}

/// The identity every detection carries.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The Deferred.
    pub id: DeferredId,
    /// Its label.
    pub label: Option<&'static str>,
    /// The line that created it.
    pub site: Site,
    /// Its connection.
    pub connection: Option<ConnectionId>,
}

/// Pending or paused longer than the stall threshold.
#[derive(Debug, Clone)]
pub struct Stalled {
    /// Which Deferred.
    pub subject: Subject,
    /// Pending, paused or waiting.
    pub state: DeferredState,
    /// How long it has been in that state.
    pub stalled_for: Duration,
    /// The threshold it crossed.
    pub threshold: Duration,
    /// Steps run so far.
    pub step: u32,
    /// The step it is stuck at: the one that returned the awaited child, or the next.
    pub step_site: Option<Site>,
    /// The child it waits on.
    pub waiting_on: Option<DeferredId>,
    /// The named step it is at, if its code names its steps ([`Steps`](super::Steps)).
    pub named: Option<NamedStep>,
}

/// A step that held the reactor thread too long.
#[derive(Debug, Clone)]
pub struct SlowCallback {
    /// Which Deferred.
    pub subject: Subject,
    /// The step's index.
    pub index: u32,
    /// The line that added the callback.
    pub callback_site: Site,
    /// How long it ran.
    pub duration: Duration,
    /// The threshold it crossed.
    pub threshold: Duration,
}

/// A failure nobody handled, reported when the last handle went away.
#[derive(Debug, Clone)]
pub struct Unhandled {
    /// Which Deferred.
    pub subject: Subject,
    /// The failure, with its own creation site.
    pub failure: FailureInfo,
}

/// The firing side was dropped without firing.
#[derive(Debug, Clone)]
pub struct Leaked {
    /// Which Deferred.
    pub subject: Subject,
    /// Time from creation.
    pub age: Duration,
}

/// Builds and sends a Deferred event, only when an observer listens.
#[inline]
pub(crate) fn emit(build: impl FnOnce() -> DeferredEvent) {
    emit_if(crate::observe::enabled(), build);
}

/// `emit` when the caller already knows whether anyone listens.
#[inline]
pub(crate) fn emit_if(observed: bool, build: impl FnOnce() -> DeferredEvent) {
    if observed {
        let event = build();
        crate::observe::emit(|| crate::observe::Event::Deferred(&event));
    }
}
