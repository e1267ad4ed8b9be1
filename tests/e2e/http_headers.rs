//! `response_headers` on the real binary with curl: the service's fields on every answer
//! it gives (files, its error pages, proxied responses) that has none of the name, and a
//! route's on what its upstream answers, before the service's.

use std::net::SocketAddr;
use std::process::Command;

use crate::http_peers::{Upstream, web_service};

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
