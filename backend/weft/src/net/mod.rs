//! Sockets: listening and connecting over TCP, Unix and TLS, and UDP endpoints.
//!
//! Every listening port is entered in the reactor's table (`ports`), so a program can list
//! them and hand a port's socket to the listener that replaces it ([`Handover`]).
//!
//! Every transport kind ends in the same place: `serve` registers the connection with
//! the reactor, reports it to the observer, runs the protocol through the shared
//! driver, and reports the close with its reason and final counters. Async code that
//! wants a byte stream instead of callbacks gets the same through
//! [`Reactor::listen_stream`] and [`Reactor::connect_stream`].

pub(crate) mod accept;
pub(crate) mod connect;
pub(crate) mod listen;
pub(crate) mod ports;
pub(crate) mod stream;
pub(crate) mod tls;
pub(crate) mod udp;

pub use accept::ListenOptions;
pub use connect::{ClientFactory, ConnectError, Connector, ReconnectingClientFactory};
pub use listen::{ListenError, ListeningPort};
pub use ports::Handover;
pub use stream::InspectedStream;
pub use tls::{TlsError, check_ca_certs, check_server_files};
pub use udp::{DatagramProtocol, DatagramTransport, MAX_DATAGRAM, UdpPort};

use std::sync::Arc;

use crate::observe::{self, CloseReason, ConnectionClosed, ConnectionInfo, Event};
use crate::protocol::Protocol;
use crate::reactor::Reactor;
use crate::transport::{Stream, Transport, drive};

/// Runs `protocol` on `io` until the connection closes; returns why it closed.
pub(crate) async fn serve<S: Stream>(
    reactor: &Reactor,
    io: S,
    info: Arc<ConnectionInfo>,
    protocol: Box<dyn Protocol>,
    idle_timeout: Option<std::time::Duration>,
) -> CloseReason {
    let transport = open(reactor, info);
    transport.set_idle_timeout(idle_timeout);
    run(reactor, io, transport, protocol).await
}

/// Registers a new connection with the reactor and reports it; returns its transport.
/// Logs a close: at debug when it ended as either side meant it to or the peer reset it
/// (routine at any real rate), at info when something went wrong here or in the protocol.
pub(crate) fn log_close(info: &ConnectionInfo, reason: &CloseReason) {
    if reason.is_routine() {
        tracing::debug!(connection = %info.id, %reason, "connection closed");
    } else {
        tracing::info!(connection = %info.id, service = %info.service, peer = %info.peer, %reason, "connection closed");
    }
}

pub(crate) fn open(reactor: &Reactor, info: Arc<ConnectionInfo>) -> Transport {
    let transport = Transport::new(info.clone());
    reactor
        .inner
        .connections
        .borrow_mut()
        .insert(info.id, transport.clone());
    observe::emit(|| Event::ConnectionOpened(&info));
    tracing::debug!(connection = %info.id, service = %info.service, peer = %info.peer, "connection opened");
    transport
}

/// Serves an [`open`]ed connection until it closes, then reports the close.
pub(crate) async fn run<S: Stream>(
    reactor: &Reactor,
    io: S,
    transport: Transport,
    mut protocol: Box<dyn Protocol>,
) -> CloseReason {
    let info = transport.info().clone();
    let reason = drive(io, transport.clone(), &mut *protocol).await;

    transport.mark_closed();
    reactor.inner.connections.borrow_mut().remove(&info.id);
    let name = protocol.name();
    crate::transport::guarded(&transport, name, "connection_lost", || {
        protocol.connection_lost(&reason)
    });
    drop(protocol);
    let duration = info.opened.elapsed();
    log_close(&info, &reason);
    observe::emit(|| {
        Event::ConnectionClosed(ConnectionClosed {
            info: info.clone(),
            reason: reason.clone(),
            duration,
        })
    });
    reason
}
