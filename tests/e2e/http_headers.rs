//! `response_headers` on the real binary with curl: the service's fields on every answer
//! it gives (files, its error pages, proxied responses) that has none of the name, and a
//! route's on what its upstream answers, before the service's.

use std::net::SocketAddr;
use std::process::Command;

use crate::http_peers::{Upstream, curl_status, web_service};

/// The head of the answer to `path`, lower-cased.
fn head(web: SocketAddr, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-D", "-", "-o", "/dev/null"])
        .arg(format!("http://{web}{path}"))
        .output()
        .expect("curl must be installed");
    String::from_utf8_lossy(&out.stdout).to_ascii_lowercase()
}

#[test]
fn the_service_s_fields_go_on_every_answer_and_a_route_s_on_its_upstream_s() {
    let upstream = Upstream::start();
    let (_app, web) = web_service(&format!(
        r#"response_headers = {{ "X-Content-Type-Options" = "nosniff", "X-Frame-Options" = "DENY" }}
[[service.route]]
prefix = "/api/"
upstream = "http://{upstream}"
response_headers = {{ "X-Frame-Options" = "SAMEORIGIN", "Cache-Status" = "edge; fwd=uri-miss" }}
"#,
        upstream = upstream.addr,
    ));
    let file = head(web, "/f.txt");
    assert!(file.starts_with("http/1.1 200"), "{file}");
    assert!(
        file.contains("\r\nx-content-type-options: nosniff\r\n"),
        "{file}"
    );
    assert!(file.contains("\r\nx-frame-options: deny\r\n"), "{file}");
    assert!(
        !file.contains("cache-status"),
        "a route's fields stay on its route: {file}"
    );
    // The service's own error pages too.
    let missing = head(web, "/missing");
    assert!(missing.starts_with("http/1.1 404"), "{missing}");
    assert!(
        missing.contains("\r\nx-content-type-options: nosniff\r\n"),
        "{missing}"
    );
    // The route's first, then the service's where the route set none.
    let proxied = head(web, "/api/x");
    assert!(proxied.starts_with("http/1.1 200"), "{proxied}");
    assert!(
        proxied.contains("\r\nx-frame-options: sameorigin\r\n"),
        "{proxied}"
    );
    assert_eq!(proxied.matches("x-frame-options").count(), 1, "{proxied}");
    assert!(
        proxied.contains("\r\ncache-status: edge; fwd=uri-miss\r\n"),
        "{proxied}"
    );
    assert!(
        proxied.contains("\r\nx-content-type-options: nosniff\r\n"),
        "{proxied}"
    );
}

/// A route's `request_headers` set fields on what goes upstream, over the client's, and
/// remove those given no value; the services list names them without their values.
#[test]
fn a_route_s_request_headers_replace_and_remove_the_client_s() {
    let upstream = Upstream::start();
    let (app, web) = web_service(&format!(
        "[[service.route]]\nprefix = \"/api/\"\nupstream = \"http://{}\"\n\
         request_headers = {{ Host = \"app.example\", \"X-Api-Key\" = \"s3cret\", \
         \"Accept-Encoding\" = \"\" }}\n",
        upstream.addr
    ));
    let fields = ["X-Api-Key: forged", "Accept-Encoding: gzip"];
    assert_eq!(curl_status(web, "127.0.0.1", "/api/x", &fields), 200);
    assert_eq!(upstream.header(0, "host"), ["app.example"]);
    assert_eq!(upstream.header(0, "x-api-key"), ["s3cret"]);
    assert!(upstream.header(0, "accept-encoding").is_empty());
    // The client's host still goes as X-Forwarded-Host.
    assert_eq!(upstream.header(0, "x-forwarded-host"), [web.to_string()]);
    let services = app.curl("/api/services").unwrap_or_default();
    assert!(services.contains("x-api-key"), "{services}");
    assert!(
        !services.contains("s3cret"),
        "a value is not shown: {services}"
    );
}
