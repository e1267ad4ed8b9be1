//! [`Trace`]: a request's traced Deferred, with its named steps, and the inspector's
//! cancel reaching the request's handler.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::Poll;

use weft::defer::{Deferred, Resolver, Steps};
use weft::observe::ConnectionInfo;

/// The request's traced Deferred: fired when a response is ready, cancelled (with the
/// failure consumed, so it is not reported unhandled) if the client goes away first. Its
/// named steps say where the request is (`route`, `connect upstream`, `response head`,
/// `read file`); a cancel from the inspector abandons the exchange.
pub(crate) struct Trace {
    /// Fires the request's Deferred when the response is ready; taken, so it fires once.
    resolver: Option<Resolver<()>>,
    /// The Deferred itself, cancelled if the client goes away first.
    deferred: Option<Deferred<()>>,
    /// Marks its named steps.
    pub(crate) steps: Steps,
}

impl Trace {
    pub(crate) fn start(info: &ConnectionInfo) -> Self {
        let (resolver, deferred) = Deferred::traced(Some("http request"), Some(info.id));
        Self {
            steps: deferred.steps(),
            resolver: Some(resolver),
            deferred: Some(deferred),
        }
    }

    /// Runs `work` unless the chain is cancelled first (from the inspector): then `None`,
    /// and `work` is dropped with whatever it holds (an upstream connection mid-exchange
    /// is closed, never reused).
    pub(crate) async fn unless_cancelled<F: Future>(&mut self, work: F) -> Option<F::Output> {
        let mut work = pin!(work);
        poll_fn(|cx| {
            // Only a cancellation fires the chain before `done`; polling takes (consumes)
            // its failure.
            if let Some(d) = self.deferred.as_mut()
                && Pin::new(d).poll(cx).is_ready()
            {
                self.deferred = None;
                return Poll::Ready(None);
            }
            work.as_mut().poll(cx).map(Some)
        })
        .await
    }

    pub(crate) fn done(mut self) {
        if let Some(r) = self.resolver.take() {
            r.callback(());
        }
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        if let (Some(_resolver), Some(mut d)) = (self.resolver.take(), self.deferred.take()) {
            d.cancel();
            let _ = d.try_take();
        }
    }
}
