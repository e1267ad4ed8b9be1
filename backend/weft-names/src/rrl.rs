//! Response rate limiting over UDP: each client prefix (a /24 or /56 by default) gets
//! `responses_per_second` answers of each [`Kind`] (answers, NXDOMAIN, referrals and
//! errors are accounted apart, as NSD, Knot and BIND do, so a flood of one kind does not
//! starve the prefix's answers of another), with a `burst`, and beyond it its answers are dropped,
//! except every `slip`th one, sent truncated (TC, no records, a bare OPT) so that a real
//! client asks again over TCP, which is never limited, or BADCOOKIE to a client with a
//! cookie. A forged source address gets at most its rate of answers reflected at its
//! victim, each no larger than the query but for a BADCOOKIE's 16-byte server cookie.
//!
//! The table is the library's [`PrefixRates`], a fixed number of slots allocated once:
//! a prefix hashes (with a random key, so an attacker cannot aim at a slot) to a group
//! of four slots; a new prefix takes a free or idle slot there, else the least recently
//! seen one, an eviction that is counted.

use std::net::IpAddr;
use std::time::Duration;

use weft::policies::{PrefixRates, RateSettings};

/// Slots in the table; a power of two.
pub const TABLE_SLOTS: usize = 1 << 16;

/// The `rate_limit` settings of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Responses a client prefix gets per second, over UDP.
    pub responses_per_second: u32,
    /// Responses a prefix may get at once after being quiet.
    pub burst: u32,
    /// Every `slip`th limited response goes out truncated instead of not at all; 0: none.
    pub slip: u32,
    /// The IPv4 prefix length clients are grouped by.
    pub ipv4_prefix: u8,
    /// The IPv6 prefix length clients are grouped by.
    pub ipv6_prefix: u8,
}

impl RateLimit {
    /// The default `slip`, BIND's and Knot's: every other limited response is truncated.
    pub const DEFAULT_SLIP: u32 = 2;
    /// The default `ipv4_prefix`.
    pub const DEFAULT_IPV4_PREFIX: u8 = 24;
    /// The default `ipv6_prefix`.
    pub const DEFAULT_IPV6_PREFIX: u8 = 56;
}

/// What kind of response an account is kept for (BIND's and Knot's classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// An answer: records, or NODATA.
    Answer,
    /// NXDOMAIN.
    NxDomain,
    /// A referral to a child zone (AA clear, NS in authority).
    Referral,
    /// An error code: SERVFAIL, REFUSED, FORMERR, NOTIMP, ...
    Error,
}

impl Kind {
    /// Every kind, in label order.
    pub const ALL: [Self; 4] = [Self::Answer, Self::NxDomain, Self::Referral, Self::Error];

    /// The kind of a response with `rcode`, authoritative or not.
    pub(crate) fn of(rcode: hickory_proto::op::ResponseCode, authoritative: bool) -> Self {
        use hickory_proto::op::ResponseCode;
        match rcode {
            ResponseCode::NXDomain => Self::NxDomain,
            ResponseCode::NoError if authoritative => Self::Answer,
            ResponseCode::NoError => Self::Referral,
            _ => Self::Error,
        }
    }

    /// The `kind` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answer => "answer",
            Self::NxDomain => "nxdomain",
            Self::Referral => "referral",
            Self::Error => "error",
        }
    }
}

/// What became of a UDP answer over its client prefix's rate: the `action` label of
/// `weft_dns_rate_limited_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limited {
    /// Not sent.
    Dropped,
    /// Sent without records: truncated (TC), or BADCOOKIE to a client with a cookie.
    Slipped,
}

impl Limited {
    pub(crate) const ALL: [Self; 2] = [Self::Dropped, Self::Slipped];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dropped => "dropped",
            Self::Slipped => "slipped",
        }
    }
}

/// What to do with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within the rate: send it.
    Send,
    /// Over the rate: send nothing.
    Drop,
    /// Over the rate: send it truncated, with no records.
    Slip,
}

/// The table of a service with `rate_limit`: a bucket for each client prefix and kind.
pub(crate) struct Limiter {
    config: RateLimit,
    rates: PrefixRates,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("config", &self.config)
            .finish()
    }
}

impl Limiter {
    pub(crate) fn new(config: RateLimit) -> Self {
        let settings = RateSettings {
            per_second: config.responses_per_second,
            burst: config.burst,
            ipv4_prefix: config.ipv4_prefix,
            ipv6_prefix: config.ipv6_prefix,
        };
        Self {
            config,
            rates: PrefixRates::new(settings, TABLE_SLOTS),
        }
    }

    /// Its settings.
    pub(crate) fn config(&self) -> &RateLimit {
        &self.config
    }

    /// Whether a response of `kind` to `client` may go out `now` (the thread's clock),
    /// and whether a prefix still limiting was evicted to make room for it.
    pub(crate) fn check(&mut self, client: IpAddr, kind: Kind, now: Duration) -> (Verdict, bool) {
        let taken = self.rates.take(client, kind as u8, now);
        if taken.allowed {
            return (Verdict::Send, taken.evicted);
        }
        // Counted across the responses sent between: a client just over its rate has
        // every other one limited, and still gets its `slip`th.
        let slip = self.config.slip;
        let verdict = if slip > 0 && taken.refused.is_multiple_of(slip) {
            Verdict::Slip
        } else {
            Verdict::Drop
        };
        (verdict, taken.evicted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(responses_per_second: u32, burst: u32, slip: u32) -> Limiter {
        Limiter::new(RateLimit {
            responses_per_second,
            burst,
            slip,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
        })
    }

    fn verdicts(l: &mut Limiter, client: &str, n: usize, now: Duration) -> Vec<Verdict> {
        (0..n)
            .map(|_| l.check(client.parse().unwrap(), Kind::Answer, now).0)
            .collect()
    }

    #[test]
    fn a_prefix_gets_its_burst_then_its_rate_and_every_slipth_limited_answer_truncated() {
        use Verdict::{Drop, Send, Slip};
        let mut l = limiter(10, 5, 2);
        let t = Duration::from_secs(100);
        assert_eq!(verdicts(&mut l, "192.0.2.1", 5, t), [Send; 5]);
        assert_eq!(
            verdicts(&mut l, "192.0.2.200", 4, t),
            [Drop, Slip, Drop, Slip],
            "the same /24"
        );
        assert_eq!(verdicts(&mut l, "192.0.3.1", 1, t), [Send], "another /24");
        // A tenth of a second brings one response back at 10 per second.
        let later = t + Duration::from_millis(100);
        assert_eq!(verdicts(&mut l, "192.0.2.1", 2, later), [Send, Drop]);
        // IPv6 by /56.
        assert_eq!(verdicts(&mut l, "2001:db8:0:ff::1", 5, t), [Send; 5]);
        assert_eq!(verdicts(&mut l, "2001:db8:0:1::1", 1, t), [Drop]);
        assert_eq!(verdicts(&mut l, "2001:db8:0:100::1", 1, t), [Send]);

        let mut never = limiter(1, 1, 0);
        assert_eq!(
            verdicts(&mut never, "192.0.2.1", 4, t),
            [Send, Drop, Drop, Drop]
        );
        // A client a little over its rate has sends between its limited responses:
        // every `slip`th limited one is truncated all the same.
        let mut over = limiter(1, 1, 2);
        assert_eq!(verdicts(&mut over, "192.0.2.1", 2, t), [Send, Drop]);
        let second = t + Duration::from_secs(1);
        assert_eq!(verdicts(&mut over, "192.0.2.1", 2, second), [Send, Slip]);
        let mut always = limiter(1, 1, 1);
        assert_eq!(verdicts(&mut always, "192.0.2.1", 3, t), [Send, Slip, Slip]);
    }

    #[test]
    fn the_table_is_bounded_and_evicting_a_limiting_prefix_is_reported() {
        let mut l = limiter(1, 1, 0);
        let t = Duration::from_secs(1);
        let mut evictions = 0;
        // Twice as many busy prefixes as slots: the table does not grow, and every
        // prefix that finds its group full of limiting ones evicts one.
        for i in 0..(2 * TABLE_SLOTS as u32) {
            let ip = IpAddr::V4((i << 8).into());
            let (verdict, evicted) = l.check(ip, Kind::Answer, t);
            assert_eq!(verdict, Verdict::Send);
            evictions += usize::from(evicted);
        }
        assert_eq!(l.rates.capacity(), TABLE_SLOTS);
        assert!(evictions >= TABLE_SLOTS / 2, "{evictions}");
        // Idle prefixes are replaced without counting.
        let later = t + Duration::from_secs(2);
        assert!(!l.check("10.0.0.1".parse().unwrap(), Kind::Answer, later).1);
    }

    #[test]
    fn each_kind_of_response_has_its_own_budget() {
        use Verdict::{Drop, Send};
        let mut l = limiter(1, 2, 0);
        let t = Duration::from_secs(10);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut check = |kind| l.check(ip, kind, t).0;
        assert_eq!([check(Kind::NxDomain), check(Kind::NxDomain)], [Send, Send]);
        assert_eq!(check(Kind::NxDomain), Drop, "an NXDOMAIN flood is limited");
        assert_eq!([check(Kind::Answer), check(Kind::Answer)], [Send, Send]);
        assert_eq!([check(Kind::Referral), check(Kind::Error)], [Send, Send]);
        assert_eq!(check(Kind::Answer), Drop);
    }
}
