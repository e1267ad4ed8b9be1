//! weft: Twisted's event-driven networking model on tokio, with an inspector built in.
//!
//! ```no_run
//! use weft::{Protocol, Reactor, Transport, factory};
//!
//! struct Echo;
//!
//! impl Protocol for Echo {
//!     fn data_received(&mut self, transport: &Transport, data: &[u8]) {
//!         transport.write(data);
//!     }
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let reactor = Reactor::new()?;
//!     reactor.listen("tcp:8000", factory(|| Echo))?;
//!     println!("Echo server started on port 8000. Press Ctrl+C to stop.");
//!     reactor.run()?;
//!     Ok(())
//! }
//! ```
//!
//! # Layout
//!
//! - [`reactor`]: the event loop on one thread, its [`ReactorHandle`] for other threads,
//!   shutdown phases with deadlines, reactor-lag measurement.
//! - [`time`]: the [`Clock`] behind [`call_later`] and [`DelayedCall`].
//! - [`protocol`]: the [`Protocol`] and [`Factory`] traits users implement.
//! - [`transport`]: [`Transport`], the write side of a connection, its buffer and
//!   back-pressure, push and pull producers, TLS started on a connection in the clear;
//!   the driver task that reads, calls the protocol and flushes.
//! - [`net`]: TCP, Unix and TLS listeners and connectors, UDP ports.
//! - [`endpoint`]: Twisted's endpoint strings (`tcp:8000:interface=127.0.0.1`).
//! - [`framing`]: `LineReceiver`, `Int32StringReceiver`, `NetstringReceiver`, and
//!   `FileSender`.
//! - [`policies`]: idle timeouts, connection limits, throttling, token buckets by
//!   client prefix, address blocks.
//! - [`defer`]: `Deferred` chains and `Failure`s, traced.
//! - [`task`]: `LoopingCall`, `defer_later`, `defer_to_thread`.
//! - [`tasks`]: every future the reactor runs, inspected like a chain (polls, busy and
//!   idle time, what it awaits; slow, stalled and leaked).
//! - [`observe`]: typed events and the [`Observer`](observe::Observer) trait.
//! - [`testing`]: `StringTransport`, a fake clock, in-memory loopback, a recording observer.
//! - `context`: what weft keeps per thread (the reactor, observer, clock, thresholds,
//!   pending Deferreds), in one struct.
//!
//! Data moves socket → driver (counts bytes) → `Protocol` callbacks → `Transport`
//! writes → driver flush → socket; every step reports to the observer.

pub mod address;
mod context;
pub mod defer;
pub mod endpoint;
pub mod files;
pub mod framing;
pub mod net;
pub mod observe;
pub mod policies;
pub mod protocol;
pub mod reactor;
pub mod task;
pub mod tasks;
pub mod testing;
pub mod time;
pub mod transport;

pub use address::Address;
pub use net::{
    ClientFactory, ConnectError, Connector, DatagramProtocol, DatagramTransport, Handover,
    InspectedStream, ListenError, ListenOptions, ListeningPort, ReconnectingClientFactory, UdpPort,
};
pub use observe::{CloseKind, CloseReason};
pub use protocol::{Factory, HalfClose, Protocol, factory};
pub use reactor::{
    CALL_QUEUE, CallError, Phase, PoolError, Reactor, ReactorConfig, ReactorError, ReactorHandle,
    ReactorPool, ShutdownHold,
};
pub use time::{Clock, DelayedCall, call_later};
pub use transport::{
    Producer, ProducerRegistered, PullProducer, PushProducer, StartTlsError, TlsStart, Transport,
};
