//! Refusals on the bus at a bounded rate: a connection flood that a cap absorbs is counted
//! in full by the metric, but reaches the event bus at most once a second per service and
//! reason, so it cannot push the events that matter out of the bounded ring.
//!
//! Each refusal event that is published carries how many of its kind were left out since
//! the one before it, so the feed and the history still tell how big the flood was; the
//! refusals after the last event of a burst show only in `weft_refused_total`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weft::observe::Burst;

/// At most one refusal event per service and reason in this long.
pub const REFUSAL_EVENT_INTERVAL: Duration = Duration::from_secs(1);

/// Which refusals are published. Its map holds one entry per service and reason ever
/// refused: both sets are bounded (the configuration's services, the reactor's reasons).
#[derive(Default)]
pub(crate) struct RefusalGate {
    /// Taken once per refusal, for a lookup and two field updates.
    windows: Mutex<HashMap<(Arc<str>, &'static str), Burst>>,
}

impl RefusalGate {
    /// Whether to publish a refusal of `service` for `reason` seen at `now`: `Some` with
    /// the number left out since the last one published, or `None` to leave it out.
    pub(crate) fn admit(
        &self,
        service: &Arc<str>,
        reason: &'static str,
        now: Instant,
    ) -> Option<u64> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        windows
            .entry((service.clone(), reason))
            .or_insert_with(|| Burst::new(now))
            .admit(now, 1, REFUSAL_EVENT_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_a_second_per_service_and_reason_each_counting_those_left_out() {
        let gate = RefusalGate::default();
        let (echo, dns): (Arc<str>, Arc<str>) = ("echo".into(), "dns".into());
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(gate.admit(&echo, "limit_peer", ms(0)), Some(0));
        for n in 1..1000 {
            assert_eq!(gate.admit(&echo, "limit_peer", ms(n)), None, "{n}");
        }
        // Another service or reason has a window of its own.
        assert_eq!(gate.admit(&dns, "limit_peer", ms(10)), Some(0));
        assert_eq!(gate.admit(&echo, "limit_total", ms(10)), Some(0));
        assert_eq!(gate.admit(&echo, "limit_peer", ms(1000)), Some(999));
        assert_eq!(gate.admit(&echo, "limit_peer", ms(1500)), None);
        assert_eq!(gate.admit(&echo, "limit_peer", ms(5000)), Some(1));
        assert_eq!(gate.admit(&echo, "limit_peer", ms(6000)), Some(0));
    }
}
