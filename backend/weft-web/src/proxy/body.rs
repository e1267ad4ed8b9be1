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
//! can.
//!
//! A larger body is read on into a temporary file (`BodyFiles`, in `body_file_dir`), as
//! nginx does: its first `body_buffer_bytes` and then the rest as it comes, to its end, and
//! sent from there. A client that sends a large body slowly holds a file and its share of
//! the disk, again never an upstream connection. The files are anonymous (gone once
//! closed, and with the process), written, read and closed on the blocking pool (room
//! for each part is reserved before it is read, and a write cut off by its request
//! ending keeps what it holds counted until it is done), and hold at most
//! `limits.body_file_total_bytes` at once (on each reactor), one peer's at most a
//! sixteenth of that (or one largest body, `max_body_bytes`, if more). Without room for
//! the next part, or when a file cannot be made or written (logged with its cause, and
//! counted), what was read so far is sent and the rest streams as it comes: nothing is
//! lost. With files off (`body_file_total_bytes = 0`) a larger body has its first
//! `body_buffer_bytes` read ahead and the rest streamed. A file that cannot be read back
//! fails its request as weft's own fault (`ReadBack`: 500, and not the upstream's).
//!
//! What is read ahead into memory must come within `request_timeout` in all (each piece
//! within it too, as for any body: `Paced`), or the request is answered 408; what goes on
//! into a file, piece by piece. The buffers of a
//! service hold at most `limits.body_buffer_total_bytes` at once (on each reactor), and
//! those of one peer at most a sixteenth of that (or one buffer, if more): a request
//! reserves its share as it begins reading (its body's length, or the whole buffer when
//! that is not known), and when there is no room for it, its body streams as it comes,
//! from its first byte. It gives its share back once what it read ahead is sent, or, when
//! the request may be sent again, once it is done with its upstream. Each body is counted
//! by how much of it was read ahead (`weft_http_request_bodies_total{buffered}`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use tokio::task::JoinHandle;

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

/// The client's body: what was read of it ahead (into a file, then into memory), then the
/// rest as it comes, if any.
pub(crate) struct ClientBody {
    /// Written to a file before the request was sent; `None` once sent (its file and
    /// share go with it, unless a copy is kept to send it again), or when nothing was.
    file: Option<FilePart>,
    /// Read into memory before the request was sent; empty once sent, or when nothing was.
    ahead: Bytes,
    /// The share of the service's buffers `ahead` holds, given back once it is sent
    /// (unless a copy is kept to send it again).
    held: Option<Rc<Held>>,
    /// What is still to come; `None` once the body was read whole.
    rest: Option<Reading>,
    /// The upstream connection it goes out on, reset if what is still to come fails
    /// (its client left halfway): hyper would otherwise end the connection in order, and
    /// the upstream take the part it got for the whole body. Its end puts off the
    /// deadline of the upstream's answer to `upstream_timeout` from there; it hears
    /// whether sending the body waits on the client.
    upstream: Option<super::pool::Outstanding>,
}

impl ReqBody {
    /// Goes out on `upstream`, which is reset if the rest of the body fails to come, and
    /// whose answer is due `upstream_timeout` after the body's end at the latest.
    pub(crate) fn goes_out_on(&mut self, upstream: super::pool::Outstanding) {
        if let ReqBody::Client(body) = self
            && body.rest.is_some()
        {
            body.upstream = Some(upstream);
        }
    }
}

impl ClientBody {
    /// A body that streams as it comes, from its first byte.
    pub(crate) fn streamed(reading: Reading) -> Self {
        Self {
            file: None,
            ahead: Bytes::new(),
            held: None,
            rest: Some(reading),
            upstream: None,
        }
    }
}

impl ReqBody {
    /// The client's body not read from yet, taken out to be read ahead.
    pub(crate) fn reading(&mut self) -> Option<Reading> {
        match self {
            ReqBody::Client(body) if body.file.is_none() && body.ahead.is_empty() => {
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
        if let Some(file) = &mut body.file {
            match ready!(file.poll_chunk(cx)) {
                Some(chunk) => {
                    let frame = chunk.map(Frame::data).map_err(|e| ReadBack(e).into());
                    return Poll::Ready(Some(frame));
                }
                None => body.file = None,
            }
        }
        if !body.ahead.is_empty() {
            body.held = None;
            return Poll::Ready(Some(Ok(Frame::data(std::mem::take(&mut body.ahead)))));
        }
        match &mut body.rest {
            Some(rest) => {
                let polled = Pin::new(&mut *rest).poll_frame(cx);
                match (&polled, &body.upstream) {
                    (Poll::Ready(Some(Err(_))), Some(upstream)) => {
                        upstream.abort();
                        body.upstream = None;
                    }
                    // The body's end: the upstream's time to answer runs from here.
                    (Poll::Ready(None), Some(upstream)) => upstream.client_done(),
                    // Trailer fields are always a body's last frame (hyper polls no more).
                    (Poll::Ready(Some(Ok(frame))), Some(upstream))
                        if frame.is_trailers() || rest.is_end_stream() =>
                    {
                        upstream.client_done();
                    }
                    _ => {}
                }
                // Waiting on the client while its part found nothing yet (not while what
                // came waits for the upstream to take it, nor once its part ended).
                if let Some(upstream) = &body.upstream {
                    upstream.waiting_on_client(polled.is_pending());
                }
                polled
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Client(body) => {
                body.file.as_ref().is_none_or(|f| f.left() == 0)
                    && body.ahead.is_empty()
                    && body.rest.as_ref().is_none_or(HttpBody::is_end_stream)
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        let body = match self {
            ReqBody::Empty => return SizeHint::with_exact(0),
            ReqBody::Client(body) => body,
        };
        let file = body.file.as_ref().map_or(0, FilePart::left);
        let ahead = body.ahead.len() as u64 + file;
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

/// A body's file could not be read back as it was sent: the gateway's failure, neither
/// the client's nor the upstream's (the exchange it breaks says so: `UpstreamError::BodyFile`).
#[derive(Debug, thiserror::Error)]
#[error("cannot read the request body back from its temporary file: {0}")]
pub(crate) struct ReadBack(pub(crate) io::Error);

/// A body read whole, kept to send the request again.
pub(crate) enum Whole {
    /// In memory, holding its share of the buffers.
    Memory { data: Bytes, held: Rc<Held> },
    /// In a file.
    File(Spilled),
}

impl Whole {
    /// The body to send.
    pub(crate) fn body(&self) -> ReqBody {
        let body = match self {
            Whole::Memory { data, held } => ClientBody {
                file: None,
                ahead: data.clone(),
                held: Some(held.clone()),
                rest: None,
                upstream: None,
            },
            Whole::File(spilled) => ClientBody {
                file: Some(FilePart::new(spilled.clone())),
                ahead: Bytes::new(),
                held: None,
                rest: None,
                upstream: None,
            },
        };
        ReqBody::Client(Box::new(body))
    }

    /// Its length.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Whole::Memory { data, .. } => data.len() as u64,
            Whole::File(spilled) => spilled.len,
        }
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
/// many they may be: in memory, or in files.
pub(crate) struct BodyBuffers {
    /// What they hold in all and may hold, shared with other threads ([`BodiesView`]);
    /// only this reactor changes it.
    level: Arc<Level>,
    /// By peer address (`None`: a peer without one, over a unix socket), while it holds
    /// some; hashed with foldhash rather than SipHash (three lookups a request with a
    /// body, at a third of the cost).
    peers: RefCell<HashMap<Option<IpAddr>, u64, foldhash::fast::RandomState>>,
    peer_cap: u64,
    /// Where what they hold is reported (`weft_http_request_body_buffer_bytes`, or
    /// `weft_http_request_body_file_bytes` for files).
    recorder: Rc<dyn Recorder>,
    /// Whether they are files (reported as such).
    files: bool,
}

impl BodyBuffers {
    /// Buffers of at most `cap` bytes in all, and for one peer a sixteenth of that or
    /// `one` (one request's, at most `cap`), whichever is more; what they hold goes to
    /// `recorder`.
    pub(crate) fn new(cap: u64, one: u64, recorder: Rc<dyn Recorder>) -> Rc<Self> {
        Self::of(cap, one, recorder, false)
    }

    /// The same, of files (and so reported as that).
    fn of(cap: u64, one: u64, recorder: Rc<dyn Recorder>, files: bool) -> Rc<Self> {
        Rc::new(Self {
            level: Arc::new(Level {
                cap,
                ..Level::default()
            }),
            peers: RefCell::default(),
            peer_cap: (cap / 16).max(one.min(cap)),
            recorder,
            files,
        })
    }

    /// What they hold in all.
    fn held(&self) -> u64 {
        self.level.held.load(Relaxed)
    }

    /// One of their files failed: counted.
    fn failed(&self) {
        self.level.errors.fetch_add(1, Relaxed);
        self.recorder.body_file_error();
    }

    /// A share of `bytes` for a request of `peer`, if the buffers, and the peer's share
    /// of them, have that much room.
    fn reserve(self: &Rc<Self>, peer: Option<IpAddr>, bytes: u64) -> Option<Held> {
        let held = Held {
            buffers: self.clone(),
            peer: peer.map(peer_of),
            bytes: Cell::new(0),
        };
        held.grow_to(bytes).then_some(held)
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
    /// Holds `bytes` now, if it held less and the buffers, and the peer's share of them,
    /// have room for the difference; says whether it does.
    fn grow_to(&self, bytes: u64) -> bool {
        let buffers = &self.buffers;
        let more = bytes.saturating_sub(self.bytes.get());
        let peer_held = buffers.peers.borrow().get(&self.peer).copied().unwrap_or(0);
        if buffers.held().saturating_add(more) > buffers.level.cap
            || peer_held.saturating_add(more) > buffers.peer_cap
        {
            return false;
        }
        self.set(bytes.max(self.bytes.get()));
        true
    }

    /// Holds `bytes` now, rather than what it held.
    fn set(&self, bytes: u64) {
        let before = self.bytes.replace(bytes);
        if before == bytes {
            return;
        }
        let buffers = &self.buffers;
        // What is held includes `before`; only programmatic limits near u64::MAX could
        // overflow the sum.
        let held = (buffers.held() - before).saturating_add(bytes);
        buffers.level.held.store(held, Relaxed);
        let mut peers = buffers.peers.borrow_mut();
        let peer = peers.entry(self.peer).or_default();
        *peer = (*peer - before).saturating_add(bytes);
        if *peer == 0 {
            peers.remove(&self.peer);
        }
        let change = i128::from(bytes) - i128::from(before);
        let change = change.clamp(i64::MIN.into(), i64::MAX.into()) as i64;
        if buffers.files {
            buffers.recorder.body_files(change);
        } else {
            buffers.recorder.body_buffers(change);
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// Where the rest of a body longer than its buffer is written before its upstream is
/// contacted: anonymous temporary files in a directory, in a budget of [`BodyBuffers`].
pub(crate) struct BodyFiles {
    dir: Arc<Path>,
    budget: Rc<BodyBuffers>,
}

impl BodyFiles {
    /// Files in `dir`, holding at most `cap` bytes in all, and for one peer a sixteenth
    /// of that or `one` (the largest body), whichever is more.
    pub(crate) fn new(dir: &Path, cap: u64, one: u64, recorder: Rc<dyn Recorder>) -> Self {
        Self {
            dir: dir.into(),
            budget: BodyBuffers::of(cap, one, recorder, true),
        }
    }

    /// An anonymous file in the directory, made on the blocking pool.
    async fn create(&self) -> io::Result<File> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || tempfile::tempfile_in(dir))
            .await
            .map_err(io::Error::other)?
    }

    /// A file could not be made or written: logged with the cause, and counted. The body
    /// streams on from where it was.
    fn failed(&self, doing: &str, error: &io::Error) {
        tracing::warn!(
            dir = %self.dir.display(),
            %error,
            "could not {doing} a request body's temporary file; the rest of the body streams to the upstream as it comes"
        );
        self.budget.failed();
    }
}

/// The most of a body read ahead of its file: while one part is written, the next is read
/// (up to about this much), then written at once.
const FILE_CHUNK: usize = 256 * 1024;

/// The pieces a body is read back from its file in (the next is read while one is sent).
const READ_CHUNK: usize = 128 * 1024;

/// The first `len` bytes of a body, in a file, holding their share of the disk.
#[derive(Clone)]
pub(crate) struct Spilled {
    file: Arc<TempFile>,
    len: u64,
    held: Rc<Held>,
}

/// A body's part in a file as it is sent: read back in pieces on the blocking pool, the
/// next read while the last piece is sent.
struct FilePart {
    spilled: Spilled,
    /// Bytes read, or being read.
    asked: u64,
    /// Bytes handed on.
    sent: u64,
    reading: Option<JoinHandle<io::Result<Bytes>>>,
}

impl FilePart {
    fn new(spilled: Spilled) -> Self {
        Self {
            spilled,
            asked: 0,
            sent: 0,
            reading: None,
        }
    }

    /// Bytes not yet handed on.
    fn left(&self) -> u64 {
        self.spilled.len - self.sent
    }

    /// Starts reading the next piece, if there is one.
    fn read_next(&mut self) {
        let (at, left) = (self.asked, self.spilled.len - self.asked);
        if left == 0 {
            return;
        }
        let n = usize::try_from(left).map_or(READ_CHUNK, |n| n.min(READ_CHUNK));
        self.asked += n as u64;
        let file = self.spilled.file.clone();
        self.reading = Some(tokio::task::spawn_blocking(move || {
            let mut piece = vec![0; n];
            file.get()?.read_exact_at(&mut piece, at)?;
            Ok(Bytes::from(piece))
        }));
    }

    /// The next piece, `None` once all is handed on.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        if self.reading.is_none() {
            self.read_next();
        }
        let Some(reading) = &mut self.reading else {
            return Poll::Ready(None);
        };
        let read = ready!(Pin::new(reading).poll(cx));
        self.reading = None;
        let piece = match read.map_err(io::Error::other).and_then(|piece| piece) {
            Ok(piece) => piece,
            Err(e) => {
                // Counted here, logged with its request (`UpstreamError::BodyFile`).
                self.spilled.held.buffers.failed();
                // Asked again, the same piece is read again.
                self.asked = self.sent;
                return Poll::Ready(Some(Err(e)));
            }
        };
        self.sent += piece.len() as u64;
        self.read_next();
        Poll::Ready(Some(Ok(piece)))
    }
}

impl Drop for FilePart {
    fn drop(&mut self) {
        if let Some(reading) = self.reading.take() {
            linger(reading, self.spilled.held.clone());
        }
    }
}

/// A service's room for request bodies read ahead (on one reactor), shared by its routes:
/// buffers, and files if bodies go on into them.
pub(crate) struct BodyRoom {
    pub(crate) buffers: Rc<BodyBuffers>,
    pub(crate) files: Option<BodyFiles>,
}

impl BodyRoom {
    /// What other threads may read of it.
    pub(crate) fn view(&self) -> BodiesView {
        BodiesView {
            memory: self.buffers.level.clone(),
            files: self.files.as_ref().map(|f| f.budget.level.clone()),
        }
    }
}

/// What one of a service's [`BodyBuffers`] holds, for other threads: updated as shares
/// change.
#[derive(Debug, Default)]
struct Level {
    held: AtomicU64,
    cap: u64,
    /// Files that could not be made, written or read back.
    errors: AtomicU64,
}

/// What other threads (the dashboard's) may read of a service's request bodies read
/// ahead of their upstreams, on one reactor: the bytes its buffers and its files hold
/// against their totals. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct BodiesView {
    memory: Arc<Level>,
    /// `None` when bodies do not go into files.
    files: Option<Arc<Level>>,
}

/// A [`BodiesView`] read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodiesSnapshot {
    /// Bytes of request bodies in memory, and the most there may be
    /// (`limits.body_buffer_total_bytes`).
    pub memory: (u64, u64),
    /// Bytes of request bodies in files and the most there may be
    /// (`limits.body_file_total_bytes`), with the files that could not be made, written or
    /// read back since the service started; `None` when bodies do not go into files.
    pub files: Option<(u64, u64, u64)>,
}

impl BodiesView {
    /// What the buffers and files hold now.
    pub fn snapshot(&self) -> BodiesSnapshot {
        let level = |l: &Level| (l.held.load(Relaxed), l.cap);
        BodiesSnapshot {
            memory: level(&self.memory),
            files: self.files.as_deref().map(|f| {
                let (held, cap) = level(f);
                (held, cap, f.errors.load(Relaxed))
            }),
        }
    }
}

/// How to read a body ahead: at most `limit` bytes (give or take its last piece) into
/// memory, all of them within `deadline`, if the `room`'s buffers have that much for
/// `peer`; then the rest into its files, if any.
pub(crate) struct ReadAhead<'a> {
    pub(crate) limit: u64,
    /// The largest body (`max_body_bytes`).
    pub(crate) max_body: u64,
    pub(crate) deadline: Duration,
    pub(crate) room: &'a BodyRoom,
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
    let most = known.map_or(how.max_body, |n| n.min(how.max_body));
    let expected = known.unwrap_or(how.limit).min(how.limit);
    let Some(held) = how.room.buffers.reserve(how.peer, expected) else {
        // No room in memory (the client's share, or all of it, is taken): the body goes
        // to a file from its first byte, so a client that sends many slowly holds files,
        // not upstream connections; without room there either, it streams.
        if let Some(files) = &how.room.files {
            // What would have been read into memory must come as quickly as there.
            let first = Some((
                how.limit,
                tokio::time::Instant::now() + how.deadline,
                how.deadline,
            ));
            return spill(
                files,
                (how.peer, most),
                (Bytes::new(), None),
                reading,
                first,
            )
            .await;
        }
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
    if ended {
        let held = Rc::new(held);
        return Ok((
            Ahead::Whole(Whole::Memory { data, held }),
            BodyBuffered::Whole,
        ));
    }
    match &how.room.files {
        Some(files) => spill(files, (how.peer, most), (data, Some(held)), reading, None).await,
        None => part(None, data, Some(held), Some(reading)),
    }
}

/// A body read ahead in part: what is in `file`, then `ahead` (holding `held` of the
/// memory buffers), then the rest as it comes, if it has not ended.
fn part(
    file: Option<Spilled>,
    ahead: Bytes,
    held: Option<Held>,
    rest: Option<Reading>,
) -> Result<(Ahead, BodyBuffered), BoxError> {
    let body = ClientBody {
        file: file.filter(|f| f.len > 0).map(FilePart::new),
        ahead,
        held: held.map(Rc::new),
        rest,
        upstream: None,
    };
    Ok((Ahead::Part(body), BodyBuffered::Part))
}

/// Writes a body read ahead in part into memory (`first`, holding its share of the
/// buffers, if any: nothing is read ahead when they have no room), and then the rest of
/// it as it comes, into a file of `files`, while they have room for it; the body is at
/// most `most` bytes (its length, or the limit). With `first_by` (`(limit, deadline,
/// timeout)`: nothing was read into memory), its first `limit` bytes must come by the
/// deadline, as they would have had to in memory. Fails as reading the body fails.
async fn spill(
    files: &BodyFiles,
    (peer, most): (Option<IpAddr>, u64),
    (first, memory): (Bytes, Option<Held>),
    mut reading: Reading,
    first_by: Option<(u64, tokio::time::Instant, Duration)>,
) -> Result<(Ahead, BodyBuffered), BoxError> {
    let streamed = |first: Bytes, memory: Option<Held>, reading| {
        let (ahead, buffered) = part(None, first, memory, Some(reading))?;
        // Nothing read ahead: it streams from its first byte.
        let buffered = match &ahead {
            Ahead::Part(body) if body.ahead.is_empty() => BodyBuffered::None,
            _ => buffered,
        };
        Ok((ahead, buffered))
    };
    // Room for the first part and the next, made before the file is: a file costs at
    // least a write's worth while it is read, so the budget bounds how many are open.
    let want = (first.len() + FILE_CHUNK) as u64;
    let at_first = want.min(most.max(first.len() as u64)).max(MIN_WRITE as u64);
    let Some(share) = files.budget.reserve(peer, at_first) else {
        return streamed(first, memory, reading);
    };
    let file = match files.create().await {
        Ok(file) => Arc::new(TempFile(Some(file))),
        Err(e) => {
            files.failed("make", &e);
            return streamed(first, memory, reading);
        }
    };
    let mut spilled = Spilled {
        file,
        len: 0,
        held: Rc::new(share),
    };
    // The first part keeps its share of the memory buffers until it is written; later
    // parts are read while the one before is written, at most about `FILE_CHUNK` ahead,
    // in room reserved for them in the files.
    let mut writing =
        (!first.is_empty()).then(|| Writing::start(&spilled, Batch::of(first), memory));
    let (mut next, mut ended) = (Batch::default(), false);
    loop {
        let in_flight = writing.as_ref().map_or(0, |w| w.batch.len);
        let room = if ended {
            // All of it is here, and is written whatever the room (`most` bounds it).
            spilled
                .held
                .set(spilled.len + (in_flight + next.len) as u64);
            true
        } else {
            // Room for what is being written and for the next part, never past `most`.
            let want = spilled.len + (in_flight + FILE_CHUNK) as u64;
            spilled.held.grow_to(want.min(most.max(spilled.len)))
        };
        // Until what memory would have held has come, within the time it would have had.
        let arrived = spilled.len + (in_flight + next.len) as u64;
        let hurried = first_by.filter(|&(limit, ..)| !ended && arrived < limit);
        let step = std::future::poll_fn(|cx| {
            if let Some(w) = &mut writing
                && let Poll::Ready(done) = w.poll(cx)
            {
                return Poll::Ready(Ok(Some(done)));
            }
            while room && !ended && next.len < FILE_CHUNK {
                match Pin::new(&mut reading).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(piece) => next.push(piece),
                        // Trailer fields end a body (see `read_ahead`).
                        Err(_) => ended = true,
                    },
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                    Poll::Ready(None) => ended = true,
                    Poll::Pending => break,
                }
            }
            if writing.is_none() && (next.len >= MIN_WRITE || ended || !room) {
                return Poll::Ready(Ok(None));
            }
            Poll::Pending
        });
        let written = match hurried {
            Some((_, by, after)) => match tokio::time::timeout_at(by, step).await {
                Ok(written) => written?,
                Err(_) => return Err(Box::new(ClientBodyError::TooSlow(after))),
            },
            None => step.await?,
        };
        if let (Some(done), Some(mut w)) = (written, writing.take()) {
            let batch = std::mem::take(&mut w.batch);
            if let Err(e) = done {
                files.failed("write", &e);
                spilled.held.set(spilled.len);
                let memory = w.memory.take();
                let mut unwritten = batch;
                unwritten.append(next);
                // What is still to come, if anything.
                let rest = (!ended).then_some(reading);
                return part(Some(spilled), unwritten.joined(), memory, rest);
            }
            spilled.len += batch.len as u64;
        }
        if writing.is_some() {
            continue;
        }
        if !room {
            // What was read since goes from memory; the rest streams.
            spilled.held.set(spilled.len);
            return part(Some(spilled), next.joined(), None, Some(reading));
        }
        if next.len >= MIN_WRITE || (ended && next.len > 0) {
            let batch = std::mem::take(&mut next);
            writing = Some(Writing::start(&spilled, batch, None));
        } else if ended {
            break;
        }
    }
    spilled.held.set(spilled.len);
    Ok((Ahead::Whole(Whole::File(spilled)), BodyBuffered::File))
}

/// A batch being written at the end of a body's file, on the blocking pool. Dropped
/// before the write is done (the request cancelled, the client gone, its body failed),
/// the write goes on, and what it holds stays counted until it is done.
struct Writing {
    handle: Option<JoinHandle<io::Result<()>>>,
    batch: Batch,
    /// The files' share, and the first part's share of the memory buffers.
    held: Rc<Held>,
    memory: Option<Held>,
}

impl Writing {
    /// Writes `batch` after what `spilled` holds, keeping `memory` until it is written.
    fn start(spilled: &Spilled, mut batch: Batch, memory: Option<Held>) -> Self {
        batch.seal();
        let (file, pieces, mut at) = (spilled.file.clone(), batch.pieces.clone(), spilled.len);
        let handle = tokio::task::spawn_blocking(move || {
            let file = file.get()?;
            for piece in &pieces {
                file.write_all_at(piece, at)?;
                at += piece.len() as u64;
            }
            Ok(())
        });
        Self {
            handle: Some(handle),
            batch,
            held: spilled.held.clone(),
            memory,
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(handle) = &mut self.handle else {
            return Poll::Ready(Ok(()));
        };
        let done = ready!(Pin::new(handle).poll(cx));
        self.handle = None;
        Poll::Ready(done.map_err(io::Error::other).and_then(|r| r))
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            linger(handle, (self.held.clone(), self.memory.take()));
        }
    }
}

/// Keeps `held` until `work` is done: blocking work cut loose from the request that
/// waited for it still runs, with what it holds.
fn linger<T: 'static, H: 'static>(work: JoinHandle<T>, held: H) {
    if let Some(reactor) = weft::Reactor::try_current() {
        reactor.spawn_labeled("request body file", async move {
            let _ = work.await;
            drop(held);
        });
    }
}

/// A body's file, closed on the blocking pool: closing it frees its blocks, which is
/// disk work.
struct TempFile(Option<File>);

impl TempFile {
    fn get(&self) -> io::Result<&File> {
        self.0
            .as_ref()
            .ok_or_else(|| io::Error::other("the body's file is closed"))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let (Some(file), Ok(runtime)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn_blocking(move || drop(file));
        }
    }
}

/// The least of a body written at once, but for its end: a body that comes a few bytes
/// at a time is written in parts of this, not in a write for each few bytes.
const MIN_WRITE: usize = 64 * 1024;

/// Pieces shorter than this are copied together into a batch's `tail` rather than kept
/// one by one: a body sent in many small pieces (chunks of a byte, say) would otherwise
/// cost a write each, and each piece could keep a larger read buffer of hyper's alive.
const SMALL_PIECE: usize = 16 * 1024;

/// What small pieces are copied into, at a time.
const TAIL: usize = 64 * 1024;

/// Pieces of a body to write at once: large ones as they came (not copied together),
/// small ones copied together.
#[derive(Default)]
struct Batch {
    pieces: Vec<Bytes>,
    /// Small pieces since the last large one, copied together; `seal` moves them to
    /// `pieces`.
    tail: BytesMut,
    len: usize,
}

impl Batch {
    fn of(piece: Bytes) -> Self {
        let mut batch = Self::default();
        batch.push(piece);
        batch
    }

    fn push(&mut self, piece: Bytes) {
        self.len += piece.len();
        if piece.len() >= SMALL_PIECE {
            self.seal();
            self.pieces.push(piece);
            return;
        }
        if self.tail.capacity() - self.tail.len() < piece.len() {
            self.seal();
            self.tail.reserve(TAIL);
        }
        self.tail.extend_from_slice(&piece);
    }

    /// Moves the small pieces copied together into `pieces`, after those before them.
    fn seal(&mut self) {
        if !self.tail.is_empty() {
            self.pieces.push(self.tail.split().freeze());
        }
    }

    fn append(&mut self, mut other: Batch) {
        self.seal();
        other.seal();
        self.len += other.len;
        self.pieces.extend(other.pieces);
    }

    /// The pieces in one buffer, to send when they could not be written.
    fn joined(mut self) -> Bytes {
        self.seal();
        match <[Bytes; 1]>::try_from(self.pieces) {
            Ok([one]) => one,
            Err(pieces) => pieces.concat().into(),
        }
    }
}

#[cfg(test)]
impl ReqBody {
    /// A body of `len` bytes gone into a file that holds none of them: reading it back
    /// fails.
    pub(crate) fn unreadable(len: u64) -> Self {
        let files = BodyBuffers::of(len, len, Rc::new(crate::metrics::NoRecorder), true);
        let spilled = Spilled {
            file: Arc::new(TempFile(Some(
                tempfile::tempfile().expect("a temporary file"),
            ))),
            len,
            held: Rc::new(files.reserve(None, len).expect("room")),
        };
        ReqBody::Client(Box::new(ClientBody {
            file: Some(FilePart::new(spilled)),
            ahead: Bytes::new(),
            held: None,
            rest: None,
            upstream: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_pieces_are_copied_together_and_large_ones_kept_as_they_came() {
        let mut batch = Batch::default();
        for _ in 0..300_000 {
            batch.push(Bytes::from_static(b"x"));
        }
        let large = Bytes::from(vec![b'y'; SMALL_PIECE]);
        batch.push(large.clone());
        batch.push(Bytes::from_static(b"z"));
        batch.seal();
        assert_eq!(batch.len, 300_000 + SMALL_PIECE + 1);
        let lens: Vec<_> = batch.pieces.iter().map(Bytes::len).collect();
        // 300,000 bytes in pieces of at most a tail's, then the large piece itself (not
        // copied), then the last byte.
        assert_eq!(lens.len(), 300_000_usize.div_ceil(TAIL) + 2, "{lens:?}");
        assert!(lens.iter().all(|&n| n <= TAIL.max(SMALL_PIECE)));
        let kept = &batch.pieces[lens.len() - 2];
        assert_eq!(
            kept.as_ptr(),
            large.as_ptr(),
            "the large piece is not copied"
        );
        let joined = batch.joined();
        assert_eq!(joined.len(), 300_000 + SMALL_PIECE + 1);
        assert!(joined[..300_000].iter().all(|&b| b == b'x'));
        assert!(
            joined[300_000..300_000 + SMALL_PIECE]
                .iter()
                .all(|&b| b == b'y')
        );
        assert_eq!(joined[joined.len() - 1], b'z');
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_read_back_fails_as_its_own_error() {
        let mut body = ReqBody::unreadable(1000);
        assert_eq!(body.size_hint().exact(), Some(1000));
        let err = body.frame().await.expect("a frame").unwrap_err();
        let read_back = err.downcast_ref::<ReadBack>().expect("ReadBack");
        assert_eq!(read_back.0.kind(), io::ErrorKind::UnexpectedEof);
        assert!(
            err.to_string()
                .starts_with("cannot read the request body back from its temporary file"),
            "{err}"
        );
    }

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
    fn a_share_grows_while_there_is_room_and_never_shrinks_by_growing() {
        // One request's share may be all of it (here more than a sixteenth).
        let files = BodyBuffers::new(64, 1000, Rc::new(crate::metrics::NoRecorder));
        assert_eq!(files.peer_cap, 64, "at most all of it");
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let held = files.reserve(a, 10).unwrap();
        assert!(held.grow_to(60));
        assert_eq!(files.held(), 60);
        assert!(!held.grow_to(65), "past the total");
        assert_eq!(files.held(), 60, "unchanged when refused");
        assert!(held.grow_to(20));
        assert_eq!(files.held(), 60, "growing to less keeps what it holds");
        drop(held);
        assert_eq!(files.held(), 0);
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
        assert_eq!(buffers.held(), 8);
        drop(first);
        assert!(buffers.reserve(a, 3).is_some(), "given back");
        drop((second, b));
        assert_eq!(buffers.held(), 0);
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
        assert_eq!(buffers.held(), 0);
    }
}
