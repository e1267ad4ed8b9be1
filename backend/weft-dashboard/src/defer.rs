//! The seam to `weft::defer`: cancelling a pending Deferred on the reactor thread.

use weft::ReactorHandle;
use weft::defer::DeferredId;

/// Queues the cancellation of Deferred `id` to `reactor`; `false` if the reactor has gone
/// or its queue is full. The chain's `CancelledError` names the caller (the dashboard's
/// action).
#[track_caller]
pub(crate) fn cancel(reactor: &ReactorHandle, id: u64) -> bool {
    reactor.cancel_deferred(DeferredId(id))
}
