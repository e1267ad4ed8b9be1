//! Accepting, for every stream listener, protocol and async-stream alike.
//!
//! The accept loop applies the listener's [`ListenOptions`] before anything runs: a
//! connection past the total cap, or from a peer over its own, is refused (accepted and
//! reset at once, so no state lingers here and the kernel's queue does not fill) and
//! counted; when
//! the process runs out of file descriptors or memory, accepting backs off instead of
//! spinning, says so once per episode, and counts each failure.
//!
//! An [`Acceptor`] then admits each connection: its [`Admit`] adapter builds what will
//! serve it (or refuses it, counted), the connection is registered with the reactor, an
//! `ssl:` listener runs the TLS handshake (a failure is reported and ends the
//! connection), and the adapter serves it until it ends. Everything but the adapter's
//! two steps is the same for both APIs.

use std::io;
use std::panic::Location;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::io::Io;
use super::ports::StreamSocket;
use super::tls::{self, SniCertificate};
use crate::address::Address;
use crate::observe::{
    self, CloseReason, ConnectionInfo, ErrorKind, Event, ListenerInfo, ProtocolError, Refused,
};
use crate::policies::{PeerLimit, PeerSlot, ProcessSlot, TotalLimit, TotalSlot};
use crate::reactor::Reactor;
use crate::tasks::TaskKind;
use crate::transport::{Stream, Transport};

/// How a listener treats the connections it accepts; the default applies no limits.
///
/// Clones share one [`PeerLimit`] and one [`TotalLimit`], so the listeners of one service
/// given clones of the same options count its connections (a peer's, and all of them)
/// across all of them.
#[derive(Debug, Clone, Default)]
pub struct ListenOptions {
    idle_timeout: Option<Duration>,
    /// Shared by clones, so a service's listeners count a peer's connections across all of them.
    peer_limit: Option<PeerLimit>,
    /// Shared by clones, so a service's listeners count all its connections together.
    total_limit: Option<TotalLimit>,
    /// Offered in the TLS handshake of `ssl:` listeners (ALPN), most preferred first.
    alpn: Vec<Vec<u8>>,
    /// Further certificates of `ssl:` listeners, chosen by SNI.
    sni: Arc<[SniCertificate]>,
    /// Sent by `ssl:` listeners to a peer whose first bytes are not TLS.
    plain_reply: Option<Arc<[u8]>>,
    /// The kernel's buffers of each connection accepted (`SO_SNDBUF`, `SO_RCVBUF`).
    buffers: SocketBuffers,
}

/// The sizes asked of the kernel for each accepted connection's socket buffers, in
/// bytes (`None`: the kernel's own, which it grows to megabytes as a connection needs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketBuffers {
    /// `SO_SNDBUF`: what the kernel holds of what was written and the peer has not
    /// acknowledged.
    pub send: Option<u32>,
    /// `SO_RCVBUF`: what the kernel holds of what the peer sent and was not read yet
    /// (TCP; Linux ignores it on a unix socket, whose sender's buffer bounds both).
    pub receive: Option<u32>,
}

impl SocketBuffers {
    /// Asks the kernel for these sizes on `socket` (Linux doubles each, for its own
    /// bookkeeping, and keeps to its minimums); a size it refuses leaves its own, logged.
    fn apply(&self, socket: socket2::SockRef<'_>) {
        let results = [
            self.send
                .map(|n| ("SO_SNDBUF", socket.set_send_buffer_size(n as usize))),
            self.receive
                .map(|n| ("SO_RCVBUF", socket.set_recv_buffer_size(n as usize))),
        ];
        for (option, result) in results.into_iter().flatten() {
            if let Err(err) = result {
                tracing::debug!(option, %err, "socket buffer size not set");
            }
        }
    }

    fn is_set(&self) -> bool {
        self.send.is_some() || self.receive.is_some()
    }
}

impl ListenOptions {
    /// No idle timeout, no cap per peer or in total.
    pub fn new() -> Self {
        Self::default()
    }

    /// Closes a connection once nothing was read or written for `timeout` (`None` or zero:
    /// never), with reason [`CloseReason::TimedOut`](crate::CloseReason::TimedOut).
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout.filter(|t| !t.is_zero());
        self
    }

    /// The idle timeout set, if any.
    pub fn idle(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// Refuses a connection from a peer that already holds `max` open ones (`None` or 0: no
    /// cap); refusals are reported with reason `limit_peer`.
    pub fn max_connections_per_peer(mut self, max: Option<usize>) -> Self {
        self.peer_limit = max.filter(|&m| m > 0).map(PeerLimit::new);
        self
    }

    /// Counts peers in `limit`, which may be shared with other listeners.
    pub fn peer_limit(mut self, limit: PeerLimit) -> Self {
        self.peer_limit = Some(limit);
        self
    }

    /// Refuses a connection while `max` are open through the listeners sharing these
    /// options (`None` or 0: no cap): it is accepted and reset at once, so the kernel's
    /// accept queue never holds connections waiting for a place, and reported with reason
    /// `limit_total`. Connections already open are not touched.
    pub fn max_connections(mut self, max: Option<usize>) -> Self {
        self.total_limit = max.filter(|&m| m > 0).map(TotalLimit::new);
        self
    }

    /// Counts connections in `limit`, which may be shared with other listeners.
    pub fn total_limit(mut self, limit: TotalLimit) -> Self {
        self.total_limit = Some(limit);
        self
    }

    /// Offers `protocols` (such as `h2`, `http/1.1`) by ALPN in the TLS handshake of an
    /// `ssl:` listener, most preferred first; plain listeners ignore it.
    pub fn alpn_protocols(mut self, protocols: &[&[u8]]) -> Self {
        self.alpn = protocols.iter().map(|p| p.to_vec()).collect();
        self
    }

    /// Sends `reply` to a peer whose first bytes on an `ssl:` listener are not TLS (a
    /// plain HTTP request sent to an HTTPS port, say), before the connection closes as a
    /// failed handshake; plain listeners ignore it. nginx's "The plain HTTP request was
    /// sent to HTTPS port".
    pub fn reply_to_plain_text(mut self, reply: &[u8]) -> Self {
        self.plain_reply = Some(reply.into());
        self
    }

    /// Serves `certificates` on `ssl:` listeners to clients asking for one of their names
    /// (SNI); the endpoint's own certificate remains the default. Plain listeners ignore it.
    pub fn sni_certificates(mut self, certificates: Vec<SniCertificate>) -> Self {
        self.sni = certificates.into();
        self
    }

    /// Asks the kernel to hold at most about `bytes` of each accepted connection's output
    /// not yet acknowledged (`SO_SNDBUF`; `None` or 0: the kernel's own, grown to
    /// megabytes as a connection needs). A peer that never reads then pins that much
    /// kernel memory, not the megabytes autotuning gives a fast one; a fast peer far away
    /// is slowed to about `bytes` a round trip. nginx's `listen ... sndbuf=`.
    pub fn send_buffer(mut self, bytes: Option<u32>) -> Self {
        self.buffers.send = bytes.filter(|&n| n > 0);
        self
    }

    /// Like [`send_buffer`](Self::send_buffer), for what the kernel holds of what each
    /// accepted connection's peer sent and was not read yet (`SO_RCVBUF`, set once the
    /// connection is accepted: it bounds the window advertised from then on). nginx's
    /// `listen ... rcvbuf=`.
    pub fn receive_buffer(mut self, bytes: Option<u32>) -> Self {
        self.buffers.receive = bytes.filter(|&n| n > 0);
        self
    }

    /// The socket buffer sizes asked for each accepted connection.
    pub fn get_socket_buffers(&self) -> SocketBuffers {
        self.buffers
    }

    /// The certificates chosen by SNI, if any.
    pub fn get_sni_certificates(&self) -> &[SniCertificate] {
        &self.sni
    }

    /// The ALPN protocols offered, if any.
    pub fn get_alpn_protocols(&self) -> &[Vec<u8>] {
        &self.alpn
    }

    /// The idle timeout, if any.
    pub fn get_idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// The per-peer cap, if any.
    pub fn get_peer_limit(&self) -> Option<&PeerLimit> {
        self.peer_limit.as_ref()
    }

    /// The total cap, if any.
    pub fn get_total_limit(&self) -> Option<&TotalLimit> {
        self.total_limit.as_ref()
    }

    /// A place for a connection from `peer` under both caps, or why it is refused.
    fn admit(&self, peer: &Address) -> Result<Slots, (&'static str, usize)> {
        let process = ProcessSlot::take().ok_or_else(|| {
            let max = crate::policies::process_connection_limit().unwrap_or(usize::MAX);
            ("limit_process", max)
        })?;
        let total = match &self.total_limit {
            Some(limit) => Some(limit.admit().ok_or(("limit_total", limit.max()))?),
            None => None,
        };
        let peer = match &self.peer_limit {
            Some(limit) => limit.admit(peer).ok_or(("limit_peer", limit.max()))?,
            None => PeerSlot::unlimited(),
        };
        Ok(Slots {
            _process: process,
            _total: total,
            _peer: peer,
        })
    }
}

/// A connection's places under the process's and its listener's caps, held for the
/// connection's life.
pub(super) struct Slots {
    _process: ProcessSlot,
    _total: Option<TotalSlot>,
    _peer: PeerSlot,
}

/// Says, at most every [`CAP_WARNING_INTERVAL`], that a listener is refusing connections
/// over one of its caps: a flood against a cap is one log line every few seconds, which
/// names the cap, the peer refused last (the one a per-peer cap holds back) and how many
/// were refused since the line before.
struct CapWarning {
    /// The refusal's reason, as counted.
    reason: &'static str,
    /// What the line says.
    says: &'static str,
    last: Option<Instant>,
    /// Refusals since the last line.
    unsaid: u64,
}

/// The least time between two "at its connection cap" lines of one listener and cap.
const CAP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

impl CapWarning {
    fn new(reason: &'static str, says: &'static str) -> Self {
        Self {
            reason,
            says,
            last: None,
            unsaid: 0,
        }
    }

    fn refused(&mut self, info: &ListenerInfo, peer: &Address, max: usize) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < CAP_WARNING_INTERVAL)
        {
            self.unsaid += 1;
            return;
        }
        self.last = Some(now);
        let before = std::mem::take(&mut self.unsaid);
        let (service, endpoint) = (&info.service, &info.endpoint);
        tracing::warn!(%service, %endpoint, %peer, max, refused_before = before, "{}", self.says);
    }
}

/// A connection just accepted.
pub(super) enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// The first pause after running out of descriptors or memory; it doubles while the
/// condition lasts...
const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// ... up to this.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Accepts on `socket` until `stop`, handing each admitted connection, its peer and its
/// places under the caps (to be held for the connection's life) to `admit`. The socket may be
/// shared with a listener taking it over: once `stop` is cancelled this loop accepts no
/// more, so every connection after a handover gets the new listener's settings.
pub(super) async fn accept_loop(
    socket: &StreamSocket,
    info: &Arc<ListenerInfo>,
    options: &ListenOptions,
    stop: CancellationToken,
    mut admit: impl FnMut(Accepted, Address, Slots),
) {
    let mut backoff = None::<Duration>;
    let mut warnings = [
        CapWarning::new(
            "limit_total",
            "at its connection cap (max_connections); refusing new connections",
        ),
        CapWarning::new(
            "limit_peer",
            "a peer is at its connection cap (max_connections_per_peer); refusing its new connections",
        ),
        CapWarning::new(
            "limit_process",
            "the process is at its connection cap; refusing new connections",
        ),
    ];
    loop {
        let next = async {
            match socket {
                StreamSocket::Tcp(l) => {
                    let (s, p) = l.accept().await?;
                    io::Result::Ok((Accepted::Tcp(s), Address::Ip(p)))
                }
                StreamSocket::Unix(l) => {
                    let (s, p) = l.accept().await?;
                    Ok((
                        Accepted::Unix(s),
                        Address::Unix(p.as_pathname().map(Into::into)),
                    ))
                }
            }
        };
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            accepted = next => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                if backoff.take().is_some() {
                    tracing::info!(endpoint = %info.endpoint, "accepting again");
                }
                match options.admit(&peer) {
                    Ok(slots) => admit(stream, peer, slots),
                    Err((reason, max)) => {
                        if let Some(warning) = warnings.iter_mut().find(|w| w.reason == reason) {
                            warning.refused(info, &peer, max);
                        }
                        refuse(info, stream, peer, reason, max);
                    }
                }
            }
            Err(err) => {
                observe::emit(|| {
                    Event::ProtocolError(ProtocolError {
                        service: info.service.clone(),
                        connection: None,
                        kind: ErrorKind::Accept,
                        count: 1,
                        message: err.to_string(),
                    })
                });
                if !is_exhaustion(&err) {
                    // One connection's trouble (aborted before we got to it, say).
                    tracing::debug!(endpoint = %info.endpoint, %err, "accept failed");
                    continue;
                }
                let pause = match backoff {
                    None => {
                        tracing::warn!(
                            endpoint = %info.endpoint, %err,
                            "cannot accept: out of resources; backing off until connections close"
                        );
                        BACKOFF_MIN
                    }
                    Some(pause) => (pause * 2).min(BACKOFF_MAX),
                };
                backoff = Some(pause);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

/// Whether an accept error means the process (or system) is out of something, so that
/// retrying at once would only spin: file descriptors, buffers, memory.
fn is_exhaustion(err: &io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        Errno::from_io_error(err),
        Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)
    ) || err.kind() == io::ErrorKind::OutOfMemory
}

/// Turns away a connection over a cap: reset at once (no lingering state for a flood to
/// pile up), reported and counted under `reason`.
fn refuse(info: &ListenerInfo, stream: Accepted, peer: Address, reason: &'static str, max: usize) {
    if let Accepted::Tcp(s) = &stream {
        let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
    }
    drop(stream);
    tracing::debug!(service = %info.service, %peer, max, reason, "connection refused: over a cap");
    emit_refused(info, peer, reason);
}

fn emit_refused(info: &ListenerInfo, peer: Address, reason: &'static str) {
    observe::emit(|| {
        Event::Refused(Refused {
            service: info.service.clone(),
            peer,
            reason,
        })
    });
}

/// What one API does with the connections a listener admits: the two steps in which the
/// protocol path and the async-stream path differ.
pub(super) trait Admit: 'static {
    /// What serves one connection, built as soon as it is accepted.
    type Conn: Serve;
    /// The listener starts accepting.
    fn start(&self) {}
    /// The listener stopped.
    fn stop(&self) {}
    /// Builds what will serve a connection from `peer`, or refuses it with a reason
    /// (a bounded label), which the acceptor reports and counts.
    fn build(&self, listener: &ListenerInfo, peer: &Address) -> Result<Self::Conn, &'static str>;
}

/// Serves one connection, already registered with the reactor, until it ends.
pub(super) trait Serve: 'static {
    /// Serves `io`, whose registration is `transport`. What the future returns is the
    /// adapter's business (the acceptor drops it); an adapter returns its serving future
    /// itself rather than wrapping it, so no task carries a layer of copies it never uses.
    fn serve<S: Stream + Into<Io>>(
        self,
        reactor: &Reactor,
        io: S,
        transport: Transport,
    ) -> impl Future;
}

/// Admits a listener's connections and hands each, registered and handshaken, to its
/// adapter.
pub(super) struct Acceptor<A> {
    reactor: Reactor,
    info: Arc<ListenerInfo>,
    /// Present for `ssl:` listeners: each connection is handshaken once registered.
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Sent to a peer that speaks no TLS on an `ssl:` listener.
    plain_reply: Option<Arc<[u8]>>,
    /// Set on each connection's transport; the reactor's sweep enforces it.
    idle_timeout: Option<Duration>,
    /// Asked of the kernel for each connection's socket.
    buffers: SocketBuffers,
    adapter: A,
    /// The line that asked to listen: each connection's task's spawn site.
    site: &'static Location<'static>,
}

impl<A: Admit> Acceptor<A> {
    #[track_caller]
    pub(super) fn new(
        reactor: &Reactor,
        info: Arc<ListenerInfo>,
        tls: Option<tokio_rustls::TlsAcceptor>,
        options: &ListenOptions,
        adapter: A,
    ) -> Rc<Self> {
        Rc::new(Self {
            reactor: reactor.clone(),
            info,
            tls,
            plain_reply: options.plain_reply.clone(),
            idle_timeout: options.idle_timeout,
            buffers: options.buffers,
            adapter,
            site: Location::caller(),
        })
    }

    pub(super) fn start(&self) {
        self.adapter.start();
    }

    /// Spawns a connection's task, inspected with the listener's site.
    fn spawn(&self, future: impl std::future::Future<Output = ()> + 'static) {
        self.reactor
            .spawn_task(TaskKind::Connection, None, self.site, future);
    }

    pub(super) fn stop(&self) {
        self.adapter.stop();
    }

    /// Builds the connection's server (the adapter may refuse) and serves it in its own
    /// task, which holds the connection's places under the caps for its life.
    pub(super) fn admit(&self, stream: Accepted, peer: Address, slot: Slots) {
        let listener = &self.info;
        let conn = match self.adapter.build(listener, &peer) {
            Ok(conn) => conn,
            Err(reason) => {
                tracing::debug!(service = %listener.service, %peer, reason, "connection refused");
                return emit_refused(listener, peer, reason);
            }
        };
        if self.buffers.is_set() {
            match &stream {
                Accepted::Tcp(s) => self.buffers.apply(socket2::SockRef::from(s)),
                Accepted::Unix(s) => self.buffers.apply(socket2::SockRef::from(s)),
            }
        }
        let admitted = Admitted {
            reactor: self.reactor.clone(),
            listener: listener.clone(),
            idle_timeout: self.idle_timeout,
            peer,
            conn,
        };
        // One spawn per kind: a task's future is as large as its largest state, and the
        // TLS states (a rustls connection) must not be paid for by every plain connection.
        // Each task holds the connection's places until it is gone.
        match (stream, self.tls.clone()) {
            (Accepted::Tcp(s), None) => self.spawn(async move {
                let _slot = slot;
                let local = admitted.local_of(&s);
                let (reactor, conn, transport) = admitted.register(local);
                conn.serve(&reactor, s, transport).await;
            }),
            // Registered before its handshake: a peer that connects and never finishes
            // one is listed and counted, can be closed from the dashboard, is drained
            // with its service and cut by the idle timeout, as any other connection.
            (Accepted::Tcp(s), Some(acceptor)) => {
                let reply = self.plain_reply.clone();
                self.spawn(Box::pin(async move {
                    let _slot = slot;
                    let local = admitted.local_of(&s);
                    let (reactor, conn, transport) = admitted.register(local);
                    match tls::handshake(acceptor, s, &transport, reply.as_deref()).await {
                        Ok(s) => {
                            conn.serve(&reactor, s, transport).await;
                        }
                        Err(tls::HandshakeFailed::Cut) => {
                            let reason = transport.take_reason(CloseReason::Aborted);
                            super::end_unserved(&reactor, &transport, &reason, false);
                        }
                        Err(tls::HandshakeFailed::Peer(err)) => {
                            tls::report_handshake_failure(transport.info(), &err);
                            // A peer that hung up (a port scan, a balancer's TCP check)
                            // closed as on a plain port; what it sent that is not TLS is
                            // its protocol error.
                            let reason = match CloseReason::from_io(&err) {
                                CloseReason::Error(_) => {
                                    CloseReason::Protocol(format!("TLS handshake failed: {err}"))
                                }
                                reason => reason,
                            };
                            super::end_unserved(&reactor, &transport, &reason, true);
                        }
                    }
                }))
            }
            (Accepted::Unix(s), _) => self.spawn(async move {
                let _slot = slot;
                let local = admitted.listener.local.clone();
                let (reactor, conn, transport) = admitted.register(local);
                conn.serve(&reactor, s, transport).await;
            }),
        }
    }
}

/// A connection admitted, on its way to being registered and served.
struct Admitted<C> {
    reactor: Reactor,
    listener: Arc<ListenerInfo>,
    idle_timeout: Option<Duration>,
    peer: Address,
    conn: C,
}

impl<C: Serve> Admitted<C> {
    /// The address the peer reached, which for a wildcard listener is more than the
    /// listener's own.
    fn local_of(&self, s: &tokio::net::TcpStream) -> Address {
        s.local_addr()
            .map_or_else(|_| self.listener.local.clone(), Address::Ip)
    }

    /// Registers the connection with the reactor, which hands back what serves it.
    ///
    /// Synchronous on purpose: every connection task lives as long as its connection, and
    /// an `async` step here would keep a second copy of the admitted state and the socket
    /// in each task's future for the connection's whole life.
    fn register(self, local: Address) -> (Reactor, C, Transport) {
        let listener = &self.listener;
        let info = ConnectionInfo::new(
            listener.service.clone(),
            listener.transport,
            self.peer,
            local,
        );
        let transport = super::open(&self.reactor, info);
        transport.set_idle_timeout(self.idle_timeout);
        (self.reactor, self.conn, transport)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::ListenOptions;

    #[test]
    fn a_zero_timeout_or_cap_means_none_rather_than_closing_or_refusing_everything() {
        let options = ListenOptions::new()
            .idle_timeout(Some(Duration::ZERO))
            .max_connections_per_peer(Some(0))
            .max_connections(Some(0));
        assert_eq!(options.idle_timeout, None);
        assert!(options.peer_limit.is_none());
        assert!(options.total_limit.is_none());
        let options = ListenOptions::new()
            .idle_timeout(Some(Duration::from_secs(1)))
            .max_connections_per_peer(Some(1))
            .max_connections(Some(1));
        assert_eq!(options.idle_timeout, Some(Duration::from_secs(1)));
        assert!(options.peer_limit.is_some());
        assert!(options.total_limit.is_some());
    }
}
