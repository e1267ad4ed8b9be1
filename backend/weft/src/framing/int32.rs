//! `Int32StringReceiver`: strings prefixed by a 32-bit big-endian length.

use super::{StringHandler, reject};
use crate::observe::{CloseReason, ErrorKind};
use crate::protocol::Protocol;
use crate::transport::Transport;

/// Writes `data` with its 32-bit big-endian length prefix (Twisted's `sendString`).
///
/// # Panics
/// When `data` is longer than `u32::MAX` bytes.
pub fn send_int32_string(transport: &Transport, data: &[u8]) {
    let len = u32::try_from(data.len()).expect("an int32 string is at most 4 GiB");
    transport.write_sequence([&len.to_be_bytes()[..], data]);
}

/// Decodes length-prefixed strings (Twisted's `Int32StringReceiver`).
pub struct Int32StringReceiver<H> {
    handler: H,
    max_length: usize,
    buffer: Vec<u8>,
}

impl<H: StringHandler> Int32StringReceiver<H> {
    /// Twisted's `MAX_LENGTH`.
    pub const MAX_LENGTH: usize = 99_999;

    /// Strings of at most [`MAX_LENGTH`](Self::MAX_LENGTH) bytes.
    pub fn new(handler: H) -> Self {
        Self {
            handler,
            max_length: Self::MAX_LENGTH,
            buffer: Vec::new(),
        }
    }

    /// Closes connections announcing a string longer than `max_length` bytes.
    pub fn max_length(mut self, max_length: usize) -> Self {
        self.max_length = max_length;
        self
    }

    /// The wrapped handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }
}

impl<H: StringHandler> Protocol for Int32StringReceiver<H> {
    fn connection_made(&mut self, transport: &Transport) {
        self.handler.connection_made(transport);
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        self.buffer.extend_from_slice(data);
        let mut at = 0;
        while !transport.is_disconnecting() {
            let rest = &self.buffer[at..];
            let Some(prefix) = rest.get(..4) else { break };
            let len = u32::from_be_bytes(prefix.try_into().expect("four bytes")) as usize;
            if len > self.max_length {
                self.buffer = Vec::new();
                return reject(
                    transport,
                    ErrorKind::FrameTooLong,
                    format!(
                        "string of {len} bytes exceeds the limit of {} bytes",
                        self.max_length
                    ),
                );
            }
            let Some(body) = rest.get(4..4 + len) else {
                break;
            };
            self.handler.string_received(transport, body);
            at += 4 + len;
        }
        if at >= self.buffer.len() {
            self.buffer = Vec::new();
        } else {
            self.buffer.drain(..at);
        }
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        self.handler.connection_lost(reason);
    }

    fn name(&self) -> &'static str {
        std::any::type_name::<H>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::StringTransport;

    #[derive(Default)]
    struct Strings(Vec<Vec<u8>>);

    impl StringHandler for Strings {
        fn string_received(&mut self, transport: &Transport, data: &[u8]) {
            send_int32_string(transport, data);
            self.0.push(data.to_vec());
        }
    }

    #[test]
    fn strings_arrive_whole_however_the_bytes_are_split() {
        let mut wire = StringTransport::new();
        let mut proto = Int32StringReceiver::new(Strings::default());
        let mut stream = Vec::new();
        for s in [&b"one"[..], b"", b"three"] {
            stream.extend_from_slice(&(s.len() as u32).to_be_bytes());
            stream.extend_from_slice(s);
        }
        for byte in &stream {
            wire.receive(&mut proto, std::slice::from_ref(byte));
        }
        assert_eq!(
            proto.handler().0,
            [b"one".to_vec(), vec![], b"three".to_vec()]
        );
        assert_eq!(wire.value(), &stream[..]);
    }

    #[test]
    fn an_announced_length_over_the_limit_closes_the_connection() {
        let mut wire = StringTransport::new();
        let mut proto = Int32StringReceiver::new(Strings::default()).max_length(10);
        wire.receive(&mut proto, &1000u32.to_be_bytes());
        assert!(wire.disconnecting());
        assert!(
            wire.close_reason()
                .unwrap()
                .to_string()
                .contains("1000 bytes exceeds the limit of 10")
        );
    }
}
