//! Which upstream to ask, and for how long: forwarding options, and each upstream's
//! smoothed round-trip time (SRTT).
//!
//! With [`Selection::Sequential`] a question goes to the upstream with the lowest SRTT
//! first, and to the next one when the first has not answered within its try's timeout
//! (derived from its SRTT and variance as TCP does, RFC 6298, at least
//! [`MIN_TRY`]), all within the query's overall timeout: no try waits longer than an
//! even share of what is left of it among the upstreams still to ask (the forwarder
//! caps it, below `MIN_TRY` if need be), so however high a flood of unanswerable
//! questions pushes one upstream's estimate, the next is asked in time; a try so cut
//! short does not penalise its upstream when it expires. An upstream that lets a try
//! time out, or answers it with a failure (SERVFAIL, REFUSED, NOTIMP, FORMERR), has its
//! SRTT doubled, so it goes to the back; every upstream not picked first
//! has its SRTT lowered a little (as BIND does), so a penalised one is tried first again
//! now and then and can recover. [`Selection::Parallel`] asks every upstream at once.

use std::net::SocketAddr;
use std::time::Duration;

use crate::metrics_forward::UpstreamMetrics;

/// How a forwarded question picks its upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Selection {
    /// Fastest first (by SRTT), the next on its try's timeout.
    #[default]
    Sequential,
    /// Every upstream at once; the first valid answer wins.
    Parallel,
}

/// How forwarded questions are asked and their answers kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ForwardOptions {
    /// How a question picks its upstreams.
    pub selection: Selection,
    /// The least TTL a cached answer is kept and answered with, in seconds.
    pub min_ttl: u32,
    /// The most TTL a cached answer is kept and answered with, in seconds.
    pub max_ttl: u32,
    /// How long past its TTL an answer may still be served when no upstream answers
    /// (RFC 8767); `None`: never.
    pub serve_stale: Option<Duration>,
    /// The ports queries to upstreams leave from, the least and the most: each UDP port is
    /// drawn at random from them (RFC 5452 section 9.2). All of 1024 to 65535 by default;
    /// narrower keeps them off ports the host's own services bind (Unbound's
    /// `outgoing-port-permit`).
    pub ports: (u16, u16),
}

impl ForwardOptions {
    /// The default `max_ttl`: one day, as Unbound's `cache-max-ttl`.
    pub const DEFAULT_MAX_TTL: u32 = 86_400;
    /// The default `ports`: every port above the well-known ones.
    pub const DEFAULT_PORTS: (u16, u16) = (1024, u16::MAX);
}

impl Default for ForwardOptions {
    fn default() -> Self {
        Self {
            selection: Selection::default(),
            min_ttl: 0,
            max_ttl: Self::DEFAULT_MAX_TTL,
            serve_stale: None,
            ports: Self::DEFAULT_PORTS,
        }
    }
}

/// The shortest try: below it, a busy upstream's normal jitter would send every
/// question to the next one.
pub const MIN_TRY: Duration = Duration::from_millis(100);
/// The try timeout of an upstream not measured yet (as Unbound's first RTO).
const FIRST_TRY: Duration = Duration::from_millis(400);
/// The highest SRTT a penalty raises an upstream to.
const MAX_SRTT: Duration = Duration::from_secs(10);
/// What the SRTT of an upstream not picked first is multiplied by, per question.
const DECAY: f64 = 0.98;

/// One upstream's round-trip estimate.
#[derive(Debug)]
pub(crate) struct Upstream {
    /// `None` until it first answers.
    srtt: Option<Duration>,
    rttvar: Duration,
    metrics: UpstreamMetrics,
}

/// The upstreams of one service, in configuration order.
#[derive(Debug)]
pub(crate) struct Upstreams {
    list: Vec<Upstream>,
}

impl Upstreams {
    pub(crate) fn new(
        addrs: &[SocketAddr],
        metrics: impl Fn(SocketAddr) -> UpstreamMetrics,
    ) -> Self {
        let list: Vec<Upstream> = addrs
            .iter()
            .map(|&addr| Upstream {
                srtt: None,
                rttvar: Duration::ZERO,
                metrics: metrics(addr),
            })
            .collect();
        for u in &list {
            u.publish();
        }
        Self { list }
    }

    /// Takes upstream `i`'s round-trip estimate from `previous` (the same address, in
    /// the server this one succeeds).
    pub(crate) fn measured_as(&mut self, i: usize, previous: &Upstream) {
        let u = &mut self.list[i];
        (u.srtt, u.rttvar) = (previous.srtt, previous.rttvar);
        u.publish();
    }

    pub(crate) fn get(&self, i: usize) -> &Upstream {
        &self.list[i]
    }

    /// The order to ask them for the next question: lowest SRTT first (upstreams never
    /// measured before any), ties in configuration order. Ages the others' SRTT.
    pub(crate) fn order(&mut self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.list.len()).collect();
        order.sort_by_key(|&i| self.list[i].srtt.unwrap_or(Duration::ZERO));
        for &i in &order[1..] {
            let u = &mut self.list[i];
            if let Some(srtt) = u.srtt {
                u.srtt = Some(srtt.mul_f64(DECAY));
            }
        }
        order
    }

    /// Upstream `i` answered after `rtt` (RFC 6298 section 2).
    pub(crate) fn answered(&mut self, i: usize, rtt: Duration) {
        let u = &mut self.list[i];
        match u.srtt {
            None => {
                u.srtt = Some(rtt);
                u.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                u.rttvar = (u.rttvar * 3 + delta) / 4;
                u.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
        u.publish();
    }

    /// Upstream `i` let a try time out: back off (RFC 6298 section 5.5) when `penalised`
    /// (not when the try was given less than the upstream's own time).
    pub(crate) fn timed_out(&mut self, i: usize, penalised: bool) {
        self.list[i].metrics.try_timeouts.inc();
        if penalised {
            self.failed(i);
        }
    }

    /// Upstream `i` answered a try with a failure (SERVFAIL, REFUSED, NOTIMP, FORMERR):
    /// no more use than silence, so it backs off the same way; measuring the failure's
    /// round trip instead would rank first an upstream that refuses fast.
    pub(crate) fn failed(&mut self, i: usize) {
        let u = &mut self.list[i];
        let base = u.srtt.unwrap_or(FIRST_TRY / 2).max(MIN_TRY / 2);
        u.srtt = Some((base * 2).min(MAX_SRTT));
        u.publish();
    }
}

impl Upstream {
    /// How long a try waits for this upstream before the next is asked.
    pub(crate) fn try_timeout(&self) -> Duration {
        match self.srtt {
            None => FIRST_TRY,
            Some(srtt) => (srtt + 4 * self.rttvar).max(MIN_TRY),
        }
    }

    /// It answered a query with `rcode`, a failure.
    pub(crate) fn failure_answered(&self, rcode: hickory_proto::op::ResponseCode) {
        self.metrics.failure_answered(rcode);
    }

    pub(crate) fn sent(&self) {
        self.metrics.queries.inc();
    }

    fn publish(&self) {
        let m = &self.metrics;
        m.srtt
            .set(self.srtt.unwrap_or(Duration::ZERO).as_secs_f64());
        m.try_timeout.set(self.try_timeout().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ServiceMetrics;

    fn upstreams(n: u16) -> Upstreams {
        let metrics = ServiceMetrics::detached("dns");
        let addrs: Vec<SocketAddr> = (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 5300 + i)))
            .collect();
        Upstreams::new(&addrs, |a| metrics.forwarding().upstream(a))
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn the_fastest_goes_first_and_tries_wait_by_its_srtt() {
        let mut u = upstreams(3);
        assert_eq!(u.order(), [0, 1, 2], "unmeasured: configuration order");
        assert_eq!(u.get(0).try_timeout(), FIRST_TRY);
        u.answered(0, MS(80));
        u.answered(1, MS(10));
        u.answered(2, MS(40));
        assert_eq!(u.get(1).try_timeout(), MIN_TRY, "never below the floor");
        assert_eq!(u.get(0).try_timeout(), MS(80) + 4 * MS(40));
        assert_eq!(u.order(), [1, 2, 0]);
    }

    #[test]
    fn a_silent_upstream_goes_to_the_back_and_is_tried_again_later() {
        let mut u = upstreams(2);
        u.timed_out(0, true);
        u.answered(1, MS(5));
        assert_eq!(u.order(), [1, 0]);
        let mut rounds = 1;
        while u.order()[0] != 0 {
            rounds += 1;
            assert!(rounds < 1000, "a penalised upstream is never retried");
        }
        assert!(rounds > 50, "retried after {rounds} questions: too soon");
        assert_eq!(u.get(0).metrics.try_timeouts.get(), 1);
    }
}
