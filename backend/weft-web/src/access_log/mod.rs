//! The access log: one entry per response, with every client-controlled string escaped
//! so a request cannot forge log lines or terminal escapes. Where it goes is the
//! service's [`AccessLog`]: a Combined Log Format line through `tracing` (target
//! `weft_web::access`), the same entry as separate fields (for JSON logs), or a file
//! ([`AccessLogFile`], written off the reactor thread, reopened for logrotate).
//!
//! A response is logged when its body ends, through `Logged`, which counts the body
//! bytes handed to the connection: the entry gives what was sent, not what was announced,
//! and a response cut short (the client went away, the connection was aborted, the body's
//! source failed) says so after the standard fields.

mod file;

pub use file::{AccessLogFile, AccessLogFiles, FLUSH_EVERY, LogLoss, LossRecorder, QUEUE_BYTES};

use std::fmt::Write as _;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::HeaderValue;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use weft::observe::Stopwatch;

use crate::body::{Body, BoxError};
use crate::server::streams;

/// The tracing target of access log events.
const TARGET: &str = "weft_web::access";

/// Where an HTTP service's access log goes.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum AccessLog {
    /// Each entry as a Combined Log Format line, the message of an INFO event on the
    /// `weft_web::access` target (with `service` and `took` fields).
    #[default]
    Line,
    /// Each entry as the fields of an INFO event on the `weft_web::access` target, with
    /// no message: `service`, `client`, `request`, `status`, `bytes`, `referer` and
    /// `user_agent` (when sent), `duration_ms`, and `cut` for a response cut short. For
    /// JSON logs, where a preformatted line would have to be parsed again.
    Fields,
    /// Each entry as a Combined Log Format line appended to a file; nothing through
    /// `tracing`.
    File(AccessLogFile),
}

/// What one log line says.
pub(crate) struct Entry<'a> {
    pub(crate) service: &'a str,
    /// The client's address (without port), or `-`.
    pub(crate) client: &'a str,
    /// The request line (method, target, version); `-` for a malformed request.
    pub(crate) request: &'a [u8],
    pub(crate) status: u16,
    /// Body bytes sent (`-` when none, as in Apache's `%b`).
    pub(crate) bytes: u64,
    pub(crate) referer: Option<&'a [u8]>,
    pub(crate) user_agent: Option<&'a [u8]>,
    pub(crate) elapsed: Duration,
    /// Why the response ended before its body did, if it did.
    pub(crate) cut: Option<Cut>,
}

/// Why a response ended before its whole body was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// The body's source failed: a file read, an upstream that broke off.
    BodyFailed,
    /// The connection ended first: the client went away, or the connection was aborted
    /// (at the shutdown deadline, or from the dashboard).
    ConnectionClosed,
    /// Over HTTP/2, the client took no next piece of the response within the idle
    /// timeout: the stream was reset.
    SendTimeout,
}

impl Cut {
    fn as_str(self) -> &'static str {
        match self {
            Self::BodyFailed => "the body failed",
            Self::ConnectionClosed => "the connection closed",
            Self::SendTimeout => "the client took nothing for the idle timeout",
        }
    }
}

impl AccessLog {
    /// Whether an entry written now would go anywhere: when it would not, a request
    /// prepares no line (the tracing target is off, as it is at `RUST_LOG=warn`).
    pub(crate) fn is_on(&self) -> bool {
        match self {
            Self::File(_) => true,
            Self::Line | Self::Fields => tracing::enabled!(target: TARGET, tracing::Level::INFO),
        }
    }
}

impl Entry<'_> {
    /// Writes the entry where `to` says.
    pub(crate) fn log(&self, to: &AccessLog) {
        match to {
            AccessLog::File(file) => file.write_line(self.line(SystemTime::now())),
            _ if !tracing::enabled!(target: TARGET, tracing::Level::INFO) => {}
            AccessLog::Line => {
                let line = self.line(SystemTime::now());
                tracing::info!(target: TARGET, service = self.service, took = ?self.elapsed, "{line}");
            }
            AccessLog::Fields => tracing::info!(
                target: TARGET,
                service = self.service,
                client = self.client,
                request = escaped(self.request),
                status = self.status,
                bytes = self.bytes,
                referer = self.referer.map(escaped),
                user_agent = self.user_agent.map(escaped),
                duration_ms = self.elapsed.as_secs_f64() * 1e3,
                cut = self.cut.map(Cut::as_str),
            ),
        }
    }

    /// `host - - [date] "request" status bytes "referer" "user-agent"`, then
    /// ` (cut short: why)` for a response that did not end whole.
    pub(crate) fn line(&self, now: SystemTime) -> String {
        let mut out = String::with_capacity(160);
        out.push_str(self.client);
        out.push_str(" - - [");
        push_clf_date(&mut out, now);
        out.push_str("] \"");
        escape_into(&mut out, self.request);
        let _ = write!(out, "\" {} ", self.status);
        if self.bytes == 0 {
            out.push('-');
        } else {
            let _ = write!(out, "{}", self.bytes);
        }
        out.push_str(" \"");
        escape_into(&mut out, self.referer.unwrap_or(b"-"));
        out.push_str("\" \"");
        escape_into(&mut out, self.user_agent.unwrap_or(b"-"));
        out.push('"');
        if let Some(cut) = self.cut {
            let _ = write!(out, " (cut short: {})", cut.as_str());
        }
        out
    }
}

/// A request's part of its log line, kept until the response body ends.
pub(crate) struct Pending {
    pub(crate) to: AccessLog,
    pub(crate) service: Arc<str>,
    pub(crate) client: Rc<str>,
    pub(crate) request: String,
    pub(crate) status: u16,
    pub(crate) referer: Option<HeaderValue>,
    pub(crate) user_agent: Option<HeaderValue>,
    pub(crate) started: Stopwatch,
}

/// A response body that counts the bytes it hands on and writes the request's log line
/// when it is dropped: whole when it had ended, else cut short.
pub(crate) struct Logged {
    inner: Body,
    /// The log line waiting for the body to end; taken when it is written, so once.
    pending: Option<Pending>,
    /// Body bytes handed on so far: the line's byte count.
    sent: u64,
    /// The body gave its last frame. The line is written when the body is dropped even
    /// so: over HTTP/2, hyper holds a last piece until the client's window has room for
    /// it, and a stream reset meanwhile (`streams`) was cut short, not answered whole.
    ended: bool,
    /// A response to HEAD, or a status without content: it ends with its head, whatever
    /// its inner body holds (hyper leaves such a body unread over HTTP/1.1, but over
    /// HTTP/2 it sends what a body gives, which a HEAD answer MUST NOT carry: RFC 9110
    /// §9.3.2).
    head_only: bool,
    /// The request's place in its peer's count of HTTP/2 requests in flight, given back
    /// when the body is done with; boxed, as most requests (HTTP/1.1) have none and the
    /// body is moved whole several times on its way.
    slot: Option<Box<weft::policies::PeerSlot>>,
    /// HTTP/1.1: the hold on the end of the client's side, ended when the body is done
    /// with (`protocol::EndHold`).
    end: Option<std::rc::Rc<crate::protocol::EndHold>>,
}

impl Logged {
    /// `inner`, logged as `pending` says when it ends (not at all without it).
    pub(crate) fn new(inner: Body, pending: Option<Pending>, head_only: bool) -> Self {
        streams::response_made();
        Self {
            inner,
            pending,
            sent: 0,
            ended: false,
            head_only,
            slot: None,
            end: None,
        }
    }

    /// Ends `end`'s hold on the client's end when the body is done with.
    pub(crate) fn ending(mut self, end: Option<std::rc::Rc<crate::protocol::EndHold>>) -> Self {
        self.end = end;
        self
    }

    /// Holds `slot` until the body is done with.
    pub(crate) fn holding(mut self, slot: Option<Box<weft::policies::PeerSlot>>) -> Self {
        self.slot = slot;
        self
    }

    fn finish(&mut self, cut: Option<Cut>) {
        if let Some(p) = self.pending.take() {
            p.write(self.sent, cut);
        }
    }
}

impl Pending {
    /// Writes the request's line: `sent` body bytes, cut short for `cut` if it was.
    pub(crate) fn write(self, sent: u64, cut: Option<Cut>) {
        Entry {
            service: &self.service,
            client: &self.client,
            request: self.request.as_bytes(),
            status: self.status,
            bytes: sent,
            referer: self.referer.as_ref().map(HeaderValue::as_bytes),
            user_agent: self.user_agent.as_ref().map(HeaderValue::as_bytes),
            elapsed: self.started.elapsed(),
            cut,
        }
        .log(&self.to);
    }
}

impl HttpBody for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.head_only {
            streams::body_polled(false);
            this.ended = true;
            return Poll::Ready(None);
        }
        let Poll::Ready(polled) = Pin::new(&mut this.inner).poll_frame(cx) else {
            streams::body_pending();
            return Poll::Pending;
        };
        streams::body_polled(matches!(&polled, Some(Ok(frame)) if frame.is_data()));
        match polled {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                }
                // hyper stops polling a body that says it has ended, and after trailers,
                // which are always its last frame.
                if frame.is_trailers() || this.inner.is_end_stream() {
                    this.ended = true;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(err)) => {
                this.finish(Some(Cut::BodyFailed));
                Poll::Ready(Some(Err(err)))
            }
            None => {
                this.ended = true;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head_only || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // The inner body's, even with the head only: hyper takes a length it is given no
        // `Content-Length` for from here, and a HEAD answer's is that of the GET.
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if let Some(end) = self.end.take() {
            end.end();
        }
        if streams::body_cut() {
            self.finish(Some(Cut::SendTimeout));
            return;
        }
        let whole = self.ended || self.head_only || self.inner.is_end_stream();
        self.finish((!whole).then_some(Cut::ConnectionClosed));
    }
}

/// Appends [`clf_date`] of `t`, made once a second: every line of that second has it.
fn push_clf_date(out: &mut String, t: SystemTime) {
    thread_local! {
        static MADE: std::cell::RefCell<(u64, String)> =
            const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    MADE.with_borrow_mut(|(at, text)| {
        if *at != secs {
            *text = clf_date(t);
            *at = secs;
        }
        out.push_str(text);
    });
}

/// `10/Oct/2000:13:55:36 +0000`, from the HTTP date `Tue, 10 Oct 2000 13:55:36 GMT`.
fn clf_date(t: SystemTime) -> String {
    let http = httpdate::fmt_http_date(t);
    let parts: Vec<&str> = http.split(' ').collect();
    match parts.as_slice() {
        [_, day, month, year, time, _] => format!("{day}/{month}/{year}:{time} +0000"),
        _ => http,
    }
}

/// `raw` as a field value: like [`escape_into`], but `"` is left as it is (the log
/// format quotes its values itself).
fn escaped(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    escape(&mut out, raw, false);
    out
}

/// Appends `raw` with `"` and `\` backslash-escaped and any byte outside printable ASCII
/// as `\xHH`, like Apache does.
pub(crate) fn escape_into(out: &mut String, raw: &[u8]) {
    escape(out, raw, true);
}

fn escape(out: &mut String, raw: &[u8], quotes: bool) {
    for &b in raw {
        match b {
            b'"' if quotes => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_combined_log_format() {
        let entry = Entry {
            service: "web",
            client: "127.0.0.1",
            request: b"GET /index.html HTTP/1.1",
            status: 200,
            bytes: 42,
            referer: None,
            user_agent: Some(b"curl/8.0"),
            elapsed: Duration::from_millis(1),
            cut: None,
        };
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(971_186_136);
        assert_eq!(
            entry.line(at),
            "127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] \"GET /index.html HTTP/1.1\" 200 42 \"-\" \"curl/8.0\""
        );
        let cut = Entry {
            bytes: 0,
            cut: Some(Cut::ConnectionClosed),
            ..entry
        };
        assert_eq!(
            cut.line(at),
            "127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] \"GET /index.html HTTP/1.1\" 200 - \"-\" \"curl/8.0\" (cut short: the connection closed)"
        );
    }

    #[test]
    fn client_strings_cannot_break_the_line() {
        let mut out = String::new();
        escape_into(&mut out, b"evil\" \\ \n\x1b[31m\xff");
        assert_eq!(out, "evil\\\" \\\\ \\x0a\\x1b[31m\\xff");
        assert_eq!(
            escaped(b"evil\" \\ \n\x1b[31m\xff"),
            "evil\" \\\\ \\x0a\\x1b[31m\\xff",
            "a field keeps its quotes"
        );
    }
}
