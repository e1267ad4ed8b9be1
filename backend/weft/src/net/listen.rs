//! Listening: bind at once (so "address in use" surfaces at the call, naming the
//! endpoint), then accept on the reactor and serve each connection in its own task.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::accept::{Accepted, ListenOptions, accept_loop};
use super::serve;
use super::tls::{self, TlsError};
use crate::address::Address;
use crate::endpoint::{EndpointError, ServerEndpoint};
use crate::observe::{self, ConnectionInfo, Event, ListenerInfo, Refused, TransportKind};
use crate::policies::PeerSlot;
use crate::protocol::Factory;
use crate::reactor::Reactor;

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

/// A listening port (Twisted's `IListeningPort`). Dropping it does not stop it.
#[derive(Debug, Clone)]
pub struct ListeningPort {
    info: Arc<ListenerInfo>,
    stop: CancellationToken,
}

impl ListeningPort {
    pub(super) fn new(info: Arc<ListenerInfo>, stop: CancellationToken) -> Self {
        Self { info, stop }
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

    /// Stops accepting; open connections are not affected.
    pub fn stop_listening(&self) {
        self.stop.cancel();
    }
}

pub(super) enum Bound {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener, PathBuf),
}

pub(super) fn bind_tcp(addr: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(effective_backlog(backlog))?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
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
    // A stale socket file from a previous run would make bind fail; remove only sockets.
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.file_type().is_socket()
    {
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

impl Reactor {
    /// Listens on a stream endpoint string (`tcp:`, `tcp6:`, `unix:`, `ssl:`); connections
    /// are reported under the service named by the endpoint string.
    pub fn listen(
        &self,
        endpoint: &str,
        factory: impl Factory,
    ) -> Result<ListeningPort, ListenError> {
        self.listen_as(endpoint, endpoint, factory)
    }

    /// Like [`listen`](Self::listen), reporting connections under `service`.
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

    pub(crate) fn listen_endpoint(
        &self,
        service: &str,
        endpoint: &str,
        parsed: &ServerEndpoint,
        options: &ListenOptions,
        factory: Rc<dyn Factory>,
    ) -> Result<ListeningPort, ListenError> {
        let BoundListener {
            bound,
            tls: acceptor_tls,
            info,
        } = bind_stream(
            service,
            endpoint,
            parsed,
            "a udp: endpoint takes a DatagramProtocol (listen_udp)",
        )?;
        let stop = self.listening_token().child_token();
        let port = ListeningPort {
            info: info.clone(),
            stop: stop.clone(),
        };
        factory.start_factory();
        observe::emit(|| Event::ListenerStarted(&info));
        tracing::info!(service, endpoint, local = %info.local, "listening");
        let acceptor = ProtocolAcceptor {
            reactor: self.clone(),
            info: info.clone(),
            tls: acceptor_tls,
            idle_timeout: options.get_idle_timeout(),
            factory: factory.clone(),
        };
        let options = options.clone();
        self.spawn(async move {
            accept_loop(bound, &info, &options, stop, |stream, peer, slot| {
                acceptor.admit(stream, peer, slot);
            })
            .await;
            factory.stop_factory();
            observe::emit(|| Event::ListenerStopped(&info));
            if let Address::Unix(Some(path)) = &info.local {
                let _ = std::fs::remove_file(path);
            }
        });
        Ok(port)
    }
}

/// A stream listener bound but not yet accepting.
pub(super) struct BoundListener {
    pub(super) bound: Bound,
    pub(super) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(super) info: Arc<ListenerInfo>,
}

/// Binds a stream endpoint at once (so "address in use" surfaces at the call, naming the
/// endpoint) and loads its TLS key and certificate; `wrong_kind` explains a `udp:` one.
pub(super) fn bind_stream(
    service: &str,
    endpoint: &str,
    parsed: &ServerEndpoint,
    wrong_kind: &'static str,
) -> Result<BoundListener, ListenError> {
    let bind_err = |source| ListenError::Bind {
        endpoint: endpoint.to_owned(),
        source,
    };
    let (bound, transport, tls) = match parsed {
        ServerEndpoint::Tcp { addr, backlog } => (
            Bound::Tcp(bind_tcp(*addr, *backlog).map_err(bind_err)?),
            TransportKind::Tcp,
            None,
        ),
        ServerEndpoint::Ssl {
            addr,
            backlog,
            private_key,
            cert,
        } => {
            let acceptor = tls::acceptor(cert, private_key).map_err(|source| ListenError::Tls {
                endpoint: endpoint.to_owned(),
                source,
            })?;
            (
                Bound::Tcp(bind_tcp(*addr, *backlog).map_err(bind_err)?),
                TransportKind::Tls,
                Some(acceptor),
            )
        }
        ServerEndpoint::Unix {
            path,
            mode,
            backlog,
        } => (
            Bound::Unix(
                bind_unix(path, *mode, *backlog).map_err(bind_err)?,
                path.clone(),
            ),
            TransportKind::Unix,
            None,
        ),
        _ => {
            return Err(ListenError::WrongKind {
                endpoint: endpoint.to_owned(),
                reason: wrong_kind,
            });
        }
    };
    let local = match &bound {
        Bound::Tcp(l) => Address::Ip(l.local_addr().map_err(bind_err)?),
        Bound::Unix(_, path) => Address::Unix(Some(path.clone())),
    };
    let info = Arc::new(ListenerInfo {
        service: service.into(),
        endpoint: endpoint.to_owned(),
        transport,
        local,
    });
    Ok(BoundListener { bound, tls, info })
}

/// What a protocol listener needs for each connection it accepts.
struct ProtocolAcceptor {
    reactor: Reactor,
    info: Arc<ListenerInfo>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    idle_timeout: Option<Duration>,
    factory: Rc<dyn Factory>,
}

impl ProtocolAcceptor {
    /// Builds the connection's protocol (the factory may refuse) and serves it in its own
    /// task, which holds the peer's slot for the connection's life.
    fn admit(&self, stream: Accepted, peer: Address, slot: PeerSlot) {
        let listener = &self.info;
        // A factory that panics refuses the connection; the listener keeps accepting.
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.factory.build_protocol(&peer)
        }));
        let (protocol, reason) = match built {
            Ok(Some(protocol)) => (Some(protocol), ""),
            Ok(None) => (None, self.factory.refusal_reason()),
            Err(panic) => {
                let message = crate::time::panic_message(&panic);
                tracing::error!(service = %listener.service, %peer, "build_protocol panicked: {message}");
                (None, "panic")
            }
        };
        let Some(protocol) = protocol else {
            tracing::debug!(service = %listener.service, %peer, reason, "connection refused");
            observe::emit(|| {
                Event::Refused(Refused {
                    service: listener.service.clone(),
                    peer: peer.clone(),
                    reason,
                })
            });
            return;
        };
        let (reactor, idle_timeout) = (&self.reactor, self.idle_timeout);
        let local = listener.local.clone();
        let service = listener.service.clone();
        let transport = listener.transport;
        let r = reactor.clone();
        // One spawn per kind: a task's future is as large as its largest state, and the
        // TLS states (a rustls connection) must not be paid for by every plain connection.
        // Each task holds the peer's slot until the connection is gone.
        match (stream, self.tls.clone()) {
            (Accepted::Tcp(s), None) => reactor.spawn(async move {
                let _slot = slot;
                let local = s.local_addr().map(Address::Ip).unwrap_or(local);
                let info = ConnectionInfo::new(service, transport, peer, local);
                serve(&r, s, info, protocol, idle_timeout).await;
            }),
            (Accepted::Tcp(s), Some(acceptor)) => reactor.spawn(Box::pin(async move {
                let _slot = slot;
                let local = s.local_addr().map(Address::Ip).unwrap_or(local);
                match tls::handshake(acceptor, s).await {
                    Ok(s) => {
                        let info = ConnectionInfo::new(service, transport, peer, local);
                        serve(&r, s, info, protocol, idle_timeout).await;
                    }
                    Err(err) => tls::report_handshake_failure(&service, &peer, &err),
                }
            })),
            (Accepted::Unix(s), _) => reactor.spawn(async move {
                let _slot = slot;
                let info = ConnectionInfo::new(service, transport, peer, local);
                serve(&r, s, info, protocol, idle_timeout).await;
            }),
        }
    }
}
