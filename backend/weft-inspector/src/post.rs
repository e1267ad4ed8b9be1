//! One `POST` to a receiver outside (an on-call tool, an OpenTelemetry collector), on a
//! connection of its own, from the inspector's thread.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper_util::rt::TokioIo;

/// What is wrong with a receiver's URL.
pub(crate) enum UrlProblem {
    /// Not a URL at all.
    Malformed(String),
    /// Not `http://`.
    Scheme,
    /// No host.
    Host,
}

/// An `http://` URL with a host: the only kind posted to (TLS goes through a local relay).
pub(crate) fn http_url(url: &str) -> Result<Uri, UrlProblem> {
    let url: Uri = url
        .parse()
        .map_err(|e| UrlProblem::Malformed(format!("{e}")))?;
    if url.scheme_str() != Some("http") {
        return Err(UrlProblem::Scheme);
    }
    if url.host().is_none_or(str::is_empty) {
        return Err(UrlProblem::Host);
    }
    Ok(url)
}

/// One `POST` on a connection of its own; the failure's reason label.
pub(crate) async fn post(
    url: &Uri,
    content_type: &'static str,
    body: Bytes,
) -> Result<(), &'static str> {
    let host = url.host().unwrap_or_default();
    let port = url.port_u16().unwrap_or(80);
    // An IPv6 literal comes bracketed in a URL; the socket wants it bare.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let stream = tokio::net::TcpStream::connect((bare, port))
        .await
        .map_err(|_| "connect")?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| "connect")?;
    let connection = tokio::spawn(connection);
    let authority = url
        .authority()
        .map_or_else(|| host.to_owned(), |a| a.as_str().to_owned());
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let request = hyper::Request::post(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .header(hyper::header::USER_AGENT, "weft")
        .body(Full::new(body))
        .map_err(|_| "status")?;
    let response = sender.send_request(request).await.map_err(|_| "status");
    connection.abort();
    if response?.status().is_success() {
        Ok(())
    } else {
        Err("status")
    }
}
