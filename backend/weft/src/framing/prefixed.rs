//! Length-prefixed strings (Twisted's `Int32StringReceiver`, `Int16StringReceiver`):
//! one receiver, generic over the width of its big-endian length prefix.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{StringHandler, reject};
use crate::observe::{self, CloseReason, ConnectionInfo, ErrorKind};
use crate::protocol::{HalfClose, Protocol};
use crate::transport::Transport;

/// The width of a length prefix.
pub trait Prefix: 'static {
    /// Bytes in the prefix.
    const WIDTH: usize;
    /// The default `max_length` of a receiver with this prefix.
    const MAX_LENGTH: usize;
    /// Reads a length from exactly `WIDTH` bytes.
    fn read(bytes: &[u8]) -> usize;
    /// Writes `len`, or `None` when it does not fit.
    fn write(len: usize) -> Option<Vec<u8>>;
}

/// A 32-bit big-endian length.
#[derive(Debug)]
pub struct U32Prefix;

impl Prefix for U32Prefix {
    const WIDTH: usize = 4;
    /// Twisted's `MAX_LENGTH`.
    const MAX_LENGTH: usize = 99_999;
    fn read(bytes: &[u8]) -> usize {
        u32::from_be_bytes(bytes.try_into().expect("four bytes")) as usize
    }
    fn write(len: usize) -> Option<Vec<u8>> {
        u32::try_from(len).ok().map(|l| l.to_be_bytes().to_vec())
    }
}

/// A 16-bit big-endian length (DNS over TCP frames its messages so).
#[derive(Debug)]
pub struct U16Prefix;

impl Prefix for U16Prefix {
    const WIDTH: usize = 2;
    /// The largest length 16 bits can announce.
    const MAX_LENGTH: usize = u16::MAX as usize;
    fn read(bytes: &[u8]) -> usize {
        usize::from(u16::from_be_bytes(bytes.try_into().expect("two bytes")))
    }
    fn write(len: usize) -> Option<Vec<u8>> {
        u16::try_from(len).ok().map(|l| l.to_be_bytes().to_vec())
    }
}

/// Decodes strings prefixed by a 32-bit big-endian length (Twisted's `Int32StringReceiver`).
pub type Int32StringReceiver<H> = PrefixedReceiver<H, U32Prefix>;

/// Decodes strings prefixed by a 16-bit big-endian length (Twisted's `Int16StringReceiver`).
pub type Int16StringReceiver<H> = PrefixedReceiver<H, U16Prefix>;

/// Writes `data` with its prefix `P` (Twisted's `sendString`).
///
/// # Panics
/// When `data` is longer than the prefix can announce.
pub fn send_prefixed<P: Prefix>(transport: &Transport, data: &[u8]) {
    let prefix =
        P::write(data.len()).expect("the string is longer than its length prefix can announce");
    transport.write_sequence([&prefix[..], data]);
}

/// Writes `data` with a 32-bit big-endian length prefix.
///
/// # Panics
/// When `data` is longer than `u32::MAX` bytes.
pub fn send_int32_string(transport: &Transport, data: &[u8]) {
    send_prefixed::<U32Prefix>(transport, data);
}

/// Writes `data` with a 16-bit big-endian length prefix.
///
/// # Panics
/// When `data` is longer than 65,535 bytes.
pub fn send_int16_string(transport: &Transport, data: &[u8]) {
    send_prefixed::<U16Prefix>(transport, data);
}

/// Decodes strings prefixed by their length in `P`.
pub struct PrefixedReceiver<H, P> {
    handler: H,
    /// A prefix announcing more than this closes the connection instead of being buffered.
    max_length: usize,
    /// Bytes of an incomplete message, kept until the rest arrives.
    buffer: Vec<u8>,
    /// A string must arrive whole within this of its first byte.
    message_timeout: Option<Duration>,
    /// When the first byte of the incomplete string buffered arrived.
    begun: Option<Instant>,
    /// Selects the prefix width (`P`) at compile time; holds no data.
    prefix: PhantomData<P>,
    /// The connection, once made: a string left unfinished when it times out is counted
    /// against it.
    info: Option<Arc<ConnectionInfo>>,
}

impl<H: StringHandler, P: Prefix> PrefixedReceiver<H, P> {
    /// Strings of at most `P::MAX_LENGTH` bytes.
    pub fn new(handler: H) -> Self {
        Self {
            handler,
            max_length: P::MAX_LENGTH,
            buffer: Vec::new(),
            message_timeout: None,
            begun: None,
            prefix: PhantomData,
            info: None,
        }
    }

    /// Closes connections whose strings take longer than `timeout` to arrive whole, from
    /// their first byte: a peer trickling a byte at a time, each in time for the idle
    /// timeout, would otherwise hold its connection as long as it likes.
    pub fn message_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.message_timeout = timeout;
        self
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

impl<H: StringHandler, P: Prefix> Protocol for PrefixedReceiver<H, P> {
    fn connection_made(&mut self, transport: &Transport) {
        self.info = Some(transport.info().clone());
        self.handler.connection_made(transport);
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        self.buffer.extend_from_slice(data);
        let delivered = self.deliver(transport);
        if let Some(timeout) = self.message_timeout {
            self.time_message(transport, delivered, timeout);
        }
    }

    fn reading_resumed(&mut self, transport: &Transport) {
        let _ = self.deliver(transport);
    }

    fn read_connection_lost(&mut self, transport: &Transport) -> HalfClose {
        if let Some(unfinished) = self.unfinished() {
            // It can never be finished: bad framing, counted as one trickled too long
            // is. Every whole string before it was delivered (no end of stream is read
            // while reading is paused), so it is all the buffer holds.
            self.buffer = Vec::new();
            self.begun = None;
            let message = format!("the peer ended its side with {unfinished}");
            observe::report_error(transport.info(), ErrorKind::BadFrame, message);
        }
        self.handler.read_connection_lost(transport)
    }

    fn drain(&mut self, transport: &Transport) {
        self.handler.drain(transport);
    }

    fn timeout_connection(&mut self, transport: &Transport) {
        self.handler.timeout_connection(transport);
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        // A string begun and never finished by the idle timeout: a length prefix that
        // lies, or a peer that stalled mid-string. Bad framing, counted as one trickled
        // past the message timeout or cut off by the peer's end of stream is.
        if *reason == CloseReason::TimedOut
            && let (Some(unfinished), Some(info)) = (self.unfinished(), &self.info)
        {
            let message = format!("the connection went idle with {unfinished}");
            observe::report_error(info, ErrorKind::BadFrame, message);
        }
        self.handler.connection_lost(reason);
    }

    fn name(&self) -> &'static str {
        std::any::type_name::<H>()
    }
}

impl<H: StringHandler, P: Prefix> PrefixedReceiver<H, P> {
    /// Hands the handler each whole string buffered, until reading pauses (its answers
    /// wait on the peer, say: the strings after wait with them, for
    /// [`reading_resumed`](Protocol::reading_resumed), rather than pile up answers) or
    /// the connection is closing; returns how many it delivered.
    fn deliver(&mut self, transport: &Transport) -> usize {
        let mut delivered = 0;
        let mut at = 0;
        while !transport.is_disconnecting() && !transport.is_reading_paused() {
            let rest = &self.buffer[at..];
            let Some(prefix) = rest.get(..P::WIDTH) else {
                break;
            };
            let len = P::read(prefix);
            if len > self.max_length {
                self.buffer = Vec::new();
                reject(
                    transport,
                    ErrorKind::FrameTooLong,
                    format!(
                        "string of {len} bytes exceeds the limit of {} bytes",
                        self.max_length
                    ),
                );
                return delivered;
            }
            let Some(body) = rest.get(P::WIDTH..P::WIDTH + len) else {
                break;
            };
            self.handler.string_received(transport, body);
            delivered += 1;
            at += P::WIDTH + len;
        }
        if at >= self.buffer.len() {
            self.buffer = Vec::new();
        } else {
            self.buffer.drain(..at);
        }
        delivered
    }

    /// What the buffer holds of a string begun and not finished, if anything: at the end
    /// of the stream, that string alone (every whole one before it was delivered).
    fn unfinished(&self) -> Option<String> {
        let have = self.buffer.len();
        match self.buffer.get(..P::WIDTH) {
            _ if have == 0 => None,
            None => Some(format!("{have} bytes of a string's length prefix")),
            Some(prefix) => {
                let len = P::read(prefix);
                Some(format!("{} bytes of a {len}-byte string", have - P::WIDTH))
            }
        }
    }

    /// Notes when the string now incomplete began, and closes the connection if that is
    /// longer ago than `timeout`. Strings held whole while reading is paused wait on this
    /// side, not the peer: they are not timed.
    fn time_message(&mut self, transport: &Transport, delivered: usize, timeout: Duration) {
        if self.buffer.is_empty() || transport.is_reading_paused() {
            self.begun = None;
            return;
        }
        let now = Instant::now();
        let begun = match self.begun {
            Some(begun) if delivered == 0 => begun,
            _ => *self.begun.insert(now),
        };
        if now.duration_since(begun) > timeout {
            let so_far = std::mem::take(&mut self.buffer).len();
            reject(
                transport,
                ErrorKind::BadFrame,
                format!(
                    "a string took more than {timeout:?} to arrive whole ({so_far} bytes so far)"
                ),
            );
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
    fn sixteen_bit_prefixes_work_the_same_way() {
        #[derive(Default)]
        struct Echo16(Vec<Vec<u8>>);
        impl StringHandler for Echo16 {
            fn string_received(&mut self, transport: &Transport, data: &[u8]) {
                send_int16_string(transport, data);
                self.0.push(data.to_vec());
            }
        }
        let mut wire = StringTransport::new();
        let mut proto = Int16StringReceiver::new(Echo16::default());
        let stream = b"\x00\x03one\x00\x00\x00\x05three";
        for byte in stream {
            wire.receive(&mut proto, std::slice::from_ref(byte));
        }
        assert_eq!(proto.handler().0, [&b"one"[..], b"", b"three"]);
        assert_eq!(wire.value(), stream);
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

    #[test]
    fn strings_after_a_pause_wait_for_reading_to_resume() {
        let mut wire = StringTransport::new();
        // Each answer alone is over the high-water mark: reading pauses after it.
        wire.transport().set_water_marks(8, 0);
        let mut proto = Int32StringReceiver::new(Strings::default());
        let mut stream = Vec::new();
        for s in [b"first", b"other", b"third"] {
            stream.extend_from_slice(&5u32.to_be_bytes());
            stream.extend_from_slice(s);
        }
        wire.receive(&mut proto, &stream);
        assert_eq!(proto.handler().0, [b"first"]);
        wire.resume(&mut proto);
        assert_eq!(
            proto.handler().0.len(),
            1,
            "still paused: its answer is unsent"
        );
        for taken in 2..=3 {
            let _ = wire.value();
            wire.resume(&mut proto);
            assert_eq!(proto.handler().0.len(), taken);
        }
        assert_eq!(wire.value(), &stream[..]);
    }

    #[test]
    fn a_string_trickled_past_its_message_timeout_closes_the_connection() {
        let mut wire = StringTransport::new();
        let timeout = Duration::from_millis(200);
        let mut proto = Int16StringReceiver::new(Strings::default()).message_timeout(Some(timeout));
        // Whole strings, each begun and ended in time, are never timed out however long
        // the connection lives.
        for _ in 0..3 {
            wire.receive(&mut proto, b"\x00\x02h");
            std::thread::sleep(timeout / 10);
            wire.receive(&mut proto, b"i");
            std::thread::sleep(timeout / 2);
        }
        assert_eq!(proto.handler().0.len(), 3);
        assert!(!wire.disconnecting());
        // One begun in the same chunk as the end of the last is timed from then.
        wire.receive(&mut proto, b"\x00\x05o");
        for byte in [b"n", b"e"] {
            std::thread::sleep(timeout / 2 + Duration::from_millis(10));
            wire.receive(&mut proto, byte);
        }
        assert!(wire.disconnecting(), "the third byte came too late");
        let reason = wire.close_reason().unwrap().to_string();
        assert!(
            reason.contains("to arrive whole (5 bytes so far)"),
            "{reason}"
        );
        assert_eq!(proto.handler().0.len(), 3);
    }
}
