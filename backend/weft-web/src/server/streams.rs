//! HTTP/2 streams, each a task of its own, and what counts as progress on their
//! connection.
//!
//! An HTTP/2 connection's idle timeout counts progress only (its transport counts
//! activity by marks): request frames read (a HEADERS, a DATA with bytes: `heads::Scan`)
//! and response frames written (the same: [`Sent`]). A PING, a SETTINGS or a
//! WINDOW_UPDATE is no progress, either way: a client that sends only those, with or
//! without streams it will not take, is idle, and after its GOAWAY it is given up as one
//! that stopped cooperating (`connection::until_closed`). Not while a stream's response
//! body waits on its source (a file, an upstream, which `upstream_timeout` bounds): such
//! a stream counts among the requests the connection waits on (`Conn::answering`), as
//! one whose response head is being made does.
//!
//! One stream can also stall while its connection makes progress: a client that opens no
//! flow-control window for a response (a SETTINGS_INITIAL_WINDOW_SIZE of 0) holds the
//! response's file or upstream connection, while its other streams keep the connection
//! busy. hyper takes a piece from a response body and holds it until the stream has some
//! room (the client's window, less what h2 still buffers for the stream), then hands it
//! to h2 whole (h2 buffers what the window cannot take yet) and polls the body for the
//! next: a stream whose response head, or latest piece, went to hyper and whose body was
//! not polled again for the connection's idle timeout is reset: its task is dropped,
//! which hyper answers with RST_STREAM (CANCEL). So a stream must take a piece of its
//! response (64 KiB at most: a file's chunk, an upstream's read) within `idle_timeout`,
//! about 1 KiB/s at the default 60 s. It is counted as refused `send_timeout` and logged
//! as cut short, as an HTTP/1.1 connection whose client stops reading is closed (nginx's
//! `send_timeout`). The last piece is timed alike while it waits for room (a body that
//! has ended is then still cut short, and logged so: `Logged` writes its line when it is
//! dropped); once any room lets hyper hand it to h2, the stream's task ends and the
//! request is logged whole, and what h2 still buffers of it is left to the connection's
//! own timeouts.
//!
//! The response body ([`Logged`](crate::access_log::Logged)) says when it is made and
//! what each of its polls did through a thread-local, which the stream's task reads after
//! each poll of the stream: the body knows nothing of its stream, and the stream's task
//! nothing of its body.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use weft::Transport;

use super::State;
use super::connection::Conn;
use super::frames::{DATA, Frames, HEADERS, Seen};
use crate::metrics::Refusal;

/// What the response body being polled last did, in the stream's task that polls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyPoll {
    /// Not polled (during this poll of the stream).
    Untouched,
    /// Was made (its response head is ready) or gave bytes: hyper sends them, and polls
    /// it again, once the client has room.
    Gave,
    /// Had nothing yet: it waits on its source (a file, an upstream).
    Waiting,
    /// Ended, or failed: nothing more comes of it.
    Done,
    /// Its stream is being reset for a stalled client.
    Cut,
}

thread_local! {
    static BODY: Cell<BodyPoll> = const { Cell::new(BodyPoll::Untouched) };
}

/// Called when a response body is made, with its head ready to send.
#[inline]
pub(crate) fn response_made() {
    BODY.set(BodyPoll::Gave);
}

/// Called by the response body on each poll that found nothing: it waits on its source.
#[inline]
pub(crate) fn body_pending() {
    BODY.set(BodyPoll::Waiting);
}

/// Called by the response body on each poll that found something: bytes (`gave`), or
/// its end (trailers, an error, or nothing more).
#[inline]
pub(crate) fn body_polled(gave: bool) {
    BODY.set(if gave { BodyPoll::Gave } else { BodyPoll::Done });
}

/// Whether the body being dropped is that of a stream reset for a stalled client.
pub(crate) fn body_cut() -> bool {
    BODY.get() == BodyPoll::Cut
}

/// What the streams of one HTTP/2 connection share.
struct Connection {
    state: Rc<State>,
    conn: Rc<Conn>,
    transport: Transport,
    /// How long a stream may wait on the client for room: the connection's idle timeout.
    stall_limit: Option<Duration>,
}

/// Runs each stream of one HTTP/2 connection as a task on the reactor thread, tracked
/// like its other tasks (the handlers share the service's `Rc` state, so they are not
/// `Send`), and watched as the module says.
#[derive(Clone)]
pub(crate) struct StreamTasks(Rc<Connection>);

impl StreamTasks {
    /// For the streams of the connection on `transport`, whose activity it now counts by
    /// marks.
    pub(super) fn new(state: Rc<State>, conn: Rc<Conn>, transport: Transport) -> Self {
        transport.count_activity_by_marks();
        let stall_limit = transport.idle_timeout();
        Self(Rc::new(Connection {
            state,
            conn,
            transport,
            stall_limit,
        }))
    }
}

impl<F> hyper::rt::Executor<F> for StreamTasks
where
    F: Future<Output = ()> + 'static,
{
    fn execute(&self, future: F) {
        weft::Reactor::current().spawn(Watched {
            future: Some(Box::pin(future)),
            connection: self.0.clone(),
            stalled: None,
            waiting: false,
        });
    }
}

/// One stream's task.
struct Watched<F> {
    /// Boxed, so that a stalled stream's can be dropped while its task ends.
    future: Option<Pin<Box<F>>>,
    connection: Rc<Connection>,
    /// Set when the response (its head, or a piece of its body) went to hyper and the
    /// body was not polled again: the deadline by which it must be, or the stream is reset
    /// (boxed: most streams never wait on their client).
    stalled: Option<Pin<Box<Sleep>>>,
    /// Whether its response body waits on its source: counted, while it does, among the
    /// connection's requests waiting on a file or an upstream (`Conn::answering`), so
    /// that a connection asked to close waits for it rather than taking the client for
    /// stalled.
    waiting: bool,
}

impl<F> Watched<F> {
    fn set_waiting(&mut self, waiting: bool) {
        if self.waiting != waiting {
            self.waiting = waiting;
            let answering = &self.connection.conn.answering;
            answering.set(if waiting {
                answering.get() + 1
            } else {
                answering.get() - 1
            });
        }
    }
}

impl<F> Drop for Watched<F> {
    fn drop(&mut self) {
        self.set_waiting(false);
    }
}

impl<F: Future<Output = ()>> Future for Watched<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some(future) = &mut this.future else {
            return Poll::Ready(());
        };
        BODY.set(BodyPoll::Untouched);
        if future.as_mut().poll(cx).is_ready() {
            this.future = None;
            this.set_waiting(false);
            return Poll::Ready(());
        }
        match BODY.get() {
            BodyPoll::Gave => {
                this.set_waiting(false);
                if let Some(limit) = this.connection.stall_limit {
                    let at = Instant::now() + limit;
                    match &mut this.stalled {
                        Some(sleep) => sleep.as_mut().reset(at),
                        None => this.stalled = Some(Box::pin(tokio::time::sleep_until(at))),
                    }
                }
            }
            polled @ (BodyPoll::Waiting | BodyPoll::Done) => {
                this.set_waiting(polled == BodyPoll::Waiting);
                this.stalled = None;
            }
            BodyPoll::Untouched | BodyPoll::Cut => {}
        }
        let Some(sleep) = &mut this.stalled else {
            return Poll::Pending;
        };
        if sleep.as_mut().poll(cx).is_pending() {
            // It waits on the client's window, within the connection's idle timeout.
            weft::tasks::waiting_on_peer();
            return Poll::Pending;
        }
        let connection = &this.connection;
        connection.state.recorder.refused(Refusal::SendTimeout);
        tracing::info!(
            connection = %connection.transport.id(),
            service = %connection.state.name,
            "an HTTP/2 client took nothing more of a response for {:?} (its window stayed \
             shut); its stream was reset",
            connection.stall_limit.unwrap_or_default(),
        );
        // Dropping the stream's future drops its response body, which logs the request
        // as cut short, and its send handle, which hyper answers with RST_STREAM.
        BODY.set(BodyPoll::Cut);
        this.future = None;
        this.set_waiting(false);
        BODY.set(BodyPoll::Untouched);
        Poll::Ready(())
    }
}

/// The error codes (RFC 9113 §7) hyper resets a stream with for the client's fault: a
/// malformed request (PROTOCOL_ERROR), a frame past the window (FLOW_CONTROL_ERROR) or of
/// the wrong size (FRAME_SIZE_ERROR), a stream past SETTINGS_MAX_CONCURRENT_STREAMS
/// (REFUSED_STREAM), a field block it cannot take (COMPRESSION_ERROR), or abuse
/// (ENHANCE_YOUR_CALM). NO_ERROR (a request answered before its body was read, RFC 9113
/// §8.1) and CANCEL (a stream given up on here) are not, nor is STREAM_CLOSED: a frame
/// the client sent before it heard of a reset draws it.
fn client_fault(code: u32) -> Option<&'static str> {
    Some(match code {
        0x1 => "PROTOCOL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x9 => "COMPRESSION_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        _ => return None,
    })
}

/// Follows the frames an HTTP/2 connection writes to its client: a response head or
/// body bytes are progress, and each stream it resets for the client's fault is counted
/// (the h2 crate sends those resets itself, and tells hyper nothing of them).
pub(crate) struct Sent {
    connection: Rc<Connection>,
    frames: Frames,
}

impl Sent {
    /// For the connection whose streams `tasks` runs.
    pub(crate) fn new(tasks: &StreamTasks) -> Self {
        Self {
            connection: tasks.0.clone(),
            frames: Frames::default(),
        }
    }

    /// Follows `bytes`, the next the connection wrote.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        let connection = &self.connection;
        self.frames.feed(bytes, |seen| match seen {
            Seen::Began { kind: HEADERS, .. }
            | Seen::Began {
                kind: DATA,
                len: 1..,
                ..
            } => {
                connection.transport.mark_activity();
            }
            Seen::Reset { stream, code } => {
                let Some(name) = client_fault(code) else {
                    return;
                };
                connection.state.recorder.refused(Refusal::StreamError);
                weft::observe::report_error(
                    connection.transport.info(),
                    weft::observe::ErrorKind::BadFrame,
                    format!("HTTP/2 stream {stream} reset for the client's error: {name}"),
                );
            }
            Seen::Began { .. } | Seen::Ended => {}
        });
    }
}
