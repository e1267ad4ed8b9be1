//! Outgoing connections: `Connector`, `ClientFactory` and `ReconnectingClientFactory`.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::tls;
use crate::address::Address;
use crate::endpoint::{ClientEndpoint, EndpointError};
use crate::observe::{
    self, CloseReason, ConnectionInfo, ErrorKind, Event, ProtocolError, TransportKind,
};
use crate::protocol::{Factory, Protocol};
use crate::reactor::Reactor;
use crate::time::{DelayedCall, call_later};
use crate::transport::Transport;

/// Why an outgoing connection failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Nothing listens there.
    #[error("connecting to {endpoint}: connection refused")]
    Refused {
        /// Where.
        endpoint: String,
    },
    /// The connection did not complete within its timeout.
    #[error("connecting to {endpoint}: timed out after {after:?}")]
    TimedOut {
        /// Where.
        endpoint: String,
        /// The timeout.
        after: Duration,
    },
    /// The attempt was cancelled (`stop_connecting`).
    #[error("connecting to {endpoint}: cancelled")]
    Cancelled {
        /// Where.
        endpoint: String,
    },
    /// The factory declined to build a protocol.
    #[error("connecting to {endpoint}: the factory built no protocol")]
    NoProtocol {
        /// Where.
        endpoint: String,
    },
    /// Any other failure: name resolution, TLS, an I/O error.
    #[error("connecting to {endpoint}: {reason}")]
    Failed {
        /// Where.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
}

impl ConnectError {
    pub(super) fn io(endpoint: &str, err: &std::io::Error) -> Self {
        let endpoint = endpoint.to_owned();
        match err.kind() {
            std::io::ErrorKind::ConnectionRefused => Self::Refused { endpoint },
            _ => Self::Failed {
                endpoint,
                reason: err.to_string(),
            },
        }
    }
}

/// A factory for outgoing connections (Twisted's `ClientFactory`).
pub trait ClientFactory: Factory {
    /// A connection attempt started.
    fn started_connecting(&self, connector: &Connector) {
        let _ = connector;
    }
    /// The attempt failed.
    fn client_connection_failed(&self, connector: &Connector, reason: &ConnectError) {
        let _ = (connector, reason);
    }
    /// An established connection closed.
    fn client_connection_lost(&self, connector: &Connector, reason: &CloseReason) {
        let _ = (connector, reason);
    }
}

impl<F: ClientFactory + ?Sized> ClientFactory for Rc<F> {
    fn started_connecting(&self, connector: &Connector) {
        (**self).started_connecting(connector);
    }
    fn client_connection_failed(&self, connector: &Connector, reason: &ConnectError) {
        (**self).client_connection_failed(connector, reason);
    }
    fn client_connection_lost(&self, connector: &Connector, reason: &CloseReason) {
        (**self).client_connection_lost(connector, reason);
    }
}

/// Where a [`Connector`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorState {
    /// Not connected, not trying.
    Disconnected,
    /// An attempt is in progress.
    Connecting,
    /// Connected.
    Connected,
}

struct ConnectorInner {
    endpoint: ClientEndpoint,
    /// The endpoint as written, naming the destination in errors and logs.
    name: String,
    /// The service its connections are counted under.
    service: Arc<str>,
    factory: Rc<dyn ClientFactory>,
    /// Lets `connect` do nothing unless disconnected, and `disconnect` choose between cancelling
    /// and closing.
    state: Cell<ConnectorState>,
    /// Cancels the attempt in progress (`stop_connecting`); cleared once it ends.
    attempt: RefCell<Option<CancellationToken>>,
    /// The open connection, if any, so `disconnect` can close it.
    transport: RefCell<Option<Transport>>,
}

/// One outgoing connection, which can be retried (Twisted's `IConnector`).
#[derive(Clone)]
pub struct Connector {
    inner: Rc<ConnectorInner>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("destination", &self.inner.name)
            .field("state", &self.inner.state.get())
            .finish()
    }
}

impl Connector {
    /// Where it connects to.
    pub fn destination(&self) -> &ClientEndpoint {
        &self.inner.endpoint
    }

    /// Where it is.
    pub fn state(&self) -> ConnectorState {
        self.inner.state.get()
    }

    /// The connection's transport, while connected.
    pub fn transport(&self) -> Option<Transport> {
        self.inner.transport.borrow().clone()
    }

    /// Starts a connection attempt (again). No effect unless disconnected.
    pub fn connect(&self) {
        if self.inner.state.get() != ConnectorState::Disconnected {
            return;
        }
        let reactor = Reactor::current();
        let token = reactor.listening_token().child_token();
        *self.inner.attempt.borrow_mut() = Some(token.clone());
        self.inner.state.set(ConnectorState::Connecting);
        self.inner.factory.started_connecting(self);
        let this = self.clone();
        let task_reactor = reactor.clone();
        reactor.spawn(async move {
            // The token cancels connecting only; an established connection is served
            // (and at shutdown, drained) like any other.
            let result = open(
                &task_reactor,
                &this.inner.endpoint,
                &this.inner.name,
                this.inner.service.clone(),
                &*this.inner.factory,
                &token,
                |t| {
                    *this.inner.transport.borrow_mut() = Some(t.clone());
                    this.inner.state.set(ConnectorState::Connected);
                },
            )
            .await;
            this.inner.attempt.borrow_mut().take();
            this.inner.transport.borrow_mut().take();
            this.inner.state.set(ConnectorState::Disconnected);
            match result {
                Ok(reason) => this.inner.factory.client_connection_lost(&this, &reason),
                Err(err) => {
                    report_connect_failure(&this.inner.service, &err);
                    this.inner.factory.client_connection_failed(&this, &err);
                }
            }
        });
    }

    /// Cancels an attempt in progress.
    pub fn stop_connecting(&self) {
        if self.inner.state.get() == ConnectorState::Connecting
            && let Some(token) = self.inner.attempt.borrow().as_ref()
        {
            token.cancel();
        }
    }

    /// Closes the connection, or cancels the attempt.
    pub fn disconnect(&self) {
        match self.inner.state.get() {
            ConnectorState::Connecting => self.stop_connecting(),
            ConnectorState::Connected => {
                if let Some(t) = self.transport() {
                    t.lose_connection();
                }
            }
            ConnectorState::Disconnected => {}
        }
    }
}

pub(super) fn report_connect_failure(service: &Arc<str>, err: &ConnectError) {
    tracing::info!(%service, %err, "connection attempt failed");
    observe::emit(|| {
        Event::ProtocolError(ProtocolError {
            service: service.clone(),
            connection: None,
            kind: ErrorKind::ConnectFailed,
            message: err.to_string(),
        })
    });
}

/// Connects, builds the protocol, and serves it; `Ok` carries why the connection closed.
async fn open(
    reactor: &Reactor,
    endpoint: &ClientEndpoint,
    name: &str,
    service: Arc<str>,
    factory: &dyn Factory,
    cancel: &CancellationToken,
    on_connected: impl FnOnce(&Transport),
) -> Result<CloseReason, ConnectError> {
    match endpoint {
        ClientEndpoint::Tcp {
            host,
            port,
            timeout,
            bind_address,
        }
        | ClientEndpoint::Ssl {
            host,
            port,
            timeout,
            bind_address,
            ..
        } => {
            let stream = within(
                name,
                *timeout,
                cancel,
                connect_tcp(host, *port, *bind_address),
            )
            .await?;
            let peer = Address::Ip(stream.peer_addr().map_err(|e| ConnectError::io(name, &e))?);
            let local = Address::Ip(
                stream
                    .local_addr()
                    .map_err(|e| ConnectError::io(name, &e))?,
            );
            let protocol =
                factory
                    .build_protocol(&peer)
                    .ok_or_else(|| ConnectError::NoProtocol {
                        endpoint: name.to_owned(),
                    })?;
            if let ClientEndpoint::Ssl { ca_certs, .. } = endpoint {
                let connector =
                    tls::connector(ca_certs.as_deref()).map_err(|e| ConnectError::Failed {
                        endpoint: name.to_owned(),
                        reason: e.to_string(),
                    })?;
                let stream = within(
                    name,
                    *timeout,
                    cancel,
                    tls::connect(connector, host, stream),
                )
                .await?;
                let info = ConnectionInfo::new(service, TransportKind::Tls, peer, local);
                Ok(serve_reporting(reactor, stream, info, protocol, on_connected).await)
            } else {
                let info = ConnectionInfo::new(service, TransportKind::Tcp, peer, local);
                Ok(serve_reporting(reactor, stream, info, protocol, on_connected).await)
            }
        }
        ClientEndpoint::Unix { path, timeout } => {
            let stream = within(
                name,
                *timeout,
                cancel,
                tokio::net::UnixStream::connect(path),
            )
            .await?;
            let peer = Address::Unix(Some(path.clone()));
            let protocol =
                factory
                    .build_protocol(&peer)
                    .ok_or_else(|| ConnectError::NoProtocol {
                        endpoint: name.to_owned(),
                    })?;
            let info = ConnectionInfo::new(service, TransportKind::Unix, peer, Address::Unix(None));
            Ok(serve_reporting(reactor, stream, info, protocol, on_connected).await)
        }
    }
}

/// Connects over TCP to `host:port`, from `bind_address` when one is given (Twisted's
/// `bindAddress`): each resolved address of the bind address's family is tried in turn.
pub(super) async fn connect_tcp(
    host: &str,
    port: u16,
    bind_address: Option<SocketAddr>,
) -> std::io::Result<tokio::net::TcpStream> {
    let Some(local) = bind_address else {
        return tokio::net::TcpStream::connect((host, port)).await;
    };
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        if addr.is_ipv4() != local.is_ipv4() {
            continue;
        }
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // An address that is not local here fails for every destination alike.
        socket
            .bind(local)
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot bind to {local}: {e}")))?;
        match socket.connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!("{host} has no address of the family of bindAddress {local}"),
        )
    }))
}

/// Awaits a connection attempt for at most `timeout`, or until `cancel`.
pub(super) async fn within<S>(
    name: &str,
    timeout: Duration,
    cancel: &CancellationToken,
    attempt: impl std::future::Future<Output = std::io::Result<S>>,
) -> Result<S, ConnectError> {
    tokio::select! {
        _ = cancel.cancelled() => Err(ConnectError::Cancelled { endpoint: name.to_owned() }),
        result = tokio::time::timeout(timeout, attempt) => match result {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(err)) => Err(ConnectError::io(name, &err)),
            Err(_) => Err(ConnectError::TimedOut { endpoint: name.to_owned(), after: timeout }),
        },
    }
}

/// Serves a connection, telling `on_connected` its transport once it is registered.
async fn serve_reporting<S: crate::transport::Stream>(
    reactor: &Reactor,
    io: S,
    info: Arc<ConnectionInfo>,
    protocol: Box<dyn Protocol>,
    on_connected: impl FnOnce(&Transport),
) -> CloseReason {
    let transport = super::open(reactor, info);
    on_connected(&transport);
    super::run(reactor, io, transport, protocol).await
}

impl Reactor {
    /// Connects to an endpoint string (`tcp:HOST:PORT`, `unix:PATH`, `ssl:HOST:PORT`)
    /// with a client factory (Twisted's `connectTCP` and friends).
    pub fn connect_with(
        &self,
        endpoint: &str,
        factory: impl ClientFactory,
    ) -> Result<Connector, EndpointError> {
        let parsed: ClientEndpoint = endpoint.parse()?;
        Ok(self.connector(parsed, endpoint.to_owned(), Rc::new(factory)))
    }

    /// Connects over TCP (Twisted's `connectTCP`).
    pub fn connect_tcp(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
        factory: impl ClientFactory,
    ) -> Connector {
        let endpoint = ClientEndpoint::Tcp {
            host: host.to_owned(),
            port,
            timeout,
            bind_address: None,
        };
        self.connector(endpoint, format!("tcp:{host}:{port}"), Rc::new(factory))
    }

    fn connector(
        &self,
        endpoint: ClientEndpoint,
        name: String,
        factory: Rc<dyn ClientFactory>,
    ) -> Connector {
        let connector = Connector {
            inner: Rc::new(ConnectorInner {
                endpoint,
                service: name.as_str().into(),
                name,
                factory,
                state: Cell::new(ConnectorState::Disconnected),
                attempt: RefCell::new(None),
                transport: RefCell::new(None),
            }),
        };
        connector.connect();
        connector
    }

    /// Connects and runs `protocol`; resolves to its transport once connected. The
    /// connection is reported under the endpoint string as its service.
    pub async fn connect(
        &self,
        endpoint: &str,
        protocol: impl Protocol,
    ) -> Result<Transport, ConnectError> {
        self.connect_as(endpoint, endpoint, protocol).await
    }

    /// Like [`connect`](Self::connect), reporting the connection under `service` (a
    /// proxy names its upstream connections after itself).
    pub async fn connect_as(
        &self,
        service: &str,
        endpoint: &str,
        protocol: impl Protocol,
    ) -> Result<Transport, ConnectError> {
        let parsed: ClientEndpoint =
            endpoint
                .parse()
                .map_err(|e: EndpointError| ConnectError::Failed {
                    endpoint: endpoint.to_owned(),
                    reason: e.to_string(),
                })?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let once = OneShotFactory(RefCell::new(Some(Box::new(protocol))));
        let reactor = self.clone();
        let name = endpoint.to_owned();
        let service: Arc<str> = service.into();
        self.spawn(async move {
            let mut tx = Some(tx);
            let cancel = reactor.listening_token();
            let result = open(
                &reactor,
                &parsed,
                &name,
                service.clone(),
                &once,
                &cancel,
                |t| {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(Ok(t.clone()));
                    }
                },
            )
            .await;
            if let (Err(err), Some(tx)) = (result, tx.take()) {
                report_connect_failure(&service, &err);
                let _ = tx.send(Err(err));
            }
        });
        rx.await.unwrap_or_else(|_| {
            Err(ConnectError::Cancelled {
                endpoint: endpoint.to_owned(),
            })
        })
    }
}

struct OneShotFactory(RefCell<Option<Box<dyn Protocol>>>);

impl Factory for OneShotFactory {
    fn build_protocol(&self, _peer: &Address) -> Option<Box<dyn Protocol>> {
        self.0.borrow_mut().take()
    }
}

/// Reconnects with exponential back-off (Twisted's `ReconnectingClientFactory`).
///
/// Each failure or loss multiplies the delay by `factor` (with random `jitter`), up to
/// `max_delay`; a successful connection resets it. Gives up after `max_retries`.
pub struct ReconnectingClientFactory<F> {
    inner: F,
    /// First retry delay.
    pub initial_delay: Duration,
    /// Multiplier per retry (Twisted: e).
    pub factor: f64,
    /// Relative random spread of each delay (Twisted: 0.1196…).
    pub jitter: f64,
    /// Upper bound on the delay.
    pub max_delay: Duration,
    /// Give up after this many consecutive retries.
    pub max_retries: Option<u32>,
    /// The wait before the next retry: grows by `factor` per retry, back to `initial_delay` on
    /// success.
    delay: Cell<Duration>,
    /// Consecutive retries since the last success, checked against `max_retries`.
    retries: Cell<u32>,
    /// Cleared by `stop_trying` or when `max_retries` is exceeded: no more retries are scheduled.
    trying: Cell<bool>,
    /// The scheduled retry, kept so `stop_trying` can cancel it.
    pending: RefCell<Option<DelayedCall>>,
}

impl<F: Factory> ReconnectingClientFactory<F> {
    /// Wraps a protocol factory with Twisted's default policy.
    pub fn new(inner: F) -> Self {
        Self {
            inner,
            initial_delay: Duration::from_secs(1),
            factor: std::f64::consts::E,
            jitter: 0.119_626_565_582,
            max_delay: Duration::from_secs(3600),
            max_retries: None,
            delay: Cell::new(Duration::from_secs(1)),
            retries: Cell::new(0),
            trying: Cell::new(true),
            pending: RefCell::new(None),
        }
    }

    /// Sets the first delay.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self.delay.set(delay);
        self
    }

    /// Sets the growth factor, jitter, cap and retry limit.
    pub fn policy(
        mut self,
        factor: f64,
        jitter: f64,
        max_delay: Duration,
        max_retries: Option<u32>,
    ) -> Self {
        self.factor = factor;
        self.jitter = jitter;
        self.max_delay = max_delay;
        self.max_retries = max_retries;
        self
    }

    /// Retries so far since the last success.
    pub fn retries(&self) -> u32 {
        self.retries.get()
    }

    /// The delay before the next retry.
    pub fn current_delay(&self) -> Duration {
        self.delay.get()
    }

    /// Resets the back-off, as after a successful connection.
    pub fn reset_delay(&self) {
        self.delay.set(self.initial_delay);
        self.retries.set(0);
    }

    /// Stops retrying and cancels a scheduled retry.
    pub fn stop_trying(&self) {
        self.trying.set(false);
        if let Some(call) = self.pending.borrow_mut().take() {
            let _ = call.cancel();
        }
    }

    fn retry(&self, connector: &Connector) {
        if !self.trying.get() {
            return;
        }
        let retries = self.retries.get() + 1;
        self.retries.set(retries);
        if self.max_retries.is_some_and(|max| retries > max) {
            tracing::info!(destination = ?connector.destination(), retries = retries - 1, "giving up reconnecting");
            self.trying.set(false);
            return;
        }
        // The first retry since a success waits `initial_delay` as it is now: a program may
        // have set the field after `new`.
        let current = if retries == 1 {
            self.initial_delay
        } else {
            self.delay.get()
        };
        let grown = current.as_secs_f64() * self.factor;
        let capped = grown.min(self.max_delay.as_secs_f64());
        let spread = capped * self.jitter * (fastrand::f64() * 2.0 - 1.0);
        let delay =
            Duration::from_secs_f64((capped + spread).clamp(0.0, self.max_delay.as_secs_f64()));
        self.delay.set(delay);
        let wait = current;
        let connector = connector.clone();
        *self.pending.borrow_mut() = Some(call_later(wait, move || connector.connect()));
    }
}

impl<F: Factory> Factory for ReconnectingClientFactory<F> {
    fn build_protocol(&self, peer: &Address) -> Option<Box<dyn Protocol>> {
        let protocol = self.inner.build_protocol(peer);
        if protocol.is_some() {
            self.reset_delay();
        }
        protocol
    }
}

impl<F: Factory> ClientFactory for ReconnectingClientFactory<F> {
    fn client_connection_failed(&self, connector: &Connector, _reason: &ConnectError) {
        self.retry(connector);
    }
    fn client_connection_lost(&self, connector: &Connector, _reason: &CloseReason) {
        self.retry(connector);
    }
}

impl<F: Factory> ClientFactory for crate::protocol::FnFactory<F> where
    crate::protocol::FnFactory<F>: Factory
{
}
