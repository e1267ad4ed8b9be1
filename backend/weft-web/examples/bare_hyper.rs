//! hyper alone: the files of one directory, read once into memory, served over HTTP/1.1
//! keep-alive on a tokio current-thread runtime, with the header fields weft's answer
//! for a file carries (type, length, validators, `Accept-Ranges`) made once per file.
//! With an upstream, requests under `/proxy/` go to it instead, over one keep-alive
//! hyper client connection per client connection (made at its first such request), with
//! the forwarding fields weft sends (`X-Forwarded-For`, `X-Real-IP`, `X-Forwarded-Host`,
//! `X-Forwarded-Proto`, `Forwarded`; the client's `Host` kept) and the answer's body
//! streamed back as it comes.
//! No routing, no path checks, no ranges or conditionals, no pool, no inspector, no
//! metrics, no log: the floor under weft's HTTP/1.1 path, measured beside it by
//! `scripts/bench-http` (`BENCH_SERVERS` with `hyper`). It allocates with the gateway's
//! allocator (mimalloc), and `scripts/build-pgo` builds it profile-guided beside weft, so
//! the floor is built as weft is: glibc's malloc cost it 8% more instructions a proxied
//! request, and a build without a profile about a third more than one with.
//! It stops on SIGINT or SIGTERM, returning from `main` (a profile-generating build
//! writes its counts then).
//!
//! `cargo run --release -p weft-web --example bare_hyper -- 127.0.0.1:8080 DIR [UPSTREAM]`

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::signal::unix::{SignalKind, signal};

/// An answer from memory, or an upstream's streamed through.
type Answer = Response<Either<Full<Bytes>, Incoming>>;

/// A file's bytes and the head of its answer.
struct File {
    bytes: Bytes,
    head: HeaderMap,
}

fn files(dir: &str) -> std::io::Result<HashMap<String, File>> {
    let mut files = HashMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let bytes = Bytes::from(std::fs::read(entry.path())?);
        let modified = entry.metadata()?.modified()?;
        let kind = match name.rsplit_once('.') {
            Some((_, "html")) => "text/html; charset=utf-8",
            _ => "application/octet-stream",
        };
        let value = |text: String| HeaderValue::from_str(&text).expect("a header value");
        let mut head = HeaderMap::new();
        head.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
        head.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        head.insert(header::CONTENT_LENGTH, bytes.len().into());
        head.insert(
            header::LAST_MODIFIED,
            value(httpdate::fmt_http_date(modified)),
        );
        head.insert(header::ETAG, value(format!("\"{:x}\"", bytes.len())));
        files.insert(format!("/{name}"), File { bytes, head });
    }
    Ok(files)
}

fn answer(files: &HashMap<String, File>, request: &Request<Incoming>) -> Answer {
    match files.get(request.uri().path()) {
        Some(file) => {
            let mut response = Response::new(Either::Left(Full::new(file.bytes.clone())));
            *response.headers_mut() = file.head.clone();
            response
        }
        None => status(StatusCode::NOT_FOUND),
    }
}

fn status(status: StatusCode) -> Answer {
    let mut response = Response::new(Either::Left(Full::new(Bytes::new())));
    *response.status_mut() = status;
    response
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// One client connection's way to the upstream: its address, the client's (made into
/// its field values once, as weft does), and the connection to it once made.
struct Link {
    upstream: SocketAddr,
    /// `X-Forwarded-For`'s entry.
    client: HeaderValue,
    /// `for=ADDRESS;`, the start of the `Forwarded` element.
    for_client: String,
    sender: RefCell<Option<SendRequest<Incoming>>>,
}

impl Link {
    async fn forward(&self, mut request: Request<Incoming>) -> Answer {
        let headers = request.headers_mut();
        headers.remove(header::CONNECTION);
        let host = headers.get(header::HOST).cloned();
        headers.append(X_FORWARDED_FOR, self.client.clone());
        headers.insert(X_REAL_IP, self.client.clone());
        let mut forwarded = String::with_capacity(64);
        forwarded.push_str(&self.for_client);
        if let Some(host) = &host {
            headers.insert(X_FORWARDED_HOST, host.clone());
            if let Ok(host) = host.to_str() {
                forwarded.push_str("host=\"");
                forwarded.push_str(host);
                forwarded.push_str("\";");
            }
        }
        forwarded.push_str("proto=http");
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        headers.append(
            FORWARDED,
            HeaderValue::from_str(&forwarded).expect("printable"),
        );
        // Taken out while the exchange runs (one at a time on an HTTP/1.1 connection)
        // and put back once the answer's head is in.
        let sender = self.sender.borrow_mut().take();
        let mut sender = match sender {
            Some(sender) if !sender.is_closed() => sender,
            _ => match self.connect().await {
                Ok(sender) => sender,
                Err(_) => return status(StatusCode::BAD_GATEWAY),
            },
        };
        if sender.ready().await.is_err() {
            return status(StatusCode::BAD_GATEWAY);
        }
        let answer = sender.send_request(request).await;
        *self.sender.borrow_mut() = Some(sender);
        match answer {
            Ok(response) => response.map(Either::Right),
            Err(_) => status(StatusCode::BAD_GATEWAY),
        }
    }

    async fn connect(&self) -> Result<SendRequest<Incoming>, Box<dyn std::error::Error>> {
        let stream = tokio::net::TcpStream::connect(self.upstream).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::task::spawn_local(connection);
        Ok(sender)
    }
}

#[global_allocator]
static ALLOCATOR: weft_alloc::Allocator = weft_alloc::Allocator;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(dir)) = (args.next(), args.next()) else {
        eprintln!("usage: bare_hyper ADDR DIR [UPSTREAM]");
        std::process::exit(2);
    };
    let address = |text: String| {
        text.parse::<SocketAddr>()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    };
    let addr = address(addr)?;
    let upstream = args.next().map(address).transpose()?;
    let files = Rc::new(files(&dir)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => accepted?,
                _ = terminate.recv() => return Ok(()),
                _ = interrupt.recv() => return Ok(()),
            };
            stream.set_nodelay(true)?;
            let files = files.clone();
            let link = upstream.map(|upstream| {
                let client = peer.ip().to_string();
                let for_client = match peer.ip() {
                    IpAddr::V4(_) => format!("for={client};"),
                    IpAddr::V6(_) => format!("for=\"[{client}]\";"),
                };
                Rc::new(Link {
                    upstream,
                    client: HeaderValue::from_str(&client).expect("an address"),
                    for_client,
                    sender: RefCell::new(None),
                })
            });
            tokio::task::spawn_local(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    // A file is answered here, before the future: the request goes at
                    // once, as in a handler that needs nothing of it once answered.
                    let link = match &link {
                        Some(link) if request.uri().path().starts_with("/proxy/") => {
                            Some(link.clone())
                        }
                        _ => None,
                    };
                    let response = match link {
                        None => Ok(answer(&files, &request)),
                        Some(link) => Err((link, request)),
                    };
                    async move {
                        Ok::<_, std::convert::Infallible>(match response {
                            Ok(response) => response,
                            Err((link, request)) => link.forward(request).await,
                        })
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
