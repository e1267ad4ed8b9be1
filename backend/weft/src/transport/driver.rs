//! The task behind every stream connection: reads into a shared buffer, calls the
//! protocol, flushes its writes, applies back-pressure and reports the close.
//!
//! One driver serves TCP, Unix and TLS alike (anything `AsyncRead + AsyncWrite`). It
//! owns no read buffer: reads land in one per-thread 64 KiB buffer that is handed to
//! `data_received` and reused, so an idle connection costs only its socket, its
//! protocol and a few words of state.

use std::future::poll_fn;
use std::io;
use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::start_tls::{HandshakeFailed, Startable, TlsStart};
use super::{Flags, Transport};
use crate::observe::{
    self, CloseReason, ConnectionInfo, ErrorKind, Event, ProtocolError, SlowCallback, Stopwatch,
};
use crate::protocol::{HalfClose, Protocol};

/// Size of the per-thread read buffer (Twisted reads 64 KiB at a time too).
const READ_BUFFER: usize = 64 * 1024;
/// Reads per poll before yielding to other connections.
const READ_BUDGET: u32 = 16;
/// A drained write buffer keeps at most this much capacity while idle.
const KEEP_CAPACITY: usize = 4 * 1024;

fn take_read_buf() -> Box<[u8]> {
    crate::context::with(|cx| cx.read_buf.borrow_mut().take())
        .unwrap_or_else(|| vec![0; READ_BUFFER].into_boxed_slice())
}

fn put_read_buf(buf: Box<[u8]>) {
    crate::context::with(|cx| *cx.read_buf.borrow_mut() = Some(buf));
}

/// A byte stream the driver can serve, with the socket options transports expose.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + 'static {
    /// What the driver serves it as: a TCP stream in the clear as one that can start TLS
    /// ([`Startable`](super::start_tls::Startable)), the others as they are.
    type Driven: Stream;
    /// It, as the driver serves it.
    fn driven(self) -> Self::Driven;
    /// Begins a TLS handshake on it, taking the side `how` says: only a TCP stream in the
    /// clear can.
    fn start_tls(&mut self, how: TlsStart) -> Result<(), String> {
        let _ = how;
        Err("TLS can be started only on a TCP connection in the clear".into())
    }
    /// Whether a handshake begun by [`start_tls`](Self::start_tls) is under way.
    fn handshaking(&self) -> bool {
        false
    }
    /// Sets `TCP_NODELAY`, where it means something.
    fn set_nodelay(&self, _on: bool) -> io::Result<()> {
        Ok(())
    }
    /// Sets `SO_KEEPALIVE`, where it means something.
    fn set_keepalive(&self, _on: bool) -> io::Result<()> {
        Ok(())
    }
    /// Makes closing the socket reset the connection (`SO_LINGER` 0: a TCP RST, and what
    /// was not sent yet is dropped), where it means something.
    fn reset_on_close(&self) -> io::Result<()> {
        Ok(())
    }
    /// Sets `TCP_NOTSENT_LOWAT`, where it means something.
    fn set_notsent_lowat(&self, _bytes: u32) -> io::Result<()> {
        Ok(())
    }
}

impl Stream for tokio::net::TcpStream {
    type Driven = Startable;
    fn driven(self) -> Startable {
        Startable::from(self)
    }
    fn set_nodelay(&self, on: bool) -> io::Result<()> {
        tokio::net::TcpStream::set_nodelay(self, on)
    }
    fn set_keepalive(&self, on: bool) -> io::Result<()> {
        socket2::SockRef::from(self).set_keepalive(on)
    }
    fn reset_on_close(&self) -> io::Result<()> {
        socket2::SockRef::from(self).set_linger(Some(std::time::Duration::ZERO))
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn set_notsent_lowat(&self, bytes: u32) -> io::Result<()> {
        socket2::SockRef::from(self).set_tcp_notsent_lowat(bytes)
    }
}

impl Stream for tokio::net::UnixStream {
    type Driven = Self;
    fn driven(self) -> Self {
        self
    }
}

impl<S: Stream> Stream for tokio_rustls::server::TlsStream<S> {
    type Driven = Self;
    fn driven(self) -> Self {
        self
    }
    fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.get_ref().0.set_nodelay(on)
    }
    fn set_keepalive(&self, on: bool) -> io::Result<()> {
        self.get_ref().0.set_keepalive(on)
    }
    fn reset_on_close(&self) -> io::Result<()> {
        self.get_ref().0.reset_on_close()
    }
    fn set_notsent_lowat(&self, bytes: u32) -> io::Result<()> {
        self.get_ref().0.set_notsent_lowat(bytes)
    }
}

impl<S: Stream> Stream for tokio_rustls::client::TlsStream<S> {
    type Driven = Self;
    fn driven(self) -> Self {
        self
    }
    fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.get_ref().0.set_nodelay(on)
    }
    fn set_keepalive(&self, on: bool) -> io::Result<()> {
        self.get_ref().0.set_keepalive(on)
    }
    fn reset_on_close(&self) -> io::Result<()> {
        self.get_ref().0.reset_on_close()
    }
    fn set_notsent_lowat(&self, bytes: u32) -> io::Result<()> {
        self.get_ref().0.set_notsent_lowat(bytes)
    }
}

/// What was written before `start_tls` went out: the handshake begins on `io`.
fn begin_tls<S: Stream>(transport: &Transport, io: &mut S) -> Result<(), CloseReason> {
    match transport.take_tls_start() {
        Some(how) => {
            io.start_tls(how).map_err(CloseReason::Protocol)?;
            transport.set_handshaking(true);
            Ok(())
        }
        None => Ok(()),
    }
}

/// Runs a protocol callback with the connection as context, timing it and containing
/// a panic. A panicking callback aborts the connection.
#[inline]
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
#[inline(always)]
pub(crate) fn guarded_call(
    info: &ConnectionInfo,
    name: &'static str,
    method: &'static str,
    f: impl FnOnce(),
) -> Result<(), String> {
    let span = crate::reactor::profile::enter();
    let started = Instant::now();
    let reported_before = crate::tasks::slow_reported_total();
    let outcome = observe::with_connection(Some(info.id), || {
        std::panic::catch_unwind(AssertUnwindSafe(f))
    });
    let took = started.elapsed();
    span.exit(
        crate::reactor::profile::Site::Method {
            type_name: name,
            method,
        },
        crate::reactor::profile::SiteKind::Protocol,
        took,
    );
    // A Deferred step (or a delayed call) it ran that blocked was reported by its own
    // site: the callback is reported for what it blocked besides, if that is over the
    // threshold, not again for the same blocking.
    let threshold = observe::slow_threshold();
    if took >= threshold
        && let own = crate::tasks::unreported(took, reported_before)
        && own >= threshold
    {
        crate::tasks::note_slow_inside(own);
        let callback = format!("{name}::{method}");
        // A peer that can make parsing slow makes one each: the log takes 20 a second
        // for a service, the event and its count take every one.
        if let Some(suppressed) = observe::log_line_budget(&info.service, "slow callback") {
            tracing::warn!(connection = %info.id, %callback, ?took, suppressed, "a callback blocked the reactor");
        }
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
            if let Some(suppressed) = observe::log_line_budget(&info.service, "callback panicked") {
                tracing::error!(connection = %info.id, suppressed, "{message}");
            }
            observe::emit(|| {
                Event::ProtocolError(ProtocolError {
                    service: info.service.clone(),
                    connection: Some(info.id),
                    kind: ErrorKind::CallbackPanicked,
                    count: 1,
                    message: message.clone(),
                })
            });
            Err(message)
        }
    }
}

/// Serves one connection until it closes; returns why it closed.
pub(crate) async fn drive<S: Stream>(
    io: S,
    transport: Transport,
    protocol: &mut dyn Protocol,
) -> CloseReason {
    let name = protocol.name();
    transport.set_drains_itself();
    guarded(&transport, name, "connection_made", || {
        protocol.connection_made(&transport)
    });
    let mut driver = Driver {
        io,
        transport,
        protocol,
        name,
        read_eof: false,
        write_shut: false,
    };
    poll_fn(|cx| {
        driver.transport.update(|f| f.in_poll = true);
        let result = driver.poll(cx);
        driver.transport.update(|f| f.in_poll = false);
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

/// One connection between polls: its socket, its protocol, and how far each direction
/// has closed.
struct Driver<'p, S> {
    io: S,
    transport: Transport,
    protocol: &'p mut dyn Protocol,
    /// The protocol's name, for the callback guard's reports.
    name: &'static str,
    /// The peer ended its side: nothing more is read.
    read_eof: bool,
    /// Our side is shut down (`lose_write_connection` done): nothing more is written.
    write_shut: bool,
}

/// What a step of a poll decided: go on with the next step, or end this poll with its result.
type Step = ControlFlow<Poll<CloseReason>>;

impl<S: Stream> Driver<'_, S> {
    /// Each round applies pending socket options, flushes what the protocol wrote, closes
    /// if asked once that is flushed, and reads once; up to `READ_BUDGET` reads a poll.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<CloseReason> {
        register_waker(&self.transport, cx);
        let mut budget = READ_BUDGET;
        loop {
            let flags = self.transport.flags();
            if flags.aborted {
                // Aborted, the connection is reset rather than closed in order (as Twisted's
                // `abortConnection` does), so the peer learns it was cut off: a proxy passes
                // on a reset as a reset, not as the end of what it relayed.
                let _ = self.io.reset_on_close();
                return Poll::Ready(self.transport.take_reason(CloseReason::Aborted));
            }
            if flags.drain {
                self.transport.clear_drain();
                let (transport, protocol) = (&self.transport, &mut *self.protocol);
                guarded(transport, self.name, "drain", || protocol.drain(transport));
                continue;
            }
            if flags.timed_out {
                self.transport.clear_timed_out();
                if flags.closing {
                    // Closing since: nothing for the protocol to decide.
                    continue;
                }
                let (transport, protocol) = (&self.transport, &mut *self.protocol);
                guarded(transport, self.name, "timeout_connection", || {
                    protocol.timeout_connection(transport);
                });
                continue;
            }
            // A handshake `start_tls` began moves below the protocol's reads and writes
            // (rustls speaks to the socket itself): while it runs, being polled on the
            // socket's readiness is its progress, as on an `ssl:` listener, so a slow
            // but moving handshake is not taken for an idle connection.
            if flags.handshaking {
                self.transport.info().stats.touch();
            }
            self.apply_socket_options(flags);
            let write_blocked = match self.flush(cx) {
                Ok(blocked) => blocked,
                Err(reason) => return Poll::Ready(reason),
            };
            self.transport.set_write_blocked(write_blocked);
            self.note_handshake_end(flags);
            let mut pulled = false;
            if !write_blocked {
                // Read again: the flush may have drained what a pull producer wrote.
                if self.transport.flags().pull_owed {
                    if !self.pull(cx, &mut budget) {
                        return Poll::Pending;
                    }
                    pulled = true;
                } else if let ControlFlow::Break(result) = self.shut_down(cx, flags) {
                    return result;
                }
            }
            // A read each round, so what the peer sends while a pull producer keeps the
            // socket busy (its next request, its end) is heard; with nothing to read then,
            // the round goes on to flush what the producer wrote.
            let read = self.read(cx, &mut budget);
            self.note_handshake_end(flags);
            match read {
                ControlFlow::Break(Poll::Pending) if pulled => {}
                ControlFlow::Break(result) => return result,
                ControlFlow::Continue(()) => {}
            }
        }
    }

    /// What the pull producer wrote went out: it writes more (before a close asked for
    /// meanwhile, as with Twisted's), within the poll's budget; false when the budget is
    /// spent (the task is woken to go on). Out of line: most connections have none.
    #[cold]
    #[inline(never)]
    fn pull(&mut self, cx: &mut Context<'_>, budget: &mut u32) -> bool {
        let Some(producer) = self.transport.take_pull_owed() else {
            return true;
        };
        if *budget == 0 {
            self.transport.note_drained();
            cx.waker().wake_by_ref();
            return false;
        }
        *budget -= 1;
        guarded(&self.transport, self.name, "resume_producing", || {
            producer.resume_producing();
        });
        true
    }

    /// Applies the socket options the transport was asked for since the last poll (only
    /// the driver holds the socket).
    fn apply_socket_options(&mut self, flags: Flags) {
        if flags.nodelay.is_none() && flags.keepalive.is_none() && flags.notsent_lowat.is_none() {
            return;
        }
        self.transport.update(|f| {
            f.nodelay = None;
            f.keepalive = None;
            f.notsent_lowat = None;
        });
        if let Some(bytes) = flags.notsent_lowat {
            let _ = self.io.set_notsent_lowat(bytes);
        }
        if let Some(on) = flags.nodelay {
            let _ = self.io.set_nodelay(on);
        }
        if let Some(on) = flags.keepalive {
            let _ = self.io.set_keepalive(on);
        }
    }

    /// Tells the transport a handshake begun by `start_tls` is over, when the flush or
    /// the read just drove it to its end (`flags`, read before them, had it under way).
    #[inline]
    fn note_handshake_end(&self, flags: Flags) {
        if flags.handshaking && !self.io.handshaking() {
            self.transport.set_handshaking(false);
        }
    }

    /// Writes what the protocol wrote until the socket is full; `Ok` says whether output
    /// is still waiting on the peer.
    fn flush(&mut self, cx: &mut Context<'_>) -> Result<bool, CloseReason> {
        let info = self.transport.info();
        loop {
            // After `start_tls`, what was written before it goes out in the clear first,
            // then the handshake begins and the rest goes out over TLS.
            let in_clear = match self.transport.flags().tls_starting {
                false => None,
                true => match self.transport.in_clear() {
                    0 => {
                        begin_tls(&self.transport, &mut self.io)?;
                        continue;
                    }
                    left => Some(left),
                },
            };
            let mut out = self.transport.shared.out.borrow_mut();
            if out.is_empty() {
                if out.capacity() > KEEP_CAPACITY {
                    *out = bytes::BytesMut::new();
                }
                break;
            }
            let end = in_clear.map_or(out.len(), |left| left.min(out.len()));
            match Pin::new(&mut self.io).poll_write(cx, &out[..end]) {
                Poll::Ready(Ok(0)) => {
                    return Err(CloseReason::Error("socket accepted no bytes".into()));
                }
                Poll::Ready(Ok(n)) => {
                    let drained = n == out.len();
                    let _ = out.split_to(n);
                    drop(out);
                    if in_clear.is_some() {
                        self.transport.sent_in_clear(n);
                    }
                    info.stats.record_write(n, Stopwatch::start());
                    self.transport.release_back_pressure();
                    if drained {
                        self.transport.note_drained();
                    }
                }
                Poll::Ready(Err(err)) => return Err(closed_by(info, &err)),
                Poll::Pending => return Ok(true),
            }
        }
        // TLS and other buffered streams need an explicit flush; after `start_tls` it
        // is what drives the handshake when nothing waits to go out, so a handshake that
        // fails is heard here.
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Pending => Ok(true),
            Poll::Ready(Err(err)) if is_handshake_failure(&err) => Err(closed_by(info, &err)),
            Poll::Ready(_) => Ok(false),
        }
    }

    /// With the writes flushed: closes the connection if a close was asked for, or shuts
    /// down our side after `lose_write_connection`.
    fn shut_down(&mut self, cx: &mut Context<'_>, flags: Flags) -> Step {
        if flags.closing {
            self.transport.end_output();
            return ControlFlow::Break(match Pin::new(&mut self.io).poll_shutdown(cx) {
                Poll::Pending => {
                    self.transport.set_write_blocked(true);
                    Poll::Pending
                }
                Poll::Ready(Err(err)) if is_handshake_failure(&err) => {
                    Poll::Ready(closed_by(self.transport.info(), &err))
                }
                Poll::Ready(_) => Poll::Ready(self.transport.take_reason(CloseReason::Done)),
            });
        }
        if flags.write_shutdown && !self.write_shut {
            self.transport.end_output();
            match Pin::new(&mut self.io).poll_shutdown(cx) {
                Poll::Pending => return ControlFlow::Break(Poll::Pending),
                Poll::Ready(Err(err)) if is_handshake_failure(&err) => {
                    return ControlFlow::Break(Poll::Ready(closed_by(self.transport.info(), &err)));
                }
                Poll::Ready(_) => {
                    self.write_shut = true;
                    if self.read_eof {
                        return ControlFlow::Break(Poll::Ready(CloseReason::Done));
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// Reads once, unless paused, closing, at end of input or out of `budget`, and hands
    /// what came to the protocol.
    // Inlined into `poll`, its one caller: this is the echo path's hottest code.
    #[inline(always)]
    fn read(&mut self, cx: &mut Context<'_>, budget: &mut u32) -> Step {
        // Flushing may have lifted a pause.
        let flags = self.transport.flags();
        // Not reading, the task waits on what comes from outside it: what its protocol
        // writes (a half-closed peer's answer, from a partner connection or a chain,
        // each watched on its own), a peer reading what was written (back-pressure's
        // pause, of this transport's own writes or of a consumer it produces for), a
        // handshake. Like a read that finds nothing, that is no stall. A pause the
        // protocol asked for is its own doing: waiting there is watched.
        if self.read_eof || flags.closing {
            crate::tasks::waiting_on_peer();
            return ControlFlow::Break(Poll::Pending);
        }
        // Nothing is read between `start_tls` and its handshake (what was written before
        // it is still going out): what the peer sends then is read over TLS, never taken
        // in the clear (the STARTTLS injection of CVE-2011-0411). Writing wakes the task.
        if flags.read_paused || flags.self_paused || flags.tls_starting {
            if !flags.read_paused || flags.pushed_back {
                crate::tasks::waiting_on_peer();
            }
            return ControlFlow::Break(Poll::Pending);
        }
        if *budget == 0 {
            cx.waker().wake_by_ref();
            return ControlFlow::Break(Poll::Pending);
        }
        *budget -= 1;
        if self.transport.take_resume_owed() {
            // What the protocol kept from before the pause comes first, as a read would;
            // what it writes is flushed, and may pause it again, before the next read.
            let (transport, protocol) = (&self.transport, &mut *self.protocol);
            guarded(transport, self.name, "reading_resumed", || {
                protocol.reading_resumed(transport)
            });
            return ControlFlow::Continue(());
        }
        let mut buf = take_read_buf();
        let mut read_buf = ReadBuf::new(&mut buf);
        match Pin::new(&mut self.io).poll_read(cx, &mut read_buf) {
            Poll::Pending => {
                put_read_buf(buf);
                crate::tasks::waiting_on_peer();
                ControlFlow::Break(Poll::Pending)
            }
            Poll::Ready(Err(err)) => {
                put_read_buf(buf);
                if err.kind() == std::io::ErrorKind::UnexpectedEof {
                    self.transport.note_truncated();
                }
                ControlFlow::Break(Poll::Ready(closed_by(self.transport.info(), &err)))
            }
            Poll::Ready(Ok(())) => {
                let n = read_buf.filled().len();
                if n == 0 {
                    put_read_buf(buf);
                    self.peer_ended();
                } else {
                    let info = self.transport.info();
                    info.stats.record_read(n, Stopwatch::start());
                    let (transport, protocol) = (&self.transport, &mut *self.protocol);
                    guarded(transport, self.name, "data_received", || {
                        protocol.data_received(transport, &buf[..n])
                    });
                    put_read_buf(buf);
                }
                ControlFlow::Continue(())
            }
        }
    }

    /// The peer ended its side: the protocol chooses between closing and going on writing
    /// (a half-close), and the connection closes anyway once both sides are done.
    fn peer_ended(&mut self) {
        self.read_eof = true;
        let mut choice = HalfClose::Close;
        let (transport, protocol) = (&self.transport, &mut *self.protocol);
        guarded(transport, self.name, "read_connection_lost", || {
            choice = protocol.read_connection_lost(transport)
        });
        if choice == HalfClose::Close || self.write_shut {
            // Flush what is buffered, then close.
            self.transport.lose_connection_with(CloseReason::PeerClosed);
        }
    }
}

/// Why a connection whose stream failed with `err` closes. A handshake begun by
/// `start_tls` that failed is reported as one on an `ssl:` listener is (its log line, and
/// `weft_errors_total{kind="tls_handshake"}`).
fn closed_by(info: &crate::observe::ConnectionInfo, err: &io::Error) -> CloseReason {
    if let Some(failed) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<HandshakeFailed>())
    {
        crate::net::tls::report_handshake_failure(info, &failed.0);
    }
    CloseReason::from_io(err)
}

/// Whether `err` says a handshake begun by `start_tls` failed (said once: the stream
/// says only that it failed after).
fn is_handshake_failure(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<HandshakeFailed>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Address;
    use crate::observe::TransportKind;

    /// A peer that can make a protocol's callback panic (or block) on every connection
    /// gets a line each at most 20 times a second for its service; the rest are said in
    /// the next line's `suppressed`, and every one is still reported.
    #[test]
    fn panicking_and_slow_callbacks_are_logged_within_the_service_s_budget() {
        let logs = weft_test_support::Logs::default();
        let subscriber = logs.subscriber();
        let info = ConnectionInfo::new(
            "flooded".into(),
            TransportKind::Tcp,
            Address::Ip("127.0.0.1:1".parse().unwrap()),
            Address::Ip("127.0.0.1:2".parse().unwrap()),
        );
        crate::observe::set_slow_threshold(std::time::Duration::ZERO);
        let began = std::time::Instant::now();
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..100 {
                let _ = guarded_call(&info, "Proto", "data_received", || panic!("bad input"));
            }
        });
        crate::observe::set_slow_threshold(std::time::Duration::from_millis(100));
        let text = logs.text();
        let panicked = text.lines().filter(|l| l.contains("panicked")).count();
        let slow = text
            .lines()
            .filter(|l| l.contains("blocked the reactor"))
            .count();
        // A second's budget each: a busy machine (each panic prints, with a backtrace
        // when asked for) may take the loop past one.
        let seconds = began.elapsed().as_secs() as usize + 1;
        if seconds == 1 {
            assert_eq!((panicked, slow), (20, 20), "{text}");
        }
        for lines in [panicked, slow] {
            assert!(
                (20..=20 * seconds).contains(&lines),
                "{lines} in {seconds} s: {text}"
            );
        }
    }
}
