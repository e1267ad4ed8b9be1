//! The client's request body as the service reads it: each piece must come within
//! `request_timeout` of the head or of the piece before, over HTTP/1.1 and HTTP/2 alike.
//!
//! hyper bounds neither. Over HTTP/1.1 a client that stops sending its body at least
//! leaves its connection idle; over HTTP/2 the other streams of the connection keep it
//! busy, so a stream whose body never ends would hold its slot (and, past what is read
//! ahead of the upstream, `proxy::body`, the upstream connection its request went to)
//! for as long as the upstream waits. [`Paced`] ends such
//! a body with [`ClientBodyError::TimedOut`]: the proxy answers 408 (RFC 9110 §15.5.9)
//! and counts it as `body_timeout`, and over HTTP/2 only that stream ends (reset with
//! NO_ERROR once its answer is sent, RFC 9113 §8.1); the connection's other streams go on.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Why the client's request body did not arrive whole.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientBodyError {
    /// The body broke off or was malformed (bad chunked framing, a reset stream).
    #[error("{0}")]
    Broken(#[from] hyper::Error),
    /// No piece of the body came within the timeout.
    #[error("no part of the request body came within {0:?}")]
    TimedOut(Duration),
    /// What was read ahead of the upstream did not all come within the timeout.
    #[error("the request body did not come within {0:?}")]
    TooSlow(Duration),
}

/// A request body that fails when the client lets `timeout` pass without sending any of
/// it.
pub(crate) struct Paced<B> {
    inner: B,
    timeout: Duration,
    /// Armed when the body is first waited for and moved on after each piece; the clock is
    /// read only when the body has to be waited for again after a piece, not per poll.
    sleep: Option<Pin<Box<Sleep>>>,
    /// A piece came since the deadline was last set.
    moved: bool,
}

impl<B> Paced<B> {
    pub(crate) fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            sleep: None,
            moved: false,
        }
    }
}

impl<B> HttpBody for Paced<B>
where
    B: HttpBody<Data = Bytes, Error = hyper::Error> + Unpin,
{
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.moved = true;
                return Poll::Ready(frame.map(|f| f.map_err(ClientBodyError::from)));
            }
            Poll::Pending => {}
        }
        let timeout = this.timeout;
        let sleep = match &mut this.sleep {
            Some(sleep) => {
                if std::mem::take(&mut this.moved) {
                    sleep.as_mut().reset(Instant::now() + timeout);
                }
                sleep
            }
            None => {
                this.moved = false;
                this.sleep.insert(Box::pin(tokio::time::sleep(timeout)))
            }
        };
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(ClientBodyError::TimedOut(timeout)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use http_body_util::BodyExt;

    use super::*;

    /// A body whose pieces come when the test sends them, as hyper's `Incoming` would.
    struct Channel(tokio::sync::mpsc::UnboundedReceiver<Bytes>);

    impl HttpBody for Channel {
        type Data = Bytes;
        type Error = hyper::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
            self.get_mut()
                .0
                .poll_recv(cx)
                .map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    fn channel() -> (tokio::sync::mpsc::UnboundedSender<Bytes>, Channel) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (tx, Channel(rx))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_coming_is_read_and_one_that_stalls_past_the_timeout_fails() {
        let (tx, body) = channel();
        let mut paced = Paced::new(body, Duration::from_secs(10));
        // Each piece comes 9 s after the body is waited on, while the timer runs: 45 s in
        // all, past one timeout, so only a timer moved by each piece lets them through.
        for _ in 0..5 {
            let (frame, ()) =
                tokio::join!(poll_fn(|cx| Pin::new(&mut paced).poll_frame(cx)), async {
                    tokio::time::sleep(Duration::from_secs(9)).await;
                    tx.send(Bytes::from_static(b"piece")).unwrap();
                });
            assert_eq!(frame.unwrap().unwrap().into_data().unwrap(), "piece");
        }
        let started = Instant::now();
        let stalled = poll_fn(|cx| Pin::new(&mut paced).poll_frame(cx)).await;
        assert!(matches!(
            stalled,
            Some(Err(ClientBodyError::TimedOut(t))) if t == Duration::from_secs(10)
        ));
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_ends_in_time_is_whole() {
        let (tx, body) = channel();
        tx.send(Bytes::from_static(b"all")).unwrap();
        drop(tx);
        let got = Paced::new(body, Duration::from_secs(1)).collect().await;
        assert_eq!(got.unwrap().to_bytes(), "all");
    }
}
