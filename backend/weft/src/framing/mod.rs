//! Framers (twisted.protocols.basic): turn a byte stream into lines or strings.
//!
//! Each framer is a [`Protocol`](crate::Protocol) wrapping a handler you write. Each has a
//! `max_length`; a peer that exceeds it gets its connection closed with a
//! [`CloseReason::Protocol`] naming the limit, and the
//! error is reported to the observer (`frame_too_long`), so one bad client is visible
//! and harmless.
//!
//! - [`LineReceiver`]: delimited lines, with a raw mode for binary bodies.
//! - [`Int32StringReceiver`], [`Int16StringReceiver`]: strings prefixed by a big-endian
//!   length, one [`PrefixedReceiver`] generic over the prefix's width.
//! - [`NetstringReceiver`]: `len:data,` netstrings.
//!
//! And [`FileSender`], a file sent a chunk at a time as the peer takes it.

mod file_sender;
mod line;
mod netstring;
mod prefixed;

pub use file_sender::{FileSendError, FileSender};
pub use line::{LineContext, LineHandler, LineReceiver};
pub use netstring::{NetstringReceiver, send_netstring};
pub use prefixed::{
    Int16StringReceiver, Int32StringReceiver, Prefix, PrefixedReceiver, U16Prefix, U32Prefix,
    send_int16_string, send_int32_string, send_prefixed,
};

use crate::observe::{self, CloseReason, ErrorKind};
use crate::protocol::HalfClose;
use crate::transport::Transport;

/// Handles the strings a length-prefixed framer decodes.
pub trait StringHandler: 'static {
    /// The connection is up.
    fn connection_made(&mut self, transport: &Transport) {
        let _ = transport;
    }
    /// One complete string arrived.
    fn string_received(&mut self, transport: &Transport, data: &[u8]);
    /// The peer sent EOF after its last string: [`HalfClose::KeepWriting`] to go on
    /// writing (answers still to come), as for a [`Protocol`](crate::Protocol).
    fn read_connection_lost(&mut self, transport: &Transport) -> HalfClose {
        let _ = transport;
        HalfClose::Close
    }
    /// The connection is asked to end gracefully (see
    /// [`Protocol::drain`](crate::Protocol::drain)): by default it closes once what is
    /// buffered is sent.
    fn drain(&mut self, transport: &Transport) {
        transport.lose_connection();
    }
    /// The idle timeout went off (see
    /// [`Protocol::timeout_connection`](crate::Protocol::timeout_connection)): by default
    /// it closes, with reason `TimedOut`.
    fn timeout_connection(&mut self, transport: &Transport) {
        transport.lose_connection_with(CloseReason::TimedOut);
    }
    /// The connection is gone.
    fn connection_lost(&mut self, reason: &CloseReason) {
        let _ = reason;
    }
}

/// Closes the connection on bad framing, reporting why.
fn reject(transport: &Transport, kind: ErrorKind, message: String) {
    observe::report_error(transport.info(), kind, message.clone());
    transport.lose_connection_with(CloseReason::Protocol(message));
}
