//! The bound hyper's HTTP/2 server lacks: a request head must be complete within
//! `request_timeout`, as an HTTP/1.1 head must, and so must the connection preface (the
//! magic and the client's first SETTINGS frame, RFC 9113 §3.4), which hyper would wait
//! for until the connection is idle.
//!
//! A head is a HEADERS frame and the CONTINUATION frames after it, up to the one flagged
//! END_HEADERS (RFC 9113 §4.3), and no other frame may come in between (§6.10): a client
//! that opens a head and never ends it holds the whole connection, and hyper waits for it
//! forever with what it has buffered. A [`Scan`], fed what the client sends as hyper
//! reads it (`protocol::Prefixed`), follows the frame headers (`frames`) and notes when
//! the head being received began; [`Deadline`] tells the connection's driver when that
//! head is `request_timeout` old.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use weft::Transport;

use super::frames::{
    CONTINUATION, DATA, Frames, HEADERS, PREFACE_LEN, PUSH_PROMISE, SETTINGS, Seen,
};

const END_HEADERS: u8 = 0x4;

/// How far the client's preface has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Preface {
    /// Not a byte of it (over TLS, where ALPN chose HTTP/2 before the client sent any).
    Unheard,
    /// Begun, its SETTINGS frame not yet.
    Heard,
    /// Inside its SETTINGS frame.
    Settings,
    /// All in.
    Whole,
}

/// What took longer than `request_timeout`, when a [`Deadline`] says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Late {
    /// The client sent nothing at all: it is closed uncounted, as a silent HTTP/1.1 one.
    Silent,
    /// The preface it began.
    Preface,
    /// A request head.
    Head,
}

impl Late {
    /// For the log.
    pub(crate) fn what(self) -> &'static str {
        match self {
            Self::Silent => "request (it sent nothing)",
            Self::Preface => "HTTP/2 connection preface (its SETTINGS frame)",
            Self::Head => "HTTP/2 request head (HEADERS and CONTINUATION up to END_HEADERS)",
        }
    }
}

/// Follows the frames of the client's byte stream.
#[derive(Debug)]
pub(crate) struct Scan {
    frames: Frames,
    /// Whether the current frame ends a head (it carries END_HEADERS).
    ends_head: bool,
    /// When the head being received began; shared with the [`Deadline`].
    open_since: Rc<Cell<Option<Instant>>>,
    /// How far the preface has come (its first frame is a SETTINGS); shared with the
    /// [`Deadline`].
    preface: Rc<Cell<Preface>>,
    /// The connection's transport, told of the client's progress: a head, or body bytes
    /// (`server::streams`).
    progress: Option<Transport>,
}

impl Scan {
    fn new(
        open_since: Rc<Cell<Option<Instant>>>,
        preface: Rc<Cell<Preface>>,
        progress: Option<Transport>,
    ) -> Self {
        Self {
            frames: Frames::after(PREFACE_LEN),
            ends_head: false,
            open_since,
            preface,
            progress,
        }
    }

    /// Follows `bytes`, the next the client sent (just received: a head that begins in
    /// them began now).
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        let Self {
            frames,
            ends_head,
            open_since,
            preface,
            progress,
        } = self;
        if preface.get() == Preface::Unheard && !bytes.is_empty() {
            preface.set(Preface::Heard);
        }
        frames.feed(bytes, |seen| match seen {
            Seen::Began { kind, flags, len } => {
                let progressed = match kind {
                    DATA => len > 0,
                    HEADERS | CONTINUATION => true,
                    _ => false,
                };
                if progressed && let Some(transport) = progress {
                    transport.mark_activity();
                }
                *ends_head = false;
                if preface.get() == Preface::Heard && kind == SETTINGS {
                    preface.set(Preface::Settings);
                }
                match kind {
                    HEADERS | PUSH_PROMISE => {
                        // The clock is read only here, not per read.
                        open_since.set(Some(Instant::now()));
                        *ends_head = flags & END_HEADERS != 0;
                    }
                    CONTINUATION => *ends_head = flags & END_HEADERS != 0,
                    _ => {}
                }
            }
            Seen::Ended if *ends_head => open_since.set(None),
            Seen::Ended if preface.get() == Preface::Settings => {
                preface.set(Preface::Whole);
                open_since.set(None);
            }
            Seen::Ended | Seen::Reset { .. } => {}
        });
    }
}

/// A scan for the byte stream of an HTTP/2 connection from its preface on, which marks
/// the client's progress on `transport`, and the [`Deadline`] that tells when the
/// preface (due `timeout` after the connection `began`) or a head it follows is
/// `timeout` old.
pub(crate) fn watch(timeout: Duration, began: Instant, transport: Transport) -> (Scan, Deadline) {
    watching(timeout, began, Some(transport))
}

fn watching(timeout: Duration, began: Instant, progress: Option<Transport>) -> (Scan, Deadline) {
    let open_since = Rc::new(Cell::new(Some(began)));
    let preface = Rc::new(Cell::new(Preface::Unheard));
    let deadline = Deadline {
        open_since: open_since.clone(),
        preface: preface.clone(),
        timeout,
        sleep: None,
    };
    (Scan::new(open_since, preface, progress), deadline)
}

/// When the head a [`Scan`] is following has taken too long.
pub(crate) struct Deadline {
    open_since: Rc<Cell<Option<Instant>>>,
    preface: Rc<Cell<Preface>>,
    timeout: Duration,
    /// Set for the preface, and moved to each head's deadline (left armed in between: a
    /// wake-up after a head is due that finds nothing late is cheaper than a new timer
    /// for every head).
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Deadline {
    /// What is `timeout` old, the preface or the head being received, if either is; when
    /// neither is yet, `cx` is woken when it will be. Call it after the connection was
    /// polled (which reads).
    pub(crate) fn poll_late(&mut self, cx: &mut Context<'_>) -> Option<Late> {
        let since = self.open_since.get()?;
        let at = since + self.timeout;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if sleep.deadline() != at {
            sleep.as_mut().reset(at);
        }
        sleep
            .as_mut()
            .poll(cx)
            .is_ready()
            .then(|| match self.preface.get() {
                Preface::Unheard => Late::Silent,
                Preface::Heard | Preface::Settings => Late::Preface,
                Preface::Whole => Late::Head,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::frames::FRAME_HEADER_LEN;

    fn frame(kind: u8, flags: u8, payload_len: usize) -> Vec<u8> {
        let len = u32::try_from(payload_len).unwrap().to_be_bytes();
        let mut out = len[1..].to_vec();
        out.extend_from_slice(&[kind, flags, 0, 0, 0, 1]);
        out.resize(FRAME_HEADER_LEN + payload_len, 0xab);
        out
    }

    /// Feeds `bytes` (after a preface's magic, with `magic`), `chunk` bytes at a time, to
    /// a new connection's scan; what its deadline then follows: since when, and how far
    /// the preface came.
    fn scan_from(magic: bool, bytes: &[u8], chunk: usize) -> (Option<Instant>, Preface) {
        let (mut scan, deadline) = watching(Duration::from_secs(1), Instant::now(), None);
        let mut all = if magic {
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()
        } else {
            Vec::new()
        };
        all.extend_from_slice(bytes);
        for piece in all.chunks(chunk) {
            scan.feed(piece);
        }
        (deadline.open_since.get(), deadline.preface.get())
    }

    fn scan(bytes: &[u8], chunk: usize) -> Option<Instant> {
        scan_from(true, bytes, chunk).0
    }

    #[test]
    fn the_preface_is_due_from_the_connection_s_start_until_its_settings_frame_is_in() {
        let settings = frame(SETTINGS, 0, 6);
        let (open, preface) = scan_from(false, &[], 1);
        assert!(open.is_some(), "due from the start");
        assert_eq!(preface, Preface::Unheard, "a client that said nothing");
        for chunk in [1, 2, 7, 9, 64, 4096] {
            let (open, preface) = scan_from(true, &[], chunk);
            assert_eq!((open.is_some(), preface), (true, Preface::Heard), "{chunk}");
            let (open, preface) = scan_from(true, &settings[..10], chunk);
            assert_eq!(
                (open.is_some(), preface),
                (true, Preface::Settings),
                "{chunk}"
            );
            let (open, preface) = scan_from(true, &settings, chunk);
            assert_eq!((open, preface), (None, Preface::Whole), "{chunk}");
            // Only a SETTINGS frame ends it: a first frame of another kind leaves it open
            // (hyper ends such a connection as a protocol error).
            let (open, preface) = scan_from(true, &frame(0x8, 0, 4), chunk);
            assert_eq!((open.is_some(), preface), (true, Preface::Heard), "{chunk}");
        }
    }

    #[test]
    fn a_head_is_open_from_its_headers_frame_until_the_end_of_the_frame_flagged_end_headers() {
        let settings = frame(0x4, 0, 6);
        let complete = [settings.clone(), frame(HEADERS, END_HEADERS | 0x1, 20)].concat();
        let unfinished = [
            settings.clone(),
            frame(HEADERS, 0, 20),
            frame(CONTINUATION, 0, 3),
        ]
        .concat();
        let finished = [unfinished.clone(), frame(CONTINUATION, END_HEADERS, 0)].concat();
        let cut_short = frame(HEADERS, END_HEADERS, 20)[..15].to_vec();
        for chunk in [1, 2, 7, 9, 64, 4096] {
            assert_eq!(scan(&complete, chunk), None, "{chunk}");
            assert!(scan(&unfinished, chunk).is_some(), "{chunk}");
            assert_eq!(scan(&finished, chunk), None, "{chunk}");
            assert!(
                scan(&cut_short, chunk).is_some(),
                "{chunk}: a head frame not all in"
            );
            let data_after = [complete.clone(), frame(0x0, 0x1, 100)].concat();
            assert_eq!(
                scan(&data_after, chunk),
                None,
                "{chunk}: a body is not a head"
            );
        }
    }
}
