//! `NetstringReceiver`: `len:data,` netstrings.

use super::{StringHandler, reject};
use crate::observe::{CloseReason, ErrorKind};
use crate::protocol::{HalfClose, Protocol};
use crate::transport::Transport;

/// Writes `data` as a netstring (Twisted's `sendString`).
pub fn send_netstring(transport: &Transport, data: &[u8]) {
    let len = data.len().to_string();
    transport.write_sequence([len.as_bytes(), b":", data, b","]);
}

/// One netstring and the bytes it used, `None` when incomplete, or why it is bad.
type Parsed<'a> = Result<Option<(&'a [u8], usize)>, (ErrorKind, String)>;

/// Decodes netstrings (Twisted's `NetstringReceiver`).
pub struct NetstringReceiver<H> {
    handler: H,
    /// A netstring announcing more than this closes the connection instead of being buffered.
    max_length: usize,
    /// Bytes of an incomplete netstring, kept until the rest arrives.
    buffer: Vec<u8>,
}

impl<H: StringHandler> NetstringReceiver<H> {
    /// Twisted's `MAX_LENGTH`.
    pub const MAX_LENGTH: usize = 99_999;

    /// Netstrings of at most [`MAX_LENGTH`](Self::MAX_LENGTH) bytes.
    pub fn new(handler: H) -> Self {
        Self {
            handler,
            max_length: Self::MAX_LENGTH,
            buffer: Vec::new(),
        }
    }

    /// Closes connections announcing a netstring longer than `max_length` bytes.
    pub fn max_length(mut self, max_length: usize) -> Self {
        self.max_length = max_length;
        self
    }

    /// The wrapped handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// Parses one netstring at the front of `rest`: `Ok(None)` when incomplete.
    fn parse<'a>(&self, rest: &'a [u8]) -> Parsed<'a> {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let max_digits = self.max_length.to_string().len();
        if digits > max_digits {
            return Err((
                ErrorKind::FrameTooLong,
                format!(
                    "netstring length exceeds the limit of {} bytes",
                    self.max_length
                ),
            ));
        }
        if digits == rest.len() {
            return Ok(None);
        }
        if digits == 0 || rest[digits] != b':' {
            return Err((
                ErrorKind::BadFrame,
                "malformed netstring: expected LENGTH:".to_owned(),
            ));
        }
        let len: usize = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(usize::MAX);
        if len > self.max_length {
            return Err((
                ErrorKind::FrameTooLong,
                format!(
                    "netstring of {len} bytes exceeds the limit of {} bytes",
                    self.max_length
                ),
            ));
        }
        let start = digits + 1;
        let Some(&end) = rest.get(start + len) else {
            return Ok(None);
        };
        if end != b',' {
            return Err((
                ErrorKind::BadFrame,
                "malformed netstring: missing trailing comma".to_owned(),
            ));
        }
        Ok(Some((&rest[start..start + len], start + len + 1)))
    }
}

impl<H: StringHandler> Protocol for NetstringReceiver<H> {
    fn connection_made(&mut self, transport: &Transport) {
        self.handler.connection_made(transport);
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.extend_from_slice(data);
        self.deliver(transport, buffer);
    }

    fn reading_resumed(&mut self, transport: &Transport) {
        let buffer = std::mem::take(&mut self.buffer);
        self.deliver(transport, buffer);
    }

    fn read_connection_lost(&mut self, transport: &Transport) -> HalfClose {
        self.handler.read_connection_lost(transport)
    }

    fn drain(&mut self, transport: &Transport) {
        self.handler.drain(transport);
    }

    fn timeout_connection(&mut self, transport: &Transport) {
        self.handler.timeout_connection(transport);
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        self.handler.connection_lost(reason);
    }

    fn name(&self) -> &'static str {
        std::any::type_name::<H>()
    }
}

impl<H: StringHandler> NetstringReceiver<H> {
    /// Hands the handler each whole netstring in `buffer` until reading pauses or the
    /// connection is closing; keeps the rest.
    fn deliver(&mut self, transport: &Transport, mut buffer: Vec<u8>) {
        let mut at = 0;
        while at < buffer.len() && !transport.is_disconnecting() && !transport.is_reading_paused() {
            match self.parse(&buffer[at..]) {
                Ok(Some((body, used))) => {
                    self.handler.string_received(transport, body);
                    at += used;
                }
                Ok(None) => break,
                Err((kind, message)) => return reject(transport, kind, message),
            }
        }
        if at < buffer.len() {
            // Keep the partial netstring in place: no copy of what is already buffered.
            buffer.drain(..at);
            self.buffer = buffer;
        }
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
            send_netstring(transport, data);
            self.0.push(data.to_vec());
        }
    }

    #[test]
    fn netstrings_round_trip_in_pieces() {
        let mut wire = StringTransport::new();
        let mut proto = NetstringReceiver::new(Strings::default());
        wire.receive(&mut proto, b"5:hel");
        wire.receive(&mut proto, b"lo,0:,3:a:b,");
        assert_eq!(
            proto.handler().0,
            [b"hello".to_vec(), vec![], b"a:b".to_vec()]
        );
        assert_eq!(wire.value(), b"5:hello,0:,3:a:b,");
    }

    #[test]
    fn malformed_and_oversized_netstrings_close_the_connection() {
        for (input, expect) in [
            (&b"x:abc,"[..], "expected LENGTH:"),
            (b"3:abcX", "missing trailing comma"),
            (b"100:", "exceeds the limit of 10"),
            (b"999999999", "exceeds the limit of 10"),
        ] {
            let mut wire = StringTransport::new();
            let mut proto = NetstringReceiver::new(Strings::default()).max_length(10);
            wire.receive(&mut proto, input);
            assert!(wire.disconnecting(), "{input:?}");
            let reason = wire.close_reason().unwrap().to_string();
            assert!(reason.contains(expect), "{input:?}: {reason}");
        }
    }

    #[test]
    fn netstrings_after_a_pause_wait_for_reading_to_resume() {
        let mut wire = StringTransport::new();
        wire.transport().set_water_marks(4, 0);
        let mut proto = NetstringReceiver::new(Strings::default());
        wire.receive(&mut proto, b"3:one,3:two,5:three,");
        assert_eq!(proto.handler().0, [b"one"]);
        let _ = wire.value();
        wire.resume(&mut proto);
        assert_eq!(proto.handler().0, [&b"one"[..], b"two"]);
        let _ = wire.value();
        wire.resume(&mut proto);
        assert_eq!(proto.handler().0, [&b"one"[..], b"two", b"three"]);
        assert_eq!(wire.value(), b"3:one,3:two,5:three,");
    }
}
