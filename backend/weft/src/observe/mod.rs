//! Typed events and the [`Observer`] trait: how the reactor reports what it does.
//!
//! Every connection and UDP endpoint gets a [`ConnectionId`] and a shared
//! [`ConnectionInfo`] whose [`ConnectionStats`] counters the reactor updates in place;
//! an observer (the telemetry hub, a test) keeps the `Arc` and reads the counters
//! whenever it likes. Events are emitted on one path, [`emit`], which costs one
//! thread-local read when no observer is installed.

mod context;
mod events;
mod stats;

pub use context::{current_connection, with_connection};
pub use events::{
    CloseKind, CloseReason, ConnectionClosed, Direction, ErrorKind, Event, ListenerInfo,
    ProtocolError, ReactorLag, Refused, SlowCallback,
};
pub use stats::{ConnectionId, ConnectionInfo, ConnectionStats, TransportKind, ids_after, next_id};

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

/// Receives the reactor's events.
///
/// Called synchronously on the reactor thread, so an implementation must be quick:
/// update atomics, `try_send` into a bounded queue, never block or wait.
pub trait Observer: Send + Sync + 'static {
    /// One event. Borrowed data lives only for the call; clone what you keep.
    fn on_event(&self, event: &Event<'_>);
}

thread_local! {
    /// The `Rc` layer makes the per-event clone (which lets an observer replace itself
    /// mid-call) a plain increment instead of two atomic operations.
    static OBSERVER: RefCell<Option<Rc<Arc<dyn Observer>>>> = const { RefCell::new(None) };
}

/// Installs `observer` for the current thread (the reactor's), replacing any other.
pub fn set_observer(observer: Option<Arc<dyn Observer>>) {
    OBSERVER.with(|o| *o.borrow_mut() = observer.map(Rc::new));
}

/// The observer installed on this thread, if any.
pub fn observer() -> Option<Arc<dyn Observer>> {
    OBSERVER.with(|o| o.borrow().as_deref().cloned())
}

/// Whether an observer is installed on this thread; lets callers skip building an event.
#[inline]
pub fn enabled() -> bool {
    OBSERVER.with(|o| o.borrow().is_some())
}

/// Sends one event to this thread's observer, if there is one.
///
/// The closure builds the event only when someone listens.
#[inline]
pub fn emit<'a>(build: impl FnOnce() -> Event<'a>) {
    // Clone out of the cell so an observer may itself (un)install observers.
    if let Some(obs) = OBSERVER.with(|o| o.borrow().clone()) {
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

/// An observer that collects every event as text; handy in tests and examples.
#[derive(Default)]
pub struct RecordingObserver {
    /// A `Mutex` because observers are `Send + Sync`; only tests and examples read it.
    events: std::sync::Mutex<Vec<String>>,
}

impl RecordingObserver {
    /// A new, empty recorder.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// The events recorded so far, each rendered with `Debug`.
    pub fn events(&self) -> Vec<String> {
        self.events.lock().expect("recorder lock").clone()
    }

    /// How many recorded events contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.events().iter().filter(|e| e.contains(needle)).count()
    }
}

impl Observer for RecordingObserver {
    fn on_event(&self, event: &Event<'_>) {
        self.events
            .lock()
            .expect("recorder lock")
            .push(format!("{event:?}"));
    }
}

thread_local! {
    static SLOW_THRESHOLD: std::cell::Cell<std::time::Duration> =
        const { std::cell::Cell::new(std::time::Duration::from_millis(100)) };
}

/// Sets how long a callback may run on this thread before it is reported as slow.
pub fn set_slow_threshold(threshold: std::time::Duration) {
    SLOW_THRESHOLD.with(|t| t.set(threshold));
}

/// How long a callback may run on this thread before it is reported as slow.
#[inline]
pub fn slow_threshold() -> std::time::Duration {
    SLOW_THRESHOLD.with(std::cell::Cell::get)
}
