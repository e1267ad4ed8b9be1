//! The one response body type, and a body that streams a file in chunks.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};

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

/// Streams `len` bytes of an open file (already positioned), one chunk per frame.
pub(crate) struct FileBody {
    file: tokio::fs::File,
    /// Bytes still to send: a range ends before the file does, and a file that grows is
    /// not read past the length it had.
    remaining: u64,
    /// Read into, then split off as the frame: the chunk is handed on without a copy.
    buf: BytesMut,
}

impl FileBody {
    pub(crate) fn body(file: tokio::fs::File, len: u64) -> Body {
        Body::boxed(Self {
            file,
            remaining: len,
            buf: BytesMut::new(),
        })
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
        let want = usize::try_from(this.remaining).map_or(CHUNK, |r| r.min(CHUNK));
        if this.buf.capacity() < want {
            this.buf.reserve(want);
        }
        // Safe code only: zero-fill the chunk once, read into it, keep what was read.
        this.buf.resize(want, 0);
        let mut read = ReadBuf::new(&mut this.buf[..want]);
        match Pin::new(&mut this.file).poll_read(cx, &mut read) {
            Poll::Pending => {
                this.buf.clear();
                Poll::Pending
            }
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                if n == 0 {
                    let e = io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank");
                    return Poll::Ready(Some(Err(e.into())));
                }
                this.remaining -= n as u64;
                this.buf.truncate(n);
                Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))))
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
    /// Reads the part under way; its `remaining` is that part's.
    file: FileBody,
    /// `(head, start, len)` of the parts still to send, next first.
    parts: std::collections::VecDeque<(Bytes, u64, u64)>,
    /// After the last part; empty once sent.
    tail: Bytes,
    /// Where the first part still to send stands.
    step: PartStep,
    /// Bytes still to send, heads and tail included.
    left: u64,
}

/// How far the first of [`FileParts`]' parts has gone.
#[derive(Clone, Copy)]
enum PartStep {
    Head,
    /// Its head sent, the file being moved to its start (`true` once asked).
    Seek(bool),
    Read,
}

impl FileParts {
    pub(crate) fn body(
        file: tokio::fs::File,
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
            file: FileBody {
                file,
                remaining: 0,
                buf: BytesMut::new(),
            },
            parts,
            tail,
            step: PartStep::Head,
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
            match this.step {
                PartStep::Head => {
                    this.step = PartStep::Seek(false);
                    let head = std::mem::take(head);
                    this.left -= head.len() as u64;
                    return Poll::Ready(Some(Ok(Frame::data(head))));
                }
                PartStep::Seek(asked) => {
                    let file = Pin::new(&mut this.file.file);
                    if !asked {
                        if let Err(e) =
                            tokio::io::AsyncSeek::start_seek(file, io::SeekFrom::Start(*start))
                        {
                            return Poll::Ready(Some(Err(e.into())));
                        }
                        this.step = PartStep::Seek(true);
                    }
                    match tokio::io::AsyncSeek::poll_complete(Pin::new(&mut this.file.file), cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                        Poll::Ready(Ok(_)) => {}
                    }
                    this.file.remaining = *len;
                    this.step = PartStep::Read;
                }
                PartStep::Read if this.file.remaining == 0 => {
                    this.parts.pop_front();
                    this.step = PartStep::Head;
                }
                PartStep::Read => {
                    let frame = Pin::new(&mut this.file).poll_frame(cx);
                    if let Poll::Ready(Some(Ok(frame))) = &frame
                        && let Some(data) = frame.data_ref()
                    {
                        this.left -= data.len() as u64;
                    }
                    return frame;
                }
            }
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
