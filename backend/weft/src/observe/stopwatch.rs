//! The stopwatch that times each Deferred step: one clock for the process, read raw.
//!
//! quanta's `Instant::now` looks up a per-thread override clock and a global one on
//! every call; a step is timed on every run, so the clock is resolved once here and read
//! with `raw` (the TSC where quanta trusts it, the monotonic clock elsewhere), and only
//! a difference is scaled to nanoseconds.

use std::sync::OnceLock;

static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();

#[inline]
fn clock() -> &'static quanta::Clock {
    CLOCK.get_or_init(quanta::Clock::new)
}

/// A raw reading of the process clock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tick(u64);

impl Tick {
    /// Reads the clock.
    #[inline]
    pub(crate) fn now() -> Self {
        Self(clock().raw())
    }

    /// Nanoseconds from `earlier` to this reading (zero if the clock went backwards).
    #[inline]
    pub(crate) fn nanos_since(self, earlier: Tick) -> u64 {
        clock().delta_as_nanos(earlier.0, self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_after_a_sleep_is_that_much_later() {
        let before = Tick::now();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let after = Tick::now();
        let nanos = after.nanos_since(before);
        assert!(nanos >= 5_000_000, "{nanos}");
        assert!(nanos < 5_000_000_000, "{nanos}");
        assert_eq!(before.nanos_since(after), 0);
    }
}
