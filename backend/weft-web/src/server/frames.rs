//! Following an HTTP/2 byte stream frame by frame, as it is read or written, without
//! copying or buffering anything but the frame header at hand (RFC 9113 §4.1): what
//! `heads::Scan` follows of the client's frames and `streams::Sent` of the server's.

/// The client connection preface (RFC 9113 §3.4), which comes before its first frame.
pub(crate) const PREFACE_LEN: usize = 24;
/// A frame header: length (24 bits), type, flags, stream.
pub(crate) const FRAME_HEADER_LEN: usize = 9;

/// Frame types (RFC 9113 §6).
pub(crate) const DATA: u8 = 0x0;
pub(crate) const HEADERS: u8 = 0x1;
pub(crate) const RST_STREAM: u8 = 0x3;
pub(crate) const SETTINGS: u8 = 0x4;
pub(crate) const PUSH_PROMISE: u8 = 0x5;
pub(crate) const CONTINUATION: u8 = 0x9;

/// What [`Frames::feed`] comes upon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// A frame's header, read whole.
    Began { kind: u8, flags: u8, len: usize },
    /// An RST_STREAM's error code, read whole (after its `Began`).
    Reset { stream: u32, code: u32 },
    /// The end of the frame's payload.
    Ended,
}

/// Where a byte stream of frames is.
#[derive(Debug, Default)]
pub(crate) struct Frames {
    /// Preface bytes still to pass.
    preface_left: usize,
    /// The frame header being read, then an RST_STREAM's error code.
    header: [u8; FRAME_HEADER_LEN + 4],
    have: usize,
    /// Payload bytes of the current frame still to pass (past what `header` keeps).
    payload_left: usize,
}

impl Frames {
    /// A stream that opens with `preface` bytes before its first frame.
    pub(crate) fn after(preface: usize) -> Self {
        Self {
            preface_left: preface,
            ..Self::default()
        }
    }

    /// Follows `bytes`, the next of the stream, telling `seen` of each frame header,
    /// RST_STREAM error code and frame end they hold.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], mut seen: impl FnMut(Seen)) {
        while !bytes.is_empty() {
            let n = if self.preface_left > 0 {
                let n = self.preface_left.min(bytes.len());
                self.preface_left -= n;
                n
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                if self.payload_left == 0 {
                    seen(Seen::Ended);
                }
                n
            } else {
                let reset = self.have >= FRAME_HEADER_LEN;
                let want = if reset {
                    FRAME_HEADER_LEN + 4
                } else {
                    FRAME_HEADER_LEN
                };
                let n = (want - self.have).min(bytes.len());
                self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
                self.have += n;
                if self.have == want {
                    self.frame_read(reset, &mut seen);
                }
                n
            };
            bytes = &bytes[n..];
        }
    }

    /// The frame header is whole, or (`reset`) an RST_STREAM's code after it.
    fn frame_read(&mut self, reset: bool, seen: &mut impl FnMut(Seen)) {
        let [l0, l1, l2, kind, flags, s0, s1, s2, s3, c0, c1, c2, c3] = self.header;
        if reset {
            let stream = u32::from_be_bytes([s0, s1, s2, s3]) & 0x7fff_ffff;
            seen(Seen::Reset {
                stream,
                code: u32::from_be_bytes([c0, c1, c2, c3]),
            });
            self.have = 0;
            seen(Seen::Ended);
            return;
        }
        let len = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
        seen(Seen::Began { kind, flags, len });
        if kind == RST_STREAM && len == 4 {
            // Its code is read next, into the header's tail.
            return;
        }
        self.have = 0;
        self.payload_left = len;
        if len == 0 {
            seen(Seen::Ended);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(out: &mut Vec<u8>, kind: u8, stream: u32, payload: &[u8]) {
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        out.extend_from_slice(&len[1..]);
        out.extend_from_slice(&[kind, 0]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
    }

    #[test]
    fn every_header_reset_and_end_is_seen_however_the_bytes_are_cut() {
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        frame(&mut out, 0x4, 0, &[0; 12]);
        frame(&mut out, HEADERS, 1, &[0x88]);
        frame(&mut out, RST_STREAM, 1, &1u32.to_be_bytes());
        // A DATA frame whose payload looks like an RST_STREAM is none.
        let mut fake = Vec::new();
        frame(&mut fake, RST_STREAM, 9, &7u32.to_be_bytes());
        frame(&mut out, DATA, 3, &fake);
        frame(&mut out, DATA, 5, &[]);
        frame(&mut out, RST_STREAM, 5, &0xbu32.to_be_bytes());
        let began = |kind, len| Seen::Began {
            kind,
            flags: 0,
            len,
        };
        let reset = |stream, code| Seen::Reset { stream, code };
        let expected = [
            began(0x4, 12),
            Seen::Ended,
            began(HEADERS, 1),
            Seen::Ended,
            began(RST_STREAM, 4),
            reset(1, 1),
            Seen::Ended,
            began(DATA, 13),
            Seen::Ended,
            began(DATA, 0),
            Seen::Ended,
            began(RST_STREAM, 4),
            reset(5, 0xb),
            Seen::Ended,
        ];
        for chunk in [1, 2, 5, 9, 13, 24, 64, 4096] {
            let mut frames = Frames::after(PREFACE_LEN);
            let mut found = Vec::new();
            for piece in out.chunks(chunk) {
                frames.feed(piece, |seen| found.push(seen));
            }
            assert_eq!(found, expected, "{chunk}");
        }
    }
}
