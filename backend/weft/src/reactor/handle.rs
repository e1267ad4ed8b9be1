//! The thread-safe way into a reactor from other threads.
//!
//! Calls wait for the reactor thread in a bounded queue: a thread calling in a loop while
//! the reactor is blocked (a slow callback, a deadlock) is told the queue is full rather
//! than growing memory without end, and never waits itself, so the inspector's thread
//! (the dashboard's actions, reloads) cannot be stalled by the reactor it inspects.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::observe::ConnectionId;

pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// Calls from other threads a reactor holds queued at once; one more is refused
/// ([`CallError::Full`]). A reactor that runs takes thousands a millisecond, so only one
/// that is blocked (or a caller gone wild) ever fills it.
pub const CALL_QUEUE: usize = 4096;

/// Why [`ReactorHandle::try_call_from_thread`] did not queue a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// [`CALL_QUEUE`] calls are already waiting: the reactor is blocked or far behind.
    /// Counted in [`ReactorHandle::calls_refused`].
    #[error(
        "the reactor's queue of calls from other threads is full ({CALL_QUEUE} waiting): \
         it is blocked or far behind"
    )]
    Full,
    /// The reactor has stopped.
    #[error("the reactor has stopped")]
    Gone,
}

/// A cloneable, `Send + Sync` handle to a reactor (Twisted's `callFromThread`).
///
/// Everything it does is queued to the reactor thread, in a queue bounded by
/// [`CALL_QUEUE`], and runs there. Nothing it does waits.
#[derive(Clone, Debug)]
pub struct ReactorHandle {
    pub(crate) jobs: mpsc::Sender<Job>,
    /// Calls refused for a full queue, shared by every clone.
    pub(crate) refused: Arc<AtomicU64>,
    pub(crate) stop: CancellationToken,
    pub(crate) lag: Arc<super::lag::LagStats>,
}

impl ReactorHandle {
    /// A handle whose calls go to `jobs`, bounded by [`CALL_QUEUE`].
    pub(crate) fn new(stop: CancellationToken) -> (Self, mpsc::Receiver<Job>) {
        let (jobs, rx) = mpsc::channel(CALL_QUEUE);
        let handle = Self {
            jobs,
            refused: Arc::default(),
            stop,
            lag: Arc::default(),
        };
        (handle, rx)
    }

    /// Runs `f` on the reactor thread, soon. Returns `false` if it was not queued: the
    /// reactor has gone, or [`CALL_QUEUE`] calls are already waiting for it (counted in
    /// [`calls_refused`](Self::calls_refused)). It never waits; use
    /// [`try_call_from_thread`](Self::try_call_from_thread) to tell the two apart.
    pub fn call_from_thread(&self, f: impl FnOnce() + Send + 'static) -> bool {
        self.try_call_from_thread(f).is_ok()
    }

    /// Runs `f` on the reactor thread, soon, or says why it will not: the queue is full
    /// (counted) or the reactor has gone. It never waits.
    pub fn try_call_from_thread(&self, f: impl FnOnce() + Send + 'static) -> Result<(), CallError> {
        match self.jobs.try_send(Box::new(f)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err(CallError::Full)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(CallError::Gone),
        }
    }

    /// Calls refused so far because the queue was full, across every clone.
    pub fn calls_refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Asks the reactor to stop: shutdown hooks run, connections drain, `run` returns.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Whether a stop was requested.
    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Aborts a connection by id; `false` if the reactor has gone or its queue is full.
    ///
    /// Used by the inspector's "close connection" action.
    pub fn close_connection(&self, id: ConnectionId) -> bool {
        self.call_from_thread(move || {
            if let Some(reactor) = super::Reactor::try_current() {
                reactor.close_connection(id);
            }
        })
    }

    /// How late the reactor's timers have been firing.
    pub fn lag(&self) -> &super::lag::LagStats {
        &self.lag
    }
}
