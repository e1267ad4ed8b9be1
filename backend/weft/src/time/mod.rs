//! Time: the [`Clock`] behind `call_later`, and [`DelayedCall`] handles.
//!
//! A clock is a timer heap plus a notion of "now". The reactor's clock follows tokio's
//! time (so `tokio::time::pause` works too); a fake clock (`Clock::fake`, re-exported as
//! `weft::testing::Clock`) moves only when a test calls `advance`. Code that schedules
//! through [`call_later`] uses whichever clock is installed on the thread, so protocols
//! with timeouts are tested deterministically, without sleeping.

mod clock;
mod delayed;

pub use clock::{Clock, ClockGuard, call_later, current_clock, try_current_clock};
pub(crate) use clock::{ClockInner, panic_message};
pub use delayed::{DelayedCall, DelayedCallError};
