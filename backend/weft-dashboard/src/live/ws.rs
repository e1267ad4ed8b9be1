//! `GET /ws`: the origin check, the handshake, the cap on clients, and the socket under
//! [`session::serve`](super::session::serve): fragments out ([`Chunked`]), frames in
//! (capped at [`MAX_MESSAGE`]), and the closing handshake of RFC 6455 §7 for each way a
//! session ends.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

use super::chunked::{CHUNK, Chunked, SendError};
use super::handshake;
use super::session::{Ended, Incoming, Violation, serve};
use crate::error::ApiError;
use crate::metrics::{Disconnect, Refusal};
use crate::server::Peer;
use crate::state::DashboardState;

/// The largest message (and frame) a client may send. Pages send nothing but the close;
/// anything bigger is closed with 1009.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// A client that takes no fragment for this long is dropped: its queue of shared frames
/// stops growing, and its place is freed.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a closing handshake may take before the connection is simply dropped.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Bytes read from a page's socket at a time: pages send next to nothing.
const READ_BUFFER: usize = 4096;

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        // Every fragment is written at once; the buffer never holds more than a few.
        .write_buffer_size(0)
        .max_write_buffer_size(4 * CHUNK)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// The feeds served at once: `max_live_clients`, but never more than three quarters of
/// the dashboard's `max_connections`. Feeds are never evicted to make room (see
/// `crate::server`), so feeds alone filling every place would keep every scrape, probe
/// and page out.
fn live_cap(state: &DashboardState) -> usize {
    let total = state.max_connections;
    state
        .max_live_clients
        .min(total.saturating_sub(total / 4).max(1))
}

/// A place among the live clients, given back when dropped.
struct Admission(DashboardState);

impl Admission {
    fn new(state: &DashboardState) -> Option<Self> {
        state.fanout.join(live_cap(state)).then(|| {
            state.metrics.live_joined();
            Self(state.clone())
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.fanout.leave();
        self.0.metrics.live_left();
    }
}

pub(crate) async fn ws(State(state): State<DashboardState>, mut request: Request) -> Response {
    let headers = request.headers();
    // Browsers always send an Origin on a WebSocket; another site's must not read the feed.
    if headers.contains_key(header::ORIGIN)
        && !crate::auth::same_origin(&state, request.uri(), headers)
    {
        state
            .metrics
            .refused(Refusal::CrossSite, Peer::of(request.extensions()));
        return ApiError::Forbidden("the live feed only serves this dashboard's own pages")
            .into_response();
    }
    let accept = match handshake::check(request.method(), request.version(), headers) {
        Ok(accept) => accept,
        Err(refused) => {
            state
                .metrics
                .refused(Refusal::Handshake, Peer::of(request.extensions()));
            return refused.into_response();
        }
    };
    let Some(admission) = Admission::new(&state) else {
        state
            .metrics
            .refused(Refusal::LiveClients, Peer::of(request.extensions()));
        return ApiError::Unavailable(
            "the live feed serves as many clients as [dashboard] max_live_clients allows; \
             try again later",
        )
        .into_response();
    };
    let upgrade = hyper::upgrade::on(&mut request);
    // Not tracked by the server's graceful shutdown: `Fanout::shut_down` ends it, and
    // `crate::background` waits for it.
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => client(TokioIo::new(upgraded), admission).await,
            Err(e) => {
                tracing::debug!(error = %e, "live feed upgrade failed");
                admission
                    .0
                    .metrics
                    .live_disconnected(Disconnect::ClientGone);
            }
        }
    });
    handshake::switching(accept)
}

/// Why a client left, as counted.
fn disconnect_of(ended: &Ended<SendError>) -> Disconnect {
    match ended {
        Ended::ClientClosed => Disconnect::ClientClosed,
        Ended::BadClose => Disconnect::ProtocolError,
        Ended::ClientGone => Disconnect::ClientGone,
        Ended::Violation(Violation::TooBig) => Disconnect::TooBig,
        Ended::Violation(_) => Disconnect::ProtocolError,
        Ended::ShuttingDown => Disconnect::Shutdown,
        Ended::SendFailed(SendError::Stalled) => Disconnect::SendTimeout,
        Ended::SendFailed(_) => Disconnect::SendFailed,
    }
}

/// What the session reads: messages, and errors as the violations RFC 6455 names.
fn incoming(message: Result<Message, tungstenite::Error>) -> Incoming {
    use tungstenite::Error;
    use tungstenite::error::ProtocolError;
    match message {
        Ok(Message::Close(Some(frame))) if !frame.code.is_allowed() => Incoming::BadClose,
        Ok(Message::Close(_)) => Incoming::Close,
        Ok(_) => Incoming::Other,
        Err(Error::Capacity(_)) => Incoming::Violation(Violation::TooBig),
        Err(Error::Utf8(_)) => Incoming::Violation(Violation::BadText),
        Err(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => Incoming::Gone,
        Err(Error::Protocol(_)) => Incoming::Violation(Violation::Protocol),
        Err(_) => Incoming::Gone,
    }
}

async fn client<T>(io: T, admission: Admission)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let state = &admission.0;
    let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config())).await;
    let (sink, stream) = socket.split();
    let mut sink = Chunked::new(sink, SEND_TIMEOUT);
    let mut incoming = stream.map(incoming);
    let frames = state.fanout.subscribe();
    let snapshot = |seq| {
        state
            .fanout
            .snapshot(seq, || super::snapshot(&state.hub, &state.series, seq))
    };
    let ended = serve(&mut sink, &mut incoming, &state.fanout, frames, snapshot).await;
    state.metrics.live_disconnected(disconnect_of(&ended));
    if let Ok(socket) = sink.into_inner().reunite(incoming.into_inner()) {
        let _ = tokio::time::timeout(CLOSE_GRACE, goodbye(socket, &ended)).await;
    }
}

/// After a Close that fails the connection: the write side is shut, and what the client
/// still sends (the rest of an oversized frame, say) is read and dropped until it closes
/// its side, up to [`LINGER_BYTES`] (and within the caller's [`CLOSE_GRACE`]). Closing
/// with its bytes unread would make the kernel reset the connection, throwing away what
/// it had yet to send, the Close among it, and what the client had yet to read.
async fn linger<T: AsyncRead + AsyncWrite + Unpin>(io: &mut T) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if io.shutdown().await.is_err() {
        return;
    }
    let mut buf = [0; READ_BUFFER];
    let mut left = LINGER_BYTES;
    while left > 0 {
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// The most a client failed for a violation may send after it and still be read, for
/// its connection to end cleanly (see [`linger`]).
const LINGER_BYTES: usize = 256 * 1024;

/// Finishes the closing handshake (RFC 6455 §7) the way the session ended.
async fn goodbye<T, E>(mut socket: WebSocketStream<T>, ended: &Ended<E>)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let close = |code: u16, reason: &'static str| {
        Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        }))
    };
    match ended {
        // The reply to the client's Close is queued; writing it completes the handshake
        // (§5.5.1), and the server then closes the connection first (§7.1.1).
        Ended::ClientClosed | Ended::BadClose => {
            let _ = socket.flush().await;
        }
        // §7.1.7: fail the connection, saying why; then end it cleanly.
        Ended::Violation(v) => {
            if socket.send(close(v.code(), v.reason())).await.is_ok() {
                linger(socket.get_mut()).await;
            }
        }
        // §7.4.1: 1001, going away; then wait for the client's Close before closing.
        Ended::ShuttingDown => {
            if socket
                .send(close(1001, "weft is shutting down"))
                .await
                .is_ok()
            {
                while let Some(Ok(m)) = socket.next().await {
                    if m.is_close() {
                        break;
                    }
                }
            }
        }
        Ended::ClientGone | Ended::SendFailed(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Close with a code no endpoint may send is a violation, counted as one; a Close
    /// with an allowed code, or none, is the closing handshake.
    #[test]
    fn a_close_with_a_code_no_endpoint_may_send_is_a_protocol_error() {
        let close = |code: Option<u16>| {
            Ok(Message::Close(code.map(|code| CloseFrame {
                code: CloseCode::from(code),
                reason: "".into(),
            })))
        };
        assert!(matches!(incoming(close(Some(999))), Incoming::BadClose));
        assert!(matches!(incoming(close(Some(1005))), Incoming::BadClose));
        assert!(matches!(incoming(close(Some(1000))), Incoming::Close));
        assert!(matches!(incoming(close(Some(4000))), Incoming::Close));
        assert!(matches!(incoming(close(None)), Incoming::Close));
        let ended: Ended<SendError> = Ended::BadClose;
        assert!(matches!(disconnect_of(&ended), Disconnect::ProtocolError));
    }

    /// Feeds, never evicted, leave a quarter of the places to pages, scrapes and probes.
    #[test]
    fn feeds_never_take_every_place() {
        let state = || DashboardState::new(weft_telemetry::Hub::new(Default::default()).unwrap());
        assert_eq!(live_cap(&state()), crate::live::DEFAULT_MAX_LIVE_CLIENTS);
        assert_eq!(live_cap(&state().with_max_connections(8, 0)), 6);
        assert_eq!(live_cap(&state().with_max_connections(1, 0)), 1);
        let few = state()
            .with_max_connections(100, 0)
            .with_max_live_clients(2);
        assert_eq!(live_cap(&few), 2);
    }
}
