//! Reactor-lag spikes, each with the callback or poll that held the reactor.
//!
//! The reactor's lag probe names the longest call since its previous look
//! ([`weft::reactor::profile`]); a lag at or above the slow-callback threshold is a
//! spike: it goes on the bus (and so into history, as a `reactor_lag` event) and into a
//! small ring here, so the profile page can name recent spikes without a store.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use weft::observe::ReactorLag;

use crate::live::unix_ms;

/// Spikes the ring keeps; older ones are in history.
pub const RECENT_SPIKES: usize = 64;

/// A reactor-lag spike and what was running.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LagSpike {
    /// When the probe saw it, unix milliseconds.
    pub at_ms: i64,
    /// How late the probe fired, milliseconds.
    pub lag_ms: f64,
    /// The longest call since the previous probe (`file:line` or `Type::method`).
    pub site: Option<String>,
    /// `callback`, `timer`, `protocol` or `poll`.
    pub site_kind: Option<&'static str>,
    /// How long that call ran, milliseconds.
    pub took_ms: Option<f64>,
}

impl LagSpike {
    /// The spike `lag` is, if it reaches `threshold`.
    pub fn of(lag: &ReactorLag, threshold: Duration) -> Option<Self> {
        if lag.lag < threshold {
            return None;
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Some(Self {
            at_ms: unix_ms(std::time::SystemTime::now()),
            lag_ms: ms(lag.lag),
            site: lag.longest.map(|l| l.site.to_string()),
            site_kind: lag.longest.map(|l| l.kind.as_str()),
            took_ms: lag.longest.map(|l| ms(l.took)),
        })
    }
}

/// The most recent spikes, newest last.
#[derive(Debug, Default)]
pub(crate) struct RecentSpikes {
    /// A std mutex: taken once per spike on the reactor thread and by a page read.
    ring: Mutex<VecDeque<LagSpike>>,
}

impl RecentSpikes {
    pub(crate) fn push(&self, spike: LagSpike) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() == RECENT_SPIKES {
            ring.pop_front();
        }
        ring.push_back(spike);
    }

    /// Newest first.
    pub(crate) fn list(&self) -> Vec<LagSpike> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_lag_at_the_threshold_is_a_spike_and_the_ring_is_bounded() {
        let lag = |ms| ReactorLag {
            lag: Duration::from_millis(ms),
            longest: None,
        };
        let threshold = Duration::from_millis(100);
        assert!(LagSpike::of(&lag(99), threshold).is_none());
        let spike = LagSpike::of(&lag(100), threshold).expect("at the threshold");
        assert_eq!((spike.lag_ms, spike.site.as_deref()), (100.0, None));
        let recent = RecentSpikes::default();
        for i in 0..RECENT_SPIKES + 5 {
            let mut s = spike.clone();
            s.at_ms = i as i64;
            recent.push(s);
        }
        let list = recent.list();
        assert_eq!(list.len(), RECENT_SPIKES);
        assert_eq!(list[0].at_ms, (RECENT_SPIKES + 4) as i64, "newest first");
    }
}
