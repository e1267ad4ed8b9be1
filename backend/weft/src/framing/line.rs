//! `LineReceiver`: delimited lines, with a raw mode.

use super::reject;
use crate::observe::{CloseReason, ErrorKind};
use crate::protocol::{HalfClose, Protocol};
use crate::transport::Transport;

/// What a line handler can do besides writing: send lines, switch modes.
pub struct LineContext<'a> {
    transport: &'a Transport,
    delimiter: &'a [u8],
    /// The receiver's mode flag, borrowed so a handler can switch to raw mode in the middle of a
    /// line callback.
    raw: &'a mut bool,
    /// Bytes handed back by [`set_line_mode_with`](Self::set_line_mode_with), read before
    /// whatever follows the current callback's bytes.
    extra: &'a mut Vec<u8>,
}

impl LineContext<'_> {
    /// The connection's transport.
    pub fn transport(&self) -> &Transport {
        self.transport
    }

    /// Writes `line` followed by the delimiter (Twisted's `sendLine`).
    pub fn send_line(&self, line: &[u8]) {
        self.transport.write_sequence([line, self.delimiter]);
    }

    /// Delivers what follows to `raw_data_received` instead of splitting it into lines.
    pub fn set_raw_mode(&mut self) {
        *self.raw = true;
    }

    /// Goes back to splitting lines.
    pub fn set_line_mode(&mut self) {
        *self.raw = false;
    }

    /// Goes back to splitting lines, reading `extra` first (Twisted's `setLineMode(extra)`):
    /// the bytes a raw section did not use, such as what follows a body whose length a
    /// header gave. `raw_data_received` is handed all it has, so this is how the rest is
    /// given back; they are split before anything received after them.
    pub fn set_line_mode_with(&mut self, extra: &[u8]) {
        *self.raw = false;
        self.extra.extend_from_slice(extra);
    }
}

/// Handles the lines a [`LineReceiver`] splits out.
pub trait LineHandler: 'static {
    /// The connection is up.
    fn connection_made(&mut self, ctx: &mut LineContext<'_>) {
        let _ = ctx;
    }
    /// One line, without its delimiter.
    fn line_received(&mut self, ctx: &mut LineContext<'_>, line: &[u8]);
    /// Bytes received in raw mode.
    fn raw_data_received(&mut self, ctx: &mut LineContext<'_>, data: &[u8]) {
        let _ = (ctx, data);
    }
    /// A line grew past `max_length` bytes (to `length`) before its delimiter came
    /// (Twisted's `lineLengthExceeded`). What was received of it is discarded; by default
    /// the connection is closed naming the limit, and the error reported
    /// (`frame_too_long`). A handler that keeps the connection reads on after the line's
    /// delimiter, or, when it has not come, from the next bytes received.
    fn line_length_exceeded(
        &mut self,
        ctx: &mut LineContext<'_>,
        length: usize,
        max_length: usize,
    ) {
        reject(
            ctx.transport,
            ErrorKind::FrameTooLong,
            format!("line of {length}+ bytes exceeds the limit of {max_length} bytes"),
        );
    }
    /// The peer sent EOF after its last line: [`HalfClose::KeepWriting`] to go on writing
    /// (answers still to come), as for a [`Protocol`]. A partial line without its
    /// delimiter is not delivered.
    fn read_connection_lost(&mut self, ctx: &mut LineContext<'_>) -> HalfClose {
        let _ = ctx;
        HalfClose::Close
    }
    /// The connection is asked to end gracefully (see [`Protocol::drain`]): by default it
    /// closes once what is buffered is sent.
    fn drain(&mut self, ctx: &mut LineContext<'_>) {
        ctx.transport.lose_connection();
    }
    /// The idle timeout went off (see [`Protocol::timeout_connection`]): by default it
    /// closes, with reason `TimedOut`.
    fn timeout_connection(&mut self, ctx: &mut LineContext<'_>) {
        ctx.transport.lose_connection_with(CloseReason::TimedOut);
    }
    /// The connection is gone.
    fn connection_lost(&mut self, reason: &CloseReason) {
        let _ = reason;
    }
}

/// How a pass over received bytes ended.
enum Pass {
    /// This many were used; the rest wait.
    Used(usize),
    /// A handler handed back `extra`, to be read before `bytes[used..]`.
    HandedBack { used: usize, extra: Vec<u8> },
}

/// Splits a stream into lines (Twisted's `LineReceiver`); `\r\n` and 16 KiB by default.
pub struct LineReceiver<H> {
    handler: H,
    delimiter: Vec<u8>,
    /// A line longer than this is discarded (and by default closes the connection) rather
    /// than growing the buffer without bound.
    max_length: usize,
    /// A partial line; empty (and unallocated) between lines.
    buffer: Vec<u8>,
    /// Raw mode: bytes go to the handler as they come, unsplit, until it switches back.
    raw: bool,
    /// Bytes a handler handed back on leaving raw mode; empty (and unallocated) otherwise.
    extra: Vec<u8>,
    /// Reading paused with whole lines still in `buffer`: they wait for
    /// [`reading_resumed`](Protocol::reading_resumed), and the next search starts at the
    /// buffer's beginning.
    held: bool,
}

impl<H: LineHandler> LineReceiver<H> {
    /// Twisted's `MAX_LENGTH`.
    pub const MAX_LENGTH: usize = 16384;

    /// Lines ending in `\r\n`, at most [`MAX_LENGTH`](Self::MAX_LENGTH) bytes.
    pub fn new(handler: H) -> Self {
        Self {
            handler,
            delimiter: b"\r\n".to_vec(),
            max_length: Self::MAX_LENGTH,
            buffer: Vec::new(),
            raw: false,
            extra: Vec::new(),
            held: false,
        }
    }

    /// Uses `delimiter` (for example `b"\n"`).
    pub fn delimiter(mut self, delimiter: &[u8]) -> Self {
        assert!(!delimiter.is_empty(), "a line delimiter cannot be empty");
        self.delimiter = delimiter.to_vec();
        self
    }

    /// Lines longer than `max_length` bytes go to
    /// [`LineHandler::line_length_exceeded`], which closes the connection by default.
    pub fn max_length(mut self, max_length: usize) -> Self {
        self.max_length = max_length;
        self
    }

    /// The wrapped handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The wrapped handler, mutably.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// The handler, and the context its callbacks get.
    fn parts<'a>(&'a mut self, transport: &'a Transport) -> (&'a mut H, LineContext<'a>) {
        let ctx = LineContext {
            transport,
            delimiter: &self.delimiter,
            raw: &mut self.raw,
            extra: &mut self.extra,
        };
        (&mut self.handler, ctx)
    }

    /// Delivers the lines (or raw data) in `bytes`, the first delimiter searched for
    /// from `scan_from`, until reading pauses; returns how many bytes were used. Unused
    /// bytes are a partial line, or lines held for when reading resumes.
    fn split(&mut self, transport: &Transport, bytes: &[u8], scan_from: usize) -> usize {
        match self.pass(transport, bytes, scan_from) {
            Pass::Used(used) => used,
            Pass::HandedBack { used, extra } => {
                let mut owned = extra;
                owned.extend_from_slice(&bytes[used..]);
                self.read_owned(transport, owned);
                bytes.len()
            }
        }
    }

    /// Reads `owned` (bytes a handler handed back, then what followed), in a loop however
    /// often handlers hand bytes back; what is left waits in the buffer.
    fn read_owned(&mut self, transport: &Transport, mut owned: Vec<u8>) {
        loop {
            match self.pass(transport, &owned, 0) {
                Pass::Used(used) => {
                    if used < owned.len() {
                        owned.drain(..used);
                        self.buffer = owned;
                    }
                    return;
                }
                Pass::HandedBack { used, extra } => {
                    let mut next = extra;
                    next.extend_from_slice(&owned[used..]);
                    owned = next;
                }
            }
        }
    }

    /// [`split`](Self::split) until a handler hands back bytes that are not the end of
    /// what it was given (those it hands back from its own bytes are read on in place,
    /// copying nothing, however many raw sections one read holds).
    fn pass(&mut self, transport: &Transport, bytes: &[u8], mut scan_from: usize) -> Pass {
        let mut at = 0;
        while at < bytes.len() && !transport.is_disconnecting() {
            if transport.is_reading_paused() {
                self.held = true;
                return Pass::Used(at);
            }
            let rest = &bytes[at..];
            if self.raw {
                let (handler, mut ctx) = self.parts(transport);
                handler.raw_data_received(&mut ctx, rest);
                let extra = std::mem::take(&mut self.extra);
                if extra.is_empty() {
                    return Pass::Used(bytes.len());
                }
                if rest.ends_with(&extra) {
                    at = bytes.len() - extra.len();
                    continue;
                }
                return Pass::HandedBack {
                    used: bytes.len(),
                    extra,
                };
            }
            let Some(found) = find(&rest[scan_from.min(rest.len())..], &self.delimiter) else {
                if rest.len() > self.max_length + self.delimiter.len() {
                    self.too_long(transport, rest.len());
                    at = bytes.len();
                } else {
                    return Pass::Used(at);
                }
                return self.after_handler(at);
            };
            let end = scan_from + found;
            scan_from = 0;
            if end > self.max_length {
                // A handler that keeps the connection reads on after the line's end.
                self.too_long(transport, end);
            } else {
                let (handler, mut ctx) = self.parts(transport);
                handler.line_received(&mut ctx, &rest[..end]);
            }
            at += end + self.delimiter.len();
            if !self.extra.is_empty() {
                return self.after_handler(at);
            }
        }
        // Closing: nothing after the close request is delivered.
        Pass::Used(bytes.len())
    }

    /// A line handler ran having used `bytes[..at]`: the bytes it handed back, if any, are
    /// read before the rest.
    fn after_handler(&mut self, at: usize) -> Pass {
        match std::mem::take(&mut self.extra) {
            extra if extra.is_empty() => Pass::Used(at),
            extra => Pass::HandedBack { used: at, extra },
        }
    }

    fn too_long(&mut self, transport: &Transport, length: usize) {
        self.buffer = Vec::new();
        let max_length = self.max_length;
        let (handler, mut ctx) = self.parts(transport);
        handler.line_length_exceeded(&mut ctx, length, max_length);
    }
}

impl<H: LineHandler> Protocol for LineReceiver<H> {
    fn connection_made(&mut self, transport: &Transport) {
        let (handler, mut ctx) = self.parts(transport);
        handler.connection_made(&mut ctx);
        let extra = std::mem::take(&mut self.extra);
        if !extra.is_empty() {
            self.read_owned(transport, extra);
        }
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        if std::mem::take(&mut self.held) {
            self.buffer.extend_from_slice(data);
            return self.reading_resumed(transport);
        }
        if self.buffer.is_empty() {
            let used = self.split(transport, data, 0);
            if used < data.len() {
                self.buffer = data[used..].to_vec();
            }
            return;
        }
        // Append to the partial line and search only the new bytes (and the few before
        // them a delimiter could straddle), so a line sent a byte at a time costs linear
        // time, not quadratic.
        let scan_from = self.buffer.len().saturating_sub(self.delimiter.len() - 1);
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.extend_from_slice(data);
        let used = self.split(transport, &buffer, scan_from);
        if used < buffer.len() {
            buffer.drain(..used);
            self.buffer = buffer;
        }
    }

    fn reading_resumed(&mut self, transport: &Transport) {
        self.held = false;
        let mut buffer = std::mem::take(&mut self.buffer);
        let used = self.split(transport, &buffer, 0);
        if used < buffer.len() {
            buffer.drain(..used);
            self.buffer = buffer;
        }
    }

    fn read_connection_lost(&mut self, transport: &Transport) -> HalfClose {
        let (handler, mut ctx) = self.parts(transport);
        handler.read_connection_lost(&mut ctx)
    }

    fn drain(&mut self, transport: &Transport) {
        let (handler, mut ctx) = self.parts(transport);
        handler.drain(&mut ctx);
    }

    fn timeout_connection(&mut self, transport: &Transport) {
        let (handler, mut ctx) = self.parts(transport);
        handler.timeout_connection(&mut ctx);
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        self.handler.connection_lost(reason);
    }

    fn name(&self) -> &'static str {
        std::any::type_name::<H>()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() == 1 {
        return haystack.iter().position(|&b| b == needle[0]);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::StringTransport;

    #[derive(Default)]
    struct Lines {
        lines: Vec<Vec<u8>>,
        raw: Vec<u8>,
    }

    impl LineHandler for Lines {
        fn line_received(&mut self, ctx: &mut LineContext<'_>, line: &[u8]) {
            if line == b"raw" {
                ctx.set_raw_mode();
            }
            ctx.send_line(&line.to_ascii_uppercase());
            self.lines.push(line.to_vec());
        }
        fn raw_data_received(&mut self, ctx: &mut LineContext<'_>, data: &[u8]) {
            self.raw.extend_from_slice(data);
            if self.raw.ends_with(b"END") {
                ctx.set_line_mode();
            }
        }
    }

    /// A header line gives a body's length; the body is read raw and what follows it is
    /// handed back as lines (an HTTP/1.0-style exchange, Twisted's `setLineMode(extra)`).
    #[derive(Default)]
    struct Bodies {
        lines: Vec<Vec<u8>>,
        bodies: Vec<Vec<u8>>,
        wanted: usize,
    }

    impl LineHandler for Bodies {
        fn line_received(&mut self, ctx: &mut LineContext<'_>, line: &[u8]) {
            if let Some(length) = line.strip_prefix(b"body ") {
                self.wanted = std::str::from_utf8(length).unwrap().parse().unwrap();
                self.bodies.push(Vec::new());
                ctx.set_raw_mode();
            }
            self.lines.push(line.to_vec());
        }
        fn raw_data_received(&mut self, ctx: &mut LineContext<'_>, data: &[u8]) {
            let body = self.bodies.last_mut().unwrap();
            let take = (self.wanted - body.len()).min(data.len());
            body.extend_from_slice(&data[..take]);
            if body.len() == self.wanted {
                ctx.set_line_mode_with(&data[take..]);
            }
        }
    }

    #[test]
    fn the_bytes_a_raw_section_hands_back_are_read_as_lines_before_the_rest() {
        let mut wire = StringTransport::new();
        let mut proto = LineReceiver::new(Bodies::default()).delimiter(b"\n");
        wire.connect(&mut proto);
        wire.receive(&mut proto, b"a\nbody 3\nxyzb\nbody 2\n");
        wire.receive(&mut proto, b"p");
        wire.receive(&mut proto, b"qc\nd");
        wire.receive(&mut proto, b"\n");
        let handler = proto.handler();
        assert_eq!(handler.bodies, [b"xyz".to_vec(), b"pq".to_vec()]);
        assert_eq!(
            handler.lines,
            [&b"a"[..], b"body 3", b"b", b"body 2", b"c", b"d"]
        );
        assert!(proto.buffer.is_empty() && proto.extra.is_empty());
    }

    /// Answers each line later (as a Deferred would), so it keeps writing after EOF;
    /// forgives one long line; says goodbye when drained.
    #[derive(Default)]
    struct Patient {
        owed: Vec<Vec<u8>>,
        too_long: Vec<(usize, usize)>,
    }

    impl LineHandler for Patient {
        fn line_received(&mut self, _ctx: &mut LineContext<'_>, line: &[u8]) {
            self.owed.push(line.to_vec());
        }
        fn line_length_exceeded(&mut self, ctx: &mut LineContext<'_>, length: usize, max: usize) {
            self.too_long.push((length, max));
            ctx.send_line(b"too long");
        }
        fn read_connection_lost(&mut self, ctx: &mut LineContext<'_>) -> HalfClose {
            for line in self.owed.drain(..) {
                ctx.send_line(&line);
            }
            HalfClose::KeepWriting
        }
        fn drain(&mut self, ctx: &mut LineContext<'_>) {
            ctx.send_line(b"bye");
            ctx.transport().lose_connection();
        }
    }

    /// Many raw sections in one read, each handing back the rest, are read in place:
    /// no copy, no recursion (a peer could otherwise exhaust the stack).
    #[test]
    fn many_raw_sections_in_one_read_are_read_in_a_loop() {
        let mut wire = StringTransport::new();
        let mut proto = LineReceiver::new(Bodies::default()).delimiter(b"\n");
        wire.connect(&mut proto);
        let sections = 50_000;
        let mut read = b"body 0\n".repeat(sections);
        read.extend_from_slice(b"body 1\nxend\n");
        wire.receive(&mut proto, &read);
        let handler = proto.handler();
        assert_eq!(handler.bodies.len(), sections + 1);
        assert_eq!(handler.bodies.last().unwrap(), b"x");
        assert_eq!(handler.lines.last().unwrap(), b"end");
    }

    #[test]
    fn a_handler_may_keep_writing_after_eof_forgive_a_long_line_and_say_goodbye() {
        let mut wire = StringTransport::new();
        let mut proto = LineReceiver::new(Patient::default()).max_length(4);
        wire.connect(&mut proto);
        wire.receive(&mut proto, b"one\r\n0123456789\r\ntwo\r\n");
        assert!(!wire.disconnecting(), "the handler kept the connection");
        assert_eq!(proto.handler().too_long, [(10, 4)]);
        assert_eq!(wire.receive_eof(&mut proto), HalfClose::KeepWriting);
        assert_eq!(wire.value(), b"too long\r\none\r\ntwo\r\n");
        proto.drain(wire.transport());
        assert!(wire.disconnecting());
        assert_eq!(wire.value(), b"too long\r\none\r\ntwo\r\nbye\r\n");
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        let mut wire = StringTransport::new();
        let mut proto = LineReceiver::new(Lines::default());
        wire.connect(&mut proto);
        wire.receive(&mut proto, b"hel");
        wire.receive(&mut proto, b"lo\r\nwor");
        wire.receive(&mut proto, b"ld\r\n\r\n");
        assert_eq!(
            proto.handler().lines,
            [b"hello".to_vec(), b"world".to_vec(), vec![]]
        );
        assert_eq!(wire.value(), b"HELLO\r\nWORLD\r\n\r\n");
    }

    #[test]
    fn raw_mode_takes_the_rest_of_the_read() {
        let mut wire = StringTransport::new();
        let mut proto = LineReceiver::new(Lines::default()).delimiter(b"\n");
        wire.connect(&mut proto);
        wire.receive(&mut proto, b"a\nraw\nbytes\nEND");
        assert_eq!(proto.handler().lines, [b"a".to_vec(), b"raw".to_vec()]);
        assert_eq!(proto.handler().raw, b"bytes\nEND");
    }

    #[test]
    fn a_line_over_max_length_closes_the_connection_with_a_clear_reason() {
        let mut wire = StringTransport::new();
        let mut proto = LineReceiver::new(Lines::default()).max_length(8);
        wire.connect(&mut proto);
        wire.receive(&mut proto, b"ok\r\n");
        wire.receive(&mut proto, b"0123456789abcdef");
        assert!(wire.disconnecting());
        let reason = wire.close_reason().unwrap();
        assert!(reason.to_string().contains("limit of 8 bytes"), "{reason}");
        // Nothing after the violation is delivered.
        wire.receive(&mut proto, b"\r\nlate\r\n");
        assert_eq!(proto.handler().lines, [b"ok".to_vec()]);
    }

    #[test]
    fn a_line_sent_a_byte_at_a_time_and_a_split_delimiter() {
        let mut wire = StringTransport::new();
        let mut proto = LineReceiver::new(Lines::default());
        for byte in b"one\r\ntwo\r\n" {
            wire.receive(&mut proto, std::slice::from_ref(byte));
        }
        assert_eq!(proto.handler().lines, [b"one".to_vec(), b"two".to_vec()]);
        assert!(proto.buffer.is_empty());
    }

    #[test]
    fn a_long_line_in_one_read_is_also_rejected() {
        let mut wire = StringTransport::new();
        let mut proto = LineReceiver::new(Lines::default()).max_length(4);
        wire.connect(&mut proto);
        wire.receive(&mut proto, b"toolong\r\n");
        assert!(wire.disconnecting());
        assert!(proto.handler().lines.is_empty());
    }

    #[test]
    fn lines_after_a_pause_wait_for_reading_to_resume_and_are_found_again() {
        let mut wire = StringTransport::new();
        wire.transport().set_water_marks(4, 0);
        let mut proto = LineReceiver::new(Lines::default());
        wire.receive(&mut proto, b"one\r\ntwo\r\nthr");
        assert_eq!(proto.handler().lines, [b"one"]);
        // More bytes while lines are held (a framer fed by hand) find them all the same.
        wire.receive(&mut proto, b"ee\r\n");
        assert_eq!(proto.handler().lines, [b"one"]);
        let _ = wire.value();
        wire.resume(&mut proto);
        assert_eq!(proto.handler().lines, [&b"one"[..], b"two"]);
        let _ = wire.value();
        wire.resume(&mut proto);
        assert_eq!(proto.handler().lines, [&b"one"[..], b"two", b"three"]);
        assert_eq!(wire.value(), b"ONE\r\nTWO\r\nTHREE\r\n");
    }
}
