//! Test doubles (trial's `StringTransport`, `task.Clock`, `iosim`): protocols tested
//! without sockets, timers driven without sleeping, and a [`RecordingObserver`] that keeps
//! every event the reactor reports.
//!
//! ```
//! use weft::testing::StringTransport;
//! use weft::{Protocol, Transport};
//!
//! struct Echo;
//! impl Protocol for Echo {
//!     fn data_received(&mut self, transport: &Transport, data: &[u8]) {
//!         transport.write(data);
//!     }
//! }
//!
//! let mut wire = StringTransport::new();
//! let mut echo = Echo;
//! wire.connect(&mut echo);
//! wire.receive(&mut echo, b"hello");
//! assert_eq!(wire.value(), b"hello");
//! ```

mod loopback;
mod recording;

pub use crate::time::Clock;
pub use loopback::{Loopback, loopback};
pub use recording::RecordingObserver;

use crate::address::Address;
use crate::observe::{CloseReason, ConnectionInfo, TransportKind};
use crate::protocol::{HalfClose, Protocol};
use crate::transport::Transport;

/// A transport that records what is written to it (Twisted's `StringTransport`).
#[derive(Debug)]
pub struct StringTransport {
    transport: Transport,
    /// What the protocol wrote so far, read by the test.
    written: Vec<u8>,
}

impl Default for StringTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl StringTransport {
    /// A fresh transport between two made-up addresses.
    pub fn new() -> Self {
        Self::with_addresses(
            Address::Memory("peer".into()),
            Address::Memory("host".into()),
        )
    }

    /// A fresh transport between `peer` and `host`.
    pub fn with_addresses(peer: Address, host: Address) -> Self {
        let info = ConnectionInfo::new("test".into(), TransportKind::Memory, peer, host);
        Self {
            transport: Transport::new(info),
            written: Vec::new(),
        }
    }

    /// The transport handed to the protocol.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Calls `connection_made` on `protocol`.
    pub fn connect(&mut self, protocol: &mut dyn Protocol) {
        protocol.connection_made(&self.transport);
    }

    /// Delivers `data` to `protocol` as if the peer had sent it.
    pub fn receive(&mut self, protocol: &mut dyn Protocol, data: &[u8]) {
        self.transport
            .info()
            .stats
            .record_read(data.len(), crate::observe::Stopwatch::start());
        crate::observe::with_connection(Some(self.transport.id()), || {
            protocol.data_received(&self.transport, data);
        });
    }

    /// Tells `protocol` reading resumed, as the reactor does when a pause ends (its output
    /// taken by [`value`](Self::value), say); nothing while reading is still paused.
    pub fn resume(&mut self, protocol: &mut dyn Protocol) {
        if !self.transport.is_reading_paused() && self.transport.take_resume_owed() {
            crate::observe::with_connection(Some(self.transport.id()), || {
                protocol.reading_resumed(&self.transport);
            });
        }
    }

    /// Tells `protocol` the peer half-closed; returns its choice.
    pub fn receive_eof(&mut self, protocol: &mut dyn Protocol) -> HalfClose {
        protocol.read_connection_lost(&self.transport)
    }

    /// The connection's idle timeout goes off, as a driver delivers it: `protocol` hears
    /// `timeout_connection` (an `IdleTimeout` wrapper's own timer, with no driver here,
    /// closes the connection at once instead).
    pub fn time_out(&mut self, protocol: &mut dyn Protocol) {
        protocol.timeout_connection(&self.transport);
    }

    /// Ends the connection, calling `connection_lost(reason)`.
    pub fn lose(&mut self, protocol: &mut dyn Protocol, reason: CloseReason) {
        self.transport.mark_closed();
        protocol.connection_lost(&reason);
    }

    /// Everything written so far (Twisted's `value()`).
    pub fn value(&mut self) -> &[u8] {
        let fresh = self.transport.take_written();
        self.written.extend_from_slice(&fresh);
        &self.written
    }

    /// Asks the registered pull producer for more, as a driver does once what it wrote has
    /// gone out (here: once [`value`](Self::value) or [`clear`](Self::clear) took it from
    /// the transport's buffer); whether it was asked.
    pub fn produce(&mut self) -> bool {
        match self.transport.take_pull_owed() {
            Some(producer) => {
                producer.resume_producing();
                true
            }
            None => false,
        }
    }

    /// Forgets what was written (Twisted's `clear()`).
    pub fn clear(&mut self) {
        let _ = self.transport.take_written();
        self.written.clear();
    }

    /// Whether the protocol asked to close (Twisted's `disconnecting`).
    pub fn disconnecting(&self) -> bool {
        self.transport.is_disconnecting()
    }

    /// Why the protocol asked to close, if it said.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.transport.shared.reason.borrow().clone()
    }
}
