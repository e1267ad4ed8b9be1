//! Connection deadlines: idle timeouts, and closes (or send timeouts) that cannot finish
//! because the peer stopped reading (output blocked on a full socket, with no progress
//! for the close timeout or the send timeout: aborted as [`CloseReason::SendTimeout`]).
//!
//! One sweep over the open connections a few times per shortest deadline, instead of a
//! timer per connection: reads and writes already stamp each connection's last activity,
//! so keeping a connection alive costs nothing, and a deadline is met within a quarter of
//! itself (at most a second late).

use std::rc::Weak;
use std::time::Duration;

use crate::observe::CloseReason;
use crate::transport::Expired;

use super::{Inner, Reactor};

/// The sweep never runs more often than this...
const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// ... nor less often than this.
const MAX_INTERVAL: Duration = Duration::from_secs(1);

/// How often to sweep so that a deadline of `timeout` is met within a quarter of it.
pub(super) fn interval_for(timeout: Duration) -> Duration {
    (timeout / 4).clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// Sweeps until the reactor is gone. Holds the reactor only while sweeping, so this task
/// (owned by the reactor's task set) does not keep it alive.
pub(super) async fn run(inner: Weak<Inner>) {
    let Some(sooner) = inner.upgrade().map(|inner| inner.sweep_sooner.clone()) else {
        return;
    };
    loop {
        let Some(every) = inner.upgrade().map(|inner| inner.sweep_every.get()) else {
            return;
        };
        // A shorter deadline set meanwhile restarts the wait with the shorter interval.
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = sooner.notified() => continue,
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        sweep(&Reactor { inner });
    }
}

fn sweep(reactor: &Reactor) {
    let close_timeout = reactor.inner.config.get().close_timeout;
    let now = std::time::Instant::now();
    let expired: Vec<_> = reactor
        .inner
        .connections
        .borrow()
        .values()
        .filter_map(|t| t.expired(now, close_timeout).map(|e| (t.clone(), e)))
        .collect();
    for (transport, expired) in expired {
        match expired {
            // A handshake `start_tls` began that made no progress for the idle timeout:
            // the peer stalled it. Nothing can be said or sent in order until it ends.
            Expired::Idle if transport.handshaking() => {
                tracing::debug!(connection = %transport.id(), "idle in a TLS handshake; aborting");
                transport.abort_with(CloseReason::TimedOut);
            }
            // Nothing moved for the idle timeout while output waits: the peer stopped
            // reading. Asked to close, it would be given up a close timeout later.
            Expired::Idle if transport.output_stuck() => {
                tracing::debug!(
                    connection = %transport.id(),
                    buffered = transport.buffered(),
                    "idle with output the peer is not reading; aborting"
                );
                transport.abort_with(CloseReason::SendTimeout);
            }
            Expired::Idle if transport.resets_when_idle() => {
                tracing::debug!(connection = %transport.id(), "idle timeout; resetting");
                transport.abort_with(CloseReason::TimedOut);
            }
            Expired::Idle => {
                tracing::debug!(connection = %transport.id(), "idle timeout");
                transport.time_out();
            }
            Expired::Stuck => {
                tracing::debug!(
                    connection = %transport.id(),
                    buffered = transport.buffered(),
                    "output made no progress: the peer is not reading; aborting"
                );
                transport.abort_with(CloseReason::SendTimeout);
            }
        }
    }
}
