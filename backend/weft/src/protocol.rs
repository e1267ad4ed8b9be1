//! `Protocol`, `Factory` and `ClientFactory`: what a user writes (twisted.internet.protocol).
//!
//! A protocol instance serves one connection. The reactor calls `connection_made`, then
//! `data_received` for every chunk that arrives, then `connection_lost` exactly once.
//! Each callback gets the connection's [`Transport`]; keep a clone of it to write later,
//! from a timer or from another connection.

use std::rc::Rc;

use crate::address::Address;
use crate::observe::CloseReason;
use crate::transport::Transport;

/// What to do when the peer half-closes (sends EOF) while this side may still write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HalfClose {
    /// Close the whole connection (the default, as in Twisted).
    Close,
    /// Keep the connection open for writing (Twisted's `IHalfCloseableProtocol`).
    KeepWriting,
}

/// Handles one connection's events (Twisted's `Protocol`).
pub trait Protocol: 'static {
    /// The connection is up; `transport` is how to talk back.
    fn connection_made(&mut self, transport: &Transport) {
        let _ = transport;
    }

    /// Some bytes arrived. Message boundaries are not preserved: use a framer.
    fn data_received(&mut self, transport: &Transport, data: &[u8]);

    /// Reading resumed after a pause: the protocol's own ([`Transport::pause_reading`]) or
    /// back-pressure from output the peer has not taken. A framer that stopped at the
    /// pause, with messages of an earlier chunk still buffered, goes on with them here.
    fn reading_resumed(&mut self, transport: &Transport) {
        let _ = transport;
    }

    /// The peer sent EOF. Return [`HalfClose::KeepWriting`] to keep writing.
    fn read_connection_lost(&mut self, transport: &Transport) -> HalfClose {
        let _ = transport;
        HalfClose::Close
    }

    /// The connection is asked to end gracefully: the reactor is shutting down, or its
    /// service was removed. The default closes it once what is buffered is sent; a
    /// protocol with answers still owed (requests in flight) stops taking new ones and
    /// closes after the last, within the drain's deadline, past which the reactor aborts it.
    fn drain(&mut self, transport: &Transport) {
        transport.lose_connection();
    }

    /// The connection's idle timeout went off: nothing was read or written for it
    /// (Twisted's `TimeoutMixin.timeoutConnection`). The default closes it, with reason
    /// [`CloseReason::TimedOut`], once what is buffered is sent; a protocol may say
    /// goodbye first, or keep the connection (a keep-alive probe written, say), in which
    /// case it hears this again after another whole timeout with nothing moving.
    fn timeout_connection(&mut self, transport: &Transport) {
        transport.lose_connection_with(CloseReason::TimedOut);
    }

    /// The connection is gone; called exactly once.
    fn connection_lost(&mut self, reason: &CloseReason) {
        let _ = reason;
    }

    /// The name used when this protocol's callbacks are reported (slow, panicked).
    fn name(&self) -> &'static str {
        std::any::type_name::<Self>()
    }
}

/// Builds a protocol for each accepted connection (Twisted's `Factory`).
pub trait Factory: 'static {
    /// A protocol for a connection from `peer`, or `None` to refuse it.
    fn build_protocol(&self, peer: &Address) -> Option<Box<dyn Protocol>>;

    /// After `build_protocol` returned `None`: why, as a bounded label for metrics
    /// (`limit_total`, `limit_peer`, ...).
    fn refusal_reason(&self) -> &'static str {
        "factory"
    }

    /// Called when a listener using this factory starts.
    fn start_factory(&self) {}

    /// Called when a listener using this factory stops.
    fn stop_factory(&self) {}
}

impl<F: Factory + ?Sized> Factory for Rc<F> {
    fn build_protocol(&self, peer: &Address) -> Option<Box<dyn Protocol>> {
        (**self).build_protocol(peer)
    }
    fn refusal_reason(&self) -> &'static str {
        (**self).refusal_reason()
    }
    fn start_factory(&self) {
        (**self).start_factory();
    }
    fn stop_factory(&self) {
        (**self).stop_factory();
    }
}

/// A factory made from a closure (Twisted's `Factory.forProtocol`).
pub struct FnFactory<F>(F);

impl<P, F> Factory for FnFactory<F>
where
    P: Protocol,
    F: Fn() -> P + 'static,
{
    fn build_protocol(&self, _peer: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new((self.0)()))
    }
}

/// A factory that builds a fresh protocol with `make` for every connection.
///
/// ```
/// use weft::{Protocol, Transport, factory};
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, transport: &Transport, data: &[u8]) {
///         transport.write(data);
///     }
/// }
/// let _factory = factory(|| Echo);
/// ```
pub fn factory<P: Protocol, F: Fn() -> P + 'static>(make: F) -> FnFactory<F> {
    FnFactory(make)
}
