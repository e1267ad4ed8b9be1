//! One `/ws` client, over any `Sink` of text and `Stream` of incoming messages, so it is
//! tested without a socket.

use axum::extract::ws::Utf8Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::broadcast::{self, error::RecvError};

use super::{Fanout, Frame, FrameKind, lagged};

/// What a client sent that the session cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// Any text or ping: the client is alive; the feed is one-way, so it is ignored.
    Other,
    /// The client closed the socket.
    Close,
}

/// Serves one client until it leaves or its socket fails: a snapshot, then every frame;
/// when it falls behind, `lagged` with the number of events it missed and a new snapshot.
///
/// `frames` must be subscribed before the first snapshot is taken, so no event falls
/// between the two; `snapshot(seq)` renders the state as of event `seq`.
pub async fn serve<S, R, F>(
    mut sink: S,
    mut incoming: R,
    fanout: &Fanout,
    mut frames: broadcast::Receiver<Frame>,
    snapshot: F,
) where
    S: Sink<Utf8Bytes> + Unpin,
    R: Stream<Item = Incoming> + Unpin,
    F: Fn(u64) -> Utf8Bytes,
{
    // Events up to `delivered` are in what the client has (a snapshot or a frame).
    let mut delivered = fanout.last_seq();
    if sink.send(snapshot(delivered)).await.is_err() {
        return;
    }
    loop {
        let frame = tokio::select! {
            frame = frames.recv() => frame,
            message = incoming.next() => match message {
                None | Some(Incoming::Close) => return,
                Some(Incoming::Other) => continue,
            },
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(RecvError::Closed) => return,
            Err(RecvError::Lagged(_)) => {
                // Start again from the newest frame: the snapshot covers what is queued.
                frames = frames.resubscribe();
                // The frames skipped held every event up to what is encoded now.
                let now = fanout.last_seq();
                if resync(&mut sink, now.saturating_sub(delivered), now, &snapshot)
                    .await
                    .is_err()
                {
                    return;
                }
                delivered = now;
                continue;
            }
        };
        let sent = match frame.kind {
            FrameKind::Events { last_seq } if last_seq <= delivered => continue,
            FrameKind::Events { last_seq } => {
                delivered = last_seq;
                sink.send(frame.json).await
            }
            FrameKind::Stats => sink.send(frame.json).await,
            FrameKind::Resync(missed) => {
                frames = frames.resubscribe();
                let now = fanout.last_seq();
                let sent = resync(&mut sink, missed, now, &snapshot).await;
                delivered = now;
                sent
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

async fn resync<S, F>(sink: &mut S, missed: u64, seq: u64, snapshot: &F) -> Result<(), S::Error>
where
    S: Sink<Utf8Bytes> + Unpin,
    F: Fn(u64) -> Utf8Bytes,
{
    sink.send(lagged(missed)).await?;
    sink.send(snapshot(seq)).await
}
