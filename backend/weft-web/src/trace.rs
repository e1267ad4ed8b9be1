//! [`Trace`]: a request's traced Deferred, with its named steps, and the inspector's
//! cancel reaching the request's handler; while spans are exported, the W3C trace
//! context the request came with and the one it takes upstream.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use weft::defer::{Deferred, DeferredId, Failure, Held, Resolver, StepDetail, Steps};
use weft::observe::exemplar::SpanRef;
use weft::observe::trace::{self, TraceContext};
use weft::observe::{ConnectionId, ConnectionInfo};

use crate::metrics::MethodLabel;

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The named step of a traced request that says its method.
const REQUEST_STEP: &str = "request";
/// The named step of a traced request that says its response's status.
const RESPONSE_STEP: &str = "response";
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The request's traced Deferred: fired when a response is ready, cancelled (with the
/// failure consumed, so it is not reported unhandled) if the client goes away first. Its
/// named steps say where the request is (`route`, `connect upstream`, `response head`,
/// `read file`); a cancel from the inspector abandons the exchange.
///
/// Most requests (a file kept in memory) are answered within the poll they arrive in,
/// where nobody could list, cancel or be told of their chain unless the sampler keeps it;
/// such a chain is [`Held`] and never made. It is made (dated when the request came, with
/// the steps marked so far) the moment the request has to wait.
pub(crate) struct Trace {
    /// The chain while it is held: until the request's work first has to wait.
    held: Option<Held<()>>,
    /// Fires the request's Deferred when the response is ready; taken, so it fires once.
    resolver: Option<Resolver<()>>,
    /// The Deferred itself, cancelled if the client goes away first.
    deferred: Option<Deferred<()>>,
    /// Marks its named steps.
    pub(crate) steps: Steps,
    /// The request's span, while spans are exported: what its latency's exemplar names.
    pub(crate) span: Option<SpanRef>,
    /// The request came with a `traceparent` that could not be continued (invalid, or
    /// several), while spans are exported.
    pub(crate) invalid_parent: bool,
}

impl Trace {
    /// Starts the request's chain. While spans are exported, the chain continues the
    /// trace of a valid `traceparent` in `headers`, and `headers` are rewritten to name
    /// the chain's span as the parent of whatever the request goes on to (the upstream).
    pub(crate) fn start(info: &ConnectionInfo, headers: &mut HeaderMap) -> Self {
        let held = Held::new(Some("http request"), Some(info.id));
        let id = held.id();
        let mut trace = Self {
            steps: held.steps(),
            held: None,
            span: None,
            invalid_parent: false,
            resolver: None,
            deferred: None,
        };
        // Wanted whenever spans are exported: made before its trace is continued.
        match held.wanted() {
            true => trace.make(held),
            false => trace.held = Some(held),
        }
        if trace::enabled() {
            let (span, invalid) = propagate(id, info.id, headers);
            trace.span = Some(span);
            trace.invalid_parent = invalid;
        }
        trace
    }

    fn make(&mut self, held: Held<()>) {
        let (resolver, deferred) = held.make();
        self.resolver = Some(resolver);
        self.deferred = Some(deferred);
    }

    /// Runs `work` unless the chain is cancelled first (from the inspector): then `None`,
    /// and the caller drops `work` with whatever it holds (an upstream connection
    /// mid-exchange is closed, never reused).
    ///
    /// `work` is pinned where the caller made it: a request's work is a large future, and
    /// moving it in here would copy it once more for each request.
    pub(crate) async fn unless_cancelled<F: Future>(
        &mut self,
        mut work: Pin<&mut F>,
    ) -> Option<F::Output> {
        poll_fn(|cx| {
            // Only a cancellation fires the chain before `done`; polling takes (consumes)
            // its failure.
            if let Some(d) = self.deferred.as_mut()
                && Pin::new(d).poll(cx).is_ready()
            {
                self.deferred = None;
                return Poll::Ready(None);
            }
            let polled = work.as_mut().poll(cx);
            if polled.is_pending()
                && let Some(held) = self.held.take()
            {
                // The request waits: from now on its chain is listed and can be cancelled.
                self.make(held);
                if let Some(d) = self.deferred.as_mut() {
                    let _unfired = Pin::new(d).poll(cx);
                }
            }
            polled.map(Some)
        })
        .await
    }

    /// While spans are exported, names the request's method as its first step
    /// (`request`), which the span's `http.request.method` is read from.
    pub(crate) fn method(&self, method: MethodLabel) {
        if self.span.is_some() {
            let detail = StepDetail::from_static(method.as_str());
            self.steps.step_with(REQUEST_STEP, None, Some(&detail));
        }
    }

    /// While spans are exported, names the response's status as the request's last step
    /// (`response`), which the span's `http.response.status_code` is read from.
    pub(crate) fn responded(&self, status: StatusCode) {
        if self.span.is_some() {
            let detail = StepDetail::new(status.as_str());
            self.steps.step_with(RESPONSE_STEP, None, Some(&detail));
        }
    }

    /// Fires the chain: the response, of `status`, is ready. A server error (a 502 for an
    /// upstream that refused, a 504 for one that did not answer in time) ends it failed,
    /// so the inspector lists it with the failed ones; it was answered, so that is no
    /// unhandled failure. Its handle goes first: it was polled with the connection task's
    /// waker (watching for a cancel), so firing it with the handle still held would wake
    /// the task that is running now, and the whole connection would be polled again for
    /// nothing, once a request.
    pub(crate) fn done(mut self, status: StatusCode) {
        // Held, it ends unmade: answered within the poll it came in.
        drop(self.held.take());
        let failed = status.is_server_error();
        match self.deferred.take() {
            Some(d) if failed => d.end_handled(),
            d => drop(d),
        }
        if let Some(r) = self.resolver.take() {
            match failed {
                true => r.errback(Failure::msg(format!("answered {status}"))),
                false => r.callback(()),
            }
        }
    }
}

/// Continues the caller's trace (W3C Trace Context) if `headers` carry a valid one, and
/// puts the chain `id`'s span in their place. Several `traceparent` fields, or an invalid
/// one, start a new trace, and the `tracestate` that came with them is dropped, as the
/// spec asks. Returns the chain's span, and whether a `traceparent` came and was not
/// continued.
fn propagate(id: DeferredId, connection: ConnectionId, headers: &mut HeaderMap) -> (SpanRef, bool) {
    let mut parents = headers.get_all(TRACEPARENT).iter();
    let came = headers.contains_key(TRACEPARENT);
    let incoming = match (parents.next(), parents.next()) {
        (Some(parent), None) => {
            // Several tracestate fields are one list, joined by commas.
            let state = headers
                .get_all(TRACESTATE)
                .iter()
                .map(HeaderValue::as_bytes)
                .collect::<Vec<_>>()
                .join(&b","[..]);
            TraceContext::parse(parent.as_bytes(), (!state.is_empty()).then_some(&state[..]))
        }
        _ => None,
    };
    let invalid = came && incoming.is_none();
    let (trace_id, flags, state) = match incoming {
        Some(context) => {
            let kept = (context.trace_id, context.flags, context.state.clone());
            trace::continue_trace(id, Some(connection), context);
            kept
        }
        // Sampled: whether history keeps the chain is known only at its end.
        None => (trace::trace_id(id), 1, None),
    };
    let span_id = trace::span_id(id);
    let parent = trace::traceparent(&trace_id, &span_id, flags);
    if let Ok(v) = HeaderValue::from_str(&parent) {
        headers.insert(TRACEPARENT, v);
    }
    match state.and_then(|s| HeaderValue::from_str(&s).ok()) {
        Some(v) => {
            headers.insert(TRACESTATE, v);
        }
        None => {
            headers.remove(TRACESTATE);
        }
    }
    (SpanRef { trace_id, span_id }, invalid)
}

impl Drop for Trace {
    fn drop(&mut self) {
        if let (Some(_resolver), Some(mut d)) = (self.resolver.take(), self.deferred.take()) {
            d.cancel();
            let _ = d.try_take();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::pending;
    use std::pin::pin;
    use std::task::{Context, Waker};

    use weft::Address;
    use weft::observe::TransportKind;

    use super::*;

    #[test]
    fn a_requests_chain_is_made_only_once_its_work_waits() {
        let info = ConnectionInfo::new(
            "web".into(),
            TransportKind::Tcp,
            Address::Memory("client".into()),
            Address::Memory("server".into()),
        );
        let listed = || weft::defer::pending().len();
        let mut cx = Context::from_waker(Waker::noop());

        // Answered at once: no chain is ever listed.
        let mut trace = Trace::start(&info, &mut HeaderMap::new());
        trace.steps.step("route");
        assert_eq!(listed(), 0, "held while the work has not waited");
        {
            let work = pin!(std::future::ready(()));
            let answered = pin!(trace.unless_cancelled(work));
            assert_eq!(answered.poll(&mut cx), Poll::Ready(Some(())));
        }
        trace.done(StatusCode::OK);
        assert_eq!(listed(), 0);

        // Waiting: listed from then on, with the step it was at.
        let mut trace = Trace::start(&info, &mut HeaderMap::new());
        trace.steps.step("route");
        {
            let work = pin!(pending::<()>());
            let mut waiting = pin!(trace.unless_cancelled(work));
            assert!(waiting.as_mut().poll(&mut cx).is_pending());
        }
        let chains = weft::defer::pending();
        assert_eq!(chains.len(), 1, "made when its work waited");
        assert_eq!(chains[0].named.as_ref().map(|s| s.name), Some("route"));
        trace.done(StatusCode::OK);
        assert_eq!(listed(), 0, "fired when answered");
    }
}
