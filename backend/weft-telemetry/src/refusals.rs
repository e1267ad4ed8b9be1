//! Refusals on the bus at a bounded rate: a connection flood that a cap absorbs is counted
//! in full by the metric, but reaches the event bus at most once a second per service and
//! reason, so it cannot push the events that matter out of the bounded ring.
//!
//! Each refusal event that is published carries how many of its kind were left out since
//! the one before it, so the feed still tells how big the flood was; those left out after
//! the last event of a burst are told a second later, in one more event
//! ([`Hub::publish_overdue_refusals`](crate::hub::Hub::publish_overdue_refusals), called
//! on a timer: the dashboard's sampler).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weft::Address;
use weft::observe::Burst;

/// At most one refusal event per service and reason in this long.
pub const REFUSAL_EVENT_INTERVAL: Duration = Duration::from_secs(1);

/// Which refusals are published. Its map holds one entry per service and reason ever
/// refused: both sets are bounded (the configuration's services, the reactor's reasons).
#[derive(Default)]
pub(crate) struct RefusalGate {
    /// Taken once per refusal, for a lookup and a few field updates.
    windows: Mutex<HashMap<(Arc<str>, &'static str), Window>>,
}

/// One service and reason's refusals: which go out, and the peer refused last.
struct Window {
    burst: Burst,
    last: Address,
}

/// A refusal that was left out, told late by [`RefusalGate::overdue`].
#[derive(Debug, PartialEq)]
pub(crate) struct Overdue {
    pub(crate) service: Arc<str>,
    pub(crate) reason: &'static str,
    /// The peer refused last.
    pub(crate) peer: Address,
    /// How many others were left out before it.
    pub(crate) suppressed: u64,
}

impl RefusalGate {
    /// Whether to publish a refusal of `peer` by `service` for `reason` seen at `now`:
    /// `Some` with the number left out since the last one published, or `None` to leave
    /// it out.
    pub(crate) fn admit(
        &self,
        service: &Arc<str>,
        reason: &'static str,
        peer: &Address,
        now: Instant,
    ) -> Option<u64> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let window = windows
            .entry((service.clone(), reason))
            .or_insert_with(|| Window {
                burst: Burst::new(now),
                last: peer.clone(),
            });
        window.last.clone_from(peer);
        window.burst.admit(now, 1, REFUSAL_EVENT_INTERVAL)
    }

    /// The refusals left out since the last published of their service and reason, once
    /// a second has passed without one published: each as one to publish now, for the
    /// peer refused last, saying how many others were left out.
    pub(crate) fn overdue(&self, now: Instant) -> Vec<Overdue> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let mut due = Vec::new();
        for ((service, reason), window) in windows.iter_mut() {
            if let Some(left_out) = window.burst.overdue(now, REFUSAL_EVENT_INTERVAL) {
                due.push(Overdue {
                    service: service.clone(),
                    reason,
                    peer: window.last.clone(),
                    suppressed: left_out - 1,
                });
            }
        }
        due
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
        let peer = peer(1);
        let admit = |service, reason, at| gate.admit(service, reason, &peer, at);
        assert_eq!(admit(&echo, "limit_peer", ms(0)), Some(0));
        for n in 1..1000 {
            assert_eq!(admit(&echo, "limit_peer", ms(n)), None, "{n}");
        }
        // Another service or reason has a window of its own.
        assert_eq!(admit(&dns, "limit_peer", ms(10)), Some(0));
        assert_eq!(admit(&echo, "limit_total", ms(10)), Some(0));
        assert_eq!(admit(&echo, "limit_peer", ms(1000)), Some(999));
        assert_eq!(admit(&echo, "limit_peer", ms(1500)), None);
        assert_eq!(admit(&echo, "limit_peer", ms(5000)), Some(1));
        assert_eq!(admit(&echo, "limit_peer", ms(6000)), Some(0));
    }

    fn peer(n: u8) -> Address {
        Address::Ip(([192, 0, 2, n], 40000).into())
    }

    #[test]
    fn those_left_out_after_a_burst_s_last_event_are_told_a_second_later_once() {
        let gate = RefusalGate::default();
        let echo: Arc<str> = "echo".into();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(gate.admit(&echo, "limit_peer", &peer(1), ms(0)), Some(0));
        assert_eq!(
            gate.overdue(ms(2000)),
            [],
            "nothing left out: nothing to tell"
        );
        assert_eq!(gate.admit(&echo, "limit_peer", &peer(1), ms(2100)), Some(0));
        for n in 1..=5 {
            assert_eq!(
                gate.admit(&echo, "limit_peer", &peer(n), ms(2100 + u64::from(n))),
                None
            );
        }
        assert_eq!(gate.overdue(ms(2500)), [], "not before the window ends");
        let told = Overdue {
            service: echo.clone(),
            reason: "limit_peer",
            peer: peer(5),
            suppressed: 4,
        };
        assert_eq!(
            gate.overdue(ms(3200)),
            [told],
            "the last peer, and four others"
        );
        assert_eq!(gate.overdue(ms(5000)), [], "told once");
        // The one told opened a window: the next refusal inside it is left out.
        assert_eq!(gate.admit(&echo, "limit_peer", &peer(6), ms(3300)), None);
        assert_eq!(gate.admit(&echo, "limit_peer", &peer(6), ms(4300)), Some(1));
    }
}
