//! Connecting: the one path every outgoing stream connection takes, whether it then runs
//! a [`Protocol`](crate::Protocol) ([`Connector`](super::Connector),
//! [`Reactor::connect`](crate::Reactor::connect)) or becomes an
//! [`InspectedStream`](super::InspectedStream) ([`Reactor::connect_stream`](crate::Reactor::connect_stream)).
//!
//! [`dial`] connects over TCP or Unix within the endpoint's timeout (or until cancelled);
//! [`Dialed::establish`] then runs the TLS handshake of an `ssl:` endpoint, under the same
//! timeout and cancellation, and describes the connection. Between the two the caller
//! knows the peer (a factory builds its protocol there). Registering it with the reactor
//! is [`open`](super::open), as for an accepted connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::io::Io;
use super::tls;
use crate::address::Address;
use crate::endpoint::ClientEndpoint;
use crate::observe::{self, ConnectionInfo, ErrorKind, Event, ProtocolError, TransportKind};

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
    /// The TLS handshake failed: the peer's certificate did not verify, for one.
    #[error("connecting to {endpoint}: TLS handshake failed: {reason}")]
    Tls {
        /// Where.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// The TCP connection was made and the peer did not complete the TLS handshake
    /// within the timeout (which the handshake has anew once connected).
    #[error("connecting to {endpoint}: the TLS handshake did not complete within {after:?}")]
    TlsTimedOut {
        /// Where.
        endpoint: String,
        /// The timeout.
        after: Duration,
    },
    /// Any other failure: name resolution, an I/O error.
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

pub(super) fn report_connect_failure(service: &Arc<str>, err: &ConnectError) {
    // Within a budget: a service whose clients each make one (a proxy to a dead upstream)
    // would log a line for each of them. The event below is kept for every one.
    if let Some(suppressed) = observe::log_line_budget(service, "connection attempt failed") {
        tracing::info!(%service, %err, suppressed, "connection attempt failed");
    }
    observe::emit(|| {
        Event::ProtocolError(ProtocolError {
            service: service.clone(),
            connection: None,
            kind: ErrorKind::ConnectFailed,
            count: 1,
            message: err.to_string(),
        })
    });
}

/// Parses a client endpoint string, failing as a connection attempt to it would.
pub(super) fn parse_endpoint(endpoint: &str) -> Result<ClientEndpoint, ConnectError> {
    endpoint
        .parse()
        .map_err(|e: crate::endpoint::EndpointError| ConnectError::Failed {
            endpoint: endpoint.to_owned(),
            reason: e.to_string(),
        })
}

/// A connection made to a client endpoint, not yet secured, described or registered.
pub(super) struct Dialed<'a> {
    endpoint: &'a ClientEndpoint,
    /// The endpoint as written, naming the destination in errors.
    name: &'a str,
    /// Also cancels the TLS handshake that may follow.
    cancel: &'a CancellationToken,
    /// A plain TCP or Unix stream until `establish`.
    io: Io,
    /// What the endpoint makes of the connection: TLS for `ssl:` already, before the
    /// handshake.
    kind: TransportKind,
    peer: Address,
    local: Address,
}

/// Connects to `endpoint` (named `name` in errors) within its timeout, or until `cancel`.
pub(super) async fn dial<'a>(
    endpoint: &'a ClientEndpoint,
    name: &'a str,
    cancel: &'a CancellationToken,
) -> Result<Dialed<'a>, ConnectError> {
    let (io, kind, peer, local) = match endpoint {
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
            let kind = match endpoint {
                ClientEndpoint::Ssl { .. } => TransportKind::Tls,
                _ => TransportKind::Tcp,
            };
            (Io::Tcp(stream), kind, peer, local)
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
            (
                Io::Unix(stream),
                TransportKind::Unix,
                peer,
                Address::Unix(None),
            )
        }
    };
    Ok(Dialed {
        endpoint,
        name,
        cancel,
        io,
        kind,
        peer,
        local,
    })
}

impl Dialed<'_> {
    /// Who is at the other end.
    pub(super) fn peer(&self) -> &Address {
        &self.peer
    }

    /// Runs the TLS handshake of an `ssl:` endpoint and describes the connection for
    /// `service`, ready to be registered.
    pub(super) async fn establish(
        self,
        service: Arc<str>,
    ) -> Result<(Io, Arc<ConnectionInfo>), ConnectError> {
        let io = match (self.io, self.endpoint) {
            (
                Io::Tcp(stream),
                ClientEndpoint::Ssl {
                    host,
                    timeout,
                    ca_certs,
                    ..
                },
            ) => {
                let connector =
                    tls::connector(ca_certs.as_deref()).map_err(|e| ConnectError::Failed {
                        endpoint: self.name.to_owned(),
                        reason: e.to_string(),
                    })?;
                let connecting = tls::connect(connector, host, stream);
                let secured = within(self.name, *timeout, self.cancel, connecting)
                    .await
                    .map_err(|e| match e {
                        ConnectError::Failed { endpoint, reason } => {
                            ConnectError::Tls { endpoint, reason }
                        }
                        // The TCP connection was made: a peer that leaves the handshake
                        // unanswered is a TLS failure, not a connect that timed out
                        // (nothing listening, a host out of reach).
                        ConnectError::TimedOut { endpoint, after } => {
                            ConnectError::TlsTimedOut { endpoint, after }
                        }
                        other => other,
                    })?;
                Io::from(secured)
            }
            (io, _) => io,
        };
        let info = ConnectionInfo::new(service, self.kind, self.peer, self.local);
        Ok((io, info))
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

/// Awaits a connection attempt for at most `timeout`, or until `cancel`. The attempt
/// waits on the remote end (its accept, its handshake): the task awaiting it is not
/// stalled, however long it takes within its timeout.
pub(super) async fn within<S>(
    name: &str,
    timeout: Duration,
    cancel: &CancellationToken,
    attempt: impl std::future::Future<Output = std::io::Result<S>>,
) -> Result<S, ConnectError> {
    let attempt = crate::tasks::awaiting_outside_events(attempt);
    tokio::select! {
        _ = cancel.cancelled() => Err(ConnectError::Cancelled { endpoint: name.to_owned() }),
        result = tokio::time::timeout(timeout, attempt) => match result {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(err)) => Err(ConnectError::io(name, &err)),
            Err(_) => Err(ConnectError::TimedOut { endpoint: name.to_owned(), after: timeout }),
        },
    }
}
