//! A scheduled call that can be cancelled, moved or inspected.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::{Rc, Weak};
use std::time::Duration;

use super::clock::ClockInner;

/// Why a [`DelayedCall`] could not be changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DelayedCallError {
    /// The call already ran (Twisted's `AlreadyCalled`).
    #[error("the delayed call already ran")]
    AlreadyCalled,
    /// The call was cancelled (Twisted's `AlreadyCancelled`).
    #[error("the delayed call was already cancelled")]
    AlreadyCancelled,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum CallState {
    Pending,
    Called,
    Cancelled,
}

pub(super) struct Entry {
    pub(super) time: Cell<Duration>,
    pub(super) state: Cell<CallState>,
    /// Bumped by `reset`/`delay`; heap slots carrying an older generation are stale.
    pub(super) generation: Cell<u64>,
    pub(super) func: RefCell<Option<Box<dyn FnOnce()>>>,
    /// Where `call_later` was called: how a call that blocks the reactor is named.
    pub(super) site: &'static std::panic::Location<'static>,
    pub(super) clock: Weak<ClockInner>,
}

/// A call scheduled by `call_later` (Twisted's `IDelayedCall`).
///
/// Dropping the handle does not cancel the call.
#[derive(Clone)]
pub struct DelayedCall {
    pub(super) entry: Rc<Entry>,
}

impl DelayedCall {
    /// When the call is due, on its clock's timeline (Twisted's `getTime`).
    pub fn time(&self) -> Duration {
        self.entry.time.get()
    }

    /// The line that scheduled the call.
    pub fn site(&self) -> &'static std::panic::Location<'static> {
        self.entry.site
    }

    /// Whether the call has neither run nor been cancelled.
    pub fn active(&self) -> bool {
        self.entry.state.get() == CallState::Pending
    }

    /// Whether the call is pending on a clock that still exists.
    pub(crate) fn will_run(&self) -> bool {
        self.active() && self.entry.clock.strong_count() > 0
    }

    /// Whether the call ran.
    pub fn called(&self) -> bool {
        self.entry.state.get() == CallState::Called
    }

    /// Cancels the call; an error if it already ran or was cancelled.
    pub fn cancel(&self) -> Result<(), DelayedCallError> {
        self.check_pending()?;
        self.entry.state.set(CallState::Cancelled);
        // Free the closure (and what it captured) now, not when the heap slot expires.
        self.entry.func.borrow_mut().take();
        if let Some(clock) = self.entry.clock.upgrade() {
            clock.cancelled();
        }
        Ok(())
    }

    /// Reschedules the call to run `delay` from now.
    pub fn reset(&self, delay: Duration) -> Result<(), DelayedCallError> {
        self.check_pending()?;
        let clock = self
            .entry
            .clock
            .upgrade()
            .ok_or(DelayedCallError::AlreadyCancelled)?;
        let time = clock.now().saturating_add(delay);
        clock.reschedule(&self.entry, time);
        Ok(())
    }

    /// Pushes the call `by` later than it was due.
    pub fn delay(&self, by: Duration) -> Result<(), DelayedCallError> {
        self.check_pending()?;
        let clock = self
            .entry
            .clock
            .upgrade()
            .ok_or(DelayedCallError::AlreadyCancelled)?;
        clock.reschedule(&self.entry, self.entry.time.get().saturating_add(by));
        Ok(())
    }

    fn check_pending(&self) -> Result<(), DelayedCallError> {
        match self.entry.state.get() {
            CallState::Pending => Ok(()),
            CallState::Called => Err(DelayedCallError::AlreadyCalled),
            CallState::Cancelled => Err(DelayedCallError::AlreadyCancelled),
        }
    }
}

impl fmt::Debug for DelayedCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.entry.state.get() {
            CallState::Pending => "pending",
            CallState::Called => "called",
            CallState::Cancelled => "cancelled",
        };
        f.debug_struct("DelayedCall")
            .field("time", &self.entry.time.get())
            .field("state", &state)
            .finish()
    }
}
