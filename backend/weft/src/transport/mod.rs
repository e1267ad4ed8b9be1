//! [`Transport`]: one connection's write side, as protocols see it (Twisted's `ITransport`).
//!
//! A transport is a cheap `Rc` handle. Writes go into its buffer and the reactor flushes
//! them right after the current callback returns (or as soon as the socket accepts more).
//! Buffers are bounded by back-pressure: above the high-water mark the registered
//! producer is paused (by default, this connection's own reading), below the low-water
//! mark it resumes. That bounds what a connection writes in answer to its own reading,
//! and what a producer writes. Writes that come from elsewhere (another connection's
//! callback, a timer: a chat room's broadcast) are not slowed by it: a peer that does not
//! read would have them pile up. For those a buffer takes a hard limit
//! ([`Transport::set_max_buffered`], none by default, as in Twisted): a write past it
//! aborts the connection ([`CloseReason::SendBufferFull`]); an idle timeout also ends
//! output that makes no progress ([`CloseReason::SendTimeout`]).

mod driver;
mod producer;
mod start_tls;

pub(crate) use driver::{Stream, drive, guarded, guarded_call};
pub use producer::{Producer, ProducerRegistered, PullProducer, PushProducer, StartTlsError};
pub(crate) use start_tls::HandshakeFailed;
pub use start_tls::TlsStart;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::address::Address;
use crate::observe::{CloseReason, ConnectionId, ConnectionInfo, stopwatch};

/// Default high-water mark: pause the producer above this many buffered bytes.
pub const DEFAULT_HIGH_WATER: usize = 64 * 1024;
/// Default low-water mark: resume the producer below this many buffered bytes.
pub const DEFAULT_LOW_WATER: usize = 16 * 1024;

/// What [`Transport::set_tcp_notsent_lowat`] is given by a protocol that streams a lot:
/// 128 KiB unsent in the kernel at most.
pub const NOTSENT_LOWAT: u32 = 128 << 10;

#[derive(Clone, Copy, Default)]
struct Flags {
    /// `lose_connection` was called: close once the buffer drains.
    closing: bool,
    /// `abort_connection` was called: close now.
    aborted: bool,
    /// It was aborted at a drain's deadline (the reactor's shutdown, or its service's
    /// removal): what it carried was cut by the operator's stop, not by its peer.
    cut_by_drain: bool,
    /// It was aborted by `Reactor::close_connection` (an operator's close, from the
    /// dashboard): what it carried was cut by that, not by its peer.
    closed_by_request: bool,
    /// A drain was asked for (shutdown, or the service's removal) and the protocol has not
    /// heard it yet.
    drain: bool,
    /// A driver with a protocol to hear a drain serves the connection: without one, a
    /// drain is a close.
    drains_itself: bool,
    /// The idle timeout went off and the protocol has not heard it yet
    /// ([`Protocol::timeout_connection`](crate::Protocol::timeout_connection)).
    timed_out: bool,
    /// `lose_write_connection` was called: shut down writing once the buffer drains.
    write_shutdown: bool,
    /// Our side's output has ended: the close or the write side's shutdown began, with the
    /// buffer drained. Writes from here on are discarded.
    output_ended: bool,
    /// The registered producer is a pull producer: the driver asks it for more as the
    /// buffer empties.
    pulling: bool,
    /// What was written has all gone out since the pull producer was last asked: it is
    /// owed a call.
    pull_owed: bool,
    /// `start_tls` was called and the handshake has not begun: what was written before it
    /// (`Shared::in_clear`) goes out in the clear first.
    tls_starting: bool,
    /// `start_tls` was called (and stays so): a second is refused.
    tls_started: bool,
    /// The handshake `start_tls` began is under way: output waits on it, not on a peer
    /// that stopped reading.
    handshaking: bool,
    /// The protocol (or a producer consumer) paused reading.
    read_paused: bool,
    /// The pause is a consumer's back-pressure (this transport as its producer): its
    /// reading waits on the consumer's peer to read.
    pushed_back: bool,
    /// Reading paused by back-pressure because no producer is registered.
    self_paused: bool,
    /// Reading was paused (either way) since the protocol last heard it resumed: it
    /// hears so before the next read, however short the pause was.
    resume_owed: bool,
    /// The registered producer was paused by back-pressure.
    producer_paused: bool,
    /// The connection is gone; writes are discarded.
    closed: bool,
    /// The peer ended a TLS stream without its `close_notify`.
    truncated: bool,
    /// The reactor is inside this connection's poll; writes need not wake it.
    in_poll: bool,
    /// The last write or flush found the socket full: output is waiting on the peer.
    write_blocked: bool,
    /// Socket options to apply at the next poll.
    nodelay: Option<bool>,
    /// Like `nodelay`: applied to the socket at the next poll, since only the driver holds the
    /// socket.
    keepalive: Option<bool>,
    /// Like `nodelay`: `TCP_NOTSENT_LOWAT`.
    notsent_lowat: Option<u32>,
}

pub(crate) struct Shared {
    info: Arc<ConnectionInfo>,
    /// Bytes written by the protocol and not yet flushed; the driver drains it into the socket.
    out: RefCell<BytesMut>,
    /// Small state bits kept in one `Cell` so each write reads and updates them without a borrow.
    flags: Cell<Flags>,
    /// The connection task's waker: a write from outside its poll wakes it to flush.
    waker: RefCell<Option<Waker>>,
    /// Above this many buffered bytes the producer is paused (back-pressure).
    high_water: Cell<usize>,
    /// Below this many buffered bytes a paused producer is resumed.
    low_water: Cell<usize>,
    /// A write that leaves more than this buffered aborts the connection (none:
    /// `usize::MAX`).
    max_buffered: Cell<usize>,
    /// Paused and resumed by the water marks (by default, this connection's own
    /// reading), or asked for more as the buffer empties.
    producer: RefCell<Option<Producer>>,
    /// Close after this long with nothing read or written; the reactor's sweep enforces it
    /// from the connection's own activity stamp, so reads and writes pay nothing for it.
    idle_timeout: Cell<Option<Duration>>,
    /// The idle timeout resets the connection rather than closing it
    /// ([`Transport::reset_on_idle_timeout`]).
    reset_when_idle: Cell<bool>,
    /// Abort after this long with output waiting and nothing read or written, idle timeout
    /// or not ([`Transport::set_send_timeout`]).
    send_timeout: Cell<Option<Duration>>,
    /// Once the protocol counts activity itself ([`Transport::count_activity_by_marks`]):
    /// the stopwatch's reading at its last mark, which the idle timeout runs from instead
    /// of the last byte read or written.
    marked: Cell<Option<u64>>,
    /// When a close (or the end of our side's output) was first asked for, as time after
    /// opening: the close timeout runs from the later of this and the last activity.
    close_requested: Cell<Duration>,
    /// Why the connection is closing, when something other than the default says so.
    pub(crate) reason: RefCell<Option<CloseReason>>,
    /// The TLS handshake `start_tls` asked for, until the driver begins it, with how much
    /// of what is buffered was written before and goes out in the clear. Boxed: one word
    /// on every connection.
    tls_start: Cell<Option<Box<PendingTls>>>,
}

/// A TLS start asked for and not begun yet.
struct PendingTls {
    how: TlsStart,
    /// Of what is buffered, the bytes written before `start_tls`, in the clear.
    in_clear: usize,
}

/// What the reactor's sweep must do to a connection that outlived a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// Nothing moved for its idle timeout: close it, flushing what is buffered.
    Idle,
    /// Its output made no progress for the close timeout once asked to close, or for
    /// its send timeout (the peer stopped reading): drop it and what is buffered.
    Stuck,
}

/// One connection's transport (Twisted's `ITransport`, `ITCPTransport`).
#[derive(Clone)]
pub struct Transport {
    pub(crate) shared: Rc<Shared>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("id", &self.shared.info.id)
            .field("peer", &self.shared.info.peer)
            .field("buffered", &self.buffered())
            .finish()
    }
}

impl Transport {
    pub(crate) fn new(info: Arc<ConnectionInfo>) -> Self {
        Self {
            shared: Rc::new(Shared {
                info,
                out: RefCell::new(BytesMut::new()),
                flags: Cell::new(Flags::default()),
                waker: RefCell::new(None),
                high_water: Cell::new(DEFAULT_HIGH_WATER),
                low_water: Cell::new(DEFAULT_LOW_WATER),
                max_buffered: Cell::new(usize::MAX),
                producer: RefCell::new(None),
                idle_timeout: Cell::new(None),
                reset_when_idle: Cell::new(false),
                send_timeout: Cell::new(None),
                marked: Cell::new(None),
                close_requested: Cell::new(Duration::ZERO),
                reason: RefCell::new(None),
                tls_start: Cell::new(None),
            }),
        }
    }

    fn update(&self, f: impl FnOnce(&mut Flags)) {
        let mut flags = self.shared.flags.get();
        f(&mut flags);
        self.shared.flags.set(flags);
    }

    fn flags(&self) -> Flags {
        self.shared.flags.get()
    }

    /// Wakes the connection's task unless it is the one running.
    fn wake(&self) {
        if !self.flags().in_poll
            && let Some(waker) = self.shared.waker.borrow().as_ref()
        {
            waker.wake_by_ref();
        }
    }

    /// Queues `data` to be sent.
    ///
    /// As with Twisted's, what is written after [`lose_connection`](Self::lose_connection)
    /// or [`lose_write_connection`](Self::lose_write_connection) still goes out before
    /// the close (a last line after the close was asked for, or a reply from another
    /// connection's callback meanwhile): the close waits for the buffer. Discarded once
    /// the close (or the write side's shutdown) has begun, the buffer drained, and once
    /// the connection is aborted or closed.
    pub fn write(&self, data: &[u8]) {
        let flags = self.flags();
        if flags.closed || flags.aborted || flags.output_ended || data.is_empty() {
            return;
        }
        let buffered = {
            let mut out = self.shared.out.borrow_mut();
            out.extend_from_slice(data);
            out.len()
        };
        if buffered > self.shared.high_water.get() {
            self.apply_back_pressure();
        }
        if buffered > self.shared.max_buffered.get() {
            self.abort_connection_with(CloseReason::SendBufferFull);
            return;
        }
        self.wake();
    }

    /// Sets a hard limit of the buffer (none by default, as in Twisted): a write that
    /// leaves more than `limit` bytes unsent aborts the connection with
    /// [`CloseReason::SendBufferFull`] (counted and logged as any close that is not
    /// routine). Back-pressure keeps a protocol that answers its own reading, or writes
    /// through a producer, far below the high-water mark; a limit is for writes that come
    /// from elsewhere (a broadcast from other connections) to a peer that may not read,
    /// and should leave room for the largest single write the protocol makes. `None`
    /// lifts it.
    pub fn set_max_buffered(&self, limit: Option<usize>) {
        self.shared.max_buffered.set(limit.unwrap_or(usize::MAX));
    }

    /// Queues several pieces to be sent, in order (Twisted's `writeSequence`): anything
    /// that iterates over bytes, such as `[head, body]` of slices or a `Vec<Vec<u8>>`.
    pub fn write_sequence(&self, pieces: impl IntoIterator<Item = impl AsRef<[u8]>>) {
        for piece in pieces {
            self.write(piece.as_ref());
        }
    }

    /// Starts TLS on a connection that began in the clear (Twisted's
    /// `ITLSTransport.startTLS`): what was written before goes out in the clear, then this
    /// end begins the handshake on the side `how` says, and what is written after, and
    /// everything read once the handshake is done, goes over TLS. A handshake that fails
    /// closes the connection (reason `protocol`, `TLS handshake failed: ...`); the idle
    /// timeout runs through it.
    ///
    /// As STARTTLS protocols require (RFC 3207 §4), the peer waits for this end's answer
    /// before it begins its handshake: bytes that came in the same read as the command
    /// have been handed to the protocol in the clear.
    ///
    /// The connection keeps its kind (`tcp`) in the inspector and the metrics; its byte
    /// counters count what the protocol reads and writes, as on an `ssl:` listener.
    ///
    /// Only a protocol's TCP connection in the clear can start TLS: [`StartTlsError`] on
    /// another (a unix socket, one that is TLS already, a stream served outside a
    /// protocol), when the connection is closing, and when a start was asked for already.
    /// The handshake has as long as an `ssl:` listener gives one (10 s): past it the
    /// connection closes, reason `timeout`.
    pub fn start_tls(&self, how: TlsStart) -> Result<(), StartTlsError> {
        let flags = self.flags();
        if flags.closed || flags.aborted || flags.closing || flags.output_ended {
            return Err(StartTlsError::Closing);
        }
        if flags.tls_started {
            return Err(StartTlsError::Started);
        }
        if !flags.drains_itself || self.info().transport != crate::observe::TransportKind::Tcp {
            return Err(StartTlsError::Unsupported);
        }
        self.shared.tls_start.set(Some(Box::new(PendingTls {
            how,
            in_clear: self.buffered(),
        })));
        self.update(|f| {
            f.tls_starting = true;
            f.tls_started = true;
        });
        self.wake();
        Ok(())
    }

    /// While a TLS start waits for what was written before it: how much of that is still
    /// buffered.
    pub(crate) fn in_clear(&self) -> usize {
        let pending = self.shared.tls_start.take();
        let left = pending.as_ref().map_or(0, |p| p.in_clear);
        self.shared.tls_start.set(pending);
        left
    }

    /// `n` of the bytes written before the TLS start went out.
    pub(crate) fn sent_in_clear(&self, n: usize) {
        let mut pending = self.shared.tls_start.take();
        if let Some(p) = pending.as_mut() {
            p.in_clear -= n;
        }
        self.shared.tls_start.set(pending);
    }

    /// The TLS start asked for, once what was written before it went out (the driver
    /// begins the handshake).
    pub(crate) fn take_tls_start(&self) -> Option<TlsStart> {
        self.update(|f| f.tls_starting = false);
        self.shared.tls_start.take().map(|p| p.how)
    }

    /// Closes the connection once everything buffered has been sent.
    pub fn lose_connection(&self) {
        self.lose_connection_with(CloseReason::Done);
    }

    /// Like [`lose_connection`](Self::lose_connection), recording why (for the log and
    /// the inspector), e.g. a framer closing on a protocol violation.
    pub fn lose_connection_with(&self, reason: CloseReason) {
        if self.flags().closed {
            return;
        }
        self.shared.reason.borrow_mut().get_or_insert(reason);
        if !self.flags().closing {
            self.shared
                .close_requested
                .set(self.shared.info.opened.elapsed());
            self.update(|f| f.closing = true);
        }
        self.wake();
    }

    /// Asks the connection to end gracefully, for `reason` (a shutdown, its service's
    /// removal): its protocol hears it ([`Protocol::drain`](crate::Protocol::drain)) and
    /// closes once what it owes is sent, by default at once. A connection whose stream is
    /// polled outside the driver (`net::stream`) is closed as by
    /// [`lose_connection_with`](Self::lose_connection_with).
    pub(crate) fn drain_with(&self, reason: CloseReason) {
        let flags = self.flags();
        if flags.closed || flags.closing || flags.aborted {
            return;
        }
        if !flags.drains_itself {
            self.lose_connection_with(reason);
            return;
        }
        self.note_reason(reason);
        self.update(|f| f.drain = true);
        self.wake();
    }

    /// The close or the write side's shutdown begins, the buffer drained: writes from now
    /// on are discarded (the driver calls this before shutting the socket down).
    pub(crate) fn end_output(&self) {
        self.update(|f| f.output_ended = true);
    }

    /// The protocol is hearing the drain it was owed (the driver calls the hook).
    pub(crate) fn clear_drain(&self) {
        self.update(|f| f.drain = false);
    }

    /// The idle timeout went off: a protocol's driver has its protocol hear it
    /// ([`Protocol::timeout_connection`](crate::Protocol::timeout_connection), which by
    /// default closes the connection); without one, it closes with reason `TimedOut`.
    /// The idle time starts again, so a protocol that keeps the connection hears it
    /// again only after another whole timeout with nothing moving.
    pub(crate) fn time_out(&self) {
        let flags = self.flags();
        if flags.closed || flags.closing || flags.aborted {
            return;
        }
        if !flags.drains_itself {
            self.lose_connection_with(CloseReason::TimedOut);
            return;
        }
        self.shared.info.stats.touch();
        self.mark_activity();
        self.update(|f| f.timed_out = true);
        self.wake();
    }

    /// The protocol is hearing the timeout it was owed (the driver calls the hook).
    pub(crate) fn clear_timed_out(&self) {
        self.update(|f| f.timed_out = false);
    }

    /// Says that a driver serves the connection: a drain is its protocol's to hear.
    pub(crate) fn set_drains_itself(&self) {
        self.update(|f| f.drains_itself = true);
    }

    /// Closes the connection now, discarding anything buffered; a TCP connection is reset
    /// (`SO_LINGER` 0), as Twisted's `abortConnection` does, so the peer sees it was cut off.
    pub fn abort_connection(&self) {
        self.abort_with(CloseReason::Aborted);
    }

    /// Like [`abort_connection`](Self::abort_connection), recording why; e.g. a proxy
    /// passing on that the other side of the pair was reset.
    pub fn abort_connection_with(&self, reason: CloseReason) {
        self.abort_with(reason);
    }

    pub(crate) fn abort_with(&self, reason: CloseReason) {
        let flags = self.flags();
        if flags.closed {
            return;
        }
        let drained = matches!(reason, CloseReason::Shutdown | CloseReason::ServiceStopped);
        // An abort after a graceful close was asked for supersedes its reason: the close
        // did not happen as asked, and what was buffered is dropped.
        let mut recorded = self.shared.reason.borrow_mut();
        if flags.closing && !flags.aborted || recorded.is_none() {
            *recorded = Some(reason);
        }
        drop(recorded);
        self.shared.out.borrow_mut().clear();
        self.update(|f| {
            f.aborted = true;
            f.cut_by_drain |= drained;
        });
        self.wake();
    }

    /// Whether it was aborted at a drain's deadline (the reactor's shutdown, or its
    /// service's removal): a failure of what it carried is the stop's doing, not the
    /// peer's.
    pub fn cut_by_drain(&self) -> bool {
        self.flags().cut_by_drain
    }

    /// Whether [`Reactor::close_connection`](crate::Reactor::close_connection) aborted it
    /// (an operator's close, from the dashboard): a failure of what it carried is that
    /// close's doing, not the peer's.
    pub fn closed_by_request(&self) -> bool {
        self.flags().closed_by_request
    }

    /// Aborts it for [`Reactor::close_connection`].
    pub(crate) fn abort_by_request(&self) {
        if !self.flags().closed {
            self.update(|f| f.closed_by_request = true);
        }
        self.abort_connection();
    }

    /// Shuts down the write side once the buffer drains; reading goes on (half-close). As
    /// with a close, output the peer does not take for the reactor's `close_timeout` is
    /// given up: the connection is aborted (`send_timeout`).
    pub fn lose_write_connection(&self) {
        let flags = self.flags();
        if flags.closed || flags.write_shutdown {
            return;
        }
        if !flags.closing {
            self.shared
                .close_requested
                .set(self.shared.info.opened.elapsed());
        }
        self.update(|f| f.write_shutdown = true);
        self.wake();
    }

    /// Stops reading from the peer until [`resume_reading`](Self::resume_reading).
    pub fn pause_reading(&self) {
        self.update(|f| {
            f.read_paused = true;
            f.resume_owed = true;
        });
    }

    /// Resumes reading after [`pause_reading`](Self::pause_reading).
    pub fn resume_reading(&self) {
        self.update(|f| {
            f.read_paused = false;
            f.pushed_back = false;
        });
        self.wake();
    }

    /// Whether reading was paused since the protocol last heard it resumed, which it is
    /// now to hear; clears that.
    pub(crate) fn take_resume_owed(&self) -> bool {
        let owed = self.flags().resume_owed;
        if owed {
            self.update(|f| f.resume_owed = false);
        }
        owed
    }

    /// Whether the protocol paused reading.
    pub fn is_reading_paused(&self) -> bool {
        let f = self.flags();
        f.read_paused || f.self_paused
    }

    /// Sets `TCP_NODELAY` (no effect on non-TCP transports).
    pub fn set_tcp_nodelay(&self, on: bool) {
        self.update(|f| f.nodelay = Some(on));
        self.wake();
    }

    /// Sets `SO_KEEPALIVE` (no effect on non-TCP transports).
    pub fn set_tcp_keepalive(&self, on: bool) {
        self.update(|f| f.keepalive = Some(on));
        self.wake();
    }

    /// Has the kernel hold at most `bytes` written and not sent yet
    /// (`TCP_NOTSENT_LOWAT`; no effect on non-TCP transports, nor on kernels before Linux
    /// 3.12), for a protocol streaming more than the idle timeout lets a slow peer take.
    ///
    /// The kernel grows a socket's send buffer to 4 MB and, by default, says it is
    /// writable again only once a third of that is free: a peer reading slowly (a
    /// secondary taking a zone transfer over a slow link) leaves the connection with
    /// nothing written for longer than its idle timeout while it reads on, and is cut off
    /// as idle, since the peer's reading shows only as room to write. With this the
    /// kernel takes writes while less than `bytes` is unsent, and says the socket is
    /// writable again once less than half of `bytes` is: the connection writes again each
    /// time the peer has taken somewhat more than half of `bytes` ([`NOTSENT_LOWAT`] is
    /// 128 KiB; 100 to 170 KB measured, as a write can go a segment or two past the mark,
    /// so a peer reading under about 20 KB/s at a 10 s idle timeout is idle). It costs
    /// bulk transfers to fast peers more writes (a 1 MiB file on loopback, a sixth of its
    /// rate), so it is not the default.
    pub fn set_tcp_notsent_lowat(&self, bytes: u32) {
        self.update(|f| f.notsent_lowat = Some(bytes));
        self.wake();
    }

    /// Registers the producer to pause when this transport's buffer is too full
    /// (Twisted's `registerProducer(producer, True)`); [`ProducerRegistered`] when one is
    /// already (a second would never be told of the pressure the first was paused for).
    /// A connection registered as another's producer, paused by this one's
    /// back-pressure, gets twice its idle timeout: give this transport a deadline of its
    /// own (an idle timeout, or [`set_send_timeout`](Self::set_send_timeout)) as long,
    /// and it ends the wait first when its peer stops reading
    /// ([`CloseReason::SendTimeout`]; its close stops the producer), so the side that
    /// stopped reading is the one named.
    pub fn register_producer(
        &self,
        producer: Rc<dyn PushProducer>,
    ) -> Result<(), ProducerRegistered> {
        if self.shared.producer.borrow().is_some() {
            return Err(ProducerRegistered(Producer::Push(producer)));
        }
        *self.shared.producer.borrow_mut() = Some(Producer::Push(producer));
        if self.buffered() > self.shared.high_water.get() {
            self.apply_back_pressure();
        }
        Ok(())
    }

    /// Registers a producer to ask for more each time what was written has gone out
    /// (Twisted's `registerProducer(producer, False)`, see [`PullProducer`]); asks it
    /// once now, as Twisted does. [`ProducerRegistered`] when one is already.
    pub fn register_pull_producer(
        &self,
        producer: Rc<dyn PullProducer>,
    ) -> Result<(), ProducerRegistered> {
        if self.shared.producer.borrow().is_some() {
            return Err(ProducerRegistered(Producer::Pull(producer)));
        }
        let flags = self.flags();
        if flags.closed || flags.aborted || flags.output_ended {
            // Nothing will ever ask it again: the consumer is gone, or takes no more.
            producer.stop_producing();
            return Ok(());
        }
        *self.shared.producer.borrow_mut() = Some(Producer::Pull(producer.clone()));
        self.update(|f| {
            f.pulling = true;
            f.pull_owed = false;
        });
        producer.resume_producing();
        Ok(())
    }

    /// Forgets the registered producer, resuming a push producer if it was paused.
    pub fn unregister_producer(&self) {
        let producer = self.shared.producer.borrow_mut().take();
        self.update(|f| {
            f.pulling = false;
            f.pull_owed = false;
        });
        if self.flags().producer_paused {
            self.update(|f| f.producer_paused = false);
            if let Some(Producer::Push(p)) = producer {
                p.resume_producing();
            }
        }
    }

    /// The pull producer, when one is owed a call (what it wrote has gone out), which it
    /// is now to get; clears that (the driver asks it).
    pub(crate) fn take_pull_owed(&self) -> Option<Rc<dyn PullProducer>> {
        let flags = self.flags();
        if !flags.pull_owed {
            return None;
        }
        self.update(|f| f.pull_owed = false);
        match &*self.shared.producer.borrow() {
            Some(Producer::Pull(p)) => Some(p.clone()),
            _ => None,
        }
    }

    /// Whether the registered producer is the pull producer at `producer` (its data
    /// pointer).
    pub(crate) fn pull_producer_is(&self, producer: *const ()) -> bool {
        match &*self.shared.producer.borrow() {
            Some(Producer::Pull(p)) => std::ptr::eq(Rc::as_ptr(p).cast::<()>(), producer),
            _ => false,
        }
    }

    /// The buffer went out whole: a pull producer is owed a call.
    pub(crate) fn note_drained(&self) {
        if self.flags().pulling {
            self.update(|f| f.pull_owed = true);
        }
    }

    /// Sets the back-pressure marks, in bytes buffered.
    pub fn set_water_marks(&self, high: usize, low: usize) {
        self.shared.high_water.set(high.max(1));
        self.shared.low_water.set(low.min(high));
    }

    /// Closes the connection (as [`lose_connection`](Self::lose_connection) does, with
    /// reason [`CloseReason::TimedOut`]) once nothing has been read or written for
    /// `timeout`; `None` turns that off. Twisted's `TimeoutMixin.setTimeout`, without a
    /// timer per connection: the reactor checks every connection's last activity a few
    /// times per timeout.
    pub fn set_idle_timeout(&self, timeout: Option<Duration>) {
        self.shared.idle_timeout.set(timeout);
        if let Some(timeout) = timeout
            && let Some(reactor) = crate::reactor::Reactor::try_current()
        {
            reactor.sweep_at_least_every(timeout);
        }
    }

    /// The idle timeout, if one is set.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.shared.idle_timeout.get()
    }

    /// Aborts the connection as [`CloseReason::SendTimeout`] when its output waits on a
    /// peer that has taken none of it, and nothing was read either, for `timeout`, with
    /// or without an idle timeout (which, shorter, comes first). For the upstream side of
    /// a relay, which is not idle for waiting on its partner's peer, but must not hold
    /// what its partner sent for a peer that stopped reading.
    pub fn set_send_timeout(&self, timeout: Option<Duration>) {
        self.shared.send_timeout.set(timeout);
        if let Some(timeout) = timeout
            && let Some(reactor) = crate::reactor::Reactor::try_current()
        {
            reactor.sweep_at_least_every(timeout);
        }
    }

    /// Makes the idle timeout reset the connection (as
    /// [`abort_connection`](Self::abort_connection) does, reason
    /// [`CloseReason::TimedOut`]) rather than close it cleanly: for a relay, whose peer
    /// would take a clean end of stream for the end of what the other side sent, when the
    /// stream was cut in the middle.
    pub fn reset_on_idle_timeout(&self) {
        self.shared.reset_when_idle.set(true);
    }

    /// Whether the idle timeout resets the connection.
    pub(crate) fn resets_when_idle(&self) -> bool {
        self.shared.reset_when_idle.get()
    }

    /// Makes the idle timeout run from the protocol's own marks
    /// ([`mark_activity`](Self::mark_activity), Twisted's `TimeoutMixin.resetTimeout`)
    /// instead of from every byte read or written; this counts as the first mark. For a
    /// protocol whose peer can send bytes that are not progress: an HTTP/2 client's PINGs
    /// would otherwise keep a connection that does nothing open for ever. The byte
    /// counters, and the close timeout, still go by bytes.
    pub fn count_activity_by_marks(&self) {
        self.shared.marked.set(Some(stopwatch::raw()));
    }

    /// Marks activity now, for an idle timeout counted by marks (a stopwatch read and a
    /// store; nothing happens otherwise).
    #[inline]
    pub fn mark_activity(&self) {
        if self.shared.marked.get().is_some() {
            self.shared.marked.set(Some(stopwatch::raw()));
        }
    }

    /// Time since the last activity the idle timeout counts: the last mark, once counted
    /// by marks; otherwise the last byte read or written.
    pub fn idle(&self) -> Duration {
        match self.shared.marked.get() {
            Some(mark) => Duration::from_nanos(stopwatch::nanos_between(mark, stopwatch::raw())),
            None => self.shared.info.stats.idle(),
        }
    }

    /// Which deadline, if any, the connection has outlived at `now`: idle for its idle
    /// timeout, or closing (or shutting its write side) with output blocked on the peer
    /// for `close_timeout`.
    pub(crate) fn expired(&self, now: Instant, close_timeout: Duration) -> Option<Expired> {
        let flags = self.flags();
        if flags.closed || flags.aborted {
            return None;
        }
        let info = &self.shared.info;
        let now = now.saturating_duration_since(info.opened);
        let last = info.last_activity();
        if flags.closing {
            // A close waits for the exchange in flight (an HTTP response still being made,
            // say) as long as it takes; only output the peer will not take is given up.
            let since = last.max(self.shared.close_requested.get());
            let stuck = flags.write_blocked && now.saturating_sub(since) >= close_timeout;
            return stuck.then_some(Expired::Stuck);
        }
        // The same for the end of our side's output: a peer that half-closed and stopped
        // reading would otherwise hold the connection until it is idle.
        if flags.write_shutdown && flags.write_blocked {
            let since = last.max(self.shared.close_requested.get());
            if now.saturating_sub(since) >= close_timeout {
                return Some(Expired::Stuck);
            }
        }
        if let Some(timeout) = self.shared.send_timeout.get()
            && flags.write_blocked
            && !flags.handshaking
            && now.saturating_sub(last) >= timeout
        {
            return Some(Expired::Stuck);
        }
        let mut timeout = self.shared.idle_timeout.get()?;
        // Paused by a consumer's back-pressure, it waits on the consumer's peer to read,
        // and gets twice its idle timeout: a consumer with a deadline of its own (an idle
        // or send timeout as long) ends the wait first, naming the side that stopped
        // reading (`SendTimeout`; its close stops this producer), and what its peer reads
        // shows here as reading again. Else a client sending to an upstream that stopped
        // reading was the one timed out. A consumer with no deadline leaves it bounded all
        // the same.
        if flags.pushed_back {
            timeout = timeout.saturating_mul(2);
        }
        let idle = match self.shared.marked.get() {
            Some(_) => self.idle(),
            None => now.saturating_sub(last),
        };
        (idle >= timeout).then_some(Expired::Idle)
    }

    /// Whether output waits on a socket the peer does not empty, with the idle timeout
    /// counted by bytes: idle then, nothing of it moved for the whole timeout. (Counted by
    /// a protocol's marks, idle says nothing of the bytes.)
    pub(crate) fn output_stuck(&self) -> bool {
        let flags = self.flags();
        flags.write_blocked && !flags.handshaking && self.shared.marked.get().is_none()
    }

    /// Whether a handshake begun by `start_tls` is under way.
    pub(crate) fn handshaking(&self) -> bool {
        self.flags().handshaking
    }

    /// Records whether a handshake begun by `start_tls` is under way: idle then, the
    /// connection timed out, whatever waits to go out after the handshake.
    pub(crate) fn set_handshaking(&self, on: bool) {
        if self.flags().handshaking != on {
            self.update(|f| f.handshaking = on);
        }
    }

    /// Bytes written but not yet sent.
    pub fn buffered(&self) -> usize {
        self.shared.out.borrow().len()
    }

    /// The remote address (Twisted's `getPeer`).
    pub fn peer(&self) -> &Address {
        &self.shared.info.peer
    }

    /// The local address (Twisted's `getHost`).
    pub fn host(&self) -> &Address {
        &self.shared.info.local
    }

    /// The connection's id.
    pub fn id(&self) -> ConnectionId {
        self.shared.info.id
    }

    /// Everything known about the connection, with its live counters.
    pub fn info(&self) -> &Arc<ConnectionInfo> {
        &self.shared.info
    }

    /// Whether the peer ended a TLS connection without saying so (`close_notify`): the
    /// close reads as [`CloseReason::PeerClosed`], since many TLS clients end that way after
    /// their last exchange and protocols that frame their own messages lose nothing, but
    /// what an unframed stream carried may have been cut short by anyone on the path (RFC
    /// 8446 §6.1). A relay passes that on as a reset rather than a clean end.
    pub fn was_truncated(&self) -> bool {
        self.flags().truncated
    }

    pub(crate) fn note_truncated(&self) {
        self.update(|f| f.truncated = true);
    }

    /// Whether a close was requested (Twisted's `disconnecting`).
    pub fn is_disconnecting(&self) -> bool {
        let f = self.flags();
        f.closing || f.aborted
    }

    /// Whether the close requested is a drain (the reactor shutting down, or the service
    /// stopping) and nothing more: the connection may finish what is under way before
    /// the drain's deadline, which aborts it. False once it is aborted or closed, or
    /// when no close was requested.
    pub fn is_draining(&self) -> bool {
        let f = self.flags();
        f.closing
            && !f.aborted
            && !f.closed
            && matches!(
                *self.shared.reason.borrow(),
                Some(CloseReason::Shutdown | CloseReason::ServiceStopped)
            )
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.flags().closed
    }

    fn apply_back_pressure(&self) {
        let producer = self.shared.producer.borrow().clone();
        match producer {
            Some(Producer::Push(p)) if !self.flags().producer_paused => {
                self.update(|f| f.producer_paused = true);
                p.pause_producing();
            }
            Some(Producer::Push(_)) => {}
            // A pull producer writes only when asked, once the buffer is empty: what fills
            // it past the mark is the protocol's reading, paused as without a producer.
            Some(Producer::Pull(_)) | None => self.update(|f| {
                f.self_paused = true;
                f.resume_owed = true;
            }),
        }
    }

    /// Called after the buffer shrank: resumes whatever back-pressure paused.
    fn release_back_pressure(&self) {
        if self.buffered() > self.shared.low_water.get() {
            return;
        }
        let flags = self.flags();
        if flags.self_paused {
            self.update(|f| f.self_paused = false);
        }
        if flags.producer_paused {
            self.update(|f| f.producer_paused = false);
            let producer = self.shared.producer.borrow().clone();
            if let Some(Producer::Push(p)) = producer {
                p.resume_producing();
            }
        }
    }

    /// Takes everything buffered (for in-memory transports in tests).
    pub(crate) fn take_written(&self) -> BytesMut {
        let data = self.shared.out.borrow_mut().split();
        self.release_back_pressure();
        if !data.is_empty() {
            // Gone out whole, as a driver's flush would have it.
            self.note_drained();
        }
        data
    }

    pub(crate) fn mark_closed(&self) {
        self.update(|f| f.closed = true);
        self.shared.waker.borrow_mut().take();
        // Take the producer out before calling it: it may (un)register another.
        let producer = self.shared.producer.borrow_mut().take();
        self.update(|f| {
            f.pulling = false;
            f.pull_owed = false;
        });
        if let Some(p) = producer {
            p.stop();
        }
    }

    /// Records whether the last write or flush found the socket full.
    pub(crate) fn set_write_blocked(&self, blocked: bool) {
        if blocked {
            // The task writing waits for the peer to read: not a stall.
            crate::tasks::waiting_on_peer();
        }
        if self.flags().write_blocked != blocked {
            self.update(|f| f.write_blocked = blocked);
        }
    }

    /// Whether `abort_connection` (or the reactor) asked for an immediate close.
    pub(crate) fn is_aborted(&self) -> bool {
        self.flags().aborted
    }

    /// Lets [`wake`](Self::wake) reach a task that polls this connection's stream itself
    /// rather than through the driver (see `net::stream`).
    pub(crate) fn register_waker(&self, waker: &Waker) {
        let mut slot = self.shared.waker.borrow_mut();
        match slot.as_ref() {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    /// Records why the connection is closing unless a reason is already known.
    pub(crate) fn note_reason(&self, reason: CloseReason) {
        self.shared.reason.borrow_mut().get_or_insert(reason);
    }

    pub(crate) fn take_reason(&self, default: CloseReason) -> CloseReason {
        self.shared.reason.borrow_mut().take().unwrap_or(default)
    }
}

impl PushProducer for Transport {
    fn pause_producing(&self) {
        self.pause_reading();
        self.update(|f| f.pushed_back = true);
    }
    fn resume_producing(&self) {
        self.resume_reading();
    }
    fn stop_producing(&self) {
        self.lose_connection();
    }
}
