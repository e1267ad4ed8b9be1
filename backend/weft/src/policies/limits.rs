//! Connection limits in total and per peer (Twisted's `LimitTotalConnectionsFactory`,
//! `LimitConnectionsByPeer`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use crate::address::Address;
use crate::observe::CloseReason;
use crate::protocol::{Factory, HalfClose, Protocol};
use crate::transport::Transport;

#[derive(Default)]
struct Counts {
    total: Cell<usize>,
    /// Keyed by the peer's IP (not port): one host, one budget.
    per_peer: RefCell<HashMap<String, usize>>,
    last_refusal: Cell<&'static str>,
}

/// Refuses connections beyond `max_total` open, or `max_per_peer` from one host.
pub struct ConnectionLimits<F> {
    inner: F,
    max_total: Option<usize>,
    max_per_peer: Option<usize>,
    counts: Rc<Counts>,
}

fn peer_key(peer: &Address) -> String {
    match peer {
        Address::Ip(addr) => addr.ip().to_string(),
        other => other.to_string(),
    }
}

impl<F: Factory> ConnectionLimits<F> {
    /// Wraps `inner` with no limits yet.
    pub fn new(inner: F) -> Self {
        Self {
            inner,
            max_total: None,
            max_per_peer: None,
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
        self.max_per_peer = Some(n);
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
        let key = peer_key(peer);
        let from_peer = counts.per_peer.borrow().get(&key).copied().unwrap_or(0);
        if self.max_per_peer.is_some_and(|max| from_peer >= max) {
            counts.last_refusal.set("limit_peer");
            return None;
        }
        let Some(inner) = self.inner.build_protocol(peer) else {
            counts.last_refusal.set(self.inner.refusal_reason());
            return None;
        };
        counts.total.set(counts.total.get() + 1);
        *counts.per_peer.borrow_mut().entry(key.clone()).or_default() += 1;
        Some(Box::new(Counted {
            inner,
            counts: counts.clone(),
            key,
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

/// A protocol that gives its slot back when the connection ends.
struct Counted {
    inner: Box<dyn Protocol>,
    counts: Rc<Counts>,
    key: String,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.counts.total.set(self.counts.total.get() - 1);
        let mut per_peer = self.counts.per_peer.borrow_mut();
        if let Some(n) = per_peer.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                per_peer.remove(&self.key);
            }
        }
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
}
