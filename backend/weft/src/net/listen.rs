//! Listening: bind at once (so "address in use" surfaces at the call, naming the
//! endpoint), then accept on the reactor and serve each connection in its own task.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::accept::{Acceptor, Admit, ListenOptions, Serve, accept_loop};
use super::io::Io;
use super::ports::{PortOpening, PortSocket, SocketKey, StreamSocket};
use super::tls::{self, TlsError};
use crate::address::Address;
use crate::endpoint::{EndpointError, ServerEndpoint};
use crate::observe::{self, Event, ListenerInfo, TransportKind};
use crate::protocol::{Factory, Protocol};
use crate::reactor::Reactor;
use crate::transport::{Stream, Transport};

/// Why listening failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// The endpoint string is malformed.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// Binding failed (for example the port is already in use).
    #[error("cannot listen on {endpoint}: {source}")]
    Bind {
        /// The endpoint asked for.
        endpoint: String,
        /// The system's reason.
        #[source]
        source: io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("cannot listen on {endpoint}: {source}")]
    Tls {
        /// The endpoint asked for.
        endpoint: String,
        /// What was wrong with the key or certificate.
        #[source]
        source: TlsError,
    },
    /// A UDP endpoint was given where a stream endpoint is needed, or the reverse.
    #[error("cannot listen on {endpoint}: {reason}")]
    WrongKind {
        /// The endpoint asked for.
        endpoint: String,
        /// What was expected.
        reason: &'static str,
    },
}

/// A listening port (Twisted's `IListeningPort`): a stream listener, or a UDP port as
/// [`Reactor::listening_ports`] lists it. Dropping it does not stop it.
#[derive(Debug, Clone)]
pub struct ListeningPort {
    info: Arc<ListenerInfo>,
    /// Cancelled by `stop_listening`; the accept loop selects on it.
    stop: CancellationToken,
    /// Its place in the reactor's table of ports.
    id: u64,
}

impl ListeningPort {
    pub(super) fn new(info: Arc<ListenerInfo>, stop: CancellationToken, id: u64) -> Self {
        Self { info, stop, id }
    }

    pub(super) fn id(&self) -> u64 {
        self.id
    }

    /// The address actually bound (with port 0 resolved).
    pub fn local_address(&self) -> &Address {
        &self.info.local
    }

    /// The bound socket address, for IP listeners.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.info.local.socket_addr()
    }

    /// The listener's description.
    pub fn info(&self) -> &ListenerInfo {
        &self.info
    }

    /// Stops accepting (or receiving, for a UDP port); open connections are not
    /// affected.
    pub fn stop_listening(&self) {
        self.stop.cancel();
    }
}

pub(super) fn bind_tcp(
    addr: SocketAddr,
    backlog: u32,
    reuse_port: bool,
) -> io::Result<std::net::TcpListener> {
    let socket = tcp_listening_socket(addr)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(effective_backlog(backlog))?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// A TCP socket to listen on `addr` with, not yet bound: `SO_REUSEADDR` (a restart binds
/// at once beside connections of the last run still closing), and on IPv6 IPv6 alone
/// (`IPV6_V6ONLY`), so `[::]` and an IPv4 address each take their own port, whatever
/// `net.ipv6.bindv6only` says. Every listener weft makes is made so.
pub fn tcp_listening_socket(addr: SocketAddr) -> io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

/// `backlog`, capped by the system's `net.core.somaxconn` (the kernel would cap it
/// silently; capping here keeps what is logged true).
fn effective_backlog(backlog: u32) -> i32 {
    static SOMAXCONN: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    let max = SOMAXCONN.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    let backlog = max.map_or(backlog, |max| backlog.min(max)).max(1);
    i32::try_from(backlog).unwrap_or(i32::MAX)
}

pub(super) fn bind_unix(
    path: &PathBuf,
    mode: Option<u32>,
    backlog: u32,
) -> io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    // A stale socket file from a previous run would make bind fail; remove only sockets,
    // and only one nobody listens on: another program's live socket is its own.
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.file_type().is_socket()
    {
        if unix_socket_served(path) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another process listens on {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    socket.bind(&socket2::SockAddr::unix(path)?)?;
    if let Some(mode) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    socket.listen(effective_backlog(backlog))?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Whether a process listens on the unix socket at `path`: a connection to it is taken
/// (or its backlog is full). A refused one is a socket file left behind.
pub fn unix_socket_served(path: &std::path::Path) -> bool {
    let Ok(socket) = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)
    else {
        return false;
    };
    let Ok(addr) = socket2::SockAddr::unix(path) else {
        return false;
    };
    if socket.set_nonblocking(true).is_err() {
        return false;
    }
    match socket.connect(&addr) {
        Ok(()) => true,
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    }
}

impl Reactor {
    /// Listens on a stream endpoint string (`tcp:`, `tcp6:`, `unix:`, `ssl:`); connections
    /// are reported under the service named by the endpoint string.
    #[track_caller]
    pub fn listen(
        &self,
        endpoint: &str,
        factory: impl Factory,
    ) -> Result<ListeningPort, ListenError> {
        self.listen_as(endpoint, endpoint, factory)
    }

    /// Like [`listen`](Self::listen), reporting connections under `service`.
    #[track_caller]
    pub fn listen_as(
        &self,
        service: &str,
        endpoint: &str,
        factory: impl Factory,
    ) -> Result<ListeningPort, ListenError> {
        self.listen_with(service, endpoint, &ListenOptions::default(), factory)
    }

    /// Like [`listen_as`](Self::listen_as), applying `options` (idle timeout, per-peer
    /// cap) to every connection accepted.
    #[track_caller]
    pub fn listen_with(
        &self,
        service: &str,
        endpoint: &str,
        options: &ListenOptions,
        factory: impl Factory,
    ) -> Result<ListeningPort, ListenError> {
        let parsed: ServerEndpoint = endpoint.parse()?;
        self.listen_endpoint(service, endpoint, &parsed, options, Rc::new(factory))
    }

    /// Listens for TCP connections on `addr` (Twisted's `listenTCP`).
    #[track_caller]
    pub fn listen_tcp(
        &self,
        addr: SocketAddr,
        factory: impl Factory,
    ) -> Result<ListeningPort, ListenError> {
        let endpoint = ServerEndpoint::Tcp {
            addr,
            backlog: crate::endpoint::DEFAULT_BACKLOG,
        };
        let name = endpoint.to_string();
        let options = ListenOptions::default();
        self.listen_endpoint(&name, &name, &endpoint, &options, Rc::new(factory))
    }

    #[track_caller]
    pub(crate) fn listen_endpoint(
        &self,
        service: &str,
        endpoint: &str,
        parsed: &ServerEndpoint,
        options: &ListenOptions,
        factory: Rc<dyn Factory>,
    ) -> Result<ListeningPort, ListenError> {
        self.serve_stream(
            service,
            endpoint,
            parsed,
            options,
            "a udp: endpoint takes a DatagramProtocol (listen_udp)",
            ProtocolAdapter { factory },
        )
    }

    /// Binds a stream endpoint (or takes over the socket a [`Handover`](super::Handover)
    /// offers for its address) and accepts on it in a task, once the port may start,
    /// handing each connection `options` admits to `adapter` through the shared
    /// [`Acceptor`].
    #[track_caller]
    pub(super) fn serve_stream<A: Admit>(
        &self,
        service: &str,
        endpoint: &str,
        parsed: &ServerEndpoint,
        options: &ListenOptions,
        wrong_kind: &'static str,
        adapter: A,
    ) -> Result<ListeningPort, ListenError> {
        let BoundListener {
            socket,
            tls,
            info,
            key,
            fresh,
        } = bind_stream(self, service, endpoint, parsed, options, wrong_kind)?;
        let stop = self.listening_token().child_token();
        let acceptor = Acceptor::new(self, info.clone(), tls, options, adapter);
        let starting = (acceptor.clone(), info.clone());
        let opened = self.inner.ports.open(
            self,
            PortOpening {
                info: info.clone(),
                key,
                socket: PortSocket::Stream(socket.clone()),
                stop: stop.clone(),
                fresh,
            },
            move || {
                let (acceptor, info) = starting;
                acceptor.start();
                observe::emit(|| Event::ListenerStarted(&info));
                tracing::info!(service = %info.service, endpoint = %info.endpoint, local = %info.local, "listening");
            },
        );
        let port = ListeningPort::new(info.clone(), stop.clone(), opened.id());
        let options = options.clone();
        // A listener waits on its peers: idle there is not a stall.
        self.spawn(crate::tasks::awaiting_outside_events(async move {
            if !opened.started(&stop).await {
                return opened.close(false);
            }
            accept_loop(&socket, &info, &options, stop, |stream, peer, slot| {
                acceptor.admit(stream, peer, slot);
            })
            .await;
            acceptor.stop();
            observe::emit(|| Event::ListenerStopped(&info));
            opened.close(true);
        }));
        Ok(port)
    }
}

/// A stream listener bound (or taken over) but not yet accepting.
pub(super) struct BoundListener {
    pub(super) socket: Rc<StreamSocket>,
    pub(super) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(super) info: Arc<ListenerInfo>,
    pub(super) key: Option<SocketKey>,
    /// Whether the socket was bound for this listener (rather than taken over).
    pub(super) fresh: bool,
}

/// Binds a stream endpoint at once (so "address in use" surfaces at the call, naming the
/// endpoint), or takes the socket an open handover offers for its address, and loads its
/// TLS key and certificate first (offering `options`' ALPN protocols); `wrong_kind`
/// explains a `udp:` one.
pub(super) fn bind_stream(
    reactor: &Reactor,
    service: &str,
    endpoint: &str,
    parsed: &ServerEndpoint,
    options: &ListenOptions,
    wrong_kind: &'static str,
) -> Result<BoundListener, ListenError> {
    let bind_err = |source| ListenError::Bind {
        endpoint: endpoint.to_owned(),
        source,
    };
    let (transport, tls, backlog) = match parsed {
        ServerEndpoint::Tcp { backlog, .. } => (TransportKind::Tcp, None, *backlog),
        ServerEndpoint::Ssl {
            backlog,
            private_key,
            cert,
            ..
        } => {
            let acceptor = tls::acceptor(
                cert,
                private_key,
                options.get_alpn_protocols(),
                options.get_sni_certificates(),
            )
            .map_err(|source| ListenError::Tls {
                endpoint: endpoint.to_owned(),
                source,
            })?;
            (TransportKind::Tls, Some(acceptor), *backlog)
        }
        ServerEndpoint::Unix { backlog, .. } => (TransportKind::Unix, None, *backlog),
        _ => {
            return Err(ListenError::WrongKind {
                endpoint: endpoint.to_owned(),
                reason: wrong_kind,
            });
        }
    };
    let (socket, fresh) = match reactor.inner.ports.claim(SocketKey::of(parsed).as_ref()) {
        Some((PortSocket::Stream(socket), before)) => {
            // At the commit: a handover rolled back leaves the socket as the old listener
            // had it.
            let (taken, parsed) = (socket.clone(), parsed.clone());
            reactor
                .inner
                .ports
                .at_commit(move || adopt(&taken, &parsed, &before, backlog));
            (socket, false)
        }
        _ => {
            let _runtime = reactor.runtime_context();
            // One of several reactors: its own socket on the address the others use.
            let group = super::group::current();
            let socket = match parsed {
                ServerEndpoint::Unix { path, mode, .. } => {
                    let l = match group.as_ref().and_then(|g| g.unix(path)) {
                        Some(shared) => shared.map_err(bind_err)?,
                        None => {
                            let l = bind_unix(path, *mode, backlog).map_err(bind_err)?;
                            if let Some(group) = &group {
                                group.record_unix(path, &l).map_err(bind_err)?;
                            }
                            l
                        }
                    };
                    StreamSocket::Unix(tokio::net::UnixListener::from_std(l).map_err(bind_err)?)
                }
                ServerEndpoint::Tcp { addr, .. } | ServerEndpoint::Ssl { addr, .. } => {
                    let at = group.as_ref().map_or(*addr, |g| g.resolve(false, *addr));
                    let l = match &group {
                        Some(g) => g.bind_shared(
                            false,
                            *addr,
                            || tcp_listening_socket(at)?.bind(&at.into()),
                            || bind_tcp(at, backlog, true),
                        ),
                        None => bind_tcp(at, backlog, false),
                    }
                    .map_err(bind_err)?;
                    if let Some(group) = &group {
                        group.record(false, *addr, l.local_addr().map_err(bind_err)?);
                    }
                    StreamSocket::Tcp(tokio::net::TcpListener::from_std(l).map_err(bind_err)?)
                }
                _ => unreachable!("checked above"),
            };
            (Rc::new(socket), true)
        }
    };
    // Asked again: a unix socket's file is there now.
    let key = SocketKey::of(parsed);
    let local = match (&*socket, parsed) {
        (StreamSocket::Tcp(l), _) => Address::Ip(l.local_addr().map_err(bind_err)?),
        (StreamSocket::Unix(_), ServerEndpoint::Unix { path, .. }) => {
            Address::Unix(Some(path.clone()))
        }
        (StreamSocket::Unix(l), _) => Address::Unix(
            l.local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(Into::into)),
        ),
    };
    let info = Arc::new(ListenerInfo {
        service: service.into(),
        endpoint: endpoint.to_owned(),
        transport,
        local,
    });
    Ok(BoundListener {
        socket,
        tls,
        info,
        key,
        fresh,
    })
}

/// Applies what `parsed` asks of a socket taken over from the listener of endpoint
/// `before`, when the handover commits: its backlog (Linux takes a second `listen` as a
/// change of backlog) and a unix socket's mode. Where `before` set a mode and `parsed` sets none, the socket gets the
/// mode a fresh one would have (all permissions the umask leaves), as after a restart; a
/// mode neither set (one changed outside weft, say) is left alone.
fn adopt(socket: &StreamSocket, parsed: &ServerEndpoint, before: &str, backlog: u32) {
    let relisten = match socket {
        StreamSocket::Tcp(l) => socket2::SockRef::from(l).listen(effective_backlog(backlog)),
        StreamSocket::Unix(l) => socket2::SockRef::from(l).listen(effective_backlog(backlog)),
    };
    if let Err(error) = relisten {
        tracing::warn!(%error, backlog, "cannot change the backlog of a listener taken over");
    }
    let ServerEndpoint::Unix { path, mode, .. } = parsed else {
        return;
    };
    let mode = match mode {
        Some(mode) => *mode,
        None => match before.parse::<ServerEndpoint>() {
            Ok(ServerEndpoint::Unix { mode: Some(_), .. }) => match umask() {
                Some(umask) => 0o777 & !umask,
                None => {
                    tracing::warn!(path = %path.display(), "cannot read the umask: the socket keeps the mode= it had");
                    return;
                }
            },
            _ => return,
        },
    };
    use std::os::unix::fs::PermissionsExt;
    if let Err(error) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        tracing::warn!(%error, path = %path.display(), "cannot change the mode of a socket taken over");
    }
}

/// The process's file mode creation mask, as `/proc/self/status` shows it (reading it
/// with `umask(2)` would set it, for a moment, under every other thread).
fn umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let value = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(value.trim(), 8).ok()
}

/// The protocol API over the shared acceptor: the factory builds each connection's
/// protocol, which the shared driver then runs.
struct ProtocolAdapter {
    factory: Rc<dyn Factory>,
}

impl Admit for ProtocolAdapter {
    type Conn = Box<dyn Protocol>;

    fn start(&self) {
        self.factory.start_factory();
    }

    fn stop(&self) {
        self.factory.stop_factory();
    }

    fn build(&self, listener: &ListenerInfo, peer: &Address) -> Result<Self::Conn, &'static str> {
        // A factory that panics refuses the connection; the listener keeps accepting.
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.factory.build_protocol(peer)
        }));
        match built {
            Ok(Some(protocol)) => Ok(protocol),
            Ok(None) => Err(self.factory.refusal_reason()),
            Err(panic) => {
                let message = crate::time::panic_message(&panic);
                tracing::error!(service = %listener.service, %peer, "build_protocol panicked: {message}");
                Err("panic")
            }
        }
    }
}

impl Serve for Box<dyn Protocol> {
    fn serve<S: Stream + Into<Io>>(
        self,
        reactor: &Reactor,
        io: S,
        transport: Transport,
    ) -> impl Future {
        super::run(reactor, io, transport, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unix_socket_another_listener_serves_is_left_to_it_and_a_stale_one_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let live = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let refused = bind_unix(&path, None, 16).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::AddrInUse, "{refused}");
        assert!(unix_socket_served(&path), "still the other listener's");
        drop(live);
        // The file stays behind: stale, so it is replaced.
        assert!(path.exists() && !unix_socket_served(&path));
        let _ours = bind_unix(&path, None, 16).unwrap();
        assert!(unix_socket_served(&path));
    }
}
