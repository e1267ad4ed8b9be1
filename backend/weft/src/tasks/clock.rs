//! The time task polls and Deferreds are measured in: nanoseconds on the thread clock's
//! timeline, read from the process stopwatch.
//!
//! Every poll of every task reads the time twice, and every chain made, step named and
//! chain fired once. Through the thread's clock a reading
//! is a `RefCell` borrow, an `Rc` and a `clock_gettime`; through the stopwatch
//! ([`crate::observe::stopwatch`], the TSC where it is trusted) it is a counter read and
//! a multiply. Its readings are put on the thread clock's timeline by an anchor, one
//! reading of each taken together, renewed every [`RESYNC_NS`] so the two cannot drift
//! apart by more than the counter's error over that span (the stall scan compares a
//! task's last poll, and a chain's creation, with a reading of its own). A fake clock (tests) is read as it
//! is: its time moves only when the test moves it. Under tokio's paused time
//! (`tokio::time::pause`) the reactor's clock jumps where the stopwatch does not, so
//! between anchors task figures follow the stopwatch; test them on a fake clock.

use std::cell::{Cell, RefCell};

use super::cell::ns;
use crate::observe::stopwatch;
use crate::time::Clock;

/// How long one anchor is used: 100 ms.
const RESYNC_NS: u64 = 100_000_000;

#[derive(Debug, Clone, Copy)]
enum Anchor {
    /// Not known yet, or the thread's clock changed since.
    Unknown,
    /// The thread's clock is fake: read it.
    Fake,
    /// A stopwatch reading and the thread clock's time, taken together.
    Real { raw: u64, ns: u64 },
}

/// A thread's clock as task polls read it; see the module docs.
#[derive(Debug)]
pub(crate) struct PollClock {
    anchor: Cell<Anchor>,
}

impl PollClock {
    pub(crate) const fn new() -> Self {
        Self {
            anchor: Cell::new(Anchor::Unknown),
        }
    }

    /// The thread's clock changed: the next reading looks at it again.
    pub(crate) fn forget(&self) {
        self.anchor.set(Anchor::Unknown);
    }

    /// Now on `clock`'s timeline (the thread's clock, or the time since the thread's
    /// origin when it has none), in nanoseconds.
    #[inline]
    pub(crate) fn now_ns(&self, clock: &RefCell<Option<Clock>>) -> u64 {
        if let Anchor::Real { raw, ns } = self.anchor.get() {
            let since = stopwatch::nanos_between(raw, stopwatch::raw());
            if since < RESYNC_NS {
                return ns + since;
            }
        }
        self.read(clock)
    }

    /// Reads the thread's clock, and anchors the stopwatch on it when it is real.
    #[inline(never)]
    fn read(&self, clock: &RefCell<Option<Clock>>) -> u64 {
        let raw = stopwatch::raw();
        let (now, fake) = match clock.borrow().as_ref() {
            Some(clock) => (clock.now(), clock.is_fake()),
            None => (crate::defer::clock_now_exact(), false),
        };
        let now = ns(now);
        self.anchor.set(if fake {
            Anchor::Fake
        } else {
            Anchor::Real { raw, ns: now }
        });
        now
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_fake_clock_is_read_as_it_is() {
        let clock = Clock::fake();
        let _installed = clock.install();
        crate::context::with(|cx| {
            clock.advance(Duration::from_millis(7));
            assert_eq!(cx.poll_clock.now_ns(&cx.clock), 7_000_000);
            clock.advance(Duration::from_millis(3));
            assert_eq!(cx.poll_clock.now_ns(&cx.clock), 10_000_000);
        });
    }

    #[test]
    fn a_real_clock_is_followed_by_the_stopwatch_within_its_error() {
        let clock = Clock::real();
        let _installed = clock.install();
        crate::context::with(|cx| {
            let first = cx.poll_clock.now_ns(&cx.clock);
            std::thread::sleep(Duration::from_millis(20));
            let read = cx.poll_clock.now_ns(&cx.clock);
            assert!(read >= first + 19_000_000, "{first} then {read}");
            // Two reads side by side, a few times: a thread put off its core between
            // them on a busy machine says nothing of the stopwatch.
            let near = (0..5).any(|_| {
                let read = cx.poll_clock.now_ns(&cx.clock);
                let truth = ns(clock.now());
                read.abs_diff(truth) < 1_000_000
            });
            assert!(
                near,
                "the stopwatch strays a millisecond or more from the clock"
            );
        });
    }

    #[test]
    fn installing_another_clock_drops_the_anchor() {
        let real = Clock::real();
        let _real = real.install();
        std::thread::sleep(Duration::from_millis(5));
        crate::context::with(|cx| assert!(cx.poll_clock.now_ns(&cx.clock) >= 5_000_000));
        let fake = Clock::fake();
        let fake_installed = fake.install();
        crate::context::with(|cx| assert_eq!(cx.poll_clock.now_ns(&cx.clock), 0));
        drop(fake_installed);
        crate::context::with(|cx| assert!(cx.poll_clock.now_ns(&cx.clock) >= 5_000_000));
    }
}
