//! How many wrong tokens a peer may try: a bucket of [`BURST`] per peer (an IPv4 address
//! or an IPv6 /64, [`PeerKey`]), one more every [`REFILL`]. A peer whose bucket is empty
//! is answered `429` with `Retry-After` for any token it presents, right or wrong, until
//! its bucket holds one again: a guess must not be told apart from a refusal, or the limit
//! would limit nothing. Requests without a token are not counted; they learn nothing.
//!
//! Only a token the peer has not tried lately costs: a browser tab left open with the
//! cookie of a token since changed sends that one value again and again, and that is one
//! guess, not one a request. The last [`REMEMBERED`] wrong values of each peer are kept
//! as keyed hashes, never as text.
//!
//! At most [`PEERS`] peers are followed at once; past that, peers whose bucket is full
//! again are forgotten first, then the one with the most tries left (the longest ago
//! among equals): a peer that spent its burst is the last to be forgotten.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use weft::policies::PeerKey;

/// Wrong tokens a peer may try at once.
pub const BURST: u32 = 10;
/// How often a peer may try one more wrong token once its burst is spent.
pub const REFILL: Duration = Duration::from_secs(6);
/// Peers followed at once.
pub const PEERS: usize = 4096;
/// Distinct wrong tokens remembered per peer, each tried again for free.
pub const REMEMBERED: usize = 4;

/// Every peer's wrong tokens.
#[derive(Debug, Default)]
pub(crate) struct Attempts {
    peers: Mutex<HashMap<PeerKey, Tries>>,
    /// Keys the hashes of wrong tokens: random a process, so they say nothing of a token.
    hashes: RandomState,
}

#[derive(Debug, Clone, Copy)]
struct Tries {
    /// Wrong tokens it may still try.
    left: u32,
    /// Since when `left` is counted: the last refill, or the first wrong token.
    since: Instant,
    /// Keyed hashes of its last wrong tokens, the newest at `next - 1`.
    recent: [u64; REMEMBERED],
    next: usize,
}

impl Tries {
    fn new(now: Instant) -> Self {
        Self {
            left: BURST,
            since: now,
            recent: [0; REMEMBERED],
            next: 0,
        }
    }

    /// Puts back what the time since `since` earned.
    fn refill(&mut self, now: Instant) {
        let earned = now.saturating_duration_since(self.since).as_nanos() / REFILL.as_nanos();
        let earned = u32::try_from(earned).unwrap_or(u32::MAX);
        if earned == 0 {
            return;
        }
        self.left = self.left.saturating_add(earned).min(BURST);
        self.since = if self.left == BURST {
            now
        } else {
            self.since + REFILL * earned
        };
    }

    /// How long until it may try again; zero when it may now.
    fn wait(&self, now: Instant) -> Duration {
        if self.left > 0 {
            return Duration::ZERO;
        }
        (self.since + REFILL).saturating_duration_since(now)
    }
}

impl Attempts {
    /// Whether `peer` may present a token now; `Err` with how long it must wait when it
    /// has tried too many wrong ones. A request with no peer (not through
    /// [`crate::serve`]) is not limited.
    pub(crate) fn admit(&self, peer: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let Some(peer) = peer else {
            return Ok(());
        };
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tries) = peers.get_mut(&PeerKey::of_ip(peer)) else {
            return Ok(());
        };
        tries.refill(now);
        match tries.wait(now) {
            Duration::ZERO => Ok(()),
            wait => Err(wait),
        }
    }

    /// Counts `given`, a token `peer` presented that is wrong, unless it tried that one
    /// lately.
    pub(crate) fn wrong(&self, peer: Option<IpAddr>, given: &[u8], now: Instant) {
        let Some(peer) = peer else {
            return;
        };
        let hash = self.hashes.hash_one(given);
        let key = PeerKey::of_ip(peer);
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if !peers.contains_key(&key) && peers.len() >= PEERS {
            make_room(&mut peers, now);
        }
        let tries = peers.entry(key).or_insert_with(|| Tries::new(now));
        tries.refill(now);
        if tries.recent.contains(&hash) && tries.next > 0 {
            return;
        }
        tries.recent[tries.next % REMEMBERED] = hash;
        tries.next += 1;
        if tries.left == BURST {
            tries.since = now;
        }
        tries.left = tries.left.saturating_sub(1);
    }

    /// Peers followed now.
    #[cfg(test)]
    pub(crate) fn peers(&self) -> usize {
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Forgets peers whose bucket is full again; failing that, the one with the most tries
/// left, the oldest count among equals.
fn make_room(peers: &mut HashMap<PeerKey, Tries>, now: Instant) {
    peers.retain(|_, tries| {
        tries.refill(now);
        tries.left < BURST
    });
    if peers.len() < PEERS {
        return;
    }
    let least_limited = peers
        .iter()
        .max_by_key(|(_, t)| (t.left, std::cmp::Reverse(t.since)))
        .map(|(k, _)| *k);
    if let Some(peer) = least_limited {
        peers.remove(&peer);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    const V4: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)));

    #[test]
    fn a_peer_tries_its_burst_then_one_a_refill_and_repeats_cost_nothing() {
        let attempts = Attempts::default();
        let t0 = Instant::now();
        for i in 0..BURST {
            assert_eq!(attempts.admit(V4, t0), Ok(()), "try {i}");
            attempts.wrong(V4, format!("guess-{i}").as_bytes(), t0);
        }
        assert_eq!(attempts.admit(V4, t0), Err(REFILL));
        // The same wrong value again (a stale cookie) is not a new guess.
        let later = t0 + REFILL;
        assert_eq!(attempts.admit(V4, later), Ok(()));
        attempts.wrong(V4, b"guess-9", later);
        assert_eq!(attempts.admit(V4, later), Ok(()));
        attempts.wrong(V4, b"another", later);
        assert_eq!(attempts.admit(V4, later), Err(REFILL));
        assert_eq!(
            attempts.admit(V4, later + REFILL / 2),
            Err(REFILL / 2),
            "it is told how long to wait"
        );
        // Quiet for long enough, it has its whole burst back.
        let rested = later + REFILL * BURST;
        for i in 0..BURST {
            assert_eq!(attempts.admit(V4, rested), Ok(()), "try {i} after resting");
            attempts.wrong(V4, format!("again-{i}").as_bytes(), rested);
        }
        assert!(attempts.admit(V4, rested).is_err());
    }

    #[test]
    fn peers_are_counted_apart_an_ipv6_64_as_one() {
        let attempts = Attempts::default();
        let t0 = Instant::now();
        let a = Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1)));
        let same_64 = Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 9, 9, 9, 9)));
        let other_64 = Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1)));
        for i in 0..BURST {
            attempts.wrong(a, format!("{i}").as_bytes(), t0);
        }
        assert!(attempts.admit(same_64, t0).is_err());
        assert_eq!(attempts.admit(other_64, t0), Ok(()));
        assert_eq!(attempts.admit(V4, t0), Ok(()));
        assert_eq!(attempts.admit(None, t0), Ok(()));
    }

    #[test]
    fn the_peers_followed_are_bounded_and_one_that_spent_its_burst_is_kept() {
        let attempts = Attempts::default();
        let t0 = Instant::now();
        for i in 0..BURST {
            attempts.wrong(V4, format!("{i}").as_bytes(), t0);
        }
        // Twice as many peers as are followed, each one wrong token, none rested.
        let t1 = t0 + REFILL / 10;
        for n in 0..2 * PEERS as u128 {
            let ip = IpAddr::V6(Ipv6Addr::from((0x2001_0db8_u128 << 96) | (n << 64)));
            attempts.wrong(Some(ip), b"x", t1);
        }
        assert_eq!(attempts.peers(), PEERS);
        assert!(
            attempts.admit(V4, t1).is_err(),
            "the peer that spent its burst is still followed"
        );
    }
}
