//! Connection limits in total and per peer (Twisted's `LimitTotalConnectionsFactory`,
//! `LimitConnectionsByPeer`).
//!
//! A [`Limit`] caps connections open at once under what its [`Tally`] counts them by:
//! [`PeerLimit`] per host, [`TotalLimit`] all of them; both are what listeners apply before
//! any protocol runs ([`ListenOptions`](crate::net::ListenOptions)).
//! [`ConnectionLimits`] wraps a factory with the same two limits.

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

/// A cap of `max` connections open at once, counted by `T`: [`TotalLimit`] counts them
/// all, [`PeerLimit`] those of each peer. Clones, and the limits [`with_max`](Self::with_max)
/// makes, share one count, so the listeners given them count together.
pub struct Limit<T> {
    max: usize,
    /// Shared by the limit's clones and by each connection's slot, which gives its place
    /// back when dropped.
    open: Rc<T>,
}

/// What a [`Limit`] counts connections under, and how many each key holds now.
pub trait Tally: Default {
    /// What one connection is counted under: `()` for a total, its [`PeerKey`] per peer.
    type Key: Copy;
    /// Takes a place under `key`, or says `false` when `max` are held there already.
    fn take(&self, key: Self::Key, max: usize) -> bool;
    /// Gives back a place taken under `key`.
    fn give_back(&self, key: Self::Key);
}

impl<T> Clone for Limit<T> {
    fn clone(&self) -> Self {
        self.with_max(self.max)
    }
}

impl<T> Limit<T> {
    /// A limit of `max` that counts the same connections as this one: what either admits
    /// counts against both. A listener that replaces another (a reload changing the cap)
    /// keeps counting the connections the old one admitted.
    pub fn with_max(&self, max: usize) -> Self {
        Self {
            max,
            open: self.open.clone(),
        }
    }

    /// The most connections it lets be open at once (per peer, for a [`PeerLimit`]).
    pub fn max(&self) -> usize {
        self.max
    }
}

impl<T: Tally> Limit<T> {
    /// A limit of `max` connections.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Rc::default(),
        }
    }

    /// Takes a place under `key`, given back when the returned guard is dropped.
    fn take(&self, key: T::Key) -> Option<Slot<T>> {
        self.open
            .take(key, self.max)
            .then(|| Slot(Some((self.open.clone(), key))))
    }
}

/// One connection's place in a [`Limit`]; dropping it frees the place.
#[must_use = "the slot is freed when dropped"]
pub struct Slot<T: Tally>(Option<(Rc<T>, T::Key)>);

impl<T: Tally> Slot<T> {
    /// A slot that counts nothing, for listeners without a cap.
    pub(crate) fn unlimited() -> Self {
        Self(None)
    }
}

impl<T: Tally> Drop for Slot<T> {
    fn drop(&mut self) {
        if let Some((open, key)) = self.0.take() {
            open.give_back(key);
        }
    }
}

/// At most `max` connections open at once in all, counted across every listener given a
/// clone of it (Twisted's `LimitTotalConnectionsFactory`, applied as the listener accepts).
pub type TotalLimit = Limit<Total>;
/// One connection's place in a [`TotalLimit`].
pub type TotalSlot = Slot<Total>;

/// The count of a [`TotalLimit`]: connections open now.
#[derive(Debug, Default)]
pub struct Total(Cell<usize>);

impl Tally for Total {
    type Key = ();

    fn take(&self, (): (), max: usize) -> bool {
        let n = self.0.get();
        if n >= max {
            return false;
        }
        self.0.set(n + 1);
        true
    }

    fn give_back(&self, (): ()) {
        self.0.set(self.0.get() - 1);
    }
}

impl std::fmt::Debug for TotalLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotalLimit")
            .field("max", &self.max)
            .field("open", &self.open())
            .finish()
    }
}

impl std::fmt::Debug for TotalSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotalSlot")
    }
}

impl TotalLimit {
    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.0.get()
    }

    /// Takes a place for one more connection, or `None` when `max` are open. The place is
    /// given back when the returned guard is dropped.
    pub fn admit(&self) -> Option<TotalSlot> {
        self.take(())
    }
}

/// At most `max` connections open at once from one peer (an IPv4 address or an IPv6
/// /64), counted across every listener given a clone of it. Unix-socket peers are not
/// counted.
pub type PeerLimit = Limit<PerPeer>;
/// One connection's place in a [`PeerLimit`].
pub type PeerSlot = Slot<PerPeer>;

/// The count of a [`PeerLimit`]: connections open now from each peer that has one.
#[derive(Default)]
pub struct PerPeer(RefCell<HashMap<PeerKey, usize>>);

impl std::fmt::Debug for PerPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} peers", self.0.borrow().len())
    }
}

impl std::fmt::Debug for PeerLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLimit")
            .field("max", &self.max)
            .field("peers", &self.open.0.borrow().len())
            .finish()
    }
}

impl std::fmt::Debug for PeerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerSlot")
    }
}

impl Tally for PerPeer {
    type Key = PeerKey;

    fn take(&self, key: PeerKey, max: usize) -> bool {
        let mut open = self.0.borrow_mut();
        let n = open.entry(key).or_default();
        if *n >= max {
            if *n == 0 {
                open.remove(&key);
            }
            return false;
        }
        *n += 1;
        true
    }

    fn give_back(&self, key: PeerKey) {
        let mut open = self.0.borrow_mut();
        if let Some(n) = open.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&key);
            }
        }
    }
}

impl PeerLimit {
    /// Connections open now from `peer`.
    pub fn open_from(&self, peer: &Address) -> usize {
        PeerKey::of(peer).map_or(0, |key| {
            self.open.0.borrow().get(&key).copied().unwrap_or(0)
        })
    }

    /// Takes a slot for a connection from `peer`, or `None` when the peer already holds
    /// `max`. The slot is given back when the returned guard is dropped.
    pub fn admit(&self, peer: &Address) -> Option<PeerSlot> {
        match PeerKey::of(peer) {
            Some(key) => self.take(key),
            None => Some(PeerSlot::unlimited()),
        }
    }
}

/// Refuses connections beyond `max_total` open, or `max_per_peer` from one host.
pub struct ConnectionLimits<F> {
    inner: F,
    /// Every connection this factory admitted, capped at `max_total` (uncapped until set).
    total: TotalLimit,
    per_peer: Option<PeerLimit>,
    /// Why the last connection was refused, so the listener counts the refusal under that reason.
    last_refusal: Cell<&'static str>,
}

impl<F: Factory> ConnectionLimits<F> {
    /// Wraps `inner` with no limits yet.
    pub fn new(inner: F) -> Self {
        Self {
            inner,
            total: TotalLimit::new(usize::MAX),
            per_peer: None,
            last_refusal: Cell::new(""),
        }
    }

    /// At most `n` connections open at once.
    pub fn max_total(mut self, n: usize) -> Self {
        self.total = self.total.with_max(n);
        self
    }

    /// At most `n` connections open from one host.
    pub fn max_per_peer(mut self, n: usize) -> Self {
        self.per_peer = Some(PeerLimit::new(n));
        self
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.total.open()
    }
}

impl<F: Factory> Factory for ConnectionLimits<F> {
    fn build_protocol(&self, peer: &Address) -> Option<Box<dyn Protocol>> {
        let Some(total) = self.total.admit() else {
            self.last_refusal.set("limit_total");
            return None;
        };
        let per_peer = match &self.per_peer {
            Some(limit) => limit.admit(peer),
            None => Some(PeerSlot::unlimited()),
        };
        let Some(per_peer) = per_peer else {
            self.last_refusal.set("limit_peer");
            return None;
        };
        let Some(inner) = self.inner.build_protocol(peer) else {
            self.last_refusal.set(self.inner.refusal_reason());
            return None;
        };
        Some(Box::new(Counted {
            inner,
            _slots: (total, per_peer),
        }))
    }

    fn refusal_reason(&self) -> &'static str {
        self.last_refusal.get()
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
    /// Held only for their drop, which gives the places in the total and the peer's back.
    _slots: (TotalSlot, PeerSlot),
}

impl Protocol for Counted {
    fn connection_made(&mut self, transport: &Transport) {
        self.inner.connection_made(transport);
    }
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        self.inner.data_received(transport, data);
    }
    fn reading_resumed(&mut self, transport: &Transport) {
        self.inner.reading_resumed(transport);
    }
    fn read_connection_lost(&mut self, transport: &Transport) -> HalfClose {
        self.inner.read_connection_lost(transport)
    }
    fn drain(&mut self, transport: &Transport) {
        self.inner.drain(transport);
    }
    fn timeout_connection(&mut self, transport: &Transport) {
        self.inner.timeout_connection(transport);
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
