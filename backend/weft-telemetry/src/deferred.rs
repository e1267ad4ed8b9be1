//! Deferred chains: their metrics, the detections, and the sampling of successful chains.
//!
//! [`DeferredTracker::on_event`] is the one place a [`DeferredEvent`] is handled. Each
//! detection (stalled, slow, unhandled, leaked) is one event on the bus, one increment of
//! `weft_deferred_detections_total{service,detector}` and, through the store consumer, one
//! row; a successful chain is kept only when the [`Sampler`] says so.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry};
use weft::defer::DeferredEvent;

/// Buckets for callback durations, in seconds: ten microseconds to a few seconds.
const CALLBACK_BUCKETS: [f64; 12] = [
    0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
];

/// The detectors a Deferred can trip; the `detector` label.
pub const DETECTORS: [&str; 4] = ["stalled", "slow", "unhandled", "leaked"];

/// Decides which successful chains are kept in history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    rate: f64,
}

impl Sampler {
    /// Keeps each successful chain with probability `rate` (clamped to 0.0..=1.0).
    pub fn new(rate: f64) -> Self {
        Self {
            rate: rate.clamp(0.0, 1.0),
        }
    }

    /// The rate.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Whether to keep a chain that ended well; a chain any detector flagged, or that
    /// failed, is kept without asking.
    pub fn keep_success(&self) -> bool {
        if self.rate >= 1.0 {
            return true;
        }
        if self.rate <= 0.0 {
            return false;
        }
        fastrand::f64() < self.rate
    }
}

/// The Deferred families and the sampler.
pub struct DeferredTracker {
    /// Deferreds not fired yet, by service.
    pub pending: IntGaugeVec,
    /// Deferreds pending or paused past `stall_after` now, by service.
    pub stalled: IntGaugeVec,
    /// Detections, by service and detector.
    pub detections: IntCounterVec,
    /// How long each callback ran.
    pub callback_duration: Histogram,
    sampler: Sampler,
}

impl std::fmt::Debug for DeferredTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeferredTracker")
            .field("sampler", &self.sampler)
            .finish_non_exhaustive()
    }
}

impl DeferredTracker {
    pub(crate) fn new(registry: &Registry, sample: f64) -> Result<Self, prometheus::Error> {
        let pending = IntGaugeVec::new(
            Opts::new(
                "weft_deferreds_pending",
                "Deferreds created and not fired yet, by service.",
            ),
            &["service"],
        )?;
        let stalled = IntGaugeVec::new(
            Opts::new(
                "weft_deferreds_stalled",
                "Deferreds pending or paused longer than the stall threshold, by service.",
            ),
            &["service"],
        )?;
        let detections = IntCounterVec::new(
            Opts::new(
                "weft_deferred_detections_total",
                "Deferreds a detector flagged (stalled, slow, unhandled, leaked), by service.",
            ),
            &["service", "detector"],
        )?;
        let callback_duration = Histogram::with_opts(
            HistogramOpts::new(
                "weft_deferred_callback_duration_seconds",
                "How long each Deferred callback ran.",
            )
            .buckets(CALLBACK_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(pending.clone()))?;
        registry.register(Box::new(stalled.clone()))?;
        registry.register(Box::new(detections.clone()))?;
        registry.register(Box::new(callback_duration.clone()))?;
        Ok(Self {
            pending,
            stalled,
            detections,
            callback_duration,
            sampler: Sampler::new(sample),
        })
    }

    /// The sampler of successful chains.
    pub fn sampler(&self) -> Sampler {
        self.sampler
    }

    /// Handles one Deferred event. Each variant maps to its metrics, its bus event and its
    /// sampling decision here.
    pub(crate) fn on_event(&self, event: &DeferredEvent) {
        // The library reports no Deferred events yet: each variant it adds gets its arm
        // here. The enum is `#[non_exhaustive]`, so a catch-all stays for future kinds.
        #[allow(clippy::match_single_binding)]
        match event {
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_keeps_all_none_or_about_the_rate() {
        assert!((0..1000).all(|_| Sampler::new(1.0).keep_success()));
        assert!((0..1000).all(|_| !Sampler::new(0.0).keep_success()));
        let kept = (0..20_000)
            .filter(|_| Sampler::new(0.25).keep_success())
            .count();
        assert!(
            (4_000..6_000).contains(&kept),
            "kept {kept} of 20000 at 0.25"
        );
        assert_eq!(Sampler::new(7.0).rate(), 1.0);
    }
}
