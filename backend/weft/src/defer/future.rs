//! The async bridge: a Deferred is a `Future`, and a future becomes a Deferred
//! (Twisted's `inlineCallbacks` / `ensureDeferred`).

use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{Deferred, Failure, PanicError};

/// Awaiting a Deferred takes its chain's result; the chain must not be used after.
///
/// Dropping the future before it completes just drops the handle: the chain keeps
/// whatever it had, its waker is forgotten, and nothing stays allocated for it.
impl<T: 'static> Future for Deferred<T> {
    type Output = Result<T, Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match this.poll_result(cx) {
            Some(result) => Poll::Ready(result),
            None => {
                crate::tasks::note_awaiting(this.id());
                Poll::Pending
            }
        }
    }
}

impl<T: 'static> Deferred<T> {
    /// Runs `future` on the reactor thread and fires the returned Deferred with its
    /// output (Twisted's `ensureDeferred`). Cancelling the Deferred drops the future.
    ///
    /// Call it on the reactor thread (or inside a tokio `LocalSet`).
    #[track_caller]
    pub fn from_future<F>(future: F) -> Deferred<T>
    where
        F: Future<Output = Result<T, Failure>> + 'static,
    {
        Self::from_future_at(Location::caller(), future)
    }

    /// `from_future` with the site given.
    pub(crate) fn from_future_at<F>(site: &'static Location<'static>, future: F) -> Deferred<T>
    where
        F: Future<Output = Result<T, Failure>> + 'static,
    {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let core = super::core::Core::new(site, None, None);
        core.set_canceller(Box::new(move || {
            let _ = stop_tx.send(());
        }));
        let id = core.id;
        let (resolver, deferred) = super::deferred::pair_from(core);
        let task = async move {
            tokio::select! {
                output = caught(future, site) => resolver.resolve(output),
                // Cancelled: the future is dropped here; the Deferred already failed.
                _ = stop_rx => {}
            }
        };
        let task = crate::tasks::instrument(
            task,
            crate::tasks::TaskKind::FromFuture,
            None,
            site,
            Some(id),
        );
        match crate::Reactor::try_current() {
            Some(reactor) => reactor.spawn_untracked(task),
            None => {
                tokio::task::spawn_local(task);
            }
        }
        deferred
    }
}

/// `future`'s output, or a panic in one of its polls as a [`PanicError`] failure made at
/// `site`, as a panicking callback step fails its chain: without it the task would end
/// with the panic, the Deferred never fire, and be reported leaked.
async fn caught<T, F>(future: F, site: &'static Location<'static>) -> Result<T, Failure>
where
    F: Future<Output = Result<T, Failure>>,
{
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| future.as_mut().poll(cx)))
            .unwrap_or_else(|panic| {
                let message = crate::time::panic_message(&panic);
                Poll::Ready(Err(Failure::with_site(PanicError { message }, site)))
            })
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;
    use std::task::Waker;

    use super::*;
    use crate::defer::{CancelledError, pending_count};

    fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(f).poll(&mut cx)
    }

    #[test]
    fn awaiting_a_deferred_yields_its_chain_result() {
        let (r, d) = Deferred::<u32>::new();
        let mut fut = Box::pin(async move { d.add_callback(|v| v * 2).await });
        assert!(poll_once(&mut fut).is_pending());
        r.callback(21);
        assert_eq!(poll_once(&mut fut).map(Result::unwrap), Poll::Ready(42));
    }

    #[test]
    fn dropping_a_future_that_awaits_a_deferred_leaks_nothing() {
        let (r, d) = Deferred::<u32>::new();
        let weak = Rc::downgrade(d.core());
        let mut fut = Box::pin(async move { d.await.map(|v| v + 1) });
        assert!(poll_once(&mut fut).is_pending());
        drop(fut);
        r.callback(1);
        assert!(weak.upgrade().is_none(), "the chain was freed");
        assert_eq!(pending_count(), 0);
    }

    /// A tokio oneshot's receiver gets an error when its sender is dropped; so does a task
    /// awaiting a Deferred whose firing side was dropped, or one waiting on such a chain.
    #[test]
    fn awaiting_a_deferred_whose_firing_side_was_dropped_fails_with_leaked_error() {
        let (r, d) = Deferred::<u32>::new();
        let mut fut = d;
        assert!(poll_once(&mut fut).is_pending());
        drop(r);
        let failure = match poll_once(&mut fut) {
            Poll::Ready(Err(failure)) => failure,
            other => panic!("not failed: {other:?}"),
        };
        assert!(failure.check::<crate::defer::LeakedError>(), "{failure}");

        let (r, child) = Deferred::<u32>::new();
        let parent = Deferred::succeed(()).and_then(move |()| child.add_callback(|n| n + 1));
        let mut fut = parent;
        assert!(poll_once(&mut fut).is_pending());
        drop(r);
        assert!(
            matches!(poll_once(&mut fut), Poll::Ready(Err(f)) if f.check::<crate::defer::LeakedError>())
        );
        drop(fut);
        assert_eq!(pending_count(), 0);
    }

    #[test]
    fn from_future_fires_with_the_output_and_cancel_drops_the_future() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let d = Deferred::from_future(async { Ok::<_, Failure>(5) });
            assert_eq!(d.await.unwrap(), 5);

            let dropped = Rc::new(std::cell::Cell::new(false));
            struct Flag(Rc<std::cell::Cell<bool>>);
            impl Drop for Flag {
                fn drop(&mut self) {
                    self.0.set(true);
                }
            }
            let flag = Flag(dropped.clone());
            let d = Deferred::<u32>::from_future(async move {
                let _flag = flag;
                std::future::pending::<()>().await;
                Ok(0)
            });
            tokio::task::yield_now().await;
            d.cancel();
            let failure = d.await.unwrap_err();
            assert!(failure.check::<CancelledError>());
            tokio::task::yield_now().await;
            assert!(dropped.get(), "the future was dropped");

            // A panic in the future fails the Deferred, as one in a callback does.
            let d = Deferred::<u32>::from_future(async {
                tokio::task::yield_now().await;
                panic!("the future broke");
            });
            let failure = d.await.unwrap_err();
            let panicked = failure.trap::<crate::defer::PanicError>().unwrap();
            assert_eq!(panicked.message, "the future broke");
        });
    }
}
