//! [`AccessLogLosses`]: the series of the access log lines a service's file could not
//! take.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use crate::access_log::{LogLoss, LossRecorder};

/// One service's `weft_http_access_log_dropped_total{service,reason}` series: the access
/// log lines its file could not take, by [`LogLoss`] reason, all at zero from the start.
pub struct AccessLogLosses([IntCounter; LogLoss::ALL.len()]);

impl AccessLogLosses {
    /// Registers `service`'s series; several services share the family through the
    /// `service` label.
    pub fn register(registry: &Registry, service: &str) -> prometheus::Result<Self> {
        let family = IntCounterVec::new(
            Opts::new(
                "weft_http_access_log_dropped_total",
                "Access log lines not written to the file, by reason.",
            )
            .const_label("service", service),
            &["reason"],
        )?;
        registry.register(Box::new(family.clone()))?;
        Ok(Self(LogLoss::ALL.map(|reason| {
            family.with_label_values(&[reason.as_str()])
        })))
    }
}

impl LossRecorder for AccessLogLosses {
    fn lost(&self, reason: LogLoss, lines: u64) {
        if let Some(i) = LogLoss::ALL.iter().position(|r| *r == reason) {
            self.0[i].inc_by(lines);
        }
    }
}
