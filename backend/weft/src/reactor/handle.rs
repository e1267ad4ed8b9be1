//! The thread-safe way into a reactor from other threads.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::observe::ConnectionId;

pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// A cloneable, `Send + Sync` handle to a reactor (Twisted's `callFromThread`).
///
/// Everything it does is queued to the reactor thread and runs there.
#[derive(Clone, Debug)]
pub struct ReactorHandle {
    pub(crate) jobs: mpsc::UnboundedSender<Job>,
    pub(crate) stop: CancellationToken,
    pub(crate) lag: Arc<super::lag::LagStats>,
}

impl ReactorHandle {
    /// Runs `f` on the reactor thread, soon. Returns `false` if the reactor has gone.
    pub fn call_from_thread(&self, f: impl FnOnce() + Send + 'static) -> bool {
        self.jobs.send(Box::new(f)).is_ok()
    }

    /// Asks the reactor to stop: shutdown hooks run, connections drain, `run` returns.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Whether a stop was requested.
    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Aborts a connection by id; `false` if the reactor has gone.
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
