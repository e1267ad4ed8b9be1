//! A proxied request's body: what is read of it before an upstream is contacted, and the
//! body as it goes upstream.
//!
//! A body no larger than `limits.body_buffer_bytes` is read whole before the request goes
//! anywhere, as nginx and HAProxy do by default (`proxy_request_buffering`,
//! `http-buffer-request`). A client that sends its body slowly, stops halfway, or declares
//! a length it does not send then holds its own connection and a buffer, never a
//! connection to an upstream (which has far fewer to give than weft has for clients), and
//! the upstream gets the request at once, whole, with its length. A request with an
//! idempotent method whose body was read whole can also go again, as one without a body
//! can. A larger body has its first `body_buffer_bytes` read ahead and the rest streamed
//! as it comes.
//!
//! What is read ahead must come within `request_timeout` in all (each piece within it
//! too, as for any body: `Paced`), or the request is answered 408. The buffers of a
//! service hold at most `limits.body_buffer_total_bytes` at once (on each reactor), and
//! those of one peer at most a sixteenth of that (or one buffer, if more): a request
//! reserves its share as it begins reading (its body's length, or the whole buffer when
//! that is not known), and when there is no room for it, its body streams as it comes,
//! from its first byte. It gives its share back once what it read ahead is sent, or, when
//! the request may be sent again, once it is done with its upstream. Each body is counted
//! by how much of it was read ahead (`weft_http_request_bodies_total{buffered}`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};

use crate::body::BoxError;
use crate::client_body::{ClientBodyError, Paced};
use crate::metrics::{BodyBuffered, Recorder};

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
    /// The share of the service's buffers `ahead` holds, given back once it is sent
    /// (unless a copy is kept to send it again).
    held: Option<Rc<Held>>,
    /// What is still to come; `None` once the body was read whole.
    rest: Option<Reading>,
}

impl ClientBody {
    /// A body that streams as it comes, from its first byte.
    pub(crate) fn streamed(reading: Reading) -> Self {
        Self {
            ahead: Bytes::new(),
            held: None,
            rest: Some(reading),
        }
    }
}

impl ReqBody {
    /// The client's body not read from yet, taken out to be read ahead.
    pub(crate) fn reading(&mut self) -> Option<Reading> {
        match self {
            ReqBody::Client(body) if body.ahead.is_empty() => body.rest.take(),
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
            body.held = None;
            return Poll::Ready(Some(Ok(Frame::data(std::mem::take(&mut body.ahead)))));
        }
        match &mut body.rest {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Client(body) => {
                body.ahead.is_empty() && body.rest.as_ref().is_none_or(HttpBody::is_end_stream)
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        let body = match self {
            ReqBody::Empty => return SizeHint::with_exact(0),
            ReqBody::Client(body) => body,
        };
        let ahead = body.ahead.len() as u64;
        let Some(rest) = &body.rest else {
            return SizeHint::with_exact(ahead);
        };
        let inner = rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(ahead));
        // A limit reached says "exactly 0 more" of a body that has not ended (it fails on
        // its next piece): sent as that, it would be cut short as if it were whole.
        let exhausted = inner.upper() == Some(0) && !rest.is_end_stream();
        if let Some(upper) = inner.upper().filter(|_| !exhausted) {
            hint.set_upper(upper.saturating_add(ahead));
        }
        hint
    }
}

/// A body read whole, kept to send the request again.
pub(crate) struct Whole {
    data: Bytes,
    held: Rc<Held>,
}

impl Whole {
    /// The body to send.
    pub(crate) fn body(&self) -> ReqBody {
        ReqBody::Client(Box::new(ClientBody {
            ahead: self.data.clone(),
            held: Some(self.held.clone()),
            rest: None,
        }))
    }

    /// Its length.
    pub(crate) fn len(&self) -> u64 {
        self.data.len() as u64
    }
}

/// What reading ahead made of a body.
pub(crate) enum Ahead {
    /// Read to its end.
    Whole(Whole),
    /// Read in part (or not at all): the rest streams.
    Part(ClientBody),
}

/// Request bodies read ahead of their upstreams, in bytes, in all and by peer, and how
/// many they may be.
pub(crate) struct BodyBuffers {
    held: Cell<u64>,
    cap: u64,
    /// By peer address (`None`: a peer without one, over a unix socket), while it holds
    /// some; hashed with foldhash rather than SipHash (three lookups a request with a
    /// body, at a third of the cost).
    peers: RefCell<HashMap<Option<IpAddr>, u64, foldhash::fast::RandomState>>,
    peer_cap: u64,
    /// Where what they hold is reported (`weft_http_request_body_buffer_bytes`).
    recorder: Rc<dyn Recorder>,
}

impl BodyBuffers {
    /// Buffers of at most `cap` bytes in all, and for one peer a sixteenth of that or
    /// `buffer` (one request's), whichever is more; what they hold goes to `recorder`.
    pub(crate) fn new(cap: u64, buffer: u64, recorder: Rc<dyn Recorder>) -> Rc<Self> {
        Rc::new(Self {
            held: Cell::new(0),
            cap,
            peers: RefCell::default(),
            peer_cap: (cap / 16).max(buffer),
            recorder,
        })
    }

    /// A share of `bytes` for a request of `peer`, if the buffers, and the peer's share
    /// of them, have that much room.
    fn reserve(self: &Rc<Self>, peer: Option<IpAddr>, bytes: u64) -> Option<Held> {
        let peer = peer.map(peer_of);
        let peer_held = self.peers.borrow().get(&peer).copied().unwrap_or(0);
        if self.held.get().saturating_add(bytes) > self.cap
            || peer_held.saturating_add(bytes) > self.peer_cap
        {
            return None;
        }
        let held = Held {
            buffers: self.clone(),
            peer,
            bytes: Cell::new(0),
        };
        held.set(bytes);
        Some(held)
    }
}

/// Whose share a client at `ip` uses: its address, but for IPv6 its /64, which one host
/// is commonly given whole (an IPv4 address mapped into IPv6 is that IPv4 address).
fn peer_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((v6.to_bits() & !u128::from(u64::MAX)).into()),
        },
    }
}

/// A request's share of its service's [`BodyBuffers`], given back when dropped.
pub(crate) struct Held {
    buffers: Rc<BodyBuffers>,
    peer: Option<IpAddr>,
    bytes: Cell<u64>,
}

impl Held {
    /// Holds `bytes` now, rather than what it held.
    fn set(&self, bytes: u64) {
        let before = self.bytes.replace(bytes);
        if before == bytes {
            return;
        }
        let buffers = &self.buffers;
        // What is held includes `before`; only programmatic limits near u64::MAX could
        // overflow the sum.
        buffers
            .held
            .set((buffers.held.get() - before).saturating_add(bytes));
        let mut peers = buffers.peers.borrow_mut();
        let peer = peers.entry(self.peer).or_default();
        *peer = (*peer - before).saturating_add(bytes);
        if *peer == 0 {
            peers.remove(&self.peer);
        }
        let change = i128::from(bytes) - i128::from(before);
        let change = change.clamp(i64::MIN.into(), i64::MAX.into()) as i64;
        buffers.recorder.body_buffers(change);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// How to read a body ahead: at most `limit` bytes (give or take its last piece), all of
/// them within `deadline`, if the `buffers` have room for that much for `peer`.
pub(crate) struct ReadAhead<'a> {
    pub(crate) limit: u64,
    pub(crate) deadline: Duration,
    pub(crate) buffers: &'a Rc<BodyBuffers>,
    pub(crate) peer: Option<IpAddr>,
}

/// Reads `reading` ahead as `how` says. Fails as reading the body fails (cut off past its
/// limit, paced out, broken off), or when `how.deadline` passes first.
///
/// The buffers are reserved when reading begins: the body's length when it is known and
/// within the limit, the limit otherwise. Without room for that, nothing is read ahead.
pub(crate) async fn read_ahead(
    mut reading: Reading,
    how: ReadAhead<'_>,
) -> Result<(Ahead, BodyBuffered), BoxError> {
    let known = reading.size_hint().exact();
    let expected = known.unwrap_or(how.limit).min(how.limit);
    let Some(held) = how.buffers.reserve(how.peer, expected) else {
        return Ok((
            Ahead::Part(ClientBody::streamed(reading)),
            BodyBuffered::None,
        ));
    };
    // Copied into a buffer of its own: a piece kept as it came would hold on to the
    // whole buffer it was read into, more than is counted. Of the size of the body when
    // that is known; else grown as pieces come.
    let first = if known.is_some() {
        expected
    } else {
        expected.min(16 * 1024)
    };
    let mut data = BytesMut::with_capacity(usize::try_from(first).unwrap_or(0));
    let read = async {
        // Until the body ends or goes past the limit: a body of exactly the limit is read
        // to its end.
        while data.len() as u64 <= how.limit {
            let Some(frame) = reading.frame().await.transpose()? else {
                return Ok::<_, BoxError>(true);
            };
            // Trailer fields end a body; like those of a body streamed, they are not
            // passed on (`Trailer` is hop-by-hop).
            let Ok(piece) = frame.into_data() else {
                return Ok(true);
            };
            data.extend_from_slice(&piece);
        }
        Ok(false)
    };
    let ended = match tokio::time::timeout(how.deadline, read).await {
        Ok(ended) => ended?,
        Err(_) => return Err(Box::new(ClientBodyError::TooSlow(how.deadline))),
    };
    // Kept in a buffer of its size (grown, it may be up to twice that), and counted as
    // that: less than the reservation, or the last piece past it.
    let data = if data.capacity() - data.len() > data.len() / 4 {
        Bytes::copy_from_slice(&data)
    } else {
        data.freeze()
    };
    held.set(data.len() as u64);
    let held = Rc::new(held);
    Ok(if ended {
        (Ahead::Whole(Whole { data, held }), BodyBuffered::Whole)
    } else {
        let part = ClientBody {
            ahead: data,
            held: Some(held),
            rest: Some(reading),
        };
        (Ahead::Part(part), BodyBuffered::Part)
    })
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
    fn an_ipv6_client_s_share_is_its_slash_64_s() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(peer_of(a), peer_of(b));
        assert_ne!(peer_of(a), peer_of("2001:db8:1:3::1".parse().unwrap()));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(peer_of(mapped), IpAddr::from([192, 0, 2, 7]));
        let buffers = BodyBuffers::new(64, 4, Rc::new(crate::metrics::NoRecorder));
        let _first = buffers.reserve(Some(a), 4).unwrap();
        assert!(
            buffers.reserve(Some(b), 1).is_none(),
            "one share for the /64"
        );
    }

    #[test]
    fn shares_are_reserved_in_all_and_by_peer_and_given_back_when_dropped() {
        let buffers = BodyBuffers::new(64, 2, Rc::new(crate::metrics::NoRecorder));
        assert_eq!(buffers.peer_cap, 4, "a sixteenth");
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let first = buffers.reserve(a, 3).expect("room");
        assert!(buffers.reserve(a, 2).is_none(), "past the peer's share");
        let second = buffers.reserve(a, 1).expect("the rest of the peer's share");
        let b = buffers.reserve(Some(IpAddr::from([10, 0, 0, 2])), 4);
        assert!(b.is_some(), "another peer has its own");
        assert_eq!(buffers.held.get(), 8);
        drop(first);
        assert!(buffers.reserve(a, 3).is_some(), "given back");
        drop((second, b));
        assert_eq!(buffers.held.get(), 0);
        assert!(buffers.peers.borrow().is_empty(), "no peer left listed");
        // And the total.
        let all: Vec<Held> = (0..16)
            .map(|i| {
                buffers
                    .reserve(Some(IpAddr::from([10, 0, 1, i])), 4)
                    .unwrap()
            })
            .collect();
        assert!(buffers.reserve(None, 1).is_none(), "64 of 64");
        drop(all);
        assert_eq!(buffers.held.get(), 0);
    }
}
