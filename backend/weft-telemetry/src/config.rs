//! How the hub behaves: the sample rate, the bus's capacity.
//!
//! The detector thresholds (`stall_after`, `slow_callback`) are the reactor's: see
//! [`weft::ReactorConfig`] and [`Reactor::set_thresholds`](weft::Reactor::set_thresholds).

/// Settings of a [`Hub`](crate::Hub); `Default` matches the gateway's `[inspect]` defaults.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HubConfig {
    /// The fraction (0.0 to 1.0) of successful Deferred chains kept in history; stalled,
    /// slow, failed, unhandled and leaked chains are always kept.
    pub sample: f64,
    /// Successful chains kept in history per second at most, whatever `sample` picks
    /// (0: no cap); the rest are counted in `weft_deferred_samples_skipped_total`.
    pub sample_per_second: u32,
    /// Failed chains, neither sampled nor flagged, kept in history and sent live per second
    /// and service at most (0: no cap); the rest are counted in
    /// `weft_deferred_failures_skipped_total`.
    pub failed_per_second: u32,
    /// Events the bus keeps for its slowest reader before that reader starts missing them.
    pub bus_capacity: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            sample: 0.1,
            sample_per_second: Self::DEFAULT_SAMPLE_PER_SECOND,
            failed_per_second: Self::DEFAULT_FAILED_PER_SECOND,
            bus_capacity: 65_536,
        }
    }
}

impl HubConfig {
    /// The default `sample_per_second`.
    pub const DEFAULT_SAMPLE_PER_SECOND: u32 = 200;

    /// The default `failed_per_second`.
    pub const DEFAULT_FAILED_PER_SECOND: u32 = 200;

    /// Checks the values make sense.
    pub fn validate(&self) -> Result<(), TelemetryError> {
        if !(0.0..=1.0).contains(&self.sample) {
            return Err(TelemetryError::Config(format!(
                "sample must be between 0.0 and 1.0, got {}",
                self.sample
            )));
        }
        if self.bus_capacity == 0 {
            return Err(TelemetryError::Config(
                "bus_capacity must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// What can go wrong building a hub.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A setting is out of range.
    #[error("invalid telemetry settings: {0}")]
    Config(String),
    /// A metric could not be registered (a name clash with a collector added by the caller).
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}
