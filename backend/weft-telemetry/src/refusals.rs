//! Refusals and handled errors on the bus at a bounded rate: a connection flood that a cap
//! absorbs, or a flood of bad datagrams (one error each), is counted in full by the
//! metrics, but reaches the event bus, and so the live feed and history, at most
//! [`REFUSAL_EVENTS`] or [`ERROR_EVENTS`] times a second per service and reason, so it
//! cannot push the events that matter out of the bounded ring, nor fill the history
//! store's queue and drop other peers' records.
//!
//! Each event that is published carries how many of its kind were left out since the one
//! before it, so the feed still tells how big the flood was; those left out after the last
//! event of a burst are told a second later, in one more event
//! ([`Hub::publish_overdue_refusals`](crate::hub::Hub::publish_overdue_refusals), called
//! on a timer: the dashboard's sampler).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weft::Address;
use weft::observe::Burst;

/// The window the rates below are counted in.
pub const REFUSAL_EVENT_INTERVAL: Duration = Duration::from_secs(1);

/// Refusal events a window per service and reason.
pub const REFUSAL_EVENTS: u32 = 1;

/// Handled-error events a window per service and kind: as many as the log takes
/// ([`weft::observe::LOG_BURST`]), so each line logged has its event.
pub const ERROR_EVENTS: u32 = weft::observe::LOG_BURST;

/// Which refusals are published, with the peer refused last.
pub(crate) type RefusalGate = Gate<Address>;

/// Which handled errors are published, with the last one's kind, connection and message.
pub(crate) type ErrorGate = Gate<(weft::observe::ErrorKind, Option<u64>, String)>;

/// Which of a kind of event are published. Its map holds one entry per service and reason
/// ever seen: both sets are bounded (the configuration's services, the reactor's reasons
/// and error kinds).
pub(crate) struct Gate<Last> {
    /// Taken once per event, for a lookup and a few field updates.
    windows: Mutex<HashMap<Key, Window<Last>>>,
    /// Events a window of [`REFUSAL_EVENT_INTERVAL`].
    most: u32,
}

/// A service and a reason (or error kind).
type Key = (Arc<str>, &'static str);

/// One service and reason's events: which go out, and what the last one was about.
struct Window<Last> {
    burst: Burst,
    last: Last,
}

/// Events that were left out, told late by [`Gate::overdue`].
#[derive(Debug, PartialEq)]
pub(crate) struct Overdue<Last> {
    pub(crate) service: Arc<str>,
    pub(crate) reason: &'static str,
    /// What the last one was about (the peer refused, the error).
    pub(crate) last: Last,
    /// How many others were left out before it.
    pub(crate) suppressed: u64,
}

impl<Last: Clone> Gate<Last> {
    /// A gate letting `most` events a second through for each service and reason.
    pub(crate) fn new(most: u32) -> Self {
        Self {
            windows: Mutex::default(),
            most,
        }
    }

    /// Whether to publish an event of `service` for `reason` about `last`, seen at `now`:
    /// `Some` with the number left out since the last one published, or `None` to leave
    /// it out.
    pub(crate) fn admit(
        &self,
        service: &Arc<str>,
        reason: &'static str,
        last: Last,
        now: Instant,
    ) -> Option<u64> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        match windows.get_mut(&(service.clone(), reason)) {
            Some(window) => {
                window.last = last;
                window.burst.admit(now, self.most, REFUSAL_EVENT_INTERVAL)
            }
            None => {
                let mut burst = Burst::new(now);
                let admitted = burst.admit(now, self.most, REFUSAL_EVENT_INTERVAL);
                windows.insert((service.clone(), reason), Window { burst, last });
                admitted
            }
        }
    }

    /// The events left out since the last published of their service and reason, once
    /// a second has passed without one published: each as one to publish now, about the
    /// last of them, saying how many others were left out.
    pub(crate) fn overdue(&self, now: Instant) -> Vec<Overdue<Last>> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let mut due = Vec::new();
        for ((service, reason), window) in windows.iter_mut() {
            if let Some(left_out) = window.burst.overdue(now, REFUSAL_EVENT_INTERVAL) {
                due.push(Overdue {
                    service: service.clone(),
                    reason,
                    last: window.last.clone(),
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
        let gate = RefusalGate::new(REFUSAL_EVENTS);
        let (echo, dns): (Arc<str>, Arc<str>) = ("echo".into(), "dns".into());
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let peer = peer(1);
        let admit = |service, reason, at| gate.admit(service, reason, peer.clone(), at);
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
        let gate = RefusalGate::new(REFUSAL_EVENTS);
        let echo: Arc<str> = "echo".into();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(gate.admit(&echo, "limit_peer", peer(1), ms(0)), Some(0));
        assert_eq!(
            gate.overdue(ms(2000)),
            [],
            "nothing left out: nothing to tell"
        );
        assert_eq!(gate.admit(&echo, "limit_peer", peer(1), ms(2100)), Some(0));
        for n in 1..=5 {
            assert_eq!(
                gate.admit(&echo, "limit_peer", peer(n), ms(2100 + u64::from(n))),
                None
            );
        }
        assert_eq!(gate.overdue(ms(2500)), [], "not before the window ends");
        let told = Overdue {
            service: echo.clone(),
            reason: "limit_peer",
            last: peer(5),
            suppressed: 4,
        };
        assert_eq!(
            gate.overdue(ms(3200)),
            [told],
            "the last peer, and four others"
        );
        assert_eq!(gate.overdue(ms(5000)), [], "told once");
        // The one told opened a window: the next refusal inside it is left out.
        assert_eq!(gate.admit(&echo, "limit_peer", peer(6), ms(3300)), None);
        assert_eq!(gate.admit(&echo, "limit_peer", peer(6), ms(4300)), Some(1));
    }
}
