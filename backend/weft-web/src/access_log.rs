//! The access log: one Combined Log Format line per request, through `tracing` (target
//! `weft_web::access`), with every client-controlled string escaped so a request cannot
//! forge log lines or terminal escapes.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

/// What one log line says.
pub(crate) struct Entry<'a> {
    pub(crate) service: &'a str,
    /// The client's address (without port), or `-`.
    pub(crate) client: &'a str,
    /// The request line (method, target, version); `-` for a malformed request.
    pub(crate) request: &'a [u8],
    pub(crate) status: u16,
    /// Body bytes sent, when known in advance.
    pub(crate) bytes: Option<u64>,
    pub(crate) referer: Option<&'a [u8]>,
    pub(crate) user_agent: Option<&'a [u8]>,
    pub(crate) elapsed: Duration,
}

impl Entry<'_> {
    /// Logs the line.
    pub(crate) fn log(&self) {
        if !tracing::enabled!(target: "weft_web::access", tracing::Level::INFO) {
            return;
        }
        let line = self.line(SystemTime::now());
        tracing::info!(target: "weft_web::access", service = self.service, took = ?self.elapsed, "{line}");
    }

    /// `host - - [date] "request" status bytes "referer" "user-agent"`.
    pub(crate) fn line(&self, now: SystemTime) -> String {
        let mut out = String::with_capacity(160);
        let bytes = self.bytes.map_or_else(|| "-".to_owned(), |b| b.to_string());
        let _ = write!(out, "{} - - [{}] \"", self.client, clf_date(now));
        escape_into(&mut out, self.request);
        let _ = write!(out, "\" {} {bytes} \"", self.status);
        escape_into(&mut out, self.referer.unwrap_or(b"-"));
        out.push_str("\" \"");
        escape_into(&mut out, self.user_agent.unwrap_or(b"-"));
        out.push('"');
        out
    }
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

/// Appends `raw` with `"` and `\` backslash-escaped and any byte outside printable ASCII
/// as `\xHH`, like Apache does.
pub(crate) fn escape_into(out: &mut String, raw: &[u8]) {
    for &b in raw {
        match b {
            b'"' => out.push_str("\\\""),
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
            bytes: Some(42),
            referer: None,
            user_agent: Some(b"curl/8.0"),
            elapsed: Duration::from_millis(1),
        };
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(971_186_136);
        assert_eq!(
            entry.line(at),
            "127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] \"GET /index.html HTTP/1.1\" 200 42 \"-\" \"curl/8.0\""
        );
    }

    #[test]
    fn client_strings_cannot_break_the_line() {
        let mut out = String::new();
        escape_into(&mut out, b"evil\" \\ \n\x1b[31m\xff");
        assert_eq!(out, "evil\\\" \\\\ \\x0a\\x1b[31m\\xff");
    }
}
