//! Rates per client prefix: a token bucket for each client prefix (an IPv4 or IPv6
//! address with the bits past a configured length cleared), `per_second` tokens a
//! second up to a `burst`, with a class beside the prefix so one table can keep apart
//! budgets a caller wants apart (the DNS service's answers and NXDOMAINs).
//!
//! The table is a fixed number of slots allocated once, so a flood of addresses cannot
//! grow it: a prefix hashes (with a key of the process, so a peer cannot aim at a slot)
//! to a group of [`WAYS`] slots; a new prefix takes a free or refilled slot there, else
//! the one seen longest ago, an eviction the caller is told of (the evicted prefix
//! starts again with a full burst, so a table too small for its clients lets some
//! through: worth counting).
//!
//! Time is what the caller says it is (the thread's clock, in tests a fake one).

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::Duration;

/// Slots a prefix may occupy.
const WAYS: usize = 4;
/// One token, in millionths: tokens are counted in them, and time in microseconds, so a
/// bucket gains `per_second` millionths a microsecond and no rate is rounded away (a
/// burst of one at a million a second still refills a token a microsecond).
const UNIT: u64 = 1_000_000;

/// How a [`PrefixRates`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSettings {
    /// Tokens a prefix gains a second.
    pub per_second: u32,
    /// Tokens a prefix may spend at once after being quiet (at least one).
    pub burst: u32,
    /// The IPv4 prefix length clients are grouped by (32: each address).
    pub ipv4_prefix: u8,
    /// The IPv6 prefix length clients are grouped by (64: each host's usual share).
    pub ipv6_prefix: u8,
}

/// What [`PrefixRates::take`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Whether the prefix had a token, now spent.
    pub allowed: bool,
    /// Times the prefix was refused since its slot was taken, this one included: a
    /// caller that lets every nth refusal through in some other form counts by it.
    pub refused: u32,
    /// How long until the prefix has a token again (zero when it was allowed).
    pub retry_after: Duration,
    /// Whether another prefix, still spending, was evicted to make room for this one.
    pub evicted: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// The prefix, as an IPv6 address (IPv4 mapped); meaningful when `seen` is not 0.
    prefix: u128,
    /// The class of what it counts.
    class: u8,
    /// When it was last asked (microseconds on the clock, plus one so 0 means free).
    seen: u64,
    /// Tokens it holds, in millionths.
    tokens: u64,
    /// Refusals since the slot was taken.
    refused: u32,
}

/// A bounded table of token buckets by client prefix and class. One per thread (it is
/// not shared): a service on several reactors has one on each.
pub struct PrefixRates {
    settings: RateSettings,
    slots: Box<[Slot]>,
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for PrefixRates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefixRates")
            .field("settings", &self.settings)
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl PrefixRates {
    /// A table of `slots` buckets (rounded up to a multiple of four, at least four), all
    /// free.
    pub fn new(settings: RateSettings, slots: usize) -> Self {
        let slots = slots.max(WAYS).div_ceil(WAYS) * WAYS;
        Self {
            settings,
            slots: vec![Slot::default(); slots].into_boxed_slice(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Its settings.
    pub fn settings(&self) -> &RateSettings {
        &self.settings
    }

    /// Its slots: the prefixes it can follow at once.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Spends a token of `client`'s prefix in `class` at `now`, if it has one.
    pub fn take(&mut self, client: IpAddr, class: u8, now: Duration) -> Taken {
        let prefix = self.prefix(client);
        let now_us = micros(now);
        let (burst, rate) = (self.burst(), self.rate());
        let (group, own) = self.find(prefix, class);
        let slots = &mut self.slots[group..group + WAYS];
        let mut evicted = false;
        let slot = match own {
            Some(i) => &mut slots[i],
            None => {
                let idle = |s: &Slot| s.seen == 0 || refill(s, now_us, rate, burst) >= burst;
                let i = match slots.iter().position(idle) {
                    Some(i) => i,
                    None => {
                        evicted = true;
                        (0..WAYS).min_by_key(|&i| slots[i].seen).unwrap_or(0)
                    }
                };
                slots[i] = Slot {
                    prefix,
                    class,
                    seen: now_us,
                    tokens: burst,
                    refused: 0,
                };
                &mut slots[i]
            }
        };
        slot.tokens = refill(slot, now_us, rate, burst);
        slot.seen = now_us;
        if slot.tokens >= UNIT {
            slot.tokens -= UNIT;
            return Taken {
                allowed: true,
                refused: slot.refused,
                retry_after: Duration::ZERO,
                evicted,
            };
        }
        // `refused` goes on counting across the tokens spent between: a client just over
        // its rate has every other request refused, and the count still says so.
        slot.refused = slot.refused.wrapping_add(1);
        Taken {
            allowed: false,
            refused: slot.refused,
            retry_after: wait_for(slot.tokens, rate),
            evicted,
        }
    }

    /// Gives back the token a [`take`](Self::take) of `client`'s prefix in `class`
    /// spent, when what it was spent on did not happen after all (another budget refused
    /// it): at most a burst, and nothing if the prefix has lost its slot meanwhile.
    pub fn give_back(&mut self, client: IpAddr, class: u8) {
        let burst = self.burst();
        if let (group, Some(i)) = self.find(self.prefix(client), class) {
            let slot = &mut self.slots[group + i];
            slot.tokens = (slot.tokens + UNIT).min(burst);
        }
    }

    /// How long until `client`'s prefix has a token in `class` at `now`, without
    /// spending one: zero when it has one, or has no bucket yet.
    pub fn wait(&self, client: IpAddr, class: u8, now: Duration) -> Duration {
        match self.find(self.prefix(client), class) {
            (group, Some(i)) => {
                let (burst, rate) = (self.burst(), self.rate());
                wait_for(
                    refill(&self.slots[group + i], micros(now), rate, burst),
                    rate,
                )
            }
            (_, None) => Duration::ZERO,
        }
    }

    /// The first slot of `prefix`'s group in `class`, and the place in the group of the
    /// slot it holds, if it holds one.
    fn find(&self, prefix: u128, class: u8) -> (usize, Option<usize>) {
        let group = self.group(prefix, class);
        let own = |s: &Slot| s.seen != 0 && s.prefix == prefix && s.class == class;
        (group, self.slots[group..group + WAYS].iter().position(own))
    }

    /// A burst, in millionths of a token.
    fn burst(&self) -> u64 {
        u64::from(self.settings.burst.max(1)) * UNIT
    }

    /// Millionths of a token gained a microsecond: the rate a second.
    fn rate(&self) -> u64 {
        u64::from(self.settings.per_second)
    }

    /// `client`'s address with the bits past the prefix cleared, as IPv6.
    fn prefix(&self, client: IpAddr) -> u128 {
        let (bits, len) = match client.to_canonical() {
            IpAddr::V4(v4) => (
                u128::from(v4.to_ipv6_mapped()),
                96 + u32::from(self.settings.ipv4_prefix.min(32)),
            ),
            IpAddr::V6(v6) => (
                u128::from(v6),
                u32::from(self.settings.ipv6_prefix.min(128)),
            ),
        };
        match len {
            0 => 0,
            len => bits & (u128::MAX << (128 - len)),
        }
    }

    /// The first slot of the group of `prefix`'s bucket in `class`.
    fn group(&self, prefix: u128, class: u8) -> usize {
        let hash = self.hasher.hash_one((prefix, class));
        (hash as usize % (self.slots.len() / WAYS)) * WAYS
    }
}

/// `now` in microseconds, plus one (so a slot's 0 means free).
fn micros(now: Duration) -> u64 {
    u64::try_from(now.as_micros())
        .unwrap_or(u64::MAX)
        .min(u64::MAX - 1)
        + 1
}

/// How long a bucket holding `tokens` takes to hold a whole one at `rate` a second:
/// millionths of a token gained a microsecond is `rate`, so the wait for the rest of one,
/// rounded up.
fn wait_for(tokens: u64, rate: u64) -> Duration {
    let Some(missing) = UNIT.checked_sub(tokens).filter(|&m| m > 0) else {
        return Duration::ZERO;
    };
    match rate {
        0 => Duration::MAX,
        rate => Duration::from_micros(missing.div_ceil(rate)),
    }
}

/// `slot`'s tokens at `now_us`: what it had plus the rate for the time since, at most a
/// burst.
fn refill(slot: &Slot, now_us: u64, rate: u64, burst: u64) -> u64 {
    let elapsed = now_us.saturating_sub(slot.seen);
    slot.tokens
        .saturating_add(elapsed.saturating_mul(rate))
        .min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(per_second: u32, burst: u32) -> PrefixRates {
        PrefixRates::new(
            RateSettings {
                per_second,
                burst,
                ipv4_prefix: 24,
                ipv6_prefix: 56,
            },
            1 << 12,
        )
    }

    fn allowed(r: &mut PrefixRates, client: &str, n: usize, now: Duration) -> Vec<bool> {
        (0..n)
            .map(|_| r.take(client.parse().unwrap(), 0, now).allowed)
            .collect()
    }

    #[test]
    fn a_prefix_gets_its_burst_then_its_rate_and_is_told_when_to_come_back() {
        let mut r = rates(10, 5);
        let t = Duration::from_secs(100);
        assert_eq!(allowed(&mut r, "192.0.2.1", 5, t), [true; 5]);
        let refused = r.take("192.0.2.200".parse().unwrap(), 0, t);
        assert!(!refused.allowed, "the same /24");
        assert_eq!(refused.refused, 1);
        assert_eq!(
            refused.retry_after,
            Duration::from_millis(100),
            "a token at 10/s"
        );
        assert_eq!(r.take("192.0.2.9".parse().unwrap(), 0, t).refused, 2);
        assert_eq!(allowed(&mut r, "192.0.3.1", 1, t), [true], "another /24");
        // A tenth of a second brings one token back at 10 per second.
        let later = t + Duration::from_millis(100);
        assert_eq!(allowed(&mut r, "192.0.2.1", 2, later), [true, false]);
        // IPv6 by /56.
        assert_eq!(allowed(&mut r, "2001:db8:0:ff::1", 5, t), [true; 5]);
        assert_eq!(allowed(&mut r, "2001:db8:0:1::1", 1, t), [false]);
        assert_eq!(allowed(&mut r, "2001:db8:0:100::1", 1, t), [true]);
        // An IPv4-mapped address is its IPv4 prefix.
        assert_eq!(allowed(&mut r, "::ffff:192.0.2.77", 1, t), [false]);
        // Each class has its own bucket.
        assert!(r.take("192.0.2.1".parse().unwrap(), 1, t).allowed);
        // 499 thousandths of a token missing at 3 a second: 166,334 µs, rounded up.
        let mut slow = rates(3, 1);
        assert!(slow.take("192.0.2.1".parse().unwrap(), 0, t).allowed);
        let half = t + Duration::from_millis(167);
        let wait = slow.take("192.0.2.1".parse().unwrap(), 0, half).retry_after;
        assert_eq!(wait, Duration::from_micros(166_334), "{wait:?}");
        // Asked without spending: the same wait, less the time gone; none once refilled,
        // nor for a prefix never seen.
        let ip = "192.0.2.1".parse().unwrap();
        let later = half + Duration::from_millis(100);
        assert_eq!(slow.wait(ip, 0, later), Duration::from_micros(66_334));
        assert_eq!(
            slow.wait(ip, 0, later + Duration::from_secs(1)),
            Duration::ZERO
        );
        assert_eq!(
            slow.wait("192.0.9.1".parse().unwrap(), 0, t),
            Duration::ZERO
        );
    }

    #[test]
    fn a_token_given_back_is_there_again_and_a_fast_rate_is_not_rounded_away() {
        let mut r = rates(1, 2);
        let t = Duration::from_secs(5);
        let ip = "192.0.2.1".parse().unwrap();
        assert_eq!(allowed(&mut r, "192.0.2.1", 2, t), [true, true]);
        r.give_back(ip, 0);
        assert_eq!(allowed(&mut r, "192.0.2.1", 2, t), [true, false]);
        // Never past the burst, and nothing for a prefix without a slot.
        let mut full = rates(1, 2);
        full.give_back(ip, 0);
        assert!(full.take(ip, 0, t).allowed);
        full.give_back(ip, 0);
        full.give_back(ip, 0);
        assert_eq!(allowed(&mut full, "192.0.2.1", 3, t), [true, true, false]);
        // A million a second with a burst of one: a token each microsecond.
        let mut fast = rates(1_000_000, 1);
        assert!(fast.take(ip, 0, t).allowed);
        assert!(!fast.take(ip, 0, t).allowed);
        assert!(fast.take(ip, 0, t + Duration::from_micros(1)).allowed);
    }

    #[test]
    fn the_table_is_bounded_and_evicting_a_spending_prefix_is_reported() {
        let mut r = rates(1, 1);
        let slots = r.capacity();
        let t = Duration::from_secs(1);
        let mut evictions = 0;
        // Twice as many busy prefixes as slots: the table does not grow, and every
        // prefix that finds its group full of spending ones evicts one.
        for i in 0..(2 * slots as u32) {
            let ip = IpAddr::V4((i << 8).into());
            let taken = r.take(ip, 0, t);
            assert!(taken.allowed);
            evictions += usize::from(taken.evicted);
        }
        assert_eq!(r.capacity(), slots);
        assert!(evictions >= slots / 2, "{evictions}");
        // Refilled prefixes are replaced without counting.
        let later = t + Duration::from_secs(2);
        assert!(!r.take("10.0.0.1".parse().unwrap(), 0, later).evicted);
    }
}
