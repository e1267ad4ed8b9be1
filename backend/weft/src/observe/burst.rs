//! [`Burst`]: how many of a flood of like reports go out, a few at a time.

use std::time::{Duration, Instant};

/// One kind of report at a bounded rate: at most `most` in each window of `every`,
/// counting those left out so that the next one to go out can say how many.
///
/// Used for what a flood would otherwise repeat without bound: handled errors in the log
/// ([`report_error`](super::report_error)), refusals on the telemetry bus.
#[derive(Debug, Clone, Copy)]
pub struct Burst {
    /// When the window began: the first report that went out in it.
    started: Instant,
    /// Reports that went out in the window.
    taken: u32,
    /// Reports left out since the last one that went out.
    suppressed: u64,
}

impl Burst {
    /// A window beginning at `now`, nothing taken yet.
    pub fn new(now: Instant) -> Self {
        Self {
            started: now,
            taken: 0,
            suppressed: 0,
        }
    }

    /// Whether a report seen at `now` goes out, `most` a window of `every`: `Some` with the
    /// number left out since the last that went out, or `None` to leave it out.
    pub fn admit(&mut self, now: Instant, most: u32, every: Duration) -> Option<u64> {
        if now.saturating_duration_since(self.started) >= every {
            self.started = now;
            self.taken = 0;
        }
        if self.taken >= most {
            self.suppressed += 1;
            return None;
        }
        self.taken += 1;
        Some(std::mem::take(&mut self.suppressed))
    }

    /// For reports left out after the last that went out, once its window of `every` has
    /// ended with none coming since: the number left out, which a report going out now
    /// stands for (in the window it begins); `None` when there are none to tell or the
    /// window has not ended. So a burst's tail is told a window after it, not only when
    /// the next burst begins.
    pub fn overdue(&mut self, now: Instant, every: Duration) -> Option<u64> {
        if self.suppressed == 0 || now.saturating_duration_since(self.started) < every {
            return None;
        }
        self.started = now;
        self.taken = 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}
