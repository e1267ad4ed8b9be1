//! [`HeadTimer`]: the timer hyper's HTTP/1.1 server is given for one connection, which
//! it uses for one thing: the deadline of each request head (`header_read_timeout`).
//!
//! hyper asks for a new sleep whenever it starts waiting for a head and drops it when the
//! head is in, nearly always long before it was due. A tokio sleep per head enters the
//! runtime's timer wheel on its first poll and leaves it when dropped, on every request.
//! Here the connection keeps one tokio sleep, armed at a deadline no later than the one
//! hyper waits for and moved only when it goes off early (`crate::deadline`): when it
//! wakes the connection before the head's own deadline, it is moved to that deadline. A
//! head then costs a clock read and a small allocation; a head that does not come in
//! time ends the connection at its deadline, as with tokio's timer.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

/// One connection's timer (see the module).
#[derive(Clone, Default)]
pub(super) struct HeadTimer {
    /// The connection's tokio sleep, made at the first poll of a head's sleep.
    shared: Arc<Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>,
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    /// The runtime's clock (which a test may pause), as the deadlines are on it.
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(HeadSleep {
            deadline: tokio::time::Instant::from_std(deadline),
            shared: self.shared.clone(),
        })
    }
}

/// The sleep hyper holds while it waits for one head: due at `deadline`.
struct HeadSleep {
    deadline: tokio::time::Instant,
    shared: Arc<Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>,
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        let sleep = shared.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        crate::deadline::poll_due(sleep.as_mut(), deadline, cx)
    }
}

impl Sleep for HeadSleep {}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(sleep: &mut Pin<Box<dyn Sleep>>) -> Poll<()> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        sleep.as_mut().poll(&mut cx)
    }

    #[tokio::test(start_paused = true)]
    async fn each_head_is_due_at_its_own_deadline_with_one_sleep_for_the_connection() {
        let timer = HeadTimer::default();
        let start = timer.now();
        let second = Duration::from_secs(1);
        let mut first = timer.sleep_until(start + second);
        assert_eq!(poll(&mut first), Poll::Pending);
        drop(first);
        tokio::time::advance(second / 2).await;
        // The next head waits from now: the sleep armed for the first goes off before
        // its deadline, and is moved to it.
        let mut next = timer.sleep(second);
        assert_eq!(poll(&mut next), Poll::Pending);
        tokio::time::advance(second * 3 / 4).await;
        assert_eq!(poll(&mut next), Poll::Pending, "the first head's deadline");
        tokio::time::advance(second / 4).await;
        assert_eq!(poll(&mut next), Poll::Ready(()), "its own deadline");
        // A head due earlier than the armed sleep moves it back.
        let mut late = timer.sleep(second * 5);
        assert_eq!(poll(&mut late), Poll::Pending);
        let mut early = timer.sleep(second);
        assert_eq!(poll(&mut early), Poll::Pending);
        tokio::time::advance(second).await;
        assert_eq!(poll(&mut early), Poll::Ready(()));
    }
}
