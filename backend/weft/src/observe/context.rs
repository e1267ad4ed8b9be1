//! Which connection the code running now belongs to.
//!
//! The reactor sets it around every protocol callback, so a Deferred created inside
//! `data_received` knows its connection without being told; and around every poll of a
//! task that belongs to a connection (one spawned from its callbacks or its task, or a
//! connection's own), so what that task spawns or creates belongs to it too.

use super::ConnectionId;

/// The connection whose callback, or whose task, is running on this thread, if any.
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
