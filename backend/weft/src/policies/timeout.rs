//! Idle timeout (Twisted's `TimeoutMixin` / `TimeoutProtocol`).

use std::time::Duration;

use crate::observe::CloseReason;
use crate::protocol::{HalfClose, Protocol};
use crate::time::{DelayedCall, call_later};
use crate::transport::Transport;

/// Closes the connection when nothing arrives for `timeout`.
pub struct IdleTimeout<P> {
    inner: P,
    timeout: Duration,
    /// The pending timeout, pushed back by each read and cancelled when the connection ends.
    call: Option<DelayedCall>,
}

impl<P: Protocol> IdleTimeout<P> {
    /// Wraps `inner` with an idle timeout.
    pub fn new(inner: P, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            call: None,
        }
    }

    /// The wrapped protocol.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    fn arm(&mut self, transport: &Transport) {
        if let Some(call) = &self.call
            && call.reset(self.timeout).is_ok()
        {
            return;
        }
        let transport = transport.clone();
        self.call = Some(call_later(self.timeout, move || {
            tracing::debug!(connection = %transport.id(), "idle timeout");
            transport.time_out();
        }));
    }
}

impl<P: Protocol> Protocol for IdleTimeout<P> {
    fn connection_made(&mut self, transport: &Transport) {
        self.arm(transport);
        self.inner.connection_made(transport);
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        self.arm(transport);
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
        // Armed again first: a protocol that keeps the connection hears it again after
        // another whole timeout with nothing arriving (a close cancels it).
        self.arm(transport);
        self.inner.timeout_connection(transport);
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        if let Some(call) = self.call.take() {
            let _ = call.cancel();
        }
        self.inner.connection_lost(reason);
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Clock, StringTransport};

    struct Quiet;
    impl Protocol for Quiet {
        fn data_received(&mut self, _t: &Transport, _d: &[u8]) {}
    }

    #[test]
    fn closes_after_idle_period_and_activity_postpones_it() {
        let clock = Clock::fake();
        let _g = clock.install();
        let mut wire = StringTransport::new();
        let mut proto = IdleTimeout::new(Quiet, Duration::from_secs(10));
        wire.connect(&mut proto);
        clock.advance(Duration::from_secs(9));
        wire.receive(&mut proto, b"still here");
        clock.advance(Duration::from_secs(9));
        assert!(!wire.disconnecting());
        clock.advance(Duration::from_secs(1));
        assert!(wire.disconnecting());
        assert_eq!(wire.close_reason(), Some(CloseReason::TimedOut));
    }

    /// Says goodbye at its timeout and keeps the connection.
    struct Polite;
    impl Protocol for Polite {
        fn data_received(&mut self, _t: &Transport, _d: &[u8]) {}
        fn timeout_connection(&mut self, transport: &Transport) {
            transport.write(b"still there?");
        }
    }

    #[test]
    fn the_wrapped_protocol_hears_the_timeout_and_the_timer_is_armed_again() {
        let clock = Clock::fake();
        let _g = clock.install();
        let mut wire = StringTransport::new();
        let mut proto = IdleTimeout::new(Polite, Duration::from_secs(10));
        wire.connect(&mut proto);
        clock.advance(Duration::from_secs(5));
        wire.time_out(&mut proto);
        assert_eq!(wire.value(), b"still there?");
        // Armed again from the timeout heard: not due at the first arming's ten seconds,
        // but ten after it was heard.
        clock.advance(Duration::from_secs(6));
        assert!(!wire.disconnecting());
        clock.advance(Duration::from_secs(4));
        assert_eq!(wire.close_reason(), Some(CloseReason::TimedOut));
    }

    #[test]
    fn a_closed_connection_cancels_its_timer() {
        let clock = Clock::fake();
        let _g = clock.install();
        let mut wire = StringTransport::new();
        let mut proto = IdleTimeout::new(Quiet, Duration::from_secs(1));
        wire.connect(&mut proto);
        wire.lose(&mut proto, CloseReason::PeerClosed);
        assert!(clock.pending_calls().is_empty());
    }
}
