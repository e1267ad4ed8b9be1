//! The protocol API for outgoing connections: [`ClientFactory`], [`Connector`] (Twisted's
//! `IConnector`), and [`Reactor::connect`]. Each is a thin adapter over the connecting
//! core in [`connect`](super::connect): dial, build the protocol, secure, register, and
//! drive it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::connect::{ConnectError, dial, parse_endpoint, report_connect_failure};
use super::io::Io;
use crate::address::Address;
use crate::endpoint::{ClientEndpoint, EndpointError};
use crate::observe::CloseReason;
use crate::protocol::{Factory, Protocol};
use crate::reactor::Reactor;
use crate::transport::Transport;

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
    /// The connection is established (a TLS one after its handshake), just before the
    /// protocol's `connection_made`.
    fn client_connection_made(&self, connector: &Connector) {
        let _ = connector;
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
    fn client_connection_made(&self, connector: &Connector) {
        (**self).client_connection_made(connector);
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
                    this.inner.factory.client_connection_made(&this);
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
    let dialed = dial(endpoint, name, cancel).await?;
    // Built before the TLS handshake: a factory that declines costs the peer no handshake.
    let protocol =
        factory
            .build_protocol(dialed.peer())
            .ok_or_else(|| ConnectError::NoProtocol {
                endpoint: name.to_owned(),
            })?;
    let (io, info) = dialed.establish(service).await?;
    let transport = super::open(reactor, info);
    on_connected(&transport);
    // One arm per kind, so the driver is monomorphic over the socket as on the listening side.
    Ok(match io {
        Io::Tcp(s) => super::run(reactor, s, transport, protocol).await,
        Io::Unix(s) => super::run(reactor, s, transport, protocol).await,
        Io::TlsClient(s) => super::run(reactor, *s, transport, protocol).await,
        Io::TlsServer(s) => super::run(reactor, *s, transport, protocol).await,
    })
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
    #[track_caller]
    pub fn connect<P: Protocol>(
        &self,
        endpoint: &str,
        protocol: P,
    ) -> impl Future<Output = Result<Transport, ConnectError>> + use<P> {
        self.connect_as(endpoint, endpoint, protocol)
    }

    /// Like [`connect`](Self::connect), reporting the connection under `service` (a
    /// proxy names its upstream connections after itself).
    ///
    /// Dropping the future before it resolves abandons the attempt: the connect is
    /// cancelled (its socket closed, nothing reported as failed), and a connection made
    /// just as the caller gave up is closed, since nobody would own it. An attempt goes on
    /// through the shutdown drain, which work owed to a client may need (a question asked
    /// again over TCP, an upstream for a request in flight); one still connecting when
    /// the drain ends is cancelled. Nothing starts until the future is first polled.
    ///
    /// The attempt runs as a task of its own, listed by the inspector with this call's
    /// line as its spawn site (the caller's, not this function's).
    #[track_caller]
    pub fn connect_as<P: Protocol>(
        &self,
        service: &str,
        endpoint: &str,
        protocol: P,
    ) -> impl Future<Output = Result<Transport, ConnectError>> + use<P> {
        let site = std::panic::Location::caller();
        let reactor = self.clone();
        let service: Arc<str> = service.into();
        let endpoint = endpoint.to_owned();
        async move {
            let parsed = parse_endpoint(&endpoint)?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            let once = OneShotFactory(RefCell::new(Some(Box::new(protocol))));
            let cancel = reactor.clients_token().child_token();
            let abandon = cancel.clone().drop_guard();
            let name = endpoint.clone();
            let connecting = reactor.clone();
            // A connector's task: it runs the connection it opens, which becomes its own
            // (until then it is the caller's connection's, if the caller has one).
            reactor.spawn_task(crate::tasks::TaskKind::Connection, None, site, async move {
                let mut tx = Some(tx);
                let result = open(
                    &connecting,
                    &parsed,
                    &name,
                    service.clone(),
                    &once,
                    &cancel,
                    |t| {
                        // Sent as an `Unclaimed`: a caller that gives up after it was
                        // sent, before reading it, drops it unread, which closes the
                        // connection.
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(Ok(Unclaimed(Some(t.clone()))));
                        }
                    },
                )
                .await;
                if let (Err(err), Some(tx)) = (result, tx.take()) {
                    if tx.is_closed() {
                        tracing::debug!(%service, %err, "connection attempt abandoned by its caller");
                    } else {
                        report_connect_failure(&service, &err);
                        let _ = tx.send(Err(err));
                    }
                }
            });
            // The caller waits on the attempt, which waits on the remote end within its
            // timeout: no stall of the caller's task either (a chain it keeps for the
            // connect, as tcp-proxy's and a proxy request's, says where it is).
            let connected = crate::tasks::awaiting_outside_events(rx)
                .await
                .unwrap_or_else(|_| Err(ConnectError::Cancelled { endpoint }));
            abandon.disarm();
            connected.map(Unclaimed::claim)
        }
    }
}

/// A connection made for a caller of [`Reactor::connect_as`], on its way to it: closed if
/// dropped unclaimed (the caller gave up between the connect and reading its result), so
/// that no connection is left running with nobody to own it.
struct Unclaimed(Option<Transport>);

impl Unclaimed {
    fn claim(mut self) -> Transport {
        self.0.take().expect("claimed once")
    }
}

impl Drop for Unclaimed {
    fn drop(&mut self) {
        if let Some(transport) = self.0.take() {
            transport.lose_connection();
        }
    }
}

struct OneShotFactory(RefCell<Option<Box<dyn Protocol>>>);

impl Factory for OneShotFactory {
    fn build_protocol(&self, _peer: &Address) -> Option<Box<dyn Protocol>> {
        self.0.borrow_mut().take()
    }
}

impl<F: Factory> ClientFactory for crate::protocol::FnFactory<F> where
    crate::protocol::FnFactory<F>: Factory
{
}
