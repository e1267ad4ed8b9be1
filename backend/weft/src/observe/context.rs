//! Which connection the code running now belongs to.
//!
//! The reactor sets it around every protocol callback, so a Deferred created inside
//! `data_received` knows its connection without being told.

use std::cell::Cell;

use super::ConnectionId;

thread_local! {
    static CURRENT: Cell<Option<ConnectionId>> = const { Cell::new(None) };
}

/// The connection whose callback is running on this thread, if any.
#[inline]
pub fn current_connection() -> Option<ConnectionId> {
    CURRENT.with(Cell::get)
}

/// Runs `f` with `id` as the current connection, restoring the previous one after.
#[inline]
pub fn with_connection<R>(id: Option<ConnectionId>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<ConnectionId>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.replace(id)));
    f()
}
