//! The live registry of pending Deferreds, listable at any time.
//!
//! A slab of weak references on the reactor thread: registering and unregistering are
//! a push and a slot write, nothing is locked, and a listing upgrades each entry and
//! reads its cells. Other threads ask through the reactor's handle
//! ([`ReactorHandle::pending_deferreds`](crate::ReactorHandle::pending_deferreds)), which
//! queues the listing onto the reactor thread and sends the snapshots back.

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use super::core::Core;
use super::events::{DeferredId, DeferredState, Site};
use super::named::NamedStep;
use crate::observe::ConnectionId;

/// The table behind the registry; one per thread, in the thread's context.
pub(crate) struct Registry {
    /// Pending Deferreds by slot index, weak so the registry never keeps a chain alive.
    slots: Vec<Option<Weak<Core>>>,
    /// Emptied slots, reused so the table stays as large as the most pending at once.
    free: Vec<usize>,
}

impl Registry {
    pub(crate) const fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

fn registry<R>(f: impl FnOnce(&RefCell<Registry>) -> R) -> R {
    crate::context::with(|cx| f(&cx.deferreds))
}

/// Now, on the thread clock's timeline (a fake clock in tests), else since first use.
///
/// Read through the thread's [`PollClock`](crate::tasks::PollClock): a chain made, a
/// step named, a chain fired each ask the time, and there a reading is a counter read
/// rather than a clock call. Under tokio's paused time it follows the stopwatch between
/// anchors, as task polls do; ages are tested on a fake clock.
#[inline]
pub(crate) fn clock_now() -> Duration {
    Duration::from_nanos(crate::context::with(|cx| cx.poll_clock.now_ns(&cx.clock)))
}

/// Now, read from the thread's clock itself (else the time since first use): what
/// [`clock_now`] is anchored on.
pub(crate) fn clock_now_exact() -> Duration {
    match crate::time::try_current_clock() {
        Some(clock) => clock.now(),
        None => crate::context::with(|cx| {
            let origin = cx.origin.get().unwrap_or_else(|| {
                let now = Instant::now();
                cx.origin.set(Some(now));
                now
            });
            origin.elapsed()
        }),
    }
}

pub(crate) fn register(core: &Rc<Core>) {
    let weak = Rc::downgrade(core);
    let slot = registry(|r| {
        let mut r = r.borrow_mut();
        match r.free.pop() {
            Some(slot) => {
                r.slots[slot] = Some(weak);
                slot
            }
            None => {
                r.slots.push(Some(weak));
                r.slots.len() - 1
            }
        }
    });
    core.slot.set(Some(slot));
}

pub(crate) fn unregister(slot: usize) {
    // `try_with`: a Deferred freed while the thread exits finds the registry gone.
    let _ = crate::context::try_with(|cx| {
        let mut r = cx.deferreds.borrow_mut();
        r.slots[slot] = None;
        r.free.push(slot);
    });
}

/// Every pending Deferred on this thread, each upgraded for the duration of `f`.
pub(crate) fn for_each_pending(mut f: impl FnMut(&Rc<Core>)) {
    let live: Vec<Rc<Core>> = registry(|r| {
        r.borrow()
            .slots
            .iter()
            .filter_map(|s| s.as_ref().and_then(Weak::upgrade))
            .collect()
    });
    for core in &live {
        f(core);
    }
}

/// How many Deferreds are pending on this thread.
pub fn pending_count() -> usize {
    registry(|r| {
        let r = r.borrow();
        r.slots.len() - r.free.len()
    })
}

/// A pending Deferred as the registry sees it at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDeferred {
    /// Its id.
    pub id: DeferredId,
    /// Its label.
    pub label: Option<&'static str>,
    /// The line that created it.
    pub site: Site,
    /// Its connection.
    pub connection: Option<ConnectionId>,
    /// The Deferred whose callback created it.
    pub parent: Option<DeferredId>,
    /// Time since creation.
    pub age: Duration,
    /// Pending, running, paused or waiting.
    pub state: DeferredState,
    /// Time in the current state: since creation when unfired, since the pause otherwise.
    pub stuck_for: Duration,
    /// Steps run so far.
    pub steps_run: u32,
    /// The step it is at: the one that returned the awaited child, else the next one.
    pub step_site: Option<Site>,
    /// The child it waits on.
    pub waiting_on: Option<DeferredId>,
    /// The named step its code says it is at ([`Steps`](super::Steps)).
    pub named: Option<NamedStep>,
    /// Time at that named step.
    pub named_for: Duration,
}

pub(crate) fn snapshot(core: &Core, now: Duration) -> PendingDeferred {
    let state = core.state();
    let since = match state {
        DeferredState::Pending => core.created,
        _ => core.paused_since.get(),
    };
    let waiting_on = core
        .waiting_on
        .try_borrow()
        .ok()
        .and_then(|w| w.as_ref().map(|c| c.id));
    let step_site = match state {
        DeferredState::Waiting | DeferredState::Running => core.step_site.get(),
        _ => core.next_step_site(),
    };
    let (named, named_since) = core
        .named
        .try_borrow()
        .map(|n| (n.step(), n.since()))
        .unwrap_or_default();
    PendingDeferred {
        id: core.id,
        label: core.label,
        site: Site(core.site),
        connection: core.connection,
        parent: core.parent,
        age: now.saturating_sub(core.created),
        state,
        stuck_for: now.saturating_sub(since),
        steps_run: core.steps_run.get(),
        step_site: step_site.map(Site),
        waiting_on,
        named_for: if named.is_some() {
            now.saturating_sub(named_since)
        } else {
            Duration::ZERO
        },
        named,
    }
}

/// The pending Deferreds of this thread (the reactor's), oldest first.
///
/// Cheap and safe at any time, even from inside a callback: nothing stops, nothing is
/// locked. From another thread, use
/// [`ReactorHandle::pending_deferreds`](crate::ReactorHandle::pending_deferreds).
pub fn pending() -> Vec<PendingDeferred> {
    let now = clock_now();
    let mut out = Vec::new();
    for_each_pending(|core| out.push(snapshot(core, now)));
    out.sort_by_key(|p| std::cmp::Reverse(p.age));
    out
}

/// Cancels the pending Deferred `id` on this thread; `false` if it is not pending.
///
/// What the inspector's "cancel" action does.
#[track_caller]
pub fn cancel(id: DeferredId) -> bool {
    cancel_at(id, std::panic::Location::caller())
}

/// Cancels the pending Deferred `id`, its `CancelledError` made at `site`.
fn cancel_at(id: DeferredId, site: &'static std::panic::Location<'static>) -> bool {
    let mut found = None;
    for_each_pending(|core| {
        if core.id == id {
            found = Some(core.clone());
        }
    });
    match found {
        Some(core) => {
            core.cancel(site);
            true
        }
        None => false,
    }
}

impl crate::reactor::ReactorHandle {
    /// Lists the reactor's pending Deferreds from any thread.
    ///
    /// The listing runs on the reactor thread between callbacks; await the receiver (or
    /// `blocking_recv` it outside async code). It errors if the reactor has gone.
    pub fn pending_deferreds(&self) -> tokio::sync::oneshot::Receiver<Vec<PendingDeferred>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.call_from_thread(move || {
            let _ = tx.send(pending());
        });
        rx
    }

    /// Cancels a pending Deferred from any thread (the inspector's "cancel" action); its
    /// `CancelledError` names the caller's site.
    #[track_caller]
    pub fn cancel_deferred(&self, id: DeferredId) -> bool {
        let site = std::panic::Location::caller();
        self.call_from_thread(move || {
            cancel_at(id, site);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defer::Deferred;

    #[test]
    fn another_thread_lists_the_reactors_pending_deferreds() {
        let reactor = crate::Reactor::with_config(crate::ReactorConfig {
            handle_signals: false,
            ..Default::default()
        })
        .unwrap();
        let (resolver, d) = Deferred::<()>::labeled("waiting-for-peer");
        let id = d.id();
        let handle = reactor.handle();
        let lister = std::thread::spawn(move || {
            let listed = handle.pending_deferreds().blocking_recv().unwrap();
            handle.stop();
            listed
        });
        reactor.run().unwrap();
        let listed = lister.join().unwrap();
        let mine = listed.iter().find(|p| p.id == id).expect("listed");
        assert_eq!(mine.label, Some("waiting-for-peer"));
        assert_eq!(mine.state, DeferredState::Pending);
        resolver.callback(());
        assert!(pending().iter().all(|p| p.id != id));
        drop(d);
    }
}
