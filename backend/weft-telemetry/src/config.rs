//! How the hub behaves: detector thresholds, the sample rate, the bus's capacity.

use std::time::Duration;

use weft::ReactorConfig;

/// Settings of a [`Hub`](crate::Hub); `Default` matches the gateway's `[inspect]` defaults.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HubConfig {
    /// A Deferred pending or paused longer than this is stalled; given to the reactor by
    /// [`Hub::install`](crate::Hub::install), which owns it from then on.
    pub stall_after: Duration,
    /// A callback running longer than this blocked the reactor; given to the reactor by
    /// [`Hub::install`](crate::Hub::install), which owns it from then on.
    pub slow_callback: Duration,
    /// The fraction (0.0 to 1.0) of successful Deferred chains kept in history; stalled,
    /// slow, failed, unhandled and leaked chains are always kept.
    pub sample: f64,
    /// Events the bus keeps for its slowest reader before that reader starts missing them.
    pub bus_capacity: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            stall_after: ReactorConfig::DEFAULT_STALL_AFTER,
            slow_callback: ReactorConfig::DEFAULT_SLOW_CALLBACK,
            sample: 0.1,
            bus_capacity: 65_536,
        }
    }
}

impl HubConfig {
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
        if self.slow_callback.is_zero() || self.stall_after.is_zero() {
            return Err(TelemetryError::Config(
                "stall_after and slow_callback must be longer than zero".into(),
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
