//! Connection limits in total and per peer (Twisted's `LimitTotalConnectionsFactory`,
//! `LimitConnectionsByPeer`).
//!
//! [`PeerLimit`] counts connections per host and [`TotalLimit`] all of them; both are what
//! listeners apply before any protocol runs ([`ListenOptions`](crate::net::ListenOptions)).
//! [`ConnectionLimits`] wraps a factory with the same per-host count and a total.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;

use crate::address::Address;
use crate::observe::CloseReason;
use crate::protocol::{Factory, HalfClose, Protocol};
use crate::transport::Transport;

/// Who counts as one peer: an IPv4 address, or an IPv6 /64 (one host's usual share, so
/// a peer cannot dodge the cap by walking its own subnet). Every per-peer cap counts by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerKey(u128);

impl PeerKey {
    /// The peer `peer` belongs to; `None` for a unix-socket peer, which has no name to
    /// tell it apart.
    pub fn of(peer: &Address) -> Option<Self> {
        let Address::Ip(addr) = peer else {
            return None;
        };
        Some(Self::of_ip(addr.ip()))
    }

    /// The peer the address `ip` belongs to (an IPv4-mapped IPv6 address is its IPv4 one).
    pub fn of_ip(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => Self((u128::from(v6) & !((1u128 << 64) - 1)) | 1),
        }
    }
}

/// Connections open per peer, shared by a limit, its clones and its slots.
type OpenPerPeer = Rc<RefCell<HashMap<PeerKey, usize>>>;

/// At most `max` connections open at once from one peer (an IPv4 address or an IPv6
/// /64), counted across every listener given a clone of it. Unix-socket peers are not
/// counted.
#[derive(Clone)]
pub struct PeerLimit {
    max: usize,
    /// Shared by the limit's clones and by each connection's slot, which gives its place back when
    /// dropped.
    open: OpenPerPeer,
}

impl std::fmt::Debug for PeerLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLimit")
            .field("max", &self.max)
            .field("peers", &self.open.borrow().len())
            .finish()
    }
}

impl PeerLimit {
    /// A limit of `max` connections per peer.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Rc::default(),
        }
    }

    /// A limit of `max` that counts the same connections as this one: what either admits
    /// counts against both. A listener that replaces another keeps counting the
    /// connections the old one admitted.
    pub fn with_max(&self, max: usize) -> Self {
        Self {
            max,
            open: self.open.clone(),
        }
    }

    /// The most connections one peer may hold.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections open now from `peer`.
    pub fn open_from(&self, peer: &Address) -> usize {
        PeerKey::of(peer).map_or(0, |key| self.open.borrow().get(&key).copied().unwrap_or(0))
    }

    /// Takes a slot for a connection from `peer`, or `None` when the peer already holds
    /// `max`. The slot is given back when the returned guard is dropped.
    pub fn admit(&self, peer: &Address) -> Option<PeerSlot> {
        let Some(key) = PeerKey::of(peer) else {
            return Some(PeerSlot::unlimited());
        };
        let mut open = self.open.borrow_mut();
        let n = open.entry(key).or_default();
        if *n >= self.max {
            if *n == 0 {
                open.remove(&key);
            }
            return None;
        }
        *n += 1;
        Some(PeerSlot(Some((self.open.clone(), key))))
    }
}

/// One connection's place in a [`PeerLimit`]; dropping it frees the place.
#[must_use = "the slot is freed when dropped"]
pub struct PeerSlot(Option<(OpenPerPeer, PeerKey)>);

impl std::fmt::Debug for PeerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerSlot")
    }
}

impl PeerSlot {
    /// A slot that counts nothing, for listeners without a cap.
    pub(crate) fn unlimited() -> Self {
        Self(None)
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        if let Some((open, key)) = self.0.take() {
            let mut open = open.borrow_mut();
            if let Some(n) = open.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    open.remove(&key);
                }
            }
        }
    }
}

/// At most `max` connections open at once in all, counted across every listener given a
/// clone of it (Twisted's `LimitTotalConnectionsFactory`, applied as the listener accepts).
#[derive(Clone)]
pub struct TotalLimit {
    max: usize,
    /// Shared by the limit's clones and by each connection's slot, which gives its place
    /// back when dropped.
    open: Rc<Cell<usize>>,
}

impl std::fmt::Debug for TotalLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotalLimit")
            .field("max", &self.max)
            .field("open", &self.open.get())
            .finish()
    }
}

impl TotalLimit {
    /// A limit of `max` connections in all.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Rc::default(),
        }
    }

    /// A limit of `max` that counts the same connections as this one, so a listener that
    /// replaces another (a reload changing the cap) keeps counting those the old one
    /// admitted.
    pub fn with_max(&self, max: usize) -> Self {
        Self {
            max,
            open: self.open.clone(),
        }
    }

    /// The most connections open at once.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.get()
    }

    /// Takes a place for one more connection, or `None` when `max` are open. The place is
    /// given back when the returned guard is dropped.
    pub fn admit(&self) -> Option<TotalSlot> {
        let n = self.open.get();
        if n >= self.max {
            return None;
        }
        self.open.set(n + 1);
        Some(TotalSlot(self.open.clone()))
    }
}

/// One connection's place in a [`TotalLimit`]; dropping it frees the place.
#[must_use = "the slot is freed when dropped"]
pub struct TotalSlot(Rc<Cell<usize>>);

impl std::fmt::Debug for TotalSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotalSlot")
    }
}

impl Drop for TotalSlot {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

#[derive(Default)]
struct Counts {
    /// Connections open through this factory now, given back by each connection when it ends.
    total: Cell<usize>,
    /// Why the last connection was refused, so the listener counts the refusal under that reason.
    last_refusal: Cell<&'static str>,
}

/// Refuses connections beyond `max_total` open, or `max_per_peer` from one host.
pub struct ConnectionLimits<F> {
    inner: F,
    max_total: Option<usize>,
    per_peer: Option<PeerLimit>,
    /// Shared with every connection it admitted, which decrements `total` when it ends.
    counts: Rc<Counts>,
}

impl<F: Factory> ConnectionLimits<F> {
    /// Wraps `inner` with no limits yet.
    pub fn new(inner: F) -> Self {
        Self {
            inner,
            max_total: None,
            per_peer: None,
            counts: Rc::default(),
        }
    }

    /// At most `n` connections open at once.
    pub fn max_total(mut self, n: usize) -> Self {
        self.max_total = Some(n);
        self
    }

    /// At most `n` connections open from one host.
    pub fn max_per_peer(mut self, n: usize) -> Self {
        self.per_peer = Some(PeerLimit::new(n));
        self
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts.total.get()
    }
}

impl<F: Factory> Factory for ConnectionLimits<F> {
    fn build_protocol(&self, peer: &Address) -> Option<Box<dyn Protocol>> {
        let counts = &self.counts;
        if self.max_total.is_some_and(|max| counts.total.get() >= max) {
            counts.last_refusal.set("limit_total");
            return None;
        }
        let slot = match &self.per_peer {
            Some(limit) => match limit.admit(peer) {
                Some(slot) => Some(slot),
                None => {
                    counts.last_refusal.set("limit_peer");
                    return None;
                }
            },
            None => None,
        };
        let Some(inner) = self.inner.build_protocol(peer) else {
            counts.last_refusal.set(self.inner.refusal_reason());
            return None;
        };
        counts.total.set(counts.total.get() + 1);
        Some(Box::new(Counted {
            inner,
            counts: counts.clone(),
            _slot: slot,
        }))
    }

    fn refusal_reason(&self) -> &'static str {
        self.counts.last_refusal.get()
    }

    fn start_factory(&self) {
        self.inner.start_factory();
    }

    fn stop_factory(&self) {
        self.inner.stop_factory();
    }
}

/// A protocol that gives its places back when the connection ends.
struct Counted {
    inner: Box<dyn Protocol>,
    /// Where this connection gives its place in the total back when it is dropped.
    counts: Rc<Counts>,
    /// Held only for its drop, which gives the peer's place back.
    _slot: Option<PeerSlot>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.counts.total.set(self.counts.total.get() - 1);
    }
}

impl Protocol for Counted {
    fn connection_made(&mut self, transport: &Transport) {
        self.inner.connection_made(transport);
    }
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        self.inner.data_received(transport, data);
    }
    fn read_connection_lost(&mut self, transport: &Transport) -> HalfClose {
        self.inner.read_connection_lost(transport)
    }
    fn connection_lost(&mut self, reason: &CloseReason) {
        self.inner.connection_lost(reason);
    }
    fn name(&self) -> &'static str {
        self.inner.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::factory;

    struct Nop;
    impl Protocol for Nop {
        fn data_received(&mut self, _t: &Transport, _d: &[u8]) {}
    }

    fn peer(s: &str) -> Address {
        Address::Ip(s.parse().unwrap())
    }

    #[test]
    fn limits_per_peer_and_in_total_and_frees_slots_on_close() {
        let limits = ConnectionLimits::new(factory(|| Nop))
            .max_total(3)
            .max_per_peer(2);
        let a1 = limits.build_protocol(&peer("10.0.0.1:1000")).unwrap();
        let _a2 = limits.build_protocol(&peer("10.0.0.1:1001")).unwrap();
        assert!(limits.build_protocol(&peer("10.0.0.1:1002")).is_none());
        assert_eq!(limits.refusal_reason(), "limit_peer");
        let _b1 = limits.build_protocol(&peer("10.0.0.2:1000")).unwrap();
        assert!(limits.build_protocol(&peer("10.0.0.3:1000")).is_none());
        assert_eq!(limits.refusal_reason(), "limit_total");
        drop(a1);
        assert_eq!(limits.open(), 2);
        assert!(limits.build_protocol(&peer("10.0.0.1:1003")).is_some());
    }

    #[test]
    fn a_peer_limit_counts_ipv4_hosts_and_ipv6_slash_64s_and_frees_on_drop() {
        let limit = PeerLimit::new(1);
        let a = limit.admit(&peer("10.0.0.1:1000")).unwrap();
        assert!(limit.admit(&peer("10.0.0.1:2000")).is_none());
        assert!(limit.admit(&peer("[::ffff:10.0.0.1]:3000")).is_none());
        let _b = limit.admit(&peer("10.0.0.2:1000")).unwrap();
        let _v6 = limit.admit(&peer("[2001:db8::1]:1000")).unwrap();
        assert!(limit.admit(&peer("[2001:db8::ffff:2]:1000")).is_none());
        assert!(limit.admit(&peer("[2001:db8:0:1::1]:1000")).is_some());
        drop(a);
        assert_eq!(limit.open_from(&peer("10.0.0.1:9")), 0);
        assert!(limit.admit(&peer("10.0.0.1:2000")).is_some());
    }

    #[test]
    fn a_total_limit_refuses_past_its_max_frees_on_drop_and_keeps_counting_with_a_new_max() {
        let limit = TotalLimit::new(2);
        let a = limit.admit().unwrap();
        let _b = limit.admit().unwrap();
        assert!(limit.admit().is_none());
        drop(a);
        assert_eq!(limit.open(), 1);
        let _c = limit.admit().unwrap();
        let lower = limit.with_max(1);
        assert!(lower.admit().is_none(), "the old limit's two count");
        let higher = limit.with_max(3);
        let _d = higher.admit().unwrap();
        assert_eq!((limit.open(), higher.open()), (3, 3));
    }

    #[test]
    fn a_limit_with_another_max_counts_the_same_connections() {
        let old = PeerLimit::new(2);
        let a = old.admit(&peer("10.0.0.1:1000")).unwrap();
        let _b = old.admit(&peer("10.0.0.1:1001")).unwrap();
        let new = old.with_max(3);
        let _c = new.admit(&peer("10.0.0.1:1002")).unwrap();
        assert!(
            new.admit(&peer("10.0.0.1:1003")).is_none(),
            "old ones count"
        );
        assert_eq!(old.open_from(&peer("10.0.0.1:9")), 3);
        drop(a);
        assert!(
            new.admit(&peer("10.0.0.1:1004")).is_some(),
            "and free their slots"
        );
    }
}
