//! Async byte streams for code that wants `AsyncRead + AsyncWrite` (hyper, for one)
//! instead of [`Protocol`](crate::Protocol) callbacks, with the same inspector.
//!
//! [`Reactor::listen_stream`] accepts connections and hands each to an async handler as
//! an [`InspectedStream`]; [`Reactor::connect_stream`] opens one to an upstream. Either
//! way the connection is registered with the reactor (so [`Reactor::connections`],
//! [`Reactor::close_connection`] and shutdown reach it), reported to the observer when it
//! opens and closes, and its bytes, reads and writes are counted by wrapping the IO, so
//! the code on top never knows it is measured.
//!
//! Closing follows the connection's [`Transport`] flags: after `lose_connection` (a
//! graceful shutdown) reads report end-of-stream, so a handler that reads until the end
//! stops; after `abort_connection` (the dashboard's close button) reads and writes fail at
//! once and a server's handler is dropped. Code that must finish an exchange already
//! under way (an HTTP server mid-response, which treats an early end-of-stream as the
//! client going away) calls [`InspectedStream::keep_reading_when_closing`] and ends the
//! connection itself once it sees [`Transport::is_disconnecting`].

use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::accept::{Admit, ListenOptions, Serve};
use super::connect::{ConnectError, dial, parse_endpoint, report_connect_failure};
use super::io::{Io, with_io};
use super::listen::{ListenError, ListeningPort};
use crate::address::Address;
use crate::endpoint::ServerEndpoint;
use crate::observe::{self, CloseReason, ConnectionInfo, ListenerInfo, Stopwatch};
use crate::reactor::{Inner, Reactor};
use crate::transport::{Stream, Transport};

/// One registered connection as an async byte stream; counts what passes through it.
///
/// It is `!Send`: it lives on the reactor thread, like every weft connection.
pub struct InspectedStream {
    io: Io,
    transport: Transport,
    /// Whether a graceful close ends reads (see [`Self::keep_reading_when_closing`]).
    eof_when_closing: bool,
    /// Reports the close when dropped. Client streams own theirs; a server stream's is
    /// held by its handler task, so the handler can still record a reason after the stream
    /// is gone (hyper drops it when it returns its error).
    _registration: Option<Registration>,
}

impl Drop for InspectedStream {
    /// An aborted connection is reset (`SO_LINGER` 0), as the driver resets one a protocol
    /// drives: its handler is dropped, and with it this stream, which would otherwise
    /// close in order, telling the peer that what it got was all there was.
    fn drop(&mut self) {
        if self.transport.is_aborted() {
            let _ = with_io!(&self.io, s => s.reset_on_close());
        }
    }
}

impl std::fmt::Debug for InspectedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InspectedStream")
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl InspectedStream {
    /// The connection's transport handle: its id, peer, counters, and
    /// `lose_connection_with` to record why it closes.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Everything known about the connection, with its live counters.
    pub fn info(&self) -> &Arc<ConnectionInfo> {
        self.transport.info()
    }

    /// The protocol agreed by ALPN in the TLS handshake (such as `h2`), if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match &self.io {
            Io::TlsServer(s) => s.get_ref().1.alpn_protocol(),
            Io::TlsClient(s) => s.get_ref().1.alpn_protocol(),
            Io::Tcp(_) | Io::Unix(_) => None,
        }
    }

    /// Sets `TCP_NODELAY` (no effect on Unix sockets).
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        match &self.io {
            Io::Tcp(s) => s.set_nodelay(on),
            Io::TlsServer(s) => s.get_ref().0.set_nodelay(on),
            Io::TlsClient(s) => s.get_ref().0.set_nodelay(on),
            Io::Unix(_) => Ok(()),
        }
    }

    /// Lets reads go on after a graceful close is requested, instead of reporting
    /// end-of-stream: the code on top finishes the exchange in flight and then ends the
    /// connection itself. It learns of the request from
    /// [`Transport::is_disconnecting`]; a [`Reactor::listen_stream`] handler is polled
    /// again whenever a close is requested, so checking there on each poll is enough.
    /// An abort still ends reads and writes at once.
    pub fn keep_reading_when_closing(&mut self) {
        self.eof_when_closing = false;
    }

    fn aborted(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "connection closed by the reactor",
        )
    }

    /// Whether the reactor ended the connection (abort, or closed under it): reads and
    /// writes fail at once.
    #[inline]
    fn gone(&self) -> bool {
        self.transport.is_aborted() || self.transport.is_closed()
    }

    /// Records why the connection fails, if no reason is known yet.
    #[cold]
    fn failed(&self, err: &io::Error) {
        self.transport.note_reason(CloseReason::from_io(err));
    }

    /// Notes whether the socket took nothing (the peer does not read) and, if it failed,
    /// why: for a flush or a shutdown.
    #[inline]
    fn settled(&self, result: &Poll<io::Result<()>>) {
        self.transport.set_write_blocked(result.is_pending());
        if let Poll::Ready(Err(err)) = result {
            self.failed(err);
        }
    }

    /// Counts a write of `n` bytes, or records why it failed; notes whether the socket
    /// took nothing (the peer does not read).
    #[inline]
    fn wrote(&self, result: &Poll<io::Result<usize>>) {
        self.transport.set_write_blocked(result.is_pending());
        match result {
            Poll::Ready(Ok(n)) => self.info().stats.record_write(*n, Stopwatch::start()),
            Poll::Ready(Err(err)) => self.failed(err),
            Poll::Pending => {}
        }
    }
}

impl AsyncRead for InspectedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.transport.register_waker(cx.waker());
        if this.gone() {
            return Poll::Ready(Err(this.aborted()));
        }
        if this.eof_when_closing && this.transport.is_disconnecting() {
            // A graceful close: no more input, so the peer's next request is never read.
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let result = with_io!(&mut this.io, s => Pin::new(s).poll_read(cx, buf));
        match &result {
            Poll::Pending => crate::tasks::waiting_on_peer(),
            Poll::Ready(Ok(())) => match buf.filled().len() - before {
                0 => this.transport.note_reason(CloseReason::PeerClosed),
                n => this.info().stats.record_read(n, Stopwatch::start()),
            },
            Poll::Ready(Err(err)) => this.failed(err),
        }
        result
    }
}

impl AsyncWrite for InspectedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.transport.register_waker(cx.waker());
        if this.gone() {
            return Poll::Ready(Err(this.aborted()));
        }
        let result = with_io!(&mut this.io, s => Pin::new(s).poll_write(cx, data));
        this.wrote(&result);
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.transport.register_waker(cx.waker());
        if this.gone() {
            return Poll::Ready(Err(this.aborted()));
        }
        let result = with_io!(&mut this.io, s => Pin::new(s).poll_write_vectored(cx, bufs));
        this.wrote(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        with_io!(&self.io, s => s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = with_io!(&mut this.io, s => Pin::new(s).poll_flush(cx));
        this.settled(&result);
        result
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // An aborted connection is reset when it is dropped: an orderly end first (what
        // hyper asks for as it gives up a connection) would tell the peer that what it got
        // was all there was.
        if this.transport.is_aborted() {
            return Poll::Ready(Err(this.aborted()));
        }
        let result = with_io!(&mut this.io, s => Pin::new(s).poll_shutdown(cx));
        this.settled(&result);
        result
    }
}

/// A connection's place in the reactor; dropping it reports the close.
struct Registration {
    /// Weak, so a stream outliving its reactor does not keep the reactor alive just to report its
    /// close.
    reactor: Weak<Inner>,
    transport: Transport,
}

impl Registration {
    /// Takes over reporting the close of `transport`, [`open`](super::open)ed on `reactor`.
    fn new(reactor: &Reactor, transport: Transport) -> Self {
        Self {
            reactor: Rc::downgrade(&reactor.inner),
            transport,
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let transport = &self.transport;
        let info = transport.info().clone();
        let reason = transport.take_reason(CloseReason::Done);
        transport.mark_closed();
        if let Some(inner) = self.reactor.upgrade()
            && let Ok(mut connections) = inner.connections.try_borrow_mut()
        {
            connections.remove(&info.id);
        }
        super::report_close(info, &reason);
    }
}

impl Reactor {
    /// Listens on a stream endpoint (`tcp:`, `unix:`, `ssl:`) and runs `handler` on each
    /// accepted connection, reported under `service`.
    ///
    /// The handler runs on the reactor thread as a tracked task (shutdown waits for it,
    /// up to its deadline); the connection is reported closed when the handler returns.
    /// When a close is requested (`lose_connection`, or shutdown) the handler is polled
    /// again; if the connection is aborted, the handler is dropped.
    #[track_caller]
    pub fn listen_stream<H, F>(
        &self,
        service: &str,
        endpoint: &str,
        handler: H,
    ) -> Result<ListeningPort, ListenError>
    where
        H: Fn(InspectedStream) -> F + 'static,
        F: Future<Output = ()> + 'static,
    {
        self.listen_stream_with(service, endpoint, &ListenOptions::default(), handler)
    }

    /// Like [`listen_stream`](Self::listen_stream), applying `options` (idle timeout,
    /// per-peer cap) to every connection accepted.
    #[track_caller]
    pub fn listen_stream_with<H, F>(
        &self,
        service: &str,
        endpoint: &str,
        options: &ListenOptions,
        handler: H,
    ) -> Result<ListeningPort, ListenError>
    where
        H: Fn(InspectedStream) -> F + 'static,
        F: Future<Output = ()> + 'static,
    {
        let parsed: ServerEndpoint = endpoint.parse()?;
        self.serve_stream(
            service,
            endpoint,
            &parsed,
            options,
            "listen_stream needs a stream endpoint (tcp:, unix:, ssl:)",
            StreamAdapter(Rc::new(handler)),
        )
    }

    /// Connects to a client endpoint string (`tcp:HOST:PORT:timeout=S`, `unix:PATH`,
    /// `ssl:HOST:PORT`) and returns the connection as a stream, reported under `service`.
    ///
    /// The connection is reported closed when the stream is dropped.
    pub async fn connect_stream(
        &self,
        service: &str,
        endpoint: &str,
    ) -> Result<InspectedStream, ConnectError> {
        let service: Arc<str> = service.into();
        let result = self.try_connect_stream(service.clone(), endpoint).await;
        if let Err(err) = &result {
            report_connect_failure(&service, err);
        }
        result
    }

    async fn try_connect_stream(
        &self,
        service: Arc<str>,
        endpoint: &str,
    ) -> Result<InspectedStream, ConnectError> {
        let parsed = parse_endpoint(endpoint)?;
        // Shutdown cancels an attempt in progress.
        let cancel = self.listening_token();
        let (io, info) = dial(&parsed, endpoint, &cancel)
            .await?
            .establish(service)
            .await?;
        let transport = super::open(self, info);
        let registration = Registration::new(self, transport.clone());
        Ok(InspectedStream {
            io,
            transport,
            eof_when_closing: true,
            _registration: Some(registration),
        })
    }
}

/// The async-stream API over the shared acceptor: each connection goes to the handler as
/// an [`InspectedStream`].
///
/// The handler is shared, not cloned, by every connection's task.
struct StreamAdapter<H>(Rc<H>);

impl<H, F> Admit for StreamAdapter<H>
where
    H: Fn(InspectedStream) -> F + 'static,
    F: Future<Output = ()> + 'static,
{
    type Conn = Self;

    fn build(&self, _listener: &ListenerInfo, _peer: &Address) -> Result<Self, &'static str> {
        Ok(Self(self.0.clone()))
    }
}

impl<H, F> Serve for StreamAdapter<H>
where
    H: Fn(InspectedStream) -> F + 'static,
    F: Future<Output = ()> + 'static,
{
    /// Runs the handler until it returns, or until the connection is aborted (then the
    /// handler is dropped); either way the close is reported then. The socket goes into
    /// the handler's stream before the future is built, so the task holds it once.
    fn serve<S: Stream + Into<Io>>(
        self,
        reactor: &Reactor,
        io: S,
        transport: Transport,
    ) -> impl Future {
        let registration = Registration::new(reactor, transport.clone());
        let stream = InspectedStream {
            io: io.into(),
            transport: transport.clone(),
            eof_when_closing: true,
            _registration: None,
        };
        let served = (self.0)(stream);
        async move {
            let id = Some(transport.id());
            let mut served = pin!(served);
            poll_fn(|cx| {
                transport.register_waker(cx.waker());
                if transport.is_aborted() {
                    return Poll::Ready(());
                }
                observe::with_connection(id, || served.as_mut().poll(cx))
            })
            .await;
            drop(registration);
        }
    }
}
