//! Response rate limiting over UDP: each client prefix (a /24 or /56 by default) gets
//! `responses_per_second` answers of each [`Kind`] (answers, NXDOMAIN, referrals and
//! errors are accounted apart, as NSD, Knot and BIND do, so a flood of one kind does not
//! starve the prefix's answers of another), with a `burst`, and beyond it its answers are dropped,
//! except every `slip`th one, sent truncated (TC, no records, a bare OPT) so that a real
//! client asks again over TCP, which is never limited, or BADCOOKIE to a client with a
//! cookie. A forged source address gets at most its rate of answers reflected at its
//! victim, each no larger than the query but for a BADCOOKIE's 16-byte server cookie.
//!
//! The table is a fixed number of slots allocated once: a prefix hashes (with a random
//! key, so an attacker cannot aim at a slot) to a group of `WAYS` slots; a new prefix
//! takes a free or idle slot there, else the least recently seen one, an eviction that
//! is counted.

use std::hash::Hasher;
use std::net::IpAddr;
use std::time::Duration;

use siphasher::sip::SipHasher13;

/// Slots in the table; a power of two.
pub const TABLE_SLOTS: usize = 1 << 16;
/// Slots a prefix may occupy.
const WAYS: usize = 4;
/// One response, in thousandths: tokens are counted in them.
const UNIT: u64 = 1000;

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

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// The prefix, as an IPv6 address (IPv4 mapped); meaningful when `seen` is not 0.
    prefix: u128,
    /// The kind of responses it accounts for.
    kind: u8,
    /// When it last sent (milliseconds on the clock, plus one so 0 means free).
    seen: u64,
    /// Responses it may still send, in thousandths.
    tokens: u64,
    /// Responses limited since the slot was taken, for `slip`.
    limited: u32,
}

/// The table of a service with `rate_limit`.
pub(crate) struct Limiter {
    config: RateLimit,
    slots: Box<[Slot]>,
    key: [u8; 16],
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
        Self {
            config,
            slots: vec![Slot::default(); TABLE_SLOTS].into_boxed_slice(),
            key: {
                let mut key = [0; 16];
                crate::random::fill(&mut key);
                key
            },
        }
    }

    /// Its settings.
    pub(crate) fn config(&self) -> &RateLimit {
        &self.config
    }

    /// Whether a response of `kind` to `client` may go out `now` (the thread's clock),
    /// and whether a prefix still limiting was evicted to make room for it.
    pub(crate) fn check(&mut self, client: IpAddr, kind: Kind, now: Duration) -> (Verdict, bool) {
        let prefix = self.prefix(client);
        let kind = kind as u8;
        let now_ms = now.as_millis() as u64 + 1;
        let burst = u64::from(self.config.burst.max(1)) * UNIT;
        let rate = u64::from(self.config.responses_per_second);
        let group = self.group(prefix, kind);
        let slots = &mut self.slots[group..group + WAYS];
        let mut evicted = false;
        let own = |s: &Slot| s.seen != 0 && s.prefix == prefix && s.kind == kind;
        let slot = match slots.iter().position(own) {
            Some(i) => &mut slots[i],
            None => {
                let idle = |s: &Slot| s.seen == 0 || refill(s, now_ms, rate, burst) >= burst;
                let i = match slots.iter().position(idle) {
                    Some(i) => i,
                    None => {
                        evicted = true;
                        (0..WAYS).min_by_key(|&i| slots[i].seen).unwrap_or(0)
                    }
                };
                slots[i] = Slot {
                    prefix,
                    kind,
                    seen: now_ms,
                    tokens: burst,
                    limited: 0,
                };
                &mut slots[i]
            }
        };
        slot.tokens = refill(slot, now_ms, rate, burst);
        slot.seen = now_ms;
        // `limited` goes on counting across the responses sent between: a client just
        // over its rate has every other one limited, and still gets its `slip`th.
        if slot.tokens >= UNIT {
            slot.tokens -= UNIT;
            return (Verdict::Send, evicted);
        }
        slot.limited = slot.limited.wrapping_add(1);
        let slip = self.config.slip;
        let verdict = if slip > 0 && slot.limited % slip == 0 {
            Verdict::Slip
        } else {
            Verdict::Drop
        };
        (verdict, evicted)
    }

    /// `client`'s address with the bits past the prefix cleared, as IPv6.
    fn prefix(&self, client: IpAddr) -> u128 {
        let (bits, len) = match client.to_canonical() {
            IpAddr::V4(v4) => (
                u128::from(v4.to_ipv6_mapped()),
                96 + u32::from(self.config.ipv4_prefix.min(32)),
            ),
            IpAddr::V6(v6) => (u128::from(v6), u32::from(self.config.ipv6_prefix.min(128))),
        };
        match len {
            0 => 0,
            len => bits & (u128::MAX << (128 - len)),
        }
    }

    /// The first slot of the group of `prefix`'s account for `kind`.
    fn group(&self, prefix: u128, kind: u8) -> usize {
        let mut hasher = SipHasher13::new_with_key(&self.key);
        hasher.write_u128(prefix);
        hasher.write_u8(kind);
        (hasher.finish() as usize % (TABLE_SLOTS / WAYS)) * WAYS
    }
}

/// `slot`'s tokens at `now_ms`: what it had plus the rate for the time since, at most a
/// burst.
fn refill(slot: &Slot, now_ms: u64, rate: u64, burst: u64) -> u64 {
    let elapsed = now_ms.saturating_sub(slot.seen);
    slot.tokens
        .saturating_add(elapsed.saturating_mul(rate))
        .min(burst)
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
        assert_eq!(l.slots.len(), TABLE_SLOTS);
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
