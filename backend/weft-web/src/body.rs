//! The one response body type, and a body that streams a file in chunks.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

/// Any error a body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every response body: bytes in memory, or anything else (a file read from disk, a
/// compressed or multipart one, an upstream's stream) boxed.
///
/// Bytes in memory (a file kept in the cache, an error page) are held as they are:
/// boxing them would allocate once a response, and each poll of the body would be a call
/// through a pointer. The body is 32 bytes, the size of the bytes (a box alone was 16): a
/// response is moved whole several times on its way to hyper, so holding a larger body
/// inline (an upstream's) would cost more in copies than its box does.
pub struct Body(Kind);

enum Kind {
    /// Bytes in memory until they are sent: empty once sent, or for an empty body.
    Full(Bytes),
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
}

/// Chunk size when streaming a file.
const CHUNK: usize = 64 * 1024;

/// A body of `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Body(Kind::Full(bytes.into()))
}

/// An empty body.
pub fn empty() -> Body {
    Body(Kind::Full(Bytes::new()))
}

impl Body {
    /// Any other body, boxed.
    pub(crate) fn boxed<B>(body: B) -> Self
    where
        B: HttpBody<Data = Bytes, Error = BoxError> + Send + 'static,
    {
        Self(Kind::Boxed(body.boxed_unsync()))
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().0 {
            Kind::Full(bytes) if bytes.is_empty() => Poll::Ready(None),
            Kind::Full(bytes) => Poll::Ready(Some(Ok(Frame::data(std::mem::take(bytes))))),
            Kind::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Full(bytes) => bytes.is_empty(),
            Kind::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.len() as u64),
            Kind::Boxed(body) => body.size_hint(),
        }
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Kind::Full(bytes) => f.debug_tuple("Body").field(&bytes.len()).finish(),
            Kind::Boxed(_) => f.debug_tuple("Body").field(&"boxed").finish(),
        }
    }
}

/// Streams `len` bytes of an open file from an offset, one chunk per frame, each read
/// with `pread` on tokio's blocking pool into a buffer made here, on the reactor's
/// thread. Not `tokio::fs::File`: it reads into a buffer of its own, made on the pool's
/// thread, and copies from it: a copy more a chunk, and a buffer more held by every
/// open file, in whichever blocking thread's heap made it (100 HTTP/2 streams a client
/// stalled held 650 KiB each so, ten times their one waiting chunk).
pub(crate) struct FileBody {
    file: Arc<std::fs::File>,
    /// Where the next read starts.
    offset: u64,
    /// Bytes still to send: a range ends before the file does, and a file that grows is
    /// not read past the length it had.
    remaining: u64,
    /// The read under way: the buffer comes back with what was read into it.
    reading: Option<tokio::task::JoinHandle<(io::Result<usize>, BytesMut)>>,
}

impl FileBody {
    pub(crate) fn body(file: std::fs::File, start: u64, len: u64) -> Body {
        Body::boxed(Self::new(Arc::new(file), start, len))
    }

    fn new(file: Arc<std::fs::File>, offset: u64, remaining: u64) -> Self {
        Self {
            file,
            offset,
            remaining,
            reading: None,
        }
    }
}

impl Drop for FileBody {
    fn drop(&mut self) {
        // A read not started yet is called off, and with it its buffer and its hold on the
        // file (a client that resets stream after stream would otherwise pile them up
        // behind a slow disk); one under way finishes on its own.
        if let Some(reading) = self.reading.take() {
            reading.abort();
        }
    }
}

impl HttpBody for FileBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let reading = this.reading.get_or_insert_with(|| {
            let want = usize::try_from(this.remaining).map_or(CHUNK, |r| r.min(CHUNK));
            // Safe code only: the chunk is zero-filled, then read into.
            let mut buf = BytesMut::zeroed(want);
            let (file, offset) = (this.file.clone(), this.offset);
            tokio::task::spawn_blocking(move || {
                let read = std::os::unix::fs::FileExt::read_at(&*file, &mut buf, offset);
                (read, buf)
            })
        });
        let (read, mut buf) = match std::task::ready!(Pin::new(reading).poll(cx)) {
            Ok(done) => done,
            Err(e) => {
                this.reading = None;
                return Poll::Ready(Some(Err(io::Error::other(e).into())));
            }
        };
        this.reading = None;
        match read {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Err(e) => Poll::Ready(Some(Err(e.into()))),
            Ok(0) => {
                let e = io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank");
                Poll::Ready(Some(Err(e.into())))
            }
            Ok(n) => {
                this.remaining -= n as u64;
                this.offset += n as u64;
                buf.truncate(n);
                Poll::Ready(Some(Ok(Frame::data(buf.freeze()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// The parts of one open file, each after its own head, then a tail: the body of a
/// `multipart/byteranges` response. One file serves every part, read from each part's
/// start in turn: a request for many ranges costs one descriptor, as one for the whole
/// file does.
pub(crate) struct FileParts {
    /// Reads the part under way.
    file: FileBody,
    /// `(head, start, len)` of the parts still to send, next first.
    parts: std::collections::VecDeque<(Bytes, u64, u64)>,
    /// After the last part; empty once sent.
    tail: Bytes,
    /// Whether the first part still to send has had its head sent.
    head_sent: bool,
    /// Bytes still to send, heads and tail included.
    left: u64,
}

impl FileParts {
    pub(crate) fn body(
        file: std::fs::File,
        parts: impl IntoIterator<Item = (Bytes, u64, u64)>,
        tail: Bytes,
    ) -> Body {
        let parts: std::collections::VecDeque<_> = parts.into_iter().collect();
        let left = parts
            .iter()
            .map(|(head, _, len)| head.len() as u64 + len)
            .sum::<u64>()
            + tail.len() as u64;
        Body::boxed(Self {
            file: FileBody::new(Arc::new(file), 0, 0),
            parts,
            tail,
            head_sent: false,
            left,
        })
    }
}

impl HttpBody for FileParts {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some((head, start, len)) = this.parts.front_mut() else {
                if this.tail.is_empty() {
                    return Poll::Ready(None);
                }
                this.left = 0;
                return Poll::Ready(Some(Ok(Frame::data(std::mem::take(&mut this.tail)))));
            };
            if !this.head_sent {
                this.head_sent = true;
                this.file.offset = *start;
                this.file.remaining = *len;
                let head = std::mem::take(head);
                this.left -= head.len() as u64;
                return Poll::Ready(Some(Ok(Frame::data(head))));
            }
            if this.file.remaining == 0 {
                this.parts.pop_front();
                this.head_sent = false;
                continue;
            }
            let frame = Pin::new(&mut this.file).poll_frame(cx);
            if let Poll::Ready(Some(Ok(frame))) = &frame
                && let Some(data) = frame.data_ref()
            {
                this.left -= data.len() as u64;
            }
            return frame;
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_no_larger_than_its_bytes() {
        // A response is moved whole several times on its way to hyper (see `Body`).
        assert_eq!(size_of::<Body>(), size_of::<Bytes>());
    }

    #[test]
    fn bytes_in_memory_are_one_frame_then_the_end() {
        let mut body = full("hello");
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!body.is_end_stream());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut cx) else {
            panic!("one frame");
        };
        assert_eq!(frame.into_data().ok(), Some(Bytes::from("hello")));
        assert!(body.is_end_stream());
        assert!(matches!(
            Pin::new(&mut body).poll_frame(&mut cx),
            Poll::Ready(None)
        ));
        assert!(empty().is_end_stream());
        assert_eq!(empty().size_hint().exact(), Some(0));
    }
}
