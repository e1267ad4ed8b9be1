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

/// `error_pages` answer the service's own errors with the configured page, keeping the
/// status and the fields that say why.
#[test]
fn error_pages_replace_the_service_s_own_errors() {
    let upstream = Upstream::start();
    let dead = crate::support::free_port();
    let web = crate::support::free_port();
    let app = crate::support::spawn_app_with(|dir| {
        let root = dir.join("public");
        std::fs::create_dir_all(root.join("errors")).unwrap();
        std::fs::write(root.join("errors/404.html"), "<h1>not here</h1>\n").unwrap();
        std::fs::write(root.join("errors/down.html"), "<h1>down</h1>\n").unwrap();
        std::fs::write(root.join("errors/slow.html"), "<h1>slow down</h1>\n").unwrap();
        format!(
            "[[service]]\nname = \"web\"\nkind = \"http\"\n\
                 listen = \"tcp:{web}:interface=127.0.0.1\"\nroot = \"{root}\"\n\
                 error_pages = {{ 404 = \"/errors/404.html\", 502 = \"/errors/down.html\", \
                 429 = \"/errors/slow.html\" }}\n\
                 [[service.route]]\nprefix = \"/dead/\"\nupstream = \"http://127.0.0.1:{dead}\"\n\
                 [[service.route]]\nprefix = \"/api/\"\nupstream = \"http://{up}\"\n\
                 rate_limit = {{ requests_per_second = 1, burst = 1 }}\n",
            root = root.display(),
            up = upstream.addr,
        )
    });
    let web: std::net::SocketAddr = ([127, 0, 0, 1], web).into();
    let get = |path: &str| {
        crate::http_peers::exchange(
            web,
            &format!("GET {path} HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n"),
        )
    };
    let missing = get("/nothing.txt");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.text(), "<h1>not here</h1>\n");
    assert_eq!(
        missing.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let down = get("/dead/x");
    assert_eq!(down.status, 502);
    assert_eq!(down.text(), "<h1>down</h1>\n");
    // The upstream answers; the second request is over the route's budget.
    assert_eq!(get("/api/x").status, 200);
    let limited = get("/api/x");
    assert_eq!(limited.status, 429);
    assert_eq!(limited.text(), "<h1>slow down</h1>\n");
    assert!(
        limited.header("retry-after").is_some(),
        "the reason's field kept"
    );
    drop(app);
}
