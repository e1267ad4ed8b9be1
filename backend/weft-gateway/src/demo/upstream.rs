//! The demo's upstreams, which the built-in `web` route and `dns` forwarder point at:
//!
//! - `demo-api` ([`API_LISTEN`](super::API_LISTEN)): a small HTTP/1.1 server written as
//!   a weft protocol on a `LineReceiver`, as `twisted.web.http` is: a request line,
//!   headers to a blank line, one JSON answer, close. `/api/slow` is answered later than
//!   the stall threshold (a `call_later`), so the chains waiting on it stall;
//!   `/api/flaky` answers 503; any other `/api/` path answers at once.
//! - `demo-dns` ([`DNS_LISTEN`](super::DNS_LISTEN)): a `weft-names` server for the zone
//!   `upstream.test`, so forwarded questions get real answers.
//!
//! Both are bounded like any service: an idle timeout, the default cap per peer, at most
//! [`MAX_HEADERS`] header lines of at most 16 KiB each.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use weft::framing::{LineContext, LineHandler, LineReceiver};
use weft::{CloseReason, DelayedCall, ListenOptions, Reactor, Transport, call_later, factory};
use weft_names::{DnsConfig, ServiceMetrics};

use crate::app::GatewayError;

/// Header lines one request may send.
const MAX_HEADERS: usize = 100;

/// How long a connection to an upstream may sit idle: longer than a slow answer.
const IDLE: Duration = Duration::from_secs(60);

/// Starts both upstreams; `slow` is how long `/api/slow` takes.
pub(crate) fn start(reactor: &Reactor, slow: Duration) -> Result<(), GatewayError> {
    let listen_error = |service: &str| {
        let service = service.to_owned();
        move |source: weft::ListenError| GatewayError::Start {
            service,
            source: source.into(),
        }
    };
    let requests = Rc::new(Cell::new(0u64));
    reactor
        .listen_with(
            super::API_SERVICE,
            super::API_LISTEN,
            &ListenOptions::new().idle_timeout(Some(IDLE)),
            factory(move || {
                LineReceiver::new(Api {
                    slow,
                    requests: requests.clone(),
                    request_line: None,
                    headers: 0,
                    answer_later: None,
                })
            }),
        )
        .map_err(listen_error(super::API_SERVICE))?;
    let config = DnsConfig {
        zones: super::content::upstream_zones(),
        ..DnsConfig::default()
    };
    weft_names::listen(
        reactor,
        super::DNS_SERVICE,
        &[super::DNS_LISTEN.to_owned()],
        &ListenOptions::new().idle_timeout(Some(IDLE)),
        config,
        ServiceMetrics::detached(super::DNS_SERVICE),
    )
    .map_err(|e| GatewayError::Start {
        service: super::DNS_SERVICE.into(),
        source: e.into(),
    })?;
    Ok(())
}

/// One connection to `demo-api`.
struct Api {
    /// How late `/api/slow` is answered: past `stall_after`, so its chain stalls.
    slow: Duration,
    /// Requests answered so far, across connections.
    requests: Rc<Cell<u64>>,
    /// The request being read; `None` until its first line is in.
    request_line: Option<String>,
    /// Header lines read after it, bounded so a client cannot send them forever.
    headers: usize,
    /// The answer to `/api/slow`, due later; cancelled if the client goes first.
    answer_later: Option<DelayedCall>,
}

impl LineHandler for Api {
    fn line_received(&mut self, ctx: &mut LineContext<'_>, line: &[u8]) {
        let Some(request) = &self.request_line else {
            self.request_line = Some(String::from_utf8_lossy(line).into_owned());
            return;
        };
        if !line.is_empty() {
            self.headers += 1;
            if self.headers > MAX_HEADERS {
                answer(
                    ctx.transport(),
                    request,
                    431,
                    &error("too many header lines"),
                );
            }
            return;
        }
        // The head is complete. One exchange per connection: a client that sends more
        // is not listened to.
        ctx.set_raw_mode();
        let target = request.split(' ').nth(1).unwrap_or("/");
        let path = target.split('?').next().unwrap_or("/").to_owned();
        let n = self.requests.get() + 1;
        self.requests.set(n);
        match path.as_str() {
            "/api/slow" => {
                let (transport, request, slow) =
                    (ctx.transport().clone(), request.clone(), self.slow);
                self.answer_later = Some(call_later(slow, move || {
                    let body = serde_json::json!({
                        "path": path,
                        "served_by": super::API_SERVICE,
                        "request": n,
                        "answered_after_ms": slow.as_millis() as u64,
                    });
                    answer(&transport, &request, 200, &body);
                }));
            }
            "/api/flaky" => answer(
                ctx.transport(),
                request,
                503,
                &error("this one fails on purpose, to show a failed chain"),
            ),
            p if p.starts_with("/api/") => {
                let body = serde_json::json!({
                    "path": path,
                    "served_by": super::API_SERVICE,
                    "request": n,
                });
                answer(ctx.transport(), request, 200, &body);
            }
            _ => answer(ctx.transport(), request, 404, &error("no such path")),
        }
    }

    fn connection_lost(&mut self, _reason: &CloseReason) {
        if let Some(call) = self.answer_later.take()
            && call.active()
        {
            let _ = call.cancel();
        }
    }
}

fn error(message: &str) -> serde_json::Value {
    serde_json::json!({ "error": message })
}

/// Sends one answer (no body to a `HEAD`) and closes once it is written.
fn answer(transport: &Transport, request: &str, status: u16, body: &serde_json::Value) {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    transport.write(head.as_bytes());
    if !request.starts_with("HEAD ") {
        transport.write(body.as_bytes());
    }
    transport.lose_connection();
}
