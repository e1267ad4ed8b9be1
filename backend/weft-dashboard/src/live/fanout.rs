//! [`Fanout`]: what every `/ws` client shares. The frames (a broadcast, each client's
//! bounded queue), the last snapshot (clients that join on the same event share one), the
//! number of clients (capped by `max_live_clients`) and the signal to say goodbye.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, broadcast, watch};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::{FRAMES, Frame, FrameKind};

/// A snapshot is shared by clients joining on the same event within this long: about when
/// its counters are refreshed by the next `stats` frame anyway.
const SNAPSHOT_SHARED_FOR: Duration = Duration::from_secs(1);

/// The broadcast of frames and what clients share besides.
#[derive(Debug)]
pub struct Fanout {
    /// One encoded copy of each frame, shared by every client; a client that falls behind lags and
    /// resyncs instead of slowing the others.
    tx: broadcast::Sender<Frame>,
    /// The last event encoded, so a new or lagging client knows what its snapshot covers and how
    /// many events it missed.
    last_seq: AtomicU64,
    /// The last snapshot rendered: the event it is as of, when, and its text.
    snapshot: Mutex<Option<(u64, Instant, Utf8Bytes)>>,
    /// Clients admitted and not yet gone.
    clients: AtomicUsize,
    /// Wakes [`Fanout::drained`] when a client leaves.
    left: Notify,
    /// `true` once the dashboard is shutting down.
    closing: watch::Sender<bool>,
}

impl Default for Fanout {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(FRAMES).0,
            last_seq: AtomicU64::new(0),
            snapshot: Mutex::new(None),
            clients: AtomicUsize::new(0),
            left: Notify::new(),
            closing: watch::channel(false).0,
        }
    }
}

impl Fanout {
    /// A client's subscription, from the next frame on.
    pub fn subscribe(&self) -> broadcast::Receiver<Frame> {
        self.tx.subscribe()
    }

    /// The number of the last event encoded (0 before any).
    pub fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Acquire)
    }

    /// How many clients are subscribed.
    pub fn clients(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Sends a frame to every client (nobody listening is fine), first noting the last
    /// event it carries.
    pub fn publish(&self, frame: Frame) {
        if let FrameKind::Events { last_seq } = frame.kind {
            self.last_seq.store(last_seq, Ordering::Release);
        }
        let _ = self.tx.send(frame);
    }

    /// The snapshot as of event `seq`: the one rendered last if it is as of the same event
    /// and recent, else `render()`'s. Clients joining together then hold one copy, not one
    /// each.
    pub fn snapshot(&self, seq: u64, render: impl FnOnce() -> Utf8Bytes) -> Utf8Bytes {
        let mut last = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at_seq, at, text)) = last.as_ref()
            && *at_seq == seq
            && at.elapsed() < SNAPSHOT_SHARED_FOR
        {
            return text.clone();
        }
        let text = render();
        *last = Some((seq, Instant::now(), text.clone()));
        text
    }

    /// Takes a place among at most `max` clients; `false` if they are all taken. Give it
    /// back with [`Fanout::leave`].
    pub fn join(&self, max: usize) -> bool {
        self.clients
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives back a place taken by [`Fanout::join`].
    pub fn leave(&self) {
        self.clients.fetch_sub(1, Ordering::AcqRel);
        self.left.notify_waiters();
    }

    /// Tells every client the dashboard is going away.
    pub fn shut_down(&self) {
        self.closing.send_replace(true);
    }

    /// `true` once [`Fanout::shut_down`] was called, in a form a session can wait on.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Returns once every client admitted has left.
    pub async fn drained(&self) {
        loop {
            let left = self.left.notified();
            if self.clients.load(Ordering::Acquire) == 0 {
                return;
            }
            left.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_beyond_the_cap_are_refused_until_one_leaves() {
        let f = Fanout::default();
        assert!(f.join(2) && f.join(2));
        assert!(!f.join(2));
        f.leave();
        assert!(f.join(2));
    }

    #[test]
    fn clients_joining_on_the_same_event_share_a_snapshot() {
        let f = Fanout::default();
        let renders = std::cell::Cell::new(0);
        let render = |seq: u64| {
            f.snapshot(seq, || {
                renders.set(renders.get() + 1);
                format!("as of {seq}").into()
            })
        };
        assert_eq!(render(7), "as of 7");
        assert_eq!(render(7), "as of 7");
        assert_eq!(render(8), "as of 8");
        assert_eq!(renders.get(), 2);
    }
}
