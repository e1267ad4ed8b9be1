//! Deadlines that only move later, kept on one tokio sleep that is moved only when it
//! goes off early.
//!
//! A connection waits on a fresh deadline for each of its requests: the head of the next
//! request, the answer of an upstream, the end of an idle spell. A tokio sleep made for
//! each enters the runtime's timer wheel and leaves it again, nearly always long before
//! it was due; one sleep moved for each (`Sleep::reset`) updates the wheel as often. Here
//! the sleep stays armed at the deadline it has, as long as that is no later than the one
//! waited for, and is moved to that one when it goes off early: a connection kept busy
//! moves it about once a timeout rather than once a request.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

/// Polls `sleep` as a wait for `due`: ready once `due` has passed, with the task of `cx`
/// woken then. `sleep` may be armed at any deadline; one later than `due` is moved back
/// to it, one earlier is moved forward when it goes off.
pub(crate) fn poll_due(mut sleep: Pin<&mut Sleep>, due: Instant, cx: &mut Context<'_>) -> Poll<()> {
    if sleep.deadline() > due {
        sleep.as_mut().reset(due);
    }
    loop {
        // Unconstrained, as tokio's `timeout` polls its timer: the deadline is seen even in
        // a turn whose budget the task has spent.
        match pin!(tokio::task::unconstrained(sleep.as_mut())).poll(cx) {
            Poll::Ready(()) if sleep.deadline() < due => sleep.as_mut().reset(due),
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;
    use std::time::Duration;

    use super::*;

    fn poll(sleep: Pin<&mut Sleep>, due: Instant) -> Poll<()> {
        poll_due(sleep, due, &mut Context::from_waker(Waker::noop()))
    }

    #[tokio::test(start_paused = true)]
    async fn each_wait_ends_at_its_own_deadline_on_one_sleep() {
        let second = Duration::from_secs(1);
        let start = Instant::now();
        let mut sleep = pin!(tokio::time::sleep(Duration::ZERO));
        assert_eq!(poll(sleep.as_mut(), start + second), Poll::Pending);
        tokio::time::advance(second / 2).await;
        // The next wait is due later: the sleep stays where it is...
        let next = Instant::now() + second;
        assert_eq!(poll(sleep.as_mut(), next), Poll::Pending);
        assert_eq!(sleep.deadline(), start + second);
        // ... goes off at the first deadline, and is moved to the second.
        tokio::time::advance(second / 2).await;
        assert_eq!(poll(sleep.as_mut(), next), Poll::Pending);
        assert_eq!(sleep.deadline(), next);
        tokio::time::advance(second / 2).await;
        assert_eq!(poll(sleep.as_mut(), next), Poll::Ready(()));
        // A wait due earlier than the armed sleep moves it back.
        let late = Instant::now() + second * 5;
        assert_eq!(poll(sleep.as_mut(), late), Poll::Pending);
        let early = Instant::now() + second;
        assert_eq!(poll(sleep.as_mut(), early), Poll::Pending);
        tokio::time::advance(second).await;
        assert_eq!(poll(sleep.as_mut(), early), Poll::Ready(()));
    }
}
