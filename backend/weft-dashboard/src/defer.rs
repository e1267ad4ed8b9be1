//! The seam to `weft::defer`: cancelling a pending Deferred on the reactor thread.

use weft::ReactorHandle;

/// Queues the cancellation of Deferred `id` to `reactor`; `false` if it cannot be done.
pub(crate) fn cancel(reactor: &ReactorHandle, id: u64) -> bool {
    // The library does not trace Deferreds by id yet; nothing to cancel through.
    let _ = (reactor, id);
    false
}
