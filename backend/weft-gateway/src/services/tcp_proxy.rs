//! `kind = "tcp-proxy"`: forwards each TCP connection to `upstream` (Twisted's portforward).
//!
//! What the client sends before the upstream connection is up is held for it (up to 64 KiB;
//! then reading pauses), and reading goes on meanwhile so a client that resets is noticed.
//! Once both are up, each side's transport is registered as the other's producer, so when
//! one peer reads slowly the proxy stops reading from the other instead of buffering
//! without bound.
//!
//! Closing follows TCP's own rules, per direction:
//! - a side that shuts its write half (end of stream) has the other side's write half shut
//!   after what is buffered is sent, and the opposite direction keeps flowing until its own
//!   end: a client that sends a request and shuts its write side still gets every byte of
//!   the answer;
//! - a side that closes cleanly has the other closed once its buffer is sent (the reactor
//!   aborts a close that makes no progress for its close timeout, so a peer that stopped
//!   reading cannot hold the pair);
//! - a side that is reset, times out or fails has the other aborted at once (reset, so
//!   its peer knows the stream was cut short): what is buffered for a peer that is gone
//!   has nowhere to go. A side that times out is itself reset, not closed cleanly, and a
//!   client whose upstream cannot be reached is reset too: a clean end of stream would
//!   pass for the whole answer (or an empty one).
//!
//! A side whose reading is paused by the other's back-pressure is not idle: it waits on
//! the other side's peer. The upstream's side has the client's idle timeout as its send
//! timeout, so an upstream that stops reading what the client sends is the side aborted
//! (`send_timeout`), its client reset with it, however steadily the client sent.
//!
//! Both sides have `TCP_NOTSENT_LOWAT` set for the client's idle timeout
//! (`limits::keep_steady_readers`): a peer that reads steadily has the proxy write to it
//! often enough that neither side is taken for idle while the kernel holds megabytes for
//! it (the upstream's reading shows as the client's side reading again).
//!
//! Each client connection has a traced chain (`tcp-proxy`) whose named steps say where it
//! is: `connect upstream` (about the upstream endpoint; then with the upstream connection),
//! and `relay` once both sides are up, when the chain ends. A connection stuck connecting
//! is listed pending (and stalled) at that step, naming the upstream; one that could not
//! connect ends failed, with the reason. A client whose connection ends (reset, timed out,
//! closed by the dashboard) while the upstream is still being connected abandons the
//! attempt: the half-open upstream socket is closed and the chain ends failed, saying so,
//! rather than pending until the connect gives up. A client that only shuts its write half
//! still gets the answer: what it sent and its end of stream reach the upstream once up.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::oneshot;
use weft::defer::{Deferred, Failure, StepDetail, WaitsOn};
use weft::{CloseReason, HalfClose, Protocol, Reactor, Transport, factory};

use crate::config::ConfigError;
use crate::config::loops::Target;
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
    const KEYS: &'static [&'static str] = &["upstream"];
    const IDLE_TIMEOUT: Duration = super::limits::STREAM_IDLE_TIMEOUT;
    type Settings = TcpProxyConfig;
    type Metrics = ();

    fn validate(ctx: &ServiceCtx<'_>) -> Result<TcpProxyConfig, ConfigError> {
        ctx.only_keys(Self::KEYS)?;
        ctx.stream_only("a tcp-proxy")?;
        let Some(upstream) = &ctx.raw.upstream else {
            return Err(ctx.error(
                ctx.raw.kind.span(),
                "upstream",
                "a tcp-proxy needs `upstream`, such as upstream = \"tcp:127.0.0.1:5432\"",
            ));
        };
        let parsed = ctx.client_endpoint("upstream", upstream)?;
        let own = Target::upstream(&parsed).and_then(|target| ctx.own_listener(&target));
        if let Some(own) = own {
            return Err(ctx.error(
                upstream.span(),
                "upstream",
                format!(
                    "{:?} is this service's own listener {own:?}: each connection would connect \
                     to itself again, through a chain of connections up to the caps",
                    upstream.get_ref()
                ),
            ));
        }
        Ok(TcpProxyConfig {
            upstream: upstream.get_ref().clone(),
        })
    }

    fn metrics(_: Option<&prometheus::Registry>, _: &weft::observe::exemplar::ExemplarIndex) {}

    fn start(
        on: &super::Listeners<'_>,
        config: &TcpProxyConfig,
        _: &super::ServiceEnv,
    ) -> Result<Vec<weft::Address>, super::ServiceError> {
        let mut bound = Vec::with_capacity(on.endpoints.len());
        for endpoint in on.endpoints {
            let upstream: Rc<str> = config.upstream.as_str().into();
            // Built once: each connection's steps share the text.
            let detail = StepDetail::new(&config.upstream);
            let port = on.reactor.listen_with(
                on.name,
                endpoint,
                &on.options,
                factory(move || Downstream::new(upstream.clone(), detail.clone())),
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

/// What the client sent before the upstream connection was up, held for it: at most this
/// many bytes, then reading from the client pauses until the upstream takes them.
const EARLY_BYTES: usize = 64 * 1024;

/// The client's side of a proxied connection.
pub struct Downstream {
    /// Where to connect, shared by every connection of the listener.
    upstream: Rc<str>,
    /// The upstream as its chain's steps name it.
    detail: StepDetail,
    /// The upstream, or what waits for it; shared with the task that connects.
    peer: Rc<RefCell<Peer>>,
    /// Dropped when the client leaves: an upstream connect still under way is abandoned.
    connecting: Option<oneshot::Sender<CloseReason>>,
    /// The client's own transport, to tell how it ended.
    me: Option<Transport>,
}

/// The client's upstream, as far as it got.
enum Peer {
    /// Still connecting: what the client sent meanwhile, and whether it has shut its
    /// write half, both passed on once the upstream is up.
    Connecting { early: Vec<u8>, write_shut: bool },
    /// Connected: each side relays to the other.
    Up(Transport),
}

impl Default for Peer {
    fn default() -> Self {
        Peer::Connecting {
            early: Vec::new(),
            write_shut: false,
        }
    }
}

impl Downstream {
    /// A client connection's side, to relay to `upstream`.
    fn new(upstream: Rc<str>, detail: StepDetail) -> Self {
        Self {
            upstream,
            detail,
            peer: Rc::default(),
            connecting: None,
            me: None,
        }
    }
}

/// What both sides of a pair are set to (see the module's docs), for the client's side's
/// idle timeout `idle`.
fn relaying(transport: &Transport, idle: Option<Duration>) {
    transport.reset_on_idle_timeout();
    super::limits::keep_steady_readers(transport, idle);
}

impl Protocol for Downstream {
    fn connection_made(&mut self, transport: &Transport) {
        relaying(transport, transport.idle_timeout());
        self.me = Some(transport.clone());
        let reactor = Reactor::current();
        let (down, peer, endpoint) = (transport.clone(), self.peer.clone(), self.upstream.clone());
        let (resolver, mut chain) = Deferred::<()>::traced(Some(CHAIN), Some(transport.id()));
        let (steps, detail) = (chain.steps(), self.detail.clone());
        steps.step_with("connect upstream", None, Some(&detail));
        let (connecting, client_left) = oneshot::channel();
        self.connecting = Some(connecting);
        reactor.clone().spawn(async move {
            let service = down.info().service.clone();
            let upstream = Upstream {
                down: down.clone(),
                me: None,
            };
            let connect = reactor.connect_as(&service, &endpoint, upstream);
            let connected = tokio::select! {
                // A connection made as the client left is taken, and closed below.
                biased;
                connected = connect => connected,
                // Only a cancel (from the inspector) fires the chain before the connect
                // ends: the connect is dropped, and the client reset, as a connect that
                // failed leaves it.
                _ = &mut chain => {
                    tracing::info!(%endpoint, peer = %down.peer(), "a connection's upstream connect was cancelled from the inspector; resetting the client");
                    // An operator's doing, as a close from the dashboard is: aborted.
                    down.abort_connection();
                    return;
                }
                why = client_left => {
                    tracing::debug!(%endpoint, peer = %down.peer(), "the client left while connecting upstream");
                    // Its end in words: the client's own leaving, or weft's cutting it.
                    let gone = match why {
                        Ok(CloseReason::TimedOut) => {
                            "the client was closed, idle past its idle timeout,".to_owned()
                        }
                        Ok(CloseReason::PeerClosed | CloseReason::Reset) | Err(_) => {
                            "the client left".to_owned()
                        }
                        Ok(other) => format!("the client's connection ended ({other})"),
                    };
                    resolver.errback(Failure::msg(format!(
                        "{gone} before upstream {endpoint} answered"
                    )));
                    // Handled here: the chain ends failed, and is not reported unhandled.
                    let _ = chain.try_take();
                    return;
                }
            };
            match connected {
                Ok(up) if down.is_closed() || down.is_disconnecting() => {
                    up.lose_connection();
                    resolver.callback(());
                }
                Ok(up) => {
                    let on = WaitsOn::Connection(up.id());
                    steps.waits_on(on);
                    steps.step_with("relay", Some(on), Some(&detail));
                    // Each side's first and only producer: neither can be refused.
                    let down_registered = down.register_producer(Rc::new(up.clone()));
                    let up_registered = up.register_producer(Rc::new(down.clone()));
                    debug_assert!(down_registered.is_ok() && up_registered.is_ok());
                    if let Peer::Connecting { early, write_shut } =
                        std::mem::replace(&mut *peer.borrow_mut(), Peer::Up(up.clone()))
                    {
                        up.write(&early);
                        if write_shut {
                            up.lose_write_connection();
                        }
                    }
                    down.resume_reading();
                    resolver.callback(());
                }
                Err(error) => {
                    if let Some(suppressed) =
                        weft::observe::log_line_budget(&service, "upstream unreachable")
                    {
                        tracing::info!(%endpoint, %error, peer = %down.peer(), suppressed, "upstream unreachable; resetting the client");
                    }
                    let why = format!("upstream {endpoint}: {error}");
                    resolver.errback(Failure::msg(why.clone()));
                    // Handled here: the chain ends failed, and is not reported unhandled.
                    let _ = chain.try_take();
                    // Reset: a clean end would pass for an empty answer.
                    down.abort_connection_with(CloseReason::Error(why));
                }
            }
        });
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        // Reading goes on while connecting, so a client that resets is seen at once.
        match &mut *self.peer.borrow_mut() {
            Peer::Up(up) => up.write(data),
            Peer::Connecting { early, .. } => {
                early.extend_from_slice(data);
                if early.len() >= EARLY_BYTES {
                    transport.pause_reading();
                }
            }
        }
    }

    fn read_connection_lost(&mut self, _transport: &Transport) -> HalfClose {
        // A half-close is not a client leaving: it may still want every byte of the answer.
        match &mut *self.peer.borrow_mut() {
            Peer::Up(up) => up.lose_write_connection(),
            Peer::Connecting { write_shut, .. } => *write_shut = true,
        }
        HalfClose::KeepWriting
    }

    /// Asked to drain (at shutdown, or when the service is removed), a pair does
    /// nothing. A relay cannot tell a stream between two messages from one in the middle
    /// of a download, and closing a side there would end the other's stream cleanly, a
    /// truncated answer that looks whole. So the pair goes on relaying until one side
    /// closes (which takes the other with it, as always), and what is still open at the
    /// drain deadline is aborted: reset, so each peer learns it was cut off.
    fn drain(&mut self, _transport: &Transport) {}

    fn connection_lost(&mut self, reason: &CloseReason) {
        if let Some(connecting) = self.connecting.take() {
            let _ = connecting.send(reason.clone());
        }
        if let Peer::Up(up) = std::mem::take(&mut *self.peer.borrow_mut()) {
            let truncated = self.me.as_ref().is_some_and(Transport::was_truncated);
            close_partner(&up, reason, truncated, "client");
        }
    }
}

/// The upstream side: everything it receives goes to the client.
struct Upstream {
    /// The client's transport, which gets what the upstream sends.
    down: Transport,
    /// The upstream's own transport, to tell how it ended.
    me: Option<Transport>,
}

impl Protocol for Upstream {
    fn connection_made(&mut self, transport: &Transport) {
        relaying(transport, self.down.idle_timeout());
        // The client's idle timeout ends a quiet pair; an upstream that stops reading
        // what the client sends is cut by this one, the client's side waiting on it.
        transport.set_send_timeout(self.down.idle_timeout());
        self.me = Some(transport.clone());
    }

    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        self.down.write(data);
    }

    fn read_connection_lost(&mut self, _transport: &Transport) -> HalfClose {
        // With its client gone there is nobody to write to or hear from: it ends.
        if self.down.is_closed() {
            return HalfClose::Close;
        }
        self.down.lose_write_connection();
        HalfClose::KeepWriting
    }

    /// Does nothing, as the client's side does (`Downstream::drain`).
    fn drain(&mut self, _transport: &Transport) {}

    fn connection_lost(&mut self, reason: &CloseReason) {
        let truncated = self.me.as_ref().is_some_and(Transport::was_truncated);
        close_partner(&self.down, reason, truncated, "upstream");
    }
}

/// Closes the other side of a pair after `side` closed for `reason`: cleanly (flushing)
/// after a clean close, at once (reported as aborted) otherwise, or after a TLS side that
/// ended without `close_notify` (`truncated`): what it sent may have been cut short on the
/// way, and a clean end would pass that on as a whole stream.
fn close_partner(partner: &Transport, reason: &CloseReason, truncated: bool, side: &str) {
    if reason.is_clean() && !truncated {
        partner.lose_connection();
    } else {
        tracing::debug!(connection = %partner.id(), %reason, truncated, side, "the other side failed; aborting");
        partner.abort_connection();
    }
}
