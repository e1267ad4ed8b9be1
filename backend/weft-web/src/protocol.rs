//! Which HTTP a connection speaks, and hyper's HTTP/2 server set up against abuse.
//!
//! On an `ssl:` listener the client chose in the TLS handshake (ALPN `h2` or
//! `http/1.1`; no ALPN means HTTP/1.1, RFC 9113 §3.2). On a plain one, a client with
//! prior knowledge opens with the HTTP/2 preface (`PRI * HTTP/2.0`, RFC 9113 §3.4),
//! which no HTTP/1.1 request starts with: the first bytes are read once per connection
//! to tell, and handed back to hyper in front of the stream.

use std::cell::{Cell, RefCell};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use hyper_util::rt::TokioTimer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use weft::InspectedStream;

use crate::server::heads::Scan;
use crate::server::streams::{Sent, StreamTasks};

/// What the ALPN protocols of an `ssl:` listener offer, most preferred first.
pub(crate) const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// What an `ssl:` listener answers a peer that speaks plain text (an `http://` URL for an
/// HTTPS port) before it closes: a 400 that says so, as nginx's does, rather than a
/// silent close (curl's "Empty reply from server").
pub(crate) const PLAIN_TEXT_REPLY: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
    Content-Type: text/plain; charset=utf-8\r\nContent-Length: 92\r\nConnection: close\r\n\r\n\
    400 Bad Request: this port speaks HTTPS, and the request came as plain HTTP (use https://).\n";

/// Streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
pub(crate) const H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Streams the client may reset before the service has taken them up; one more ends
/// the connection with GOAWAY ENHANCE_YOUR_CALM (the rapid-reset attack, CVE-2023-44487).
pub(crate) const H2_MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Streams the service may reset for the client's protocol errors before it ends the
/// connection with GOAWAY.
pub(crate) const H2_MAX_LOCAL_ERROR_RESETS: usize = 100;
/// Flow-control window of one stream: request body bytes the client may send ahead.
pub(crate) const H2_STREAM_WINDOW: u32 = 256 * 1024;
/// Flow-control window of the connection, across its streams.
pub(crate) const H2_CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Response bytes buffered per stream before the handler waits for the client.
pub(crate) const H2_MAX_SEND_BUF: usize = 256 * 1024;

/// The HTTP version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    /// HTTP/1.1 (and 1.0).
    H1,
    /// HTTP/2.
    H2,
}

/// The HTTP/2 connection preface's first bytes: enough to tell it from any HTTP/1 request.
const PREFACE: &[u8] = b"PRI";

/// Tells the version, reading the first bytes of a plain connection (kept in the
/// returned prefix). `None`: the client closed, or the read failed, before saying.
pub(crate) async fn detect(stream: &mut InspectedStream) -> Option<(Version, Vec<u8>)> {
    if stream.info().transport == weft::observe::TransportKind::Tls {
        let version = match stream.alpn_protocol() {
            Some(b"h2") => Version::H2,
            _ => Version::H1,
        };
        return Some((version, Vec::new()));
    }
    let mut prefix = Vec::with_capacity(PREFACE.len());
    let mut buf = [0; 3];
    while prefix.len() < PREFACE.len() && PREFACE.starts_with(&prefix) {
        let n = stream
            .read(&mut buf[..PREFACE.len() - prefix.len()])
            .await
            .ok()?;
        if n == 0 {
            return None;
        }
        prefix.extend_from_slice(&buf[..n]);
    }
    let version = if prefix == PREFACE {
        Version::H2
    } else {
        Version::H1
    };
    Some((version, prefix))
}

/// hyper's HTTP/2 server with the limits above. A header list is bounded like an HTTP/1.1
/// head (`max_header_bytes`) by the request rules, where it is counted and logged; the h2
/// crate, which answers 431 itself, unseen, is given four times that, so only a list
/// far past it (which the crate stops decoding) goes uncounted.
pub(crate) fn h2_builder(
    max_header_bytes: usize,
    streams: StreamTasks,
) -> hyper::server::conn::http2::Builder<StreamTasks> {
    let mut builder = hyper::server::conn::http2::Builder::new(streams);
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .adaptive_window(false)
        .max_send_buf_size(H2_MAX_SEND_BUF)
        .max_header_list_size(
            u32::try_from(max_header_bytes.saturating_mul(4)).unwrap_or(u32::MAX),
        );
    builder
}

/// HTTP/1.1: the end of what the client sends, held back while an answer is being made.
///
/// hyper takes the end of the client's side (a close, or `shutdown(SHUT_WR)` after its
/// last request: it cannot tell them apart) for the client gone, and drops the answer
/// being made, even to a request it read whole: a client that half-closes after its
/// requests would get its last answer or not as timing had it. Held back until the
/// answer's body is done with, the end is read after it, and the connection closes then.
/// A request that goes upstream lets it through at once: its exchange is abandoned, as
/// nginx abandons it (`proxy_ignore_client_abort off`). hyper's own `half_close(true)`
/// would keep every answer, that abandon too: hence a hold of weft's, per answer.
#[derive(Default)]
pub(crate) struct EndHold {
    /// An answer is being made that may outlive the client's end.
    answering: Cell<bool>,
    /// The end was read, and held back.
    seen: Cell<bool>,
    /// hyper's task, woken when the hold ends with the end read.
    waker: RefCell<Option<Waker>>,
}

impl EndHold {
    /// An answer is being made (a request was taken up).
    pub(crate) fn begin(&self) {
        self.answering.set(true);
    }

    /// The answer is done with, or it goes upstream: an end read meanwhile is let
    /// through.
    pub(crate) fn end(&self) {
        self.answering.set(false);
        if self.seen.get()
            && let Some(waker) = self.waker.take()
        {
            waker.wake();
        }
    }

    /// Whether a read that found the end is to wait instead (and be woken).
    fn holds(&self, cx: &Context<'_>) -> bool {
        if !self.answering.get() {
            return false;
        }
        self.seen.set(true);
        *self.waker.borrow_mut() = Some(cx.waker().clone());
        true
    }
}

/// A stream with the bytes already read from it put back in front.
pub(crate) struct Prefixed {
    prefix: Vec<u8>,
    /// How much of `prefix` has been handed on.
    taken: usize,
    stream: InspectedStream,
    /// HTTP/2: follows the frames read, to time request heads.
    heads: Option<Scan>,
    /// HTTP/2: follows the frames written, for progress and the streams reset for the
    /// client's errors.
    sent: Option<Sent>,
    /// HTTP/1.1: holds back the end of the client's side while an answer is made.
    end: Option<Rc<EndHold>>,
}

impl Prefixed {
    pub(crate) fn new(prefix: Vec<u8>, stream: InspectedStream) -> Self {
        Self {
            prefix,
            taken: 0,
            stream,
            heads: None,
            sent: None,
            end: None,
        }
    }

    /// Holds back the end of what the client sends as `hold` says (HTTP/1.1).
    pub(crate) fn holding_end(mut self, hold: Rc<EndHold>) -> Self {
        self.end = Some(hold);
        self
    }

    /// Feeds every byte read, the prefix included, to `scan`, and every byte written
    /// to `sent`.
    pub(crate) fn watching_frames(mut self, scan: Scan, sent: Sent) -> Self {
        self.heads = Some(scan);
        self.sent = Some(sent);
        self
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(hold) = &this.end
            && hold.seen.get()
        {
            // The end was read: nothing more comes, and it is told once the answer is done.
            return if hold.holds(cx) {
                Poll::Pending
            } else {
                Poll::Ready(Ok(()))
            };
        }
        let before = buf.filled().len();
        let polled = if this.taken < this.prefix.len() {
            let rest = &this.prefix[this.taken..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.taken += n;
            Poll::Ready(Ok(()))
        } else {
            Pin::new(&mut this.stream).poll_read(cx, buf)
        };
        if let (Poll::Ready(Ok(())), Some(scan)) = (&polled, &mut this.heads) {
            scan.feed(&buf.filled()[before..]);
        }
        if let (Poll::Ready(Ok(())), Some(hold)) = (&polled, &this.end)
            && buf.filled().len() == before
            && buf.remaining() > 0
            && hold.holds(cx)
        {
            return Poll::Pending;
        }
        polled
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        if let (Poll::Ready(Ok(n)), Some(sent)) = (&polled, &mut this.sent) {
            sent.feed(&buf[..*n]);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if let (Poll::Ready(Ok(n)), Some(sent)) = (&polled, &mut this.sent) {
            let mut left = *n;
            for buf in bufs {
                let part = left.min(buf.len());
                sent.feed(&buf[..part]);
                left -= part;
                if left == 0 {
                    break;
                }
            }
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// If `err` is HTTP/2 ending the connection with GOAWAY for the client's protocol error
/// or abuse of its limits (not the client going away), what it said.
pub(crate) fn goaway_sent(err: &hyper::Error) -> Option<String> {
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        if let Some(h2) = c.downcast_ref::<h2::Error>() {
            return (h2.is_go_away() && h2.is_library()).then(|| h2.to_string());
        }
        cause = c.source();
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_plain_text_reply_says_its_own_length() {
        let text = std::str::from_utf8(super::PLAIN_TEXT_REPLY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}\r\n", body.len())),
            "{head}"
        );
    }
}
