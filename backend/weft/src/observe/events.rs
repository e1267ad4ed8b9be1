//! The closed set of things the reactor reports.

use std::sync::Arc;
use std::time::Duration;

use super::{ConnectionId, ConnectionInfo, TransportKind};
use crate::address::Address;

/// One thing that happened in the reactor.
///
/// Built only when an observer listens; borrowed parts live for the call, so an
/// observer clones what it keeps.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A listening port (or UDP endpoint) started serving.
    ListenerStarted(&'a ListenerInfo),
    /// A listening port stopped.
    ListenerStopped(&'a ListenerInfo),
    /// A connection (or UDP endpoint) opened; its counters live in `stats`.
    ConnectionOpened(&'a Arc<ConnectionInfo>),
    /// A connection closed.
    ConnectionClosed(ConnectionClosed),
    /// A connection was refused before a protocol ran (factory said no, a limit).
    Refused(Refused),
    /// Bad input or a failed operation on a connection that the reactor handled.
    ProtocolError(ProtocolError),
    /// A callback ran long enough to block the reactor.
    SlowCallback(SlowCallback),
    /// How late the reactor's timers fire; measured continuously.
    ReactorLag(ReactorLag),
    /// Something happened to a Deferred.
    Deferred(&'a crate::defer::DeferredEvent),
}

/// A listening port or endpoint.
#[derive(Debug, Clone)]
pub struct ListenerInfo {
    /// The service it serves.
    pub service: Arc<str>,
    /// The endpoint string it was asked for, e.g. `tcp:8000:interface=127.0.0.1`.
    pub endpoint: String,
    /// TCP, UDP, Unix or TLS.
    pub transport: TransportKind,
    /// The address actually bound (port 0 resolved).
    pub local: Address,
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// Closed cleanly from this side (`lose_connection`).
    Done,
    /// The peer closed cleanly.
    PeerClosed,
    /// Dropped at once from this side (`abort_connection`), buffered data discarded.
    Aborted,
    /// The peer reset the connection.
    Reset,
    /// Idle for longer than its timeout.
    TimedOut,
    /// Its output made no progress, asked to close for the close timeout or idle for its
    /// idle timeout: the peer stopped reading, and what was buffered for it was dropped.
    SendTimeout,
    /// More than its limit was buffered for it unsent
    /// ([`Transport::set_max_buffered`](crate::Transport::set_max_buffered)): its protocol
    /// (or another connection's) wrote to it faster than the peer reads, past
    /// back-pressure, and what was buffered was dropped.
    SendBufferFull,
    /// The peer broke the protocol (a line too long, a bad frame, a failed TLS handshake).
    Protocol(String),
    /// An I/O error.
    Error(String),
    /// The reactor is shutting down.
    Shutdown,
    /// Its service stopped while the reactor goes on (removed from a program's
    /// configuration): the connection was drained, or aborted at the drain's deadline.
    ServiceStopped,
}

/// Why a connection ended, without the details; serialised as the label the API, the
/// pages and metrics show (`done`, `peer_closed`, `timeout`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CloseKind {
    /// [`CloseReason::Done`].
    Done,
    /// [`CloseReason::PeerClosed`].
    PeerClosed,
    /// [`CloseReason::Aborted`].
    Aborted,
    /// [`CloseReason::Reset`].
    Reset,
    /// [`CloseReason::TimedOut`].
    #[serde(rename = "timeout")]
    TimedOut,
    /// [`CloseReason::SendTimeout`].
    SendTimeout,
    /// [`CloseReason::SendBufferFull`].
    SendBufferFull,
    /// [`CloseReason::Protocol`].
    Protocol,
    /// [`CloseReason::Error`].
    Error,
    /// [`CloseReason::Shutdown`].
    Shutdown,
    /// [`CloseReason::ServiceStopped`].
    ServiceStopped,
}

impl CloseKind {
    /// Every kind, so counters by reason can exist at zero before the first close.
    pub const ALL: [Self; 11] = [
        Self::Done,
        Self::PeerClosed,
        Self::Aborted,
        Self::Reset,
        Self::TimedOut,
        Self::SendTimeout,
        Self::SendBufferFull,
        Self::Protocol,
        Self::Error,
        Self::Shutdown,
        Self::ServiceStopped,
    ];

    /// The label, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::PeerClosed => "peer_closed",
            Self::Aborted => "aborted",
            Self::Reset => "reset",
            Self::TimedOut => "timeout",
            Self::SendTimeout => "send_timeout",
            Self::SendBufferFull => "send_buffer_full",
            Self::Protocol => "protocol",
            Self::Error => "error",
            Self::Shutdown => "shutdown",
            Self::ServiceStopped => "service_stopped",
        }
    }

    /// Whether the connection ended the way both sides meant it to: the other side of a
    /// proxied pair may be closed cleanly after it.
    pub fn is_clean(self) -> bool {
        matches!(
            self,
            Self::Done | Self::PeerClosed | Self::Shutdown | Self::ServiceStopped
        )
    }

    /// Whether the close is routine: clean, or the peer reset it. At any real rate these
    /// are the ones worth logging at debug and summarising (history and the live feed may
    /// leave short-lived ones out); the others (timeouts, protocol and I/O errors, aborts)
    /// are worth keeping one by one.
    pub fn is_routine(self) -> bool {
        self.is_clean() || self == Self::Reset
    }
}

impl std::fmt::Display for CloseKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl CloseReason {
    /// Its kind, without the details: what metrics, the live feed and history carry.
    pub fn kind(&self) -> CloseKind {
        match self {
            Self::Done => CloseKind::Done,
            Self::PeerClosed => CloseKind::PeerClosed,
            Self::Aborted => CloseKind::Aborted,
            Self::Reset => CloseKind::Reset,
            Self::TimedOut => CloseKind::TimedOut,
            Self::SendTimeout => CloseKind::SendTimeout,
            Self::SendBufferFull => CloseKind::SendBufferFull,
            Self::Protocol(_) => CloseKind::Protocol,
            Self::Error(_) => CloseKind::Error,
            Self::Shutdown => CloseKind::Shutdown,
            Self::ServiceStopped => CloseKind::ServiceStopped,
        }
    }

    /// A bounded label for metrics: [`CloseKind::as_str`] of its [`kind`](Self::kind).
    pub fn label(&self) -> &'static str {
        self.kind().as_str()
    }

    /// Whether the connection ended the way both sides meant it to
    /// ([`CloseKind::is_clean`]).
    pub fn is_clean(&self) -> bool {
        self.kind().is_clean()
    }

    /// Whether the close is routine ([`CloseKind::is_routine`]).
    pub fn is_routine(&self) -> bool {
        self.kind().is_routine()
    }

    pub(crate) fn from_io(err: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        // A failed `start_tls` handshake is a protocol error unless the peer hung up,
        // reset or stalled (its kind says which, as for any other error).
        if err.kind() == K::InvalidData
            && let Some(failed) = err
                .get_ref()
                .and_then(|e| e.downcast_ref::<crate::transport::HandshakeFailed>())
        {
            return Self::Protocol(failed.to_string());
        }
        match err.kind() {
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => Self::Reset,
            K::TimedOut => Self::TimedOut,
            // A TLS peer that closed its connection without a `close_notify` (many do
            // after their last exchange; the protocols on top frame their own ends).
            K::UnexpectedEof => Self::PeerClosed,
            _ => Self::Error(err.to_string()),
        }
    }
}

impl CloseReason {
    /// The reason in words, as `Display` writes it; borrowed (no allocation) for the
    /// reasons without details.
    pub fn describe(&self) -> std::borrow::Cow<'static, str> {
        use std::borrow::Cow::{Borrowed, Owned};
        match self {
            Self::Done => Borrowed("connection closed cleanly"),
            Self::PeerClosed => Borrowed("peer closed the connection"),
            Self::Aborted => Borrowed("connection aborted"),
            Self::Reset => Borrowed("connection reset by peer"),
            Self::TimedOut => Borrowed("connection timed out"),
            Self::SendTimeout => Borrowed("the peer stopped reading; its output was dropped"),
            Self::SendBufferFull => Borrowed(
                "more was written for the peer than its buffer's limit holds unsent; its output \
                 was dropped",
            ),
            Self::Protocol(why) => Owned(format!("protocol error: {why}")),
            Self::Error(why) => Owned(format!("I/O error: {why}")),
            Self::Shutdown => Borrowed("reactor shutting down"),
            Self::ServiceStopped => Borrowed("its service stopped"),
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// A connection that closed, with its final counters in `info.stats`.
#[derive(Debug)]
pub struct ConnectionClosed {
    /// The connection.
    pub info: Arc<ConnectionInfo>,
    /// Why it ended.
    pub reason: CloseReason,
    /// How long it was open.
    pub duration: Duration,
}

/// A connection turned away before any protocol ran.
#[derive(Debug)]
pub struct Refused {
    /// The service that refused it.
    pub service: Arc<str>,
    /// Who tried to connect.
    pub peer: Address,
    /// A bounded label: `factory`, `limit_total`, `limit_peer`, `accept_error`.
    pub reason: &'static str,
}

/// The kind of a handled error; a bounded metric label, serialised as [`as_str`](Self::as_str).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// A line or frame exceeded its framer's `MAX_LENGTH`.
    FrameTooLong,
    /// A frame was malformed.
    BadFrame,
    /// A TLS handshake failed (for example a plaintext client on a TLS port).
    TlsHandshake,
    /// A datagram was larger than the receive buffer and was dropped.
    DatagramTruncated,
    /// Sending a datagram failed or its queue was full.
    DatagramDropped,
    /// Datagrams arrived while the socket's receive queue was full, and the kernel
    /// dropped them (`SO_RXQ_OVFL`): the port is not read fast enough.
    ReceiveQueueFull,
    /// `accept` failed (for example too many open files).
    Accept,
    /// A protocol callback panicked; the connection was aborted.
    CallbackPanicked,
    /// Outgoing connection failed.
    ConnectFailed,
}

impl ErrorKind {
    /// The label used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FrameTooLong => "frame_too_long",
            Self::BadFrame => "bad_frame",
            Self::TlsHandshake => "tls_handshake",
            Self::DatagramTruncated => "datagram_truncated",
            Self::DatagramDropped => "datagram_dropped",
            Self::ReceiveQueueFull => "receive_queue_full",
            Self::Accept => "accept",
            Self::CallbackPanicked => "callback_panicked",
            Self::ConnectFailed => "connect_failed",
        }
    }
}

/// A handled error: bad input from a peer or a failed operation.
#[derive(Debug)]
pub struct ProtocolError {
    /// The service it happened in.
    pub service: Arc<str>,
    /// The connection, when there is one.
    pub connection: Option<ConnectionId>,
    /// What went wrong, as a bounded label.
    pub kind: ErrorKind,
    /// How many times it happened: 1 but for what is learnt of in bulk (the datagrams the
    /// kernel dropped from a full receive queue since the port last heard of it).
    pub count: u64,
    /// The details, for the log and the dashboard.
    pub message: String,
}

/// Which way data moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received from the peer.
    In,
    /// Sent to the peer.
    Out,
}

/// A callback that held the reactor thread for too long.
#[derive(Debug)]
pub struct SlowCallback {
    /// What ran: a protocol method (`my_crate::Echo::data_received`) or a source site.
    pub callback: String,
    /// The service, when known.
    pub service: Option<Arc<str>>,
    /// The connection it ran for, if any.
    pub connection: Option<ConnectionId>,
    /// How long it ran.
    pub duration: Duration,
}

/// One measurement of reactor lag.
#[derive(Debug, Clone, Copy)]
pub struct ReactorLag {
    /// How late the probe timer fired.
    pub lag: Duration,
    /// The longest callback or poll since the previous probe: what held the reactor.
    pub longest: Option<crate::reactor::profile::Longest>,
}

#[cfg(test)]
mod tests {
    use super::CloseKind;
    use super::CloseReason::{self, *};

    #[test]
    fn labels_lists_every_reason_in_order() {
        let all = [
            Done,
            PeerClosed,
            Aborted,
            Reset,
            TimedOut,
            SendTimeout,
            SendBufferFull,
            Protocol(String::new()),
            Error(String::new()),
            Shutdown,
            ServiceStopped,
        ];
        for reason in &all {
            // A new reason stops this compiling until it is listed above (and in CloseKind::ALL).
            match reason {
                Done | PeerClosed | Aborted | Reset | TimedOut | SendTimeout | SendBufferFull
                | Protocol(_) | Error(_) | Shutdown | ServiceStopped => {}
            }
        }
        let kinds: Vec<_> = all.iter().map(CloseReason::kind).collect();
        assert_eq!(kinds, CloseKind::ALL);
        for kind in CloseKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
    }

    #[test]
    fn a_reset_is_routine_but_not_clean() {
        let routine: Vec<_> = CloseKind::ALL
            .into_iter()
            .filter(|k| k.is_routine())
            .collect();
        assert_eq!(
            routine,
            [
                CloseKind::Done,
                CloseKind::PeerClosed,
                CloseKind::Reset,
                CloseKind::Shutdown,
                CloseKind::ServiceStopped
            ]
        );
        assert!(!CloseKind::Reset.is_clean());
        assert!(CloseReason::Reset.is_routine() && !CloseReason::Reset.is_clean());
    }

    /// The API, the pages and the store show these labels: serde and `as_str` agree.
    #[test]
    fn every_label_serialises_as_its_string() {
        fn same<T: serde::Serialize>(value: T, label: &str) {
            let json = serde_json::to_string(&value).unwrap();
            assert_eq!(json, format!("\"{label}\""));
        }
        use crate::defer::{DeferredState, Detector, StepKind, StepStatus};
        use crate::observe::{ErrorKind, TransportKind};
        for t in [
            TransportKind::Tcp,
            TransportKind::Udp,
            TransportKind::Unix,
            TransportKind::Tls,
            TransportKind::Memory,
        ] {
            same(t, t.as_str());
        }
        for e in [
            ErrorKind::FrameTooLong,
            ErrorKind::BadFrame,
            ErrorKind::TlsHandshake,
            ErrorKind::DatagramTruncated,
            ErrorKind::DatagramDropped,
            ErrorKind::ReceiveQueueFull,
            ErrorKind::Accept,
            ErrorKind::CallbackPanicked,
            ErrorKind::ConnectFailed,
        ] {
            same(e, e.as_str());
        }
        for d in Detector::ALL {
            same(d, d.as_str());
        }
        for s in DeferredState::ALL {
            same(s, s.as_str());
            assert_eq!(DeferredState::from_label(s.as_str()), Some(s));
        }
        for k in [StepKind::Callback, StepKind::Errback, StepKind::Both] {
            same(k, k.as_str());
        }
        for s in [
            StepStatus::Ok,
            StepStatus::Err,
            StepStatus::Skipped,
            StepStatus::Chained,
            StepStatus::Waiting,
            StepStatus::Queued,
        ] {
            same(s, s.as_str());
        }
    }
}
