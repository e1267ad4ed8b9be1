//! A proxied request's body: what is read of it before an upstream is contacted, and the
//! body as it goes upstream.
//!
//! A body no larger than `limits.body_buffer_bytes` is read whole before the request goes
//! anywhere, as nginx and HAProxy do by default (`proxy_request_buffering`,
//! `http-buffer-request`). A client that sends its body slowly, stops halfway, or declares
//! a length it does not send then holds its own connection and a buffer, never a
//! connection to an upstream (which has far fewer to give than weft has for clients), and
//! the upstream gets the request at once, whole. A body read whole can also go again, as
//! one without a body can. A larger body has its first `body_buffer_bytes` read ahead
//! and the rest streamed as it comes.
//!
//! The buffers of a service hold at most `limits.body_buffer_total_bytes` at once (on each
//! reactor), give or take the last piece each request read: once they are full, bodies
//! stream as they come, from their first byte, until buffers are freed. Each body is
//! counted by how much of it was read ahead (`weft_http_request_bodies_total{buffered}`).

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};

use crate::body::BoxError;
use crate::client_body::Paced;
use crate::metrics::BodyBuffered;

/// The client's body as it is read: paced (`request_timeout` a piece) and cut off past
/// `max_body_bytes`.
pub(crate) type Reading = Limited<Paced<Incoming>>;

/// A request body as sent upstream: none, or the client's. Most requests have none,
/// which costs no allocation; a body is boxed, as the request is moved whole several times
/// on its way to the connection's task (a body held inline would be copied each time).
pub(crate) enum ReqBody {
    Empty,
    Client(Box<ClientBody>),
}

/// The client's body: what was read of it ahead, then the rest as it comes, if any.
pub(crate) struct ClientBody {
    /// Read before the request was sent; empty once sent, or when nothing was.
    ahead: Bytes,
    /// What is still to come; `None` once the body was read whole.
    rest: Option<Reading>,
    /// The trailer fields of a body read whole, sent after its data.
    trailers: Option<HeaderMap>,
}

impl ClientBody {
    /// A body that streams as it comes, from its first byte.
    pub(crate) fn streamed(reading: Reading) -> Self {
        Self {
            ahead: Bytes::new(),
            rest: Some(reading),
            trailers: None,
        }
    }
}

impl ReqBody {
    /// The client's body not read from yet, taken out to be read ahead.
    pub(crate) fn reading(&mut self) -> Option<Reading> {
        match self {
            ReqBody::Client(body) if body.ahead.is_empty() && body.trailers.is_none() => {
                body.rest.take()
            }
            _ => None,
        }
    }
}

impl HttpBody for ReqBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let body = match self.get_mut() {
            ReqBody::Empty => return Poll::Ready(None),
            ReqBody::Client(body) => &mut **body,
        };
        if !body.ahead.is_empty() {
            return Poll::Ready(Some(Ok(Frame::data(std::mem::take(&mut body.ahead)))));
        }
        if let Some(rest) = &mut body.rest {
            return Pin::new(rest).poll_frame(cx);
        }
        Poll::Ready(body.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Client(body) => {
                body.ahead.is_empty()
                    && body.trailers.is_none()
                    && body.rest.as_ref().is_none_or(HttpBody::is_end_stream)
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        let body = match self {
            ReqBody::Empty => return SizeHint::with_exact(0),
            ReqBody::Client(body) => body,
        };
        let ahead = body.ahead.len() as u64;
        match &body.rest {
            // Exact: sent with its length, though the client sent it in chunks.
            None if body.trailers.is_none() => SizeHint::with_exact(ahead),
            None => {
                let mut hint = SizeHint::new();
                hint.set_lower(ahead);
                hint
            }
            Some(rest) => {
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower().saturating_add(ahead));
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper.saturating_add(ahead));
                }
                hint
            }
        }
    }
}

/// A body read whole, kept to send the request again.
#[derive(Clone)]
pub(crate) struct Whole {
    data: Bytes,
    trailers: Option<HeaderMap>,
}

impl Whole {
    /// The body to send.
    pub(crate) fn body(&self) -> ReqBody {
        ReqBody::Client(Box::new(ClientBody {
            ahead: self.data.clone(),
            rest: None,
            trailers: self.trailers.clone(),
        }))
    }
}

/// What reading ahead made of a body.
pub(crate) enum Ahead {
    /// Read to its end.
    Whole(Whole),
    /// Read in part (or not at all): the rest streams.
    Part(ClientBody),
}

/// Request bodies read ahead of their upstreams, in bytes, and how many they may be.
pub(crate) struct BodyBuffers {
    held: Cell<u64>,
    cap: u64,
}

impl BodyBuffers {
    pub(crate) fn new(cap: u64) -> Rc<Self> {
        Rc::new(Self {
            held: Cell::new(0),
            cap,
        })
    }
}

/// A request's share of its service's [`BodyBuffers`], given back when dropped (when the
/// request is done with its upstream).
pub(crate) struct Held {
    buffers: Rc<BodyBuffers>,
    bytes: u64,
}

impl Held {
    fn add(&mut self, n: u64) {
        self.bytes += n;
        self.buffers.held.set(self.buffers.held.get() + n);
    }

    /// Whether the service's buffers have room for more.
    fn room(&self) -> bool {
        self.buffers.held.get() < self.buffers.cap
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.buffers
            .held
            .set(self.buffers.held.get().saturating_sub(self.bytes));
    }
}

/// Reads `reading` ahead, until its end or `limit` bytes, while `buffers` have room.
/// Fails as reading the body fails: cut off past its limit, paced out, or broken off.
pub(crate) async fn read_ahead(
    mut reading: Reading,
    limit: u64,
    buffers: &Rc<BodyBuffers>,
) -> Result<(Ahead, Held, BodyBuffered), BoxError> {
    let mut held = Held {
        buffers: buffers.clone(),
        bytes: 0,
    };
    // One piece is kept as it came (a small body nearly always comes in one); a second
    // joins it in one buffer.
    let mut first = Bytes::new();
    let mut joined = BytesMut::new();
    let mut trailers = None;
    let ended = loop {
        if held.bytes >= limit || !held.room() {
            break false;
        }
        let Some(frame) = reading.frame().await.transpose()? else {
            break true;
        };
        match frame.into_data() {
            Ok(data) => {
                held.add(data.len() as u64);
                if first.is_empty() && joined.is_empty() {
                    first = data;
                } else {
                    if joined.is_empty() {
                        joined.extend_from_slice(&first);
                        first = Bytes::new();
                    }
                    joined.extend_from_slice(&data);
                }
            }
            // Trailer fields end a body.
            Err(frame) => {
                trailers = frame.into_trailers().ok();
                break true;
            }
        }
    };
    let data = if joined.is_empty() {
        first
    } else {
        joined.freeze()
    };
    let buffered = match (ended, held.bytes >= limit) {
        (true, _) => BodyBuffered::Whole,
        (false, true) => BodyBuffered::Part,
        // Stopped by the service's buffers being full, with the rest to come.
        (false, false) if data.is_empty() => BodyBuffered::None,
        (false, false) => BodyBuffered::Part,
    };
    let ahead = if ended {
        Ahead::Whole(Whole { data, trailers })
    } else {
        Ahead::Part(ClientBody {
            ahead: data,
            rest: Some(reading),
            trailers: None,
        })
    };
    Ok((ahead, held, buffered))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_s_body_is_one_word() {
        // A request is moved whole several times on its way to the upstream connection's
        // task (see `ReqBody`).
        assert_eq!(size_of::<ReqBody>(), size_of::<usize>());
    }

    #[test]
    fn a_share_of_the_buffers_is_given_back_when_dropped() {
        let buffers = BodyBuffers::new(10);
        let mut held = Held {
            buffers: buffers.clone(),
            bytes: 0,
        };
        held.add(6);
        assert!(held.room());
        held.add(6);
        assert!(!held.room(), "12 of 10");
        assert_eq!(buffers.held.get(), 12);
        drop(held);
        assert_eq!(buffers.held.get(), 0);
    }
}
