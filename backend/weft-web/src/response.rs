//! Responses the service makes itself: short plain-text error pages that never echo
//! what the client sent, and the redirect of plain HTTP to HTTPS.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::body::{self, Body};

/// A response with `status` and `body`.
pub(crate) fn with_status(status: StatusCode, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

/// `404 Not Found: not found` and the like, as text/plain.
pub(crate) fn error_page(status: StatusCode, detail: &str) -> Response<Body> {
    let reason = status.canonical_reason().unwrap_or("");
    let text = format!("{} {reason}: {detail}\n", status.as_u16());
    let len = text.len();
    let mut response = with_status(status, body::full(text));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response.extensions_mut().insert(OwnPage);
    response
}

/// Marks an error response the service made itself ([`error_page`]), which a configured
/// page may replace ([`own_page`]); an upstream's is relayed as it came.
#[derive(Debug, Clone, Copy)]
struct OwnPage;

/// `response` with the body of its status's page among `pages`, when it is an error the
/// service made itself and a page answers its status: the status and the other fields
/// (`Retry-After`, `Allow`, `Connection`) kept.
pub(crate) fn own_page(response: &mut Response<Body>, pages: &[crate::config::ErrorPage]) {
    if response.extensions().get::<OwnPage>().is_none() {
        return;
    }
    let Some(page) = pages.iter().find(|p| p.status == response.status()) else {
        return;
    };
    *response.body_mut() = body::full(page.body.clone());
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, page.content_type.clone());
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(page.body.len()));
}

/// Where ACME's HTTP-01 challenges are fetched (RFC 8555 §8.3): over plain HTTP, which a
/// redirect to HTTPS must leave them.
const ACME_CHALLENGES: &str = "/.well-known/acme-challenge/";

/// Whether a request for `path` (in normal form) is redirected to HTTPS by a service
/// that redirects plain HTTP: all but ACME's challenges, and `OPTIONS *`, which asks of
/// the server rather than of a resource and has no URL to send anywhere.
pub(crate) fn redirected_to_https(path: &str) -> bool {
    !path.starts_with(ACME_CHALLENGES) && path != "*"
}

/// The redirect of a request over plain HTTP to the same URL over HTTPS on `port`
/// (left out when 443): 301 for GET and HEAD, 308 for the other methods, which must be
/// sent again as they were (RFC 9110 §15.4.2, RFC 7538). `None` when the request names no
/// host, which the URL needs.
pub(crate) fn https_redirect(head: &http::request::Parts, port: u16) -> Option<Response<Body>> {
    let host = head.headers.get(header::HOST)?.to_str().ok()?;
    // The host without its port: `[::1]:8080` is `[::1]`, `a.example:80` is `a.example`.
    let name = match host.rfind(':') {
        Some(colon) if !host[colon..].contains(']') => &host[..colon],
        _ => host,
    };
    if name.is_empty() {
        return None;
    }
    let target = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let location = match port {
        443 => format!("https://{name}{target}"),
        port => format!("https://{name}:{port}{target}"),
    };
    let location = HeaderValue::try_from(location).ok()?;
    let status = match head.method {
        http::Method::GET | http::Method::HEAD => StatusCode::MOVED_PERMANENTLY,
        _ => StatusCode::PERMANENT_REDIRECT,
    };
    // The page names the status only: the URL is in `Location`, never in a body.
    let mut response = error_page(status, "this service is served over https");
    response.headers_mut().insert(header::LOCATION, location);
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(
        method: &str,
        host: Option<&str>,
        target: &str,
        port: u16,
    ) -> Option<(u16, String)> {
        let mut request = http::Request::builder().method(method).uri(target);
        if let Some(host) = host {
            request = request.header(header::HOST, host);
        }
        let (head, ()) = request.body(()).unwrap().into_parts();
        https_redirect(&head, port).map(|r| {
            let location = r.headers()[header::LOCATION].to_str().unwrap().to_owned();
            (r.status().as_u16(), location)
        })
    }

    #[test]
    fn a_plain_request_is_sent_to_its_https_url_keeping_the_method_when_it_must() {
        assert_eq!(
            redirect("GET", Some("a.example:8080"), "/x/y?q=1", 443),
            Some((301, "https://a.example/x/y?q=1".into()))
        );
        assert_eq!(
            redirect("HEAD", Some("A.example"), "/", 8443),
            Some((301, "https://A.example:8443/".into()))
        );
        assert_eq!(
            redirect("POST", Some("[2001:db8::1]:80"), "/form", 443),
            Some((308, "https://[2001:db8::1]/form".into()))
        );
        assert_eq!(
            redirect("PUT", Some("[2001:db8::1]"), "/f", 8443),
            Some((308, "https://[2001:db8::1]:8443/f".into()))
        );
        assert_eq!(redirect("GET", None, "/", 443), None, "no host to name");
        assert!(!redirected_to_https("/.well-known/acme-challenge/token"));
        assert!(redirected_to_https("/.well-known/acme-challenge"));
        assert!(redirected_to_https("/index.html"));
        assert!(!redirected_to_https("*"), "OPTIONS *");
    }
}
