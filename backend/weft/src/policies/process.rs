//! One cap over every connection the process accepts, on every listener and reactor:
//! what the open-files limit allows once room is kept for the rest (Twisted has none; a
//! proxy needs one, since each connection it accepts may open another).

use std::sync::atomic::{AtomicUsize, Ordering};

static MAX: AtomicUsize = AtomicUsize::new(usize::MAX);
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// Caps the connections every listener of the process accepts, together, at `max`
/// (`None`: no cap). A connection past it is refused as its listener's own caps refuse
/// one, with reason `limit_process`; connections already open are not touched.
///
/// A program sets it from its open-files limit, keeping room for what else holds a file
/// (listening sockets, outgoing connections, its database): one descriptor short, and
/// every service stops accepting, the connects out fail and the log cannot rotate.
pub fn set_process_connection_limit(max: Option<usize>) {
    MAX.store(max.unwrap_or(usize::MAX), Ordering::Relaxed);
}

/// The cap [`set_process_connection_limit`] set, if any.
pub fn process_connection_limit() -> Option<usize> {
    Some(MAX.load(Ordering::Relaxed)).filter(|&m| m != usize::MAX)
}

/// Connections accepted by the process and open now.
pub fn process_connections_open() -> usize {
    OPEN.load(Ordering::Relaxed)
}

/// One accepted connection's place under the process's cap, given back when dropped.
#[derive(Debug)]
pub(crate) struct ProcessSlot(());

impl ProcessSlot {
    /// A place, or `None` when the cap is reached.
    pub(crate) fn take() -> Option<Self> {
        let max = MAX.load(Ordering::Relaxed);
        OPEN.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |open| {
            (open < max).then_some(open + 1)
        })
        .ok()
        .map(|_| Self(()))
    }
}

impl Drop for ProcessSlot {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}
