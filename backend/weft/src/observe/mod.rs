//! Typed events and the [`Observer`] trait: how the reactor reports what it does.
//!
//! Every connection and UDP endpoint gets a [`ConnectionId`] and a shared
//! [`ConnectionInfo`] whose [`ConnectionStats`] counters the reactor updates in place;
//! an observer (the telemetry hub, a test) keeps the `Arc` and reads the counters
//! whenever it likes. Events are emitted on one path, [`emit`], which costs one
//! thread-local read when no observer is installed.

mod context;
mod events;
pub mod exemplar;
mod stats;
pub(crate) mod stopwatch;
pub mod trace;

pub use context::{current_connection, with_connection};
pub use events::{
    CloseKind, CloseReason, ConnectionClosed, Direction, ErrorKind, Event, ListenerInfo,
    ProtocolError, ReactorLag, Refused, SlowCallback,
};
pub use stats::{ConnectionId, ConnectionInfo, ConnectionStats, TransportKind, ids_after, next_id};
pub use stopwatch::Stopwatch;

use std::rc::Rc;
use std::sync::Arc;

/// Receives the reactor's events.
///
/// Called synchronously on the reactor thread, so an implementation must be quick:
/// update atomics, `try_send` into a bounded queue, never block or wait.
pub trait Observer: Send + Sync + 'static {
    /// One event. Borrowed data lives only for the call; clone what you keep.
    fn on_event(&self, event: &Event<'_>);

    /// Asked once as each Deferred is created: whether its record is wanted even if it
    /// ends well (`Created::sampled` carries the answer). A chain passed over that is
    /// created inside a task poll and ends well within 100 ms, with no traced step,
    /// failure or detection, is never reported: it costs no event at all. One still
    /// pending after that, or that stops, fails or is flagged, is reported from its
    /// creation as usual, with every named step it went through. Observers that want every
    /// chain keep the default.
    fn sample_chain(&self) -> bool {
        true
    }
}

/// Installs `observer` for the current thread (the reactor's), replacing any other.
pub fn set_observer(observer: Option<Arc<dyn Observer>>) {
    crate::context::with(|cx| *cx.observer.borrow_mut() = observer.map(Rc::new));
}

/// The observer installed on this thread, if any.
pub fn observer() -> Option<Arc<dyn Observer>> {
    crate::context::with(|cx| cx.observer.borrow().as_deref().cloned())
}

/// Whether an observer is installed on this thread; lets callers skip building an event.
#[inline]
pub fn enabled() -> bool {
    crate::context::with(|cx| cx.observer.borrow().is_some())
}

/// The observer installed on this thread, for a caller that sends several events in a row
/// (a chain's steps): one thread-local lookup for all of them. A cheap clone, so the
/// observer may replace itself while one of its calls runs.
#[inline]
pub(crate) fn current() -> Option<Rc<Arc<dyn Observer>>> {
    crate::context::with(|cx| cx.observer.borrow().clone())
}

/// Sends one event to this thread's observer, if there is one.
///
/// The closure builds the event only when someone listens.
#[inline]
pub fn emit<'a>(build: impl FnOnce() -> Event<'a>) {
    // Clone out of the cell so an observer may itself (un)install observers.
    if let Some(obs) = crate::context::with(|cx| cx.observer.borrow().clone()) {
        obs.on_event(&build());
    }
}

/// Reports a handled error on a connection: logged once here, counted by observers.
pub fn report_error(info: &ConnectionInfo, kind: ErrorKind, message: String) {
    tracing::info!(connection = %info.id, service = %info.service, kind = kind.as_str(), "{message}");
    emit(|| {
        Event::ProtocolError(ProtocolError {
            service: info.service.clone(),
            connection: Some(info.id),
            kind,
            message,
        })
    });
}

/// Sets how long a callback may run on this thread before it is reported as slow.
///
/// A reactor sets it from its [`ReactorConfig`](crate::ReactorConfig); on a reactor's thread,
/// change it through [`Reactor::set_thresholds`](crate::Reactor::set_thresholds) so the
/// reactor's configuration keeps saying what is in effect.
pub fn set_slow_threshold(threshold: std::time::Duration) {
    crate::context::with(|cx| cx.slow_callback.set(threshold));
}

/// How long a callback may run on this thread before it is reported as slow.
#[inline]
pub fn slow_threshold() -> std::time::Duration {
    crate::context::with(|cx| cx.slow_callback.get())
}
