//! One `/ws` client, over any `Sink` of text and `Stream` of incoming messages, so it is
//! tested without a socket.

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::{Fanout, Frame, FrameKind, lagged};

/// What a client sent that the session cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// Any text or ping: the client is alive; the feed is one-way, so it is ignored.
    Other,
    /// The client sent a Close frame: the closing handshake has begun.
    Close,
    /// The client sent a Close frame with a code no endpoint may send (RFC 6455 §7.4.2,
    /// such as 999), which the protocol library answers 1002: a violation, ended as a
    /// close is.
    BadClose,
    /// The connection ended without a Close.
    Gone,
    /// The client broke the protocol; the connection must be failed.
    Violation(Violation),
}

/// How a client broke RFC 6455, and the close code each gets (§7.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// A malformed frame: reserved bits, an unmasked frame, an unknown opcode, a fragmented
    /// or oversized control frame (1002).
    Protocol,
    /// A message or frame over the limit (1009).
    TooBig,
    /// Text that is not UTF-8 (1007).
    BadText,
}

impl Violation {
    /// The close code.
    pub fn code(self) -> u16 {
        match self {
            Self::Protocol => 1002,
            Self::TooBig => 1009,
            Self::BadText => 1007,
        }
    }

    /// The close reason.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Protocol => "protocol error",
            Self::TooBig => "message too big",
            Self::BadText => "text is not UTF-8",
        }
    }
}

/// Why a session ended; the socket's owner finishes the closing handshake accordingly.
#[derive(Debug)]
pub enum Ended<E> {
    /// The client sent a Close (to be answered).
    ClientClosed,
    /// The client sent a Close with a code no endpoint may send (answered 1002 already,
    /// to be flushed).
    BadClose,
    /// The connection ended without one.
    ClientGone,
    /// The client broke the protocol (to be closed with its code).
    Violation(Violation),
    /// The dashboard is shutting down (to be closed with 1001).
    ShuttingDown,
    /// Sending failed.
    SendFailed(E),
}

/// Serves one client until it leaves, its socket fails or the dashboard shuts down: a
/// snapshot, then every frame; when it falls behind, `lagged` with the number of events it
/// missed and a new snapshot.
///
/// `frames` must be subscribed before the first snapshot is taken, so no event falls
/// between the two; `snapshot(seq)` renders the state as of event `seq`.
pub async fn serve<S, R, F>(
    mut sink: S,
    mut incoming: R,
    fanout: &Fanout,
    mut frames: broadcast::Receiver<Frame>,
    snapshot: F,
) -> Ended<S::Error>
where
    S: Sink<Utf8Bytes> + Unpin,
    R: Stream<Item = Incoming> + Unpin,
    F: Fn(u64) -> Utf8Bytes,
{
    let mut closing = fanout.closing();
    // Events up to `delivered` are in what the client has (a snapshot or a frame).
    let mut delivered = fanout.last_seq();
    if let Err(ended) = send(&mut sink, snapshot(delivered), &mut closing).await {
        return ended;
    }
    loop {
        let frame = tokio::select! {
            frame = frames.recv() => frame,
            message = incoming.next() => match message {
                Some(Incoming::Other) => continue,
                Some(Incoming::Close) => return Ended::ClientClosed,
                Some(Incoming::BadClose) => return Ended::BadClose,
                None | Some(Incoming::Gone) => return Ended::ClientGone,
                Some(Incoming::Violation(v)) => return Ended::Violation(v),
            },
            () = shutting_down(&mut closing) => return Ended::ShuttingDown,
        };
        let frame = match frame {
            Ok(frame) => frame,
            // The encoder has stopped: the dashboard is going away.
            Err(RecvError::Closed) => return Ended::ShuttingDown,
            Err(RecvError::Lagged(_)) => {
                // Start again from the newest frame: the snapshot covers what is queued.
                frames = frames.resubscribe();
                // The frames skipped held every event up to what is encoded now.
                let now = fanout.last_seq();
                let missed = now.saturating_sub(delivered);
                if let Err(ended) = resync(&mut sink, missed, now, &snapshot, &mut closing).await {
                    return ended;
                }
                delivered = now;
                continue;
            }
        };
        let sent = match frame.kind {
            FrameKind::Events { last_seq } if last_seq <= delivered => continue,
            // Encoded while no client was subscribed, so it carries no text (the encoder
            // skips the work for nobody): this client joined in between, and gets the
            // events it stands for in a fresh snapshot rather than an empty message.
            FrameKind::Events { .. } if frame.json.is_empty() => {
                let now = fanout.last_seq();
                delivered = now;
                send(&mut sink, snapshot(now), &mut closing).await
            }
            FrameKind::Events { last_seq } => {
                delivered = last_seq;
                send(&mut sink, frame.json, &mut closing).await
            }
            FrameKind::Stats => send(&mut sink, frame.json, &mut closing).await,
            FrameKind::Resync(missed) => {
                frames = frames.resubscribe();
                let now = fanout.last_seq();
                let sent = resync(&mut sink, missed, now, &snapshot, &mut closing).await;
                delivered = now;
                sent
            }
        };
        if let Err(ended) = sent {
            return ended;
        }
    }
}

/// Completes once the dashboard shuts down.
async fn shutting_down(closing: &mut watch::Receiver<bool>) {
    // The sender lives as long as the fanout; losing it means shutting down too.
    let _ = closing.wait_for(|closing| *closing).await;
}

/// Sends `text`, unless the dashboard shuts down first (a client that reads slowly must
/// not hold up the goodbye).
async fn send<S>(
    sink: &mut S,
    text: Utf8Bytes,
    closing: &mut watch::Receiver<bool>,
) -> Result<(), Ended<S::Error>>
where
    S: Sink<Utf8Bytes> + Unpin,
{
    tokio::select! {
        sent = sink.send(text) => sent.map_err(Ended::SendFailed),
        () = shutting_down(closing) => Err(Ended::ShuttingDown),
    }
}

async fn resync<S, F>(
    sink: &mut S,
    missed: u64,
    seq: u64,
    snapshot: &F,
    closing: &mut watch::Receiver<bool>,
) -> Result<(), Ended<S::Error>>
where
    S: Sink<Utf8Bytes> + Unpin,
    F: Fn(u64) -> Utf8Bytes,
{
    send(sink, lagged(missed), closing).await?;
    send(sink, snapshot(seq), closing).await
}
