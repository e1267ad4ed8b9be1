//! TLS started on a connection that began in the clear (Twisted's `ITLSTransport.startTLS`):
//! [`TlsStart`] says which side this is, [`Startable`] is the TCP stream a protocol's
//! connection is driven over, which becomes a TLS stream when asked.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{client, server};

use super::driver::Stream;

/// Which side of the TLS handshake this end takes, and with what
/// ([`Transport::start_tls`](super::Transport::start_tls)).
#[derive(Clone)]
pub enum TlsStart {
    /// The server's side: this end shows the configuration's certificate.
    Server(Arc<rustls::ServerConfig>),
    /// The client's side: the peer's certificate is checked against the configuration's
    /// roots and `server_name`, which SNI also sends.
    Client {
        /// How the peer's certificate is checked.
        config: Arc<rustls::ClientConfig>,
        /// The name the peer's certificate must hold.
        server_name: rustls::pki_types::ServerName<'static>,
    },
}

impl std::fmt::Debug for TlsStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsStart::Server(_) => f.write_str("TlsStart::Server"),
            TlsStart::Client { server_name, .. } => {
                write!(f, "TlsStart::Client({})", server_name.to_str())
            }
        }
    }
}

/// A TLS stream over TCP, either side.
pub(crate) enum Secured {
    Server(server::TlsStream<TcpStream>),
    Client(client::TlsStream<TcpStream>),
}

impl Secured {
    fn tcp(&self) -> &TcpStream {
        match self {
            Secured::Server(s) => s.get_ref().0,
            Secured::Client(s) => s.get_ref().0,
        }
    }
}

/// A protocol's TCP connection: in the clear until [`start_tls`](Stream::start_tls), then
/// a TLS handshake, then TLS. Its TLS states are boxed, so a connection that never starts
/// TLS pays for none of them.
pub(crate) enum Startable {
    Plain(TcpStream),
    Handshaking {
        /// The socket, reached through a second descriptor while the handshake holds the
        /// stream: an abort must still reset it, and options set meanwhile still apply.
        socket: Option<socket2::Socket>,
        handshake: Pin<Box<dyn Future<Output = io::Result<Secured>>>>,
    },
    Secured(Box<Secured>),
    /// The handshake failed; every call says so.
    Failed,
}

impl From<TcpStream> for Startable {
    fn from(s: TcpStream) -> Self {
        Startable::Plain(s)
    }
}

/// Why a handshake begun by `start_tls` failed: the driver reports it and closes the
/// connection with reason `protocol` saying so, or as reset, timed out or closed by the
/// peer when it was that ([`CloseReason::from_io`](crate::CloseReason)).
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake failed: {0}")]
pub(crate) struct HandshakeFailed(pub(crate) io::Error);

impl Startable {
    /// Drives a handshake under way; ready once the stream can be read or written. Not
    /// called for a stream in the clear (the common case, kept to one branch).
    #[cold]
    #[inline(never)]
    fn ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Startable::Handshaking { handshake, .. } = self {
            match ready!(handshake.as_mut().poll(cx)) {
                Ok(secured) => *self = Startable::Secured(Box::new(secured)),
                Err(err) => {
                    *self = Startable::Failed;
                    // A peer that hung up or reset is that, as on an `ssl:` listener (the
                    // close says so); anything else is the peer's protocol error. Either
                    // way the failure is reported once, by the driver.
                    let kind = match err.kind() {
                        kind @ (io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::TimedOut) => kind,
                        _ => io::ErrorKind::InvalidData,
                    };
                    return Poll::Ready(Err(io::Error::new(kind, HandshakeFailed(err))));
                }
            }
        }
        match self {
            Startable::Failed => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the TLS handshake failed",
            ))),
            _ => Poll::Ready(Ok(())),
        }
    }

    /// The socket, in whatever state the stream is.
    fn socket(&self) -> Option<socket2::SockRef<'_>> {
        match self {
            Startable::Plain(s) => Some(socket2::SockRef::from(s)),
            Startable::Secured(s) => Some(socket2::SockRef::from(s.tcp())),
            Startable::Handshaking { socket, .. } => socket.as_ref().map(socket2::SockRef::from),
            Startable::Failed => None,
        }
    }
}

/// `$e` with `$s` the pinned stream under a ready [`Startable`]: at once in the clear, once
/// its handshake is done otherwise.
macro_rules! with_ready {
    ($this:expr, $cx:expr, $s:ident => $e:expr) => {{
        let this = $this;
        if let Startable::Plain(tcp) = this {
            let $s = Pin::new(tcp);
            return $e;
        }
        ready!(this.ready($cx))?;
        match this {
            Startable::Plain(tcp) => {
                let $s = Pin::new(tcp);
                $e
            }
            Startable::Secured(secured) => match &mut **secured {
                Secured::Server(tls) => {
                    let $s = Pin::new(tls);
                    $e
                }
                Secured::Client(tls) => {
                    let $s = Pin::new(tls);
                    $e
                }
            },
            Startable::Handshaking { .. } | Startable::Failed => unreachable!("made ready above"),
        }
    }};
}

impl AsyncRead for Startable {
    #[inline(always)]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        with_ready!(self.get_mut(), cx, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Startable {
    #[inline(always)]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        with_ready!(self.get_mut(), cx, s => s.poll_write(cx, data))
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        with_ready!(self.get_mut(), cx, s => s.poll_flush(cx))
    }

    #[inline]
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        with_ready!(self.get_mut(), cx, s => s.poll_shutdown(cx))
    }
}

impl Stream for Startable {
    type Driven = Self;

    fn driven(self) -> Self {
        self
    }

    fn handshaking(&self) -> bool {
        matches!(self, Startable::Handshaking { .. })
    }
    fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.socket().map_or(Ok(()), |s| s.set_tcp_nodelay(on))
    }
    fn set_keepalive(&self, on: bool) -> io::Result<()> {
        self.socket().map_or(Ok(()), |s| s.set_keepalive(on))
    }
    fn reset_on_close(&self) -> io::Result<()> {
        self.socket()
            .map_or(Ok(()), |s| s.set_linger(Some(std::time::Duration::ZERO)))
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn set_notsent_lowat(&self, bytes: u32) -> io::Result<()> {
        self.socket()
            .map_or(Ok(()), |s| s.set_tcp_notsent_lowat(bytes))
    }

    fn start_tls(&mut self, how: TlsStart) -> Result<(), String> {
        match std::mem::replace(self, Startable::Failed) {
            Startable::Plain(tcp) => {
                let socket = socket2::SockRef::from(&tcp).try_clone().ok();
                // As long as an `ssl:` listener gives a handshake: a peer that says
                // STARTTLS and stalls is not kept for ever.
                let limit = crate::net::tls::HANDSHAKE_TIMEOUT;
                let timed_out =
                    || io::Error::new(io::ErrorKind::TimedOut, "the TLS handshake timed out");
                let handshake: Pin<Box<dyn Future<Output = io::Result<Secured>>>> = match how {
                    TlsStart::Server(config) => Box::pin(async move {
                        let accept = tokio_rustls::TlsAcceptor::from(config).accept(tcp);
                        match tokio::time::timeout(limit, accept).await {
                            Ok(done) => done.map(Secured::Server),
                            Err(_) => Err(timed_out()),
                        }
                    }),
                    TlsStart::Client {
                        config,
                        server_name,
                    } => Box::pin(async move {
                        let connector = tokio_rustls::TlsConnector::from(config);
                        let connect = connector.connect(server_name, tcp);
                        match tokio::time::timeout(limit, connect).await {
                            Ok(done) => done.map(Secured::Client),
                            Err(_) => Err(timed_out()),
                        }
                    }),
                };
                *self = Startable::Handshaking { socket, handshake };
                Ok(())
            }
            other => {
                *self = other;
                Err("TLS was started on this connection already".into())
            }
        }
    }
}
