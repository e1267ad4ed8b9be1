//! Which connection the code running now belongs to.
//!
//! The reactor sets it around every protocol callback, so a Deferred created inside
//! `data_received` knows its connection without being told.

use super::ConnectionId;

/// The connection whose callback is running on this thread, if any.
#[inline]
pub fn current_connection() -> Option<ConnectionId> {
    crate::context::with(|cx| cx.connection.get())
}

/// Runs `f` with `id` as the current connection, restoring the previous one after.
#[inline]
pub fn with_connection<R>(id: Option<ConnectionId>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<ConnectionId>);
    impl Drop for Restore {
        fn drop(&mut self) {
            crate::context::with(|cx| cx.connection.set(self.0));
        }
    }
    let _restore = Restore(crate::context::with(|cx| cx.connection.replace(id)));
    f()
}
