//! Read and write throttling (Twisted's `ThrottlingFactory`).
//!
//! Bytes are counted per one-second window. Over the read limit, reading pauses until
//! the window ends. Over the write limit, reading pauses too: a protocol writes in
//! response to what it reads, so this is the producer that back-pressure can stop, as
//! in Twisted.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use crate::observe::CloseReason;
use crate::protocol::{HalfClose, Protocol};
use crate::time::{DelayedCall, call_later};
use crate::transport::Transport;

const WINDOW: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Window {
    /// Bytes read in the current window; reading pauses once it passes the limit.
    read: Cell<u64>,
    /// The transport's bytes-out total at the window's start, so writes are measured without
    /// wrapping the transport.
    written_before: Cell<u64>,
    /// Whether this throttle paused reading, so only it resumes it at the next window.
    paused: Cell<bool>,
}

/// Limits a connection to `read_limit` and `write_limit` bytes per second.
pub struct Throttled<P> {
    inner: P,
    read_limit: Option<u64>,
    write_limit: Option<u64>,
    /// Shared with the timer that resets it every second.
    window: Rc<Window>,
    /// The timer that starts each new window, kept so it is cancelled with the connection.
    tick: Option<DelayedCall>,
}

impl<P: Protocol> Throttled<P> {
    /// Wraps `inner`; `None` means unlimited.
    pub fn new(inner: P, read_limit: Option<u64>, write_limit: Option<u64>) -> Self {
        Self {
            inner,
            read_limit,
            write_limit,
            window: Rc::default(),
            tick: None,
        }
    }

    fn over(&self, transport: &Transport) -> bool {
        let w = &self.window;
        let written = (transport.info().stats.bytes_out() + transport.buffered() as u64)
            .saturating_sub(w.written_before.get());
        self.read_limit.is_some_and(|max| w.read.get() >= max)
            || self.write_limit.is_some_and(|max| written >= max)
    }

    fn start_window(&mut self, transport: &Transport) {
        let window = self.window.clone();
        let transport = transport.clone();
        fn tick(window: Rc<Window>, transport: Transport) -> DelayedCall {
            call_later(WINDOW, move || {
                if transport.is_closed() {
                    return;
                }
                window.read.set(0);
                window
                    .written_before
                    .set(transport.info().stats.bytes_out() + transport.buffered() as u64);
                if window.paused.replace(false) {
                    transport.resume_reading();
                }
                // Keep ticking while the connection lives.
                let _ = tick(window, transport);
            })
        }
        self.tick = Some(tick(window, transport));
    }
}

impl<P: Protocol> Protocol for Throttled<P> {
    fn connection_made(&mut self, transport: &Transport) {
        self.start_window(transport);
        self.inner.connection_made(transport);
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        let w = &self.window;
        w.read.set(w.read.get() + data.len() as u64);
        self.inner.data_received(transport, data);
        if self.over(transport) && !w.paused.replace(true) {
            transport.pause_reading();
        }
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
        if let Some(tick) = self.tick.take() {
            let _ = tick.cancel();
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

    struct Echo;
    impl Protocol for Echo {
        fn data_received(&mut self, t: &Transport, d: &[u8]) {
            t.write(d);
        }
    }

    #[test]
    fn reading_pauses_over_the_read_limit_until_the_window_ends() {
        let clock = Clock::fake();
        let _g = clock.install();
        let mut wire = StringTransport::new();
        let mut proto = Throttled::new(Echo, Some(100), None);
        wire.connect(&mut proto);
        wire.receive(&mut proto, &[0; 60]);
        assert!(!wire.transport().is_reading_paused());
        wire.receive(&mut proto, &[0; 60]);
        assert!(wire.transport().is_reading_paused());
        clock.advance(Duration::from_secs(1));
        assert!(!wire.transport().is_reading_paused());
    }

    #[test]
    fn writing_over_the_write_limit_pauses_reading() {
        let clock = Clock::fake();
        let _g = clock.install();
        let mut wire = StringTransport::new();
        let mut proto = Throttled::new(Echo, None, Some(50));
        wire.connect(&mut proto);
        wire.receive(&mut proto, &[0; 40]);
        assert!(!wire.transport().is_reading_paused());
        wire.receive(&mut proto, &[0; 40]);
        assert!(wire.transport().is_reading_paused());
        clock.advance(Duration::from_secs(1));
        assert!(!wire.transport().is_reading_paused());
    }
}
