//! The stopwatch that times each Deferred step and each task poll: one clock for the
//! process, read raw.
//!
//! quanta's `Instant::now` looks up a per-thread override clock and a global one on
//! every call; a step is timed on every run, so the clock is resolved once here and read
//! with `raw` (the TSC where quanta trusts it, the monotonic clock elsewhere), and only
//! a difference is scaled to nanoseconds.

use std::sync::OnceLock;
use std::time::Duration;

static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();

#[inline]
fn clock() -> &'static quanta::Clock {
    CLOCK.get_or_init(quanta::Clock::new)
}

/// A raw reading of the process clock, for [`nanos_between`].
#[inline]
pub(crate) fn raw() -> u64 {
    clock().raw()
}

/// Nanoseconds between two raw readings (zero if the clock went backwards).
#[inline]
pub(crate) fn nanos_between(start: u64, end: u64) -> u64 {
    clock().delta_as_nanos(start, end)
}

/// A moment read from the process stopwatch, to time a span on a hot path (an HTTP
/// request's latency, say): a counter read where `Instant::now` is a clock call.
///
/// Its scale is calibrated against the monotonic clock once per process, so it suits
/// spans of milliseconds to minutes; an age of hours is [`Instant`](std::time::Instant)'s.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(u64);

impl Stopwatch {
    /// Now.
    #[inline]
    pub fn start() -> Self {
        Self(raw())
    }

    /// Its raw reading, for [`nanos_between`].
    #[inline]
    pub(crate) fn reading(self) -> u64 {
        self.0
    }

    /// The time since it was started (zero if the clock went backwards).
    #[inline]
    pub fn elapsed(self) -> Duration {
        Duration::from_nanos(nanos_between(self.0, raw()))
    }
}

/// Times calls made one after another: each reading ends one call and starts the next,
/// so N calls in a row read the clock N + 1 times.
#[derive(Debug)]
pub(crate) struct Laps {
    clock: &'static quanta::Clock,
    /// The raw reading the current call started at.
    last: u64,
}

impl Laps {
    /// Reads the clock: the first call starts now.
    #[inline]
    pub(crate) fn start() -> Self {
        let clock = clock();
        Self {
            clock,
            last: clock.raw(),
        }
    }

    /// Reads the clock: nanoseconds since the previous reading (zero if the clock went
    /// backwards), and the next call starts now.
    #[inline]
    pub(crate) fn lap(&mut self) -> u64 {
        let now = self.clock.raw();
        let nanos = self.clock.delta_as_nanos(self.last, now);
        self.last = now;
        nanos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lap_after_a_sleep_is_that_long_and_the_next_starts_at_its_end() {
        let mut laps = Laps::start();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let nanos = laps.lap();
        assert!(nanos >= 5_000_000, "{nanos}");
        assert!(nanos < 5_000_000_000, "{nanos}");
        let next = laps.lap();
        assert!(next < 5_000_000, "{next}");
    }

    #[test]
    fn a_clock_gone_backwards_gives_a_zero_lap() {
        let mut laps = Laps::start();
        laps.last = u64::MAX;
        assert_eq!(laps.lap(), 0);
    }
}
