//! Sockets: listening and connecting over TCP, Unix and TLS, and UDP endpoints.
//!
//! Every listening port is entered in the reactor's table (`ports`), so a program can list
//! them and hand a port's socket to the listener that replaces it ([`Handover`]).
//!
//! One core serves both ways of using a connection, a [`Protocol`] and an
//! async [`InspectedStream`]; each API is a thin adapter over it:
//!
//! - `listen`: binding (or taking over a socket from a [`Handover`]) and a listener's life
//!   in the reactor's table of ports.
//! - `accept`: the accept loop (per-peer caps, back-off when out of descriptors) and
//!   admission: refusal, registering the connection, the TLS handshake of an `ssl:`
//!   listener, then handing it to the adapter.
//! - `connect`: dialing TCP or Unix within the endpoint's timeout, then TLS.
//! - `tls`: certificates, and both sides of the handshake with its error event.
//! - `open` registers a connection with the reactor and reports it; `report_close`
//!   reports its close with its reason and final counters (`end_unserved` for one whose
//!   TLS handshake did not finish).
//! - The adapters: `listen` and `client` (with `reconnect`) run protocols through the
//!   shared driver (`run`); `stream` wraps the socket in an [`InspectedStream`] for
//!   [`Reactor::listen_stream`] and [`Reactor::connect_stream`].
//! - `udp`: datagram ports, which have no connections; `udp_batch` receives and sends
//!   their datagrams many a system call.

pub(crate) mod accept;
pub(crate) mod client;
pub(crate) mod connect;
pub(crate) mod group;
mod io;
pub(crate) mod listen;
pub(crate) mod ports;
pub(crate) mod reconnect;
pub(crate) mod stream;
pub(crate) mod tls;
pub(crate) mod udp;
mod udp_batch;

pub use accept::{ListenOptions, SocketBuffers};
pub use client::{ClientFactory, Connector};
pub use connect::ConnectError;
pub use group::probe_udp;
pub use listen::{ListenError, ListeningPort, tcp_listening_socket, unix_socket_served};
pub use ports::Handover;
pub use reconnect::ReconnectingClientFactory;
pub use stream::InspectedStream;
pub use tls::{
    CertificateFacts, FilesDigest, SniCertificate, TlsError, check_ca_certs, check_server_files,
};
pub use udp::{
    AnsweringPort, DatagramProtocol, DatagramTransport, MAX_DATAGRAM, MAX_DATAGRAM_V6,
    UdpConnectError, UdpPort, answered_back, answering_port,
};

use std::sync::Arc;

use crate::observe::{self, CloseReason, ConnectionClosed, ConnectionInfo, Event};
use crate::protocol::Protocol;
use crate::reactor::Reactor;
use crate::transport::{Stream, Transport, drive};

/// Registers a new connection with the reactor and reports it; returns its transport.
pub(crate) fn open(reactor: &Reactor, info: Arc<ConnectionInfo>) -> Transport {
    let transport = Transport::new(info.clone());
    reactor
        .inner
        .connections
        .borrow_mut()
        .insert(info.id, transport.clone());
    observe::emit(|| Event::ConnectionOpened(&info));
    crate::tasks::note_connection(info.id);
    tracing::debug!(connection = %info.id, service = %info.service, peer = %info.peer, "connection opened");
    transport
}

/// Serves an [`open`]ed connection with `protocol` until it closes, then reports the close.
pub(crate) async fn run<S: Stream>(
    reactor: &Reactor,
    io: S,
    transport: Transport,
    mut protocol: Box<dyn Protocol>,
) -> CloseReason {
    let info = transport.info().clone();
    let reason = drive(io.driven(), transport.clone(), &mut *protocol).await;

    transport.mark_closed();
    reactor.inner.connections.borrow_mut().remove(&info.id);
    let name = protocol.name();
    crate::transport::guarded(&transport, name, "connection_lost", || {
        protocol.connection_lost(&reason)
    });
    drop(protocol);
    report_close(info, &reason);
    reason
}

/// Ends a connection [`open`]ed but never served (its TLS handshake did not finish):
/// takes it out of the reactor and reports its close, logged unless `already_logged`
/// (what ended it said so, within its own budget).
pub(crate) fn end_unserved(
    reactor: &Reactor,
    transport: &Transport,
    reason: &CloseReason,
    already_logged: bool,
) {
    transport.mark_closed();
    let info = transport.info().clone();
    reactor.inner.connections.borrow_mut().remove(&info.id);
    if already_logged {
        tracing::debug!(connection = %info.id, %reason, "connection closed");
        emit_close(info, reason);
    } else {
        report_close(info, reason);
    }
}

/// Reports the close of a connection already taken out of the reactor: logs it and
/// emits [`Event::ConnectionClosed`] with how long it was open.
pub(crate) fn report_close(info: Arc<ConnectionInfo>, reason: &CloseReason) {
    log_close(&info, reason);
    emit_close(info, reason);
}

/// Emits [`Event::ConnectionClosed`] for a connection already taken out of the reactor.
fn emit_close(info: Arc<ConnectionInfo>, reason: &CloseReason) {
    let duration = info.opened.elapsed();
    observe::emit(|| {
        Event::ConnectionClosed(ConnectionClosed {
            info,
            reason: reason.clone(),
            duration,
        })
    });
}

/// Logs a close: at debug when it ended as either side meant it to or the peer reset it
/// (routine at any real rate), at info when something went wrong here or in the protocol,
/// at most [`LOG_BURST`](observe::LOG_BURST) lines a second for one service and kind of
/// close (10,000 idle connections timing out together are one flood, not 10,000 lines;
/// history and the dashboard still have each).
fn log_close(info: &ConnectionInfo, reason: &CloseReason) {
    let kind = reason.kind();
    if kind.is_routine() {
        tracing::debug!(connection = %info.id, %reason, "connection closed");
        return;
    }
    if let Some(suppressed) = observe::budgeted(&info.service, observe::LogTopic::Close(kind)) {
        tracing::info!(connection = %info.id, service = %info.service, peer = %info.peer, %reason, suppressed, "connection closed");
    }
}
