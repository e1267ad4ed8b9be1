//! The detectors: stalled, slow callback, unhandled failure, leaked (and deadlock, in
//! `waits.rs`, run by the same scan).
//!
//! Slow, unhandled and leaked are noticed inline, at the moment they happen (a step
//! returns, the last handle drops, the firing side drops). Stalls need time to pass, so
//! a scan walks the registry on the thread's clock; the reactor starts it when it runs
//! ([`start_detectors`]), a test starts it on a fake clock with [`watch_stalls`].
//! Each detector reports a given Deferred at most once.

use std::cell::{Cell, RefCell};
use std::panic::Location;
use std::rc::Rc;
use std::time::Duration;

use super::core::{Core, LONG_WAIT, STALL_REPORTED};
use super::events;
use super::events::{
    DeferredEvent, DeferredState, Detector, FailureInfo, Leaked, Site, SlowCallback, Stalled,
    Subject, Unhandled,
};
use super::{Failure, registry};
use crate::observe::detection_logged;

fn subject(core: &Core) -> Subject {
    Subject {
        id: core.id,
        label: core.label,
        site: Site(core.site),
        connection: core.connection,
    }
}

pub(crate) fn report_slow(
    core: &Core,
    index: u32,
    site: &'static Location<'static>,
    took: Duration,
    threshold: Duration,
) {
    crate::tasks::note_slow_inside(took);
    core.announce();
    if let Some(suppressed) = detection_logged(Detector::Slow, core.label) {
        tracing::warn!(
            deferred = %core.id, label = core.label, callback = %Site(site), ?took, suppressed,
            "a Deferred callback blocked the reactor"
        );
    }
    events::emit(|| {
        DeferredEvent::SlowCallback(SlowCallback {
            subject: subject(core),
            index,
            callback_site: Site(site),
            duration: took,
            threshold,
        })
    });
}

pub(crate) fn report_unhandled(core: &Core, failure: &Failure) {
    core.announce();
    if let Some(suppressed) = detection_logged(Detector::Unhandled, core.label) {
        tracing::error!(
            deferred = %core.id, label = core.label, created = %Site(core.site), suppressed,
            "Unhandled error in Deferred: {failure}"
        );
    }
    events::emit(|| {
        DeferredEvent::Unhandled(Unhandled {
            subject: subject(core),
            failure: FailureInfo::of(failure),
        })
    });
}

pub(crate) fn report_leaked(core: &Core) {
    core.announce();
    if let Some(suppressed) = detection_logged(Detector::Leaked, core.label) {
        tracing::warn!(
            deferred = %core.id, created = %Site(core.site), suppressed,
            "a Deferred's firing side was dropped without firing; its chain can never complete"
        );
    }
    events::emit(|| {
        DeferredEvent::Leaked(Leaked {
            subject: subject(core),
            age: registry::clock_now().saturating_sub(core.created),
        })
    });
}

/// When a Deferred is stalled; one per thread, in the thread's context.
pub(crate) struct StallConfig {
    default: Duration,
    /// Per-label thresholds that override `default` for Deferreds carrying that label.
    per_label: Vec<(&'static str, Duration)>,
}

impl StallConfig {
    pub(crate) const fn new(default: Duration) -> Self {
        Self {
            default,
            per_label: Vec::new(),
        }
    }
}

fn stall<R>(f: impl FnOnce(&RefCell<StallConfig>) -> R) -> R {
    crate::context::with(|cx| f(&cx.stall))
}

/// Sets how long a Deferred on this thread may stay pending or paused before it is
/// reported as stalled (the `[inspect] stall_after` setting; default
/// [`ReactorConfig::DEFAULT_STALL_AFTER`](crate::ReactorConfig::DEFAULT_STALL_AFTER)).
///
/// A reactor sets it from its configuration; on a reactor's thread, change it through
/// [`Reactor::set_thresholds`](crate::Reactor::set_thresholds).
pub fn set_stall_threshold(after: Duration) {
    stall(|s| s.borrow_mut().default = after);
}

/// Overrides the stall threshold for Deferreds labelled `label` (a service's own
/// Deferreds, say, when it legitimately waits longer).
pub fn set_stall_threshold_for(label: &'static str, after: Duration) {
    stall(|s| {
        let mut s = s.borrow_mut();
        s.per_label.retain(|(l, _)| *l != label);
        s.per_label.push((label, after));
    });
}

/// The stall threshold that applies to a Deferred with `label`.
pub fn stall_threshold(label: Option<&str>) -> Duration {
    stall(|s| {
        let s = s.borrow();
        label
            .and_then(|l| s.per_label.iter().find(|(k, _)| *k == l).map(|(_, d)| *d))
            .unwrap_or(s.default)
    })
}

fn scan_interval() -> Duration {
    let shortest = stall(|s| {
        let s = s.borrow();
        s.per_label
            .iter()
            .map(|(_, d)| *d)
            .fold(s.default, Duration::min)
    });
    (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Looks at every pending Deferred and live task once and reports those stuck past their
/// threshold (and tasks nothing can wake).
pub fn scan_for_stalls() {
    crate::tasks::scan_for_stalls();
    let now = registry::clock_now();
    registry::for_each_pending(|core| {
        // A leaked chain was reported as such: it can never complete, which a stall
        // report would say again. The chains waiting on it were not: they stall.
        if core.flags_has(LONG_WAIT) || core.leaked_unfired() {
            return;
        }
        let since = match core.state() {
            DeferredState::Pending => core.created,
            DeferredState::Paused | DeferredState::Waiting => core.paused_since.get(),
            _ => return,
        };
        let stuck = now.saturating_sub(since);
        let threshold = stall_threshold(core.label);
        if stuck < threshold || core.flags_has(STALL_REPORTED) {
            return;
        }
        core.set_flag(STALL_REPORTED, true);
        core.announce();
        let snapshot = registry::snapshot(core, now);
        if let Some(suppressed) = detection_logged(Detector::Stalled, core.label) {
            tracing::warn!(
                deferred = %core.id, label = core.label, created = %Site(core.site),
                state = snapshot.state.as_str(),
                step = snapshot.named.as_ref().map(|n| n.name), ?stuck, suppressed,
                "a Deferred is stalled"
            );
        }
        events::emit(|| {
            DeferredEvent::Stalled(Stalled {
                subject: subject(core),
                state: snapshot.state,
                stalled_for: stuck,
                threshold,
                step: snapshot.steps_run,
                step_site: snapshot.step_site,
                waiting_on: snapshot.waiting_on,
                named: snapshot.named,
            })
        });
    });
    super::waits::scan_for_deadlocks();
}

/// Keeps the stall scan running on this thread's clock until dropped.
#[must_use = "the scan stops when the watch is dropped"]
#[derive(Debug)]
pub struct StallWatch {
    /// Shared with the scan loop, which ends when the watch is dropped.
    stopped: Rc<Cell<bool>>,
}

impl StallWatch {
    /// Lets the scan run for as long as its clock does.
    pub fn detach(mut self) {
        self.stopped = Rc::new(Cell::new(false));
    }
}

impl Drop for StallWatch {
    fn drop(&mut self) {
        // The scan already scheduled sees the flag and does not come back.
        self.stopped.set(true);
    }
}

/// Starts scanning for stalled Deferreds on this thread's clock.
///
/// # Panics
/// When no clock is installed on this thread.
pub fn watch_stalls() -> StallWatch {
    let stopped = Rc::new(Cell::new(false));
    schedule(stopped.clone());
    StallWatch { stopped }
}

fn schedule(stopped: Rc<Cell<bool>>) {
    crate::time::call_later(scan_interval(), move || {
        if stopped.get() {
            return;
        }
        scan_for_stalls();
        schedule(stopped);
    });
}

/// Starts the detectors that need the reactor running; called once by `Reactor::run`.
pub(crate) fn start_detectors(_reactor: &crate::Reactor) {
    watch_stalls().detach();
}
