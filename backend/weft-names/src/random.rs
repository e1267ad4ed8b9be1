//! Unpredictable numbers: ids and source ports of upstream queries (RFC 5452 section
//! 9.2 asks for both, from a cryptographically strong generator, so that an off-path
//! attacker must guess 16 bits of id and the port), NOTIFY ids, and secret keys.
//!
//! Bytes come from the operating system's generator (`getrandom`), fetched in blocks so
//! a query costs no system call of its own.

use std::cell::RefCell;

/// Bytes fetched at once.
const BLOCK: usize = 256;

struct Pool {
    bytes: [u8; BLOCK],
    /// The next unused byte; `BLOCK` when empty.
    next: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool { bytes: [0; BLOCK], next: BLOCK }) };
}

/// Fills `bytes` from the operating system's generator.
pub(crate) fn fill(bytes: &mut [u8]) {
    if let Err(error) = getrandom::fill(bytes) {
        // Not expected on any supported system; fastrand is not a CSPRNG, so say so.
        tracing::error!(%error, "the system's random generator failed; random numbers are weaker");
        for b in bytes {
            *b = fastrand::u8(..);
        }
    }
}

/// A random `u16` from the operating system's generator.
pub(crate) fn u16() -> u16 {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.next + 2 > BLOCK {
            fill(&mut pool.bytes);
            pool.next = 0;
        }
        let i = pool.next;
        pool.next += 2;
        u16::from_be_bytes([pool.bytes[i], pool.bytes[i + 1]])
    })
}

/// A random number below `n` (which is above zero), without modulo bias.
pub(crate) fn below(n: u16) -> u16 {
    debug_assert!(n > 0);
    // Reject the top partial range so every value is equally likely.
    let zone = u16::MAX - (u16::MAX % n);
    loop {
        let v = u16();
        if v < zone {
            return v % n;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_spread_over_the_range() {
        let seen: std::collections::HashSet<u16> = (0..1000).map(|_| super::u16()).collect();
        assert!(seen.len() > 980, "{} distinct of 1000", seen.len());
        assert!((0..1000).all(|_| super::below(7) < 7));
    }
}
