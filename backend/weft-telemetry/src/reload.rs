//! Configuration reloads as the hub reports them: each one counted by how it ended in
//! `weft_config_reloads_total{result}` (`ok`, `invalid`, `failed`), the gauge
//! `weft_config_last_reload_successful` (1 until a reload fails, as Prometheus' own
//! `prometheus_config_last_reload_successful`), and the last [`ReloadOutcome`] kept for the
//! dashboard's banner and published on the bus as a `config_reloaded` event.
//!
//! The series are registered by [`Hub::track_reloads`](crate::Hub::track_reloads), which a
//! program that reloads calls at start, so they exist at zero before the first reload.

use std::sync::Mutex;

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use serde::Serialize;

/// How a reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadResult {
    /// The new configuration was applied.
    Ok,
    /// The configuration did not validate; nothing changed.
    Invalid,
    /// The configuration could not be read, or could not be applied (an address in use);
    /// nothing changed.
    Failed,
}

impl ReloadResult {
    /// Every result, in label order.
    pub const ALL: [Self; 3] = [Self::Ok, Self::Invalid, Self::Failed];

    /// The `result` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Invalid => "invalid",
            Self::Failed => "failed",
        }
    }
}

/// What one reload did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadOutcome {
    /// How it ended.
    pub result: ReloadResult,
    /// What was applied, or why nothing was, in words.
    pub message: String,
    /// When it ended, unix milliseconds.
    pub at_ms: i64,
    /// Services started.
    pub added: Vec<String>,
    /// Services stopped (their connections drained).
    pub removed: Vec<String>,
    /// Services replaced by their new configuration.
    pub changed: Vec<String>,
}

impl ReloadOutcome {
    /// An outcome ending now, with no service named (as when nothing changed).
    pub fn new(result: ReloadResult, message: impl Into<String>) -> Self {
        Self {
            result,
            message: message.into(),
            at_ms: crate::live::unix_ms(std::time::SystemTime::now()),
            added: Vec::new(),
            removed: Vec::new(),
            changed: Vec::new(),
        }
    }
}

/// The reload series and the last outcome.
#[derive(Debug)]
pub(crate) struct Reloads {
    /// By [`ReloadResult`], in [`ReloadResult::ALL`] order.
    counts: [IntCounter; 3],
    /// `weft_config_last_reload_successful`.
    last_ok: IntGauge,
    /// The last outcome, shown by the dashboard's banner.
    last: Mutex<Option<ReloadOutcome>>,
}

impl Reloads {
    pub(crate) fn register(registry: &Registry) -> prometheus::Result<Self> {
        let vec = IntCounterVec::new(
            Opts::new(
                "weft_config_reloads_total",
                "Configuration reloads (SIGHUP, POST /api/reload), by result: ok, invalid (did not validate) or failed (could not be read or applied).",
            ),
            &["result"],
        )?;
        let last_ok = IntGauge::new(
            "weft_config_last_reload_successful",
            "1 if the last configuration reload applied (or none was tried), 0 if it failed.",
        )?;
        registry.register(Box::new(vec.clone()))?;
        registry.register(Box::new(last_ok.clone()))?;
        last_ok.set(1);
        Ok(Self {
            counts: ReloadResult::ALL.map(|r| vec.with_label_values(&[r.as_str()])),
            last_ok,
            last: Mutex::default(),
        })
    }

    pub(crate) fn record(&self, outcome: &ReloadOutcome) {
        let i = ReloadResult::ALL
            .iter()
            .position(|r| *r == outcome.result)
            .unwrap_or(0);
        self.counts[i].inc();
        self.last_ok
            .set(i64::from(outcome.result == ReloadResult::Ok));
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome.clone());
    }

    pub(crate) fn last(&self) -> Option<ReloadOutcome> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_result_is_counted_from_zero_and_the_last_one_kept() {
        let registry = Registry::new();
        let reloads = Reloads::register(&registry).unwrap();
        let text = || {
            prometheus::TextEncoder::new()
                .encode_to_string(&registry.gather())
                .unwrap()
        };
        for result in ["ok", "invalid", "failed"] {
            assert!(
                text().contains(&format!(
                    "weft_config_reloads_total{{result=\"{result}\"}} 0"
                )),
                "{}",
                text()
            );
        }
        assert!(text().contains("weft_config_last_reload_successful 1"));
        reloads.record(&ReloadOutcome::new(
            ReloadResult::Invalid,
            "weft.toml:3:1: bad",
        ));
        assert!(text().contains("weft_config_reloads_total{result=\"invalid\"} 1"));
        assert!(text().contains("weft_config_last_reload_successful 0"));
        assert_eq!(reloads.last().unwrap().message, "weft.toml:3:1: bad");
        assert!(Reloads::register(&registry).is_err(), "registered once");
    }
}
