//! `kind = "tcp-proxy"`: forwards each TCP connection to `upstream` (Twisted's portforward).
//!
//! Reading from the client is paused until the upstream connection is up. Then each side's
//! transport is registered as the other's producer, so when one peer reads slowly the
//! proxy stops reading from the other instead of buffering without bound.
//!
//! Closing follows TCP's own rules, per direction:
//! - a side that shuts its write half (end of stream) has the other side's write half shut
//!   after what is buffered is sent, and the opposite direction keeps flowing until its own
//!   end: a client that sends a request and shuts its write side still gets every byte of
//!   the answer;
//! - a side that closes cleanly has the other closed once its buffer is sent (the reactor
//!   aborts a close that makes no progress for its close timeout, so a peer that stopped
//!   reading cannot hold the pair);
//! - a side that is reset, times out or fails has the other aborted at once: what is
//!   buffered for a peer that is gone has nowhere to go.
//!
//! Each client connection has a traced chain (`tcp-proxy`) whose named steps say where it
//! is: `connect upstream` (about the upstream endpoint; then with the upstream connection),
//! and `relay` once both sides are up, when the chain ends. A connection stuck connecting
//! is listed pending (and stalled) at that step, naming the upstream; one that could not
//! connect ends failed, with the reason.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use weft::defer::{Deferred, Failure, StepDetail, WaitsOn};
use weft::{CloseReason, HalfClose, ListenError, Protocol, Reactor, Transport, factory};

use crate::config::ConfigError;
use crate::config::validate::ServiceCtx;

/// The settings of a tcp-proxy service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpProxyConfig {
    /// A client endpoint string such as `tcp:127.0.0.1:5432`.
    pub upstream: String,
}

/// `kind = "tcp-proxy"`: `upstream`, stream endpoints only.
pub(crate) struct TcpProxyKind;

impl super::Kind for TcpProxyKind {
    const NAME: &'static str = "tcp-proxy";
    const IDLE_TIMEOUT: Duration = super::limits::STREAM_IDLE_TIMEOUT;
    type Settings = TcpProxyConfig;
    type Metrics = ();

    fn validate(ctx: &ServiceCtx<'_>) -> Result<TcpProxyConfig, ConfigError> {
        ctx.only_keys(&["upstream"])?;
        ctx.stream_only("a tcp-proxy")?;
        let Some(upstream) = &ctx.raw.upstream else {
            return Err(ctx.error(
                ctx.raw.kind.span(),
                "upstream",
                "a tcp-proxy needs `upstream`, such as upstream = \"tcp:127.0.0.1:5432\"",
            ));
        };
        ctx.client_endpoint("upstream", upstream)?;
        Ok(TcpProxyConfig {
            upstream: upstream.get_ref().clone(),
        })
    }

    fn metrics(_: Option<&prometheus::Registry>) {}

    fn start(
        on: &super::Listeners<'_>,
        config: &TcpProxyConfig,
        _: &super::ServiceEnv,
    ) -> Result<Vec<weft::Address>, ListenError> {
        let mut bound = Vec::with_capacity(on.endpoints.len());
        for endpoint in on.endpoints {
            let upstream: Rc<str> = config.upstream.as_str().into();
            // Built once: each connection's steps share the text.
            let detail = StepDetail::new(&config.upstream);
            let port = on.reactor.listen_with(
                on.name,
                endpoint,
                &on.options,
                factory(move || Downstream {
                    upstream: upstream.clone(),
                    detail: detail.clone(),
                    peer: Rc::default(),
                }),
            )?;
            bound.push(port.local_address().clone());
        }
        Ok(bound)
    }

    fn describe(config: &TcpProxyConfig) -> serde_json::Value {
        serde_json::json!({ "upstream": config.upstream })
    }
}

/// The label of each client connection's chain.
const CHAIN: &str = "tcp-proxy";

/// The client's side of a proxied connection.
pub struct Downstream {
    /// Where to connect, shared by every connection of the listener.
    upstream: Rc<str>,
    /// The upstream as its chain's steps name it.
    detail: StepDetail,
    /// The upstream transport once connected; shared with the task that connects.
    peer: Rc<RefCell<Option<Transport>>>,
}

impl Protocol for Downstream {
    fn connection_made(&mut self, transport: &Transport) {
        transport.pause_reading();
        let reactor = Reactor::current();
        let (down, peer, endpoint) = (transport.clone(), self.peer.clone(), self.upstream.clone());
        let (resolver, mut chain) = Deferred::<()>::traced(Some(CHAIN), Some(transport.id()));
        let (steps, detail) = (chain.steps(), self.detail.clone());
        steps.step_with("connect upstream", None, Some(&detail));
        reactor.clone().spawn(async move {
            let service = down.info().service.clone();
            match reactor.connect_as(&service, &endpoint, Upstream { down: down.clone() }).await {
                Ok(up) if down.is_closed() || down.is_disconnecting() => {
                    up.lose_connection();
                    resolver.callback(());
                }
                Ok(up) => {
                    let on = WaitsOn::Connection(up.id());
                    steps.waits_on(on);
                    steps.step_with("relay", Some(on), Some(&detail));
                    down.register_producer(Rc::new(up.clone()));
                    up.register_producer(Rc::new(down.clone()));
                    *peer.borrow_mut() = Some(up);
                    down.resume_reading();
                    resolver.callback(());
                }
                Err(error) => {
                    tracing::info!(%endpoint, %error, peer = %down.peer(), "upstream unreachable; closing the client");
                    let why = format!("upstream {endpoint}: {error}");
                    resolver.errback(Failure::msg(why.clone()));
                    // Handled here: the chain ends failed, and is not reported unhandled.
                    let _ = chain.try_take();
                    down.lose_connection_with(CloseReason::Error(why));
                }
            }
        });
    }

    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        if let Some(up) = &*self.peer.borrow() {
            up.write(data);
        }
    }

    fn read_connection_lost(&mut self, _transport: &Transport) -> HalfClose {
        // Reading resumes only once the upstream is connected, so it is there.
        if let Some(up) = &*self.peer.borrow() {
            up.lose_write_connection();
        }
        HalfClose::KeepWriting
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        if let Some(up) = self.peer.borrow_mut().take() {
            close_partner(&up, reason, "client");
        }
    }
}

/// The upstream side: everything it receives goes to the client.
struct Upstream {
    /// The client's transport, which gets what the upstream sends.
    down: Transport,
}

impl Protocol for Upstream {
    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        self.down.write(data);
    }

    fn read_connection_lost(&mut self, _transport: &Transport) -> HalfClose {
        self.down.lose_write_connection();
        HalfClose::KeepWriting
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        close_partner(&self.down, reason, "upstream");
    }
}

/// Closes the other side of a pair after `side` closed for `reason`: cleanly (flushing)
/// after a clean close, at once (reported as aborted) otherwise.
fn close_partner(partner: &Transport, reason: &CloseReason, side: &str) {
    if reason.is_clean() {
        partner.lose_connection();
    } else {
        tracing::debug!(connection = %partner.id(), %reason, side, "the other side failed; aborting");
        partner.abort_connection();
    }
}
