//! hyper alone: the files of one directory, read once into memory, served over HTTP/1.1
//! keep-alive on a tokio current-thread runtime, with the header fields weft's answer
//! for a file carries (type, length, validators, `Accept-Ranges`) made once per file.
//! No routing, no path checks, no ranges or conditionals, no inspector, no metrics, no
//! log: the floor under weft's HTTP/1.1 path, measured beside it by `scripts/bench-http`
//! (`BENCH_SERVERS` with `hyper`).
//!
//! `cargo run --release -p weft-web --example bare_hyper -- 127.0.0.1:8080 DIR`

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

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

fn answer(files: &HashMap<String, File>, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    match files.get(request.uri().path()) {
        Some(file) => {
            let mut response = Response::new(Full::new(file.bytes.clone()));
            *response.headers_mut() = file.head.clone();
            response
        }
        None => {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(dir)) = (args.next(), args.next()) else {
        eprintln!("usage: bare_hyper ADDR DIR");
        std::process::exit(2);
    };
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let files = Rc::new(files(&dir)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let files = files.clone();
            tokio::task::spawn_local(async move {
                let service = service_fn(move |request| {
                    let response = answer(&files, &request);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
