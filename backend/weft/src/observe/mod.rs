//! Typed events and the [`Observer`] trait: how the reactor reports what it does.
//!
//! Every connection and UDP endpoint gets a [`ConnectionId`] and a shared
//! [`ConnectionInfo`] whose [`ConnectionStats`] counters the reactor updates in place;
//! an observer (the telemetry hub, a test) keeps the `Arc` and reads the counters
//! whenever it likes. Events are emitted on one path, [`emit`], which costs one
//! thread-local read when no observer is installed.

mod burst;
mod context;
mod events;
pub mod exemplar;
mod stats;
pub(crate) mod stopwatch;
pub mod trace;

pub use burst::Burst;
pub use context::{current_connection, with_connection};
pub use events::{
    CloseKind, CloseReason, ConnectionClosed, Direction, ErrorKind, Event, ListenerInfo,
    ProtocolError, ReactorLag, Refused, SlowCallback,
};
pub use stats::{ConnectionId, ConnectionInfo, ConnectionStats, TransportKind, ids_after, next_id};
pub use stopwatch::Stopwatch;

use crate::defer::Detector;
use std::collections::HashMap;
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

/// Reports a handled error on a connection: logged here, counted by observers.
///
/// Every error is counted, but the log takes at most [`LOG_BURST`] lines a second for one
/// service and kind on a thread: a flood of bad datagrams (one each) would otherwise cost
/// a log line each. The first line after some were left out says how many
/// (`suppressed`).
pub fn report_error(info: &ConnectionInfo, kind: ErrorKind, message: String) {
    report_errors(info, kind, 1, message);
}

/// [`report_error`] for `count` errors of one kind learnt of at once (datagrams the kernel
/// dropped): one line and one event, counted `count` times.
pub fn report_errors(info: &ConnectionInfo, kind: ErrorKind, count: u64, message: String) {
    if let Some(suppressed) = budgeted(&info.service, LogTopic::Error(kind)) {
        tracing::info!(connection = %info.id, service = %info.service, kind = kind.as_str(), suppressed, "{message}");
    }
    emit(|| {
        Event::ProtocolError(ProtocolError {
            service: info.service.clone(),
            connection: Some(info.id),
            kind,
            count,
            message,
        })
    });
}

/// Log lines a second for one service's errors of one kind on a thread
/// ([`report_error`]).
pub const LOG_BURST: u32 = 20;

/// What a line with its own budget of [`LOG_BURST`] a second (for each service) is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum LogTopic {
    /// A handled error of this kind.
    Error(ErrorKind),
    /// A connection that ended this way, when that is not routine (a timeout, a protocol
    /// error): a flood of peers makes one each.
    Close(CloseKind),
    /// What an inspector detector found, of chains or tasks with this label.
    Detection(Detector, Option<&'static str>),
    /// A line a service names itself ([`log_line_budget`]).
    Named(&'static str),
}

/// Whether a detector's line about a chain or task labelled `label` is logged now: at
/// most [`LOG_BURST`] a second for each detector and label on a thread. `Some` with the
/// number of lines left out since the last one (`None` inside when there were none), for
/// a `suppressed` field; `None` when this second's lines are spent. The detections
/// themselves (events, metrics, the dashboard, history) are all kept: a thousand
/// questions stalled on a dead upstream are a thousand detections and twenty lines a
/// second.
pub fn detection_line_budget(
    detector: Detector,
    label: Option<&'static str>,
) -> Option<Option<u64>> {
    thread_local! {
        static DETECTORS: Arc<str> = Arc::from("");
    }
    DETECTORS.with(|d| budgeted(d, LogTopic::Detection(detector, label)))
}

/// Whether the detector that found something logs it itself, as
/// [`detection_line_budget`] says: not when an observer is installed, which reports each
/// detection (the inspector, in one line with more of the chain's state), so a detection
/// is one line, not two.
pub(crate) fn detection_logged(
    detector: Detector,
    label: Option<&'static str>,
) -> Option<Option<u64>> {
    if enabled() {
        return None;
    }
    detection_line_budget(detector, label)
}

/// Whether a line about `what` for `service` is logged now, for a line a peer can make a
/// service write at will (an answer that failed, say): at most [`LOG_BURST`] a second
/// for each service and `what` on a thread. `Some` with the number of lines left out
/// since the last one (`None` inside when there were none), for a `suppressed` field;
/// `None` when this second's lines are spent. Count what the lines are about elsewhere
/// (a metric): the lines are a sample.
pub fn log_line_budget(service: &Arc<str>, what: &'static str) -> Option<Option<u64>> {
    budgeted(service, LogTopic::Named(what))
}

/// Whether a line on `topic` for `service` is logged now: `Some(n)` with the number left
/// out since the last one logged (a line says so as `suppressed` when it is not 0),
/// `None` when this second's lines are spent.
pub(crate) fn log_budget(service: &Arc<str>, topic: LogTopic) -> Option<u64> {
    thread_local! {
        static WINDOWS: std::cell::RefCell<HashMap<(Arc<str>, LogTopic), Burst>> =
            std::cell::RefCell::default();
    }
    let now = std::time::Instant::now();
    WINDOWS.with_borrow_mut(|windows| {
        windows
            .entry((service.clone(), topic))
            .or_insert_with(|| Burst::new(now))
            .admit(now, LOG_BURST, std::time::Duration::from_secs(1))
    })
}

/// [`log_budget`] as a line's `suppressed` field wants it: `Some` when the line is
/// logged, holding the number left out since the last one (`None` when there were none).
pub(crate) fn budgeted(service: &Arc<str>, topic: LogTopic) -> Option<Option<u64>> {
    let left_out = log_budget(service, topic)?;
    Some((left_out > 0).then_some(left_out))
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

#[cfg(test)]
mod log_budget_tests {
    use super::*;

    #[test]
    fn detections_are_logged_a_burst_a_second_for_each_detector_and_label() {
        let stalled = |label| detection_line_budget(Detector::Stalled, label);
        let logged: Vec<_> = (0..30).map(|_| stalled(Some("dead upstream"))).collect();
        assert!(logged[..20].iter().all(|l| *l == Some(None)), "{logged:?}");
        assert!(logged[20..].iter().all(Option::is_none), "{logged:?}");
        // Other labels and detectors have budgets of their own.
        assert_eq!(stalled(Some("http request")), Some(None));
        assert_eq!(
            detection_line_budget(Detector::Unhandled, Some("dead upstream")),
            Some(None)
        );
        // Without an observer the detector logs its findings itself.
        assert_eq!(detection_logged(Detector::Leaked, None), Some(None));
    }

    #[test]
    fn a_flood_of_one_kind_is_logged_a_burst_a_second_and_the_rest_counted_on_the_next_line() {
        let service: Arc<str> = "flooded".into();
        let logged: Vec<Option<u64>> = (0..100)
            .map(|_| log_budget(&service, LogTopic::Error(ErrorKind::DatagramDropped)))
            .collect();
        assert!(logged[..20].iter().all(|l| *l == Some(0)), "{logged:?}");
        assert!(logged[20..].iter().all(Option::is_none), "{logged:?}");
        // Another kind, of error or of close, or another service, has its own budget.
        assert_eq!(
            log_budget(&service, LogTopic::Error(ErrorKind::BadFrame)),
            Some(0)
        );
        assert_eq!(
            log_budget(&service, LogTopic::Close(CloseKind::TimedOut)),
            Some(0)
        );
        assert_eq!(
            log_budget(&"other".into(), LogTopic::Error(ErrorKind::DatagramDropped)),
            Some(0)
        );
        std::thread::sleep(std::time::Duration::from_millis(1_050));
        assert_eq!(
            log_budget(&service, LogTopic::Error(ErrorKind::DatagramDropped)),
            Some(80),
            "the next second's first line says how many were left out"
        );
        assert_eq!(
            log_budget(&service, LogTopic::Error(ErrorKind::DatagramDropped)),
            Some(0)
        );
    }
}
