//! The one response body type, and a body that streams a file in chunks.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};

/// Any error a body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every response body: static bytes, a file being read, an upstream's stream.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Chunk size when streaming a file.
const CHUNK: usize = 64 * 1024;

/// A body of `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
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
        Self {
            file,
            remaining: len,
            buf: BytesMut::new(),
        }
        .boxed_unsync()
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

/// Several bodies sent one after the other, as one: the parts of a
/// `multipart/byteranges` response with their framing.
pub(crate) struct Chain {
    /// What is still to send, next first.
    parts: std::collections::VecDeque<Body>,
}

impl Chain {
    pub(crate) fn body(parts: impl IntoIterator<Item = Body>) -> Body {
        Self {
            parts: parts.into_iter().collect(),
        }
        .boxed_unsync()
    }
}

impl HttpBody for Chain {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        while let Some(part) = this.parts.front_mut() {
            match Pin::new(part).poll_frame(cx) {
                Poll::Ready(None) => {
                    this.parts.pop_front();
                }
                other => return other,
            }
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.parts.iter().all(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = SizeHint::new();
        let (mut lower, mut upper) = (0u64, Some(0u64));
        for part in &self.parts {
            let h = part.size_hint();
            lower = lower.saturating_add(h.lower());
            upper = upper.zip(h.upper()).map(|(a, b)| a.saturating_add(b));
        }
        hint.set_lower(lower);
        if let Some(upper) = upper {
            hint.set_upper(upper);
        }
        hint
    }
}
