//! [`Chunked`]: a `Sink` of whole text messages over a WebSocket that sends each message as
//! fragments of at most [`CHUNK`] bytes (RFC 6455 §5.4) and waits for each to be written
//! before framing the next.
//!
//! The messages are shared: a snapshot or a frame is encoded once and every client sends
//! the same bytes. Framing copies a payload into the socket's write buffer, so a whole
//! message framed at once would give each client that cannot keep up its own copy of it
//! (hundreds of kilobytes with a few thousand connections open). A fragment at a time, a
//! client holds at most one fragment of its own, however slow it reads.
//!
//! A client that takes no fragment for [`Chunked::new`]'s `stall` is cut off: sending fails
//! with [`SendError::Stalled`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::Sink;
use tokio::time::Sleep;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

/// The largest fragment sent, in bytes.
pub const CHUNK: usize = 16 * 1024;

/// Why a message could not be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The client took nothing for the whole stall timeout.
    #[error("the client read nothing for the send timeout")]
    Stalled,
    /// The socket failed.
    #[error(transparent)]
    Socket(#[from] tungstenite::Error),
}

/// The message being sent and how far.
#[derive(Debug)]
struct Pending {
    text: Utf8Bytes,
    /// Bytes framed so far.
    sent: usize,
    /// The last fragment framed is still being written.
    flushing: bool,
}

/// Sends text messages over `S` in fragments; see the module.
#[derive(Debug)]
pub struct Chunked<S> {
    inner: S,
    /// The message being sent, one fragment at a time; `None` between messages.
    pending: Option<Pending>,
    /// How long a client may take no fragment before it is cut off (`send_timeout`).
    stall: Duration,
    /// Armed when a write blocks, disarmed when a fragment goes out.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> Chunked<S>
where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    /// Sends over `inner`, failing when no fragment goes out for `stall`.
    pub fn new(inner: S, stall: Duration) -> Self {
        Self {
            inner,
            pending: None,
            stall,
            deadline: None,
        }
    }

    /// The socket, for the closing handshake.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Blocked: fails once nothing went out for `stall`.
    fn blocked(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        let stall = self.stall;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(SendError::Stalled)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Frames and writes what is pending, a fragment at a time.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        loop {
            let Some(p) = self.pending.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            if p.flushing {
                match Pin::new(&mut self.inner).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                    Poll::Pending => return self.blocked(cx),
                }
                self.deadline = None;
                p.flushing = false;
                if p.sent == p.text.len() {
                    self.pending = None;
                }
                continue;
            }
            match Pin::new(&mut self.inner).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => return self.blocked(cx),
            }
            let text = p.text.as_str();
            // Fragments end on character boundaries, for peers that check UTF-8 as it comes.
            let mut end = (p.sent + CHUNK).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let bytes = tungstenite::Bytes::from(p.text.clone()).slice(p.sent..end);
            let opcode = if p.sent == 0 {
                Data::Text
            } else {
                Data::Continue
            };
            let frame = Frame::message(bytes, OpCode::Data(opcode), end == text.len());
            Pin::new(&mut self.inner).start_send(Message::Frame(frame))?;
            p.sent = end;
            p.flushing = true;
        }
    }
}

impl<S> Sink<Utf8Bytes> for Chunked<S>
where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    type Error = SendError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().poll_pending(cx)
    }

    fn start_send(self: Pin<&mut Self>, text: Utf8Bytes) -> Result<(), Self::Error> {
        let this = self.get_mut();
        debug_assert!(this.pending.is_none(), "start_send without poll_ready");
        this.pending = Some(Pending {
            text,
            sent: 0,
            flushing: false,
        });
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(r) => Poll::Ready(r.map_err(SendError::from)),
            Poll::Pending => this.blocked(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner)
            .poll_close(cx)
            .map_err(SendError::from)
    }
}

#[cfg(test)]
mod tests {
    use futures_channel::mpsc;
    use futures_util::{SinkExt, StreamExt};

    use super::*;

    /// A sink of frames that a test drains, turned into tungstenite's error type.
    fn channel(
        room: usize,
    ) -> (
        impl Sink<Message, Error = tungstenite::Error> + Unpin,
        mpsc::Receiver<Message>,
    ) {
        let (tx, rx) = mpsc::channel(room);
        (
            tx.sink_map_err(|_| tungstenite::Error::ConnectionClosed),
            rx,
        )
    }

    fn fragment(m: &Message) -> (bool, OpCode, usize) {
        let Message::Frame(f) = m else {
            panic!("a frame: {m:?}")
        };
        (f.header().is_final, f.header().opcode, f.payload().len())
    }

    #[tokio::test]
    async fn a_long_message_goes_out_in_fragments_that_rejoin_it() {
        let (tx, rx) = channel(16);
        let mut sink = Chunked::new(tx, Duration::from_secs(5));
        // Multi-byte characters straddle the fragment size.
        let text: String = "ü".repeat(CHUNK) + "end";
        sink.send(text.clone().into()).await.unwrap();
        drop(sink);
        let frames: Vec<Message> = rx.collect().await;
        let parts: Vec<_> = frames.iter().map(fragment).collect();
        assert_eq!(parts.len(), 3, "{parts:?}");
        assert_eq!(parts[0].1, OpCode::Data(Data::Text));
        assert!(
            parts[1..]
                .iter()
                .all(|p| p.1 == OpCode::Data(Data::Continue))
        );
        assert!(parts[..2].iter().all(|p| !p.0 && p.2 <= CHUNK));
        assert!(parts[2].0, "the last fragment is final");
        let mut joined = Vec::new();
        for m in &frames {
            let Message::Frame(f) = m else { unreachable!() };
            assert!(std::str::from_utf8(f.payload()).is_ok(), "whole characters");
            joined.extend_from_slice(f.payload());
        }
        assert_eq!(joined, text.as_bytes());
    }

    #[tokio::test]
    async fn a_short_or_empty_message_is_one_final_frame() {
        let (tx, mut rx) = channel(4);
        let mut sink = Chunked::new(tx, Duration::from_secs(5));
        sink.send("{}".into()).await.unwrap();
        sink.send("".into()).await.unwrap();
        assert_eq!(
            fragment(&rx.next().await.unwrap()),
            (true, OpCode::Data(Data::Text), 2)
        );
        assert_eq!(
            fragment(&rx.next().await.unwrap()),
            (true, OpCode::Data(Data::Text), 0)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_takes_nothing_for_the_stall_time_is_cut_off() {
        let (tx, mut rx) = channel(0);
        let mut sink = Chunked::new(tx, Duration::from_secs(5));
        let text: Utf8Bytes = "x".repeat(4 * CHUNK).into();
        let sending = tokio::spawn(async move { sink.send(text).await });
        // Taking a fragment every few seconds is progress, however slow.
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_secs(4)).await;
            assert!(rx.next().await.is_some());
        }
        let failed = sending.await.unwrap();
        assert!(matches!(failed, Err(SendError::Stalled)), "{failed:?}");
    }
}
