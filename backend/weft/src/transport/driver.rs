//! The task behind every stream connection: reads into a shared buffer, calls the
//! protocol, flushes its writes, applies back-pressure and reports the close.
//!
//! One driver serves TCP, Unix and TLS alike (anything `AsyncRead + AsyncWrite`). It
//! owns no read buffer: reads land in one per-thread 64 KiB buffer that is handed to
//! `data_received` and reused, so an idle connection costs only its socket, its
//! protocol and a few words of state.

use std::future::poll_fn;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Transport;
use crate::observe::{
    self, CloseReason, ConnectionInfo, ErrorKind, Event, ProtocolError, SlowCallback,
};
use crate::protocol::{HalfClose, Protocol};

/// Size of the per-thread read buffer (Twisted reads 64 KiB at a time too).
const READ_BUFFER: usize = 64 * 1024;
/// Reads per poll before yielding to other connections.
const READ_BUDGET: u32 = 16;
/// A drained write buffer keeps at most this much capacity while idle.
const KEEP_CAPACITY: usize = 4 * 1024;

pub(crate) fn take_read_buf() -> Box<[u8]> {
    crate::context::with(|cx| cx.read_buf.borrow_mut().take())
        .unwrap_or_else(|| vec![0; READ_BUFFER].into_boxed_slice())
}

pub(crate) fn put_read_buf(buf: Box<[u8]>) {
    crate::context::with(|cx| *cx.read_buf.borrow_mut() = Some(buf));
}

/// A byte stream the driver can serve, with the socket options transports expose.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + 'static {
    /// Sets `TCP_NODELAY`, where it means something.
    fn set_nodelay(&self, _on: bool) -> io::Result<()> {
        Ok(())
    }
    /// Sets `SO_KEEPALIVE`, where it means something.
    fn set_keepalive(&self, _on: bool) -> io::Result<()> {
        Ok(())
    }
}

impl Stream for tokio::net::TcpStream {
    fn set_nodelay(&self, on: bool) -> io::Result<()> {
        tokio::net::TcpStream::set_nodelay(self, on)
    }
    fn set_keepalive(&self, on: bool) -> io::Result<()> {
        socket2::SockRef::from(self).set_keepalive(on)
    }
}

impl Stream for tokio::net::UnixStream {}

impl<S: Stream> Stream for tokio_rustls::server::TlsStream<S> {
    fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.get_ref().0.set_nodelay(on)
    }
    fn set_keepalive(&self, on: bool) -> io::Result<()> {
        self.get_ref().0.set_keepalive(on)
    }
}

impl<S: Stream> Stream for tokio_rustls::client::TlsStream<S> {
    fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.get_ref().0.set_nodelay(on)
    }
    fn set_keepalive(&self, on: bool) -> io::Result<()> {
        self.get_ref().0.set_keepalive(on)
    }
}

/// Runs a protocol callback with the connection as context, timing it and containing
/// a panic. A panicking callback aborts the connection.
pub(crate) fn guarded(
    transport: &Transport,
    name: &'static str,
    method: &'static str,
    f: impl FnOnce(),
) {
    if let Err(message) = guarded_call(transport.info(), name, method, f) {
        transport.abort_with(CloseReason::Protocol(message));
    }
}

/// Runs a callback for `info`'s connection: sets it as the current connection, reports
/// the callback if it was slow, and turns a panic into a reported, logged error.
pub(crate) fn guarded_call(
    info: &ConnectionInfo,
    name: &'static str,
    method: &'static str,
    f: impl FnOnce(),
) -> Result<(), String> {
    let started = Instant::now();
    let outcome = observe::with_connection(Some(info.id), || {
        std::panic::catch_unwind(AssertUnwindSafe(f))
    });
    let took = started.elapsed();
    if took >= observe::slow_threshold() {
        let callback = format!("{name}::{method}");
        tracing::warn!(connection = %info.id, %callback, ?took, "a callback blocked the reactor");
        observe::emit(|| {
            Event::SlowCallback(SlowCallback {
                callback,
                service: Some(info.service.clone()),
                connection: Some(info.id),
                duration: took,
            })
        });
    }
    match outcome {
        Ok(()) => Ok(()),
        Err(panic) => {
            let message = format!(
                "{name}::{method} panicked: {}",
                crate::time::panic_message(&panic)
            );
            tracing::error!(connection = %info.id, "{message}");
            observe::emit(|| {
                Event::ProtocolError(ProtocolError {
                    service: info.service.clone(),
                    connection: Some(info.id),
                    kind: ErrorKind::CallbackPanicked,
                    message: message.clone(),
                })
            });
            Err(message)
        }
    }
}

/// Serves one connection until it closes; returns why it closed.
pub(crate) async fn drive<S: Stream>(
    mut io: S,
    transport: Transport,
    protocol: &mut dyn Protocol,
) -> CloseReason {
    let name = protocol.name();
    guarded(&transport, name, "connection_made", || {
        protocol.connection_made(&transport)
    });
    let mut read_eof = false;
    let mut write_shut = false;
    poll_fn(|cx| {
        transport.update(|f| f.in_poll = true);
        let result = poll_connection(
            cx,
            &mut io,
            &transport,
            protocol,
            name,
            &mut read_eof,
            &mut write_shut,
        );
        transport.update(|f| f.in_poll = false);
        result
    })
    .await
}

fn register_waker(transport: &Transport, cx: &Context<'_>) {
    let mut slot = transport.shared.waker.borrow_mut();
    match slot.as_ref() {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

fn poll_connection<S: Stream>(
    cx: &mut Context<'_>,
    io: &mut S,
    transport: &Transport,
    protocol: &mut dyn Protocol,
    name: &'static str,
    read_eof: &mut bool,
    write_shut: &mut bool,
) -> Poll<CloseReason> {
    register_waker(transport, cx);
    let info = transport.info().clone();
    let mut budget = READ_BUDGET;
    loop {
        let flags = transport.flags();
        if flags.aborted {
            return Poll::Ready(transport.take_reason(CloseReason::Aborted));
        }
        if flags.nodelay.is_some() || flags.keepalive.is_some() {
            transport.update(|f| {
                f.nodelay = None;
                f.keepalive = None;
            });
            if let Some(on) = flags.nodelay {
                let _ = io.set_nodelay(on);
            }
            if let Some(on) = flags.keepalive {
                let _ = io.set_keepalive(on);
            }
        }

        // Flush what the protocol wrote.
        let mut write_blocked = false;
        loop {
            let mut out = transport.shared.out.borrow_mut();
            if out.is_empty() {
                if out.capacity() > KEEP_CAPACITY {
                    *out = bytes::BytesMut::new();
                }
                break;
            }
            match Pin::new(&mut *io).poll_write(cx, &out) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(CloseReason::Error("socket accepted no bytes".into()));
                }
                Poll::Ready(Ok(n)) => {
                    let _ = out.split_to(n);
                    drop(out);
                    info.stats.record_write(n, elapsed_ns(&info));
                    transport.release_back_pressure();
                }
                Poll::Ready(Err(err)) => return Poll::Ready(CloseReason::from_io(&err)),
                Poll::Pending => {
                    write_blocked = true;
                    break;
                }
            }
        }
        // TLS and other buffered streams need an explicit flush.
        if !write_blocked && Pin::new(&mut *io).poll_flush(cx).is_pending() {
            write_blocked = true;
        }
        transport.set_write_blocked(write_blocked);

        if !write_blocked {
            if flags.closing {
                return match Pin::new(&mut *io).poll_shutdown(cx) {
                    Poll::Pending => {
                        transport.set_write_blocked(true);
                        Poll::Pending
                    }
                    Poll::Ready(_) => Poll::Ready(transport.take_reason(CloseReason::Done)),
                };
            }
            if flags.write_shutdown && !*write_shut {
                match Pin::new(&mut *io).poll_shutdown(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(_) => {
                        *write_shut = true;
                        if *read_eof {
                            return Poll::Ready(CloseReason::Done);
                        }
                    }
                }
            }
        }

        // Read, unless paused, closing or at EOF. Flushing above may have lifted a pause.
        let flags = transport.flags();
        if *read_eof || flags.read_paused || flags.self_paused || flags.closing {
            return Poll::Pending;
        }
        if budget == 0 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        budget -= 1;
        let mut buf = take_read_buf();
        let mut read_buf = ReadBuf::new(&mut buf);
        match Pin::new(&mut *io).poll_read(cx, &mut read_buf) {
            Poll::Pending => {
                put_read_buf(buf);
                return Poll::Pending;
            }
            Poll::Ready(Err(err)) => {
                put_read_buf(buf);
                return Poll::Ready(CloseReason::from_io(&err));
            }
            Poll::Ready(Ok(())) => {
                let n = read_buf.filled().len();
                if n == 0 {
                    put_read_buf(buf);
                    *read_eof = true;
                    let mut choice = HalfClose::Close;
                    guarded(transport, name, "read_connection_lost", || {
                        choice = protocol.read_connection_lost(transport)
                    });
                    if choice == HalfClose::Close || *write_shut {
                        // Flush what is buffered, then close.
                        transport.lose_connection_with(CloseReason::PeerClosed);
                    }
                    continue;
                }
                info.stats.record_read(n, elapsed_ns(&info));
                guarded(transport, name, "data_received", || {
                    protocol.data_received(transport, &buf[..n])
                });
                put_read_buf(buf);
            }
        }
    }
}

fn elapsed_ns(info: &crate::observe::ConnectionInfo) -> u64 {
    u64::try_from(info.opened.elapsed().as_nanos()).unwrap_or(u64::MAX)
}
