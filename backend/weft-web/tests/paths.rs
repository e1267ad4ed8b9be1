//! Request paths are put in normal form once, before routing (RFC 3986 §6.2.2: unreserved
//! characters decoded, dot segments removed), so a proxied request never reaches an
//! upstream path outside its route, and a path whose encoded dots or slashes would route
//! it elsewhere is refused.

mod support;

use support::Server;
use support::upstream::{ok, targets, upstream};
use weft_web::{Route, WebConfig};

/// `/api/` forwards paths unchanged; `/v1/` and `/v2` replace their prefix with `/base`.
/// Static files come from `public/`, beside a `secret.txt` that must never be served.
fn site() -> (tempfile::TempDir, Server, [support::upstream::Log; 3]) {
    let (api, api_seen) = upstream(ok);
    let (v1, v1_seen) = upstream(ok);
    let (v2, v2_seen) = upstream(ok);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("public");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), "home").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "secret").unwrap();
    let server = Server::start(WebConfig {
        root: Some(root),
        routes: vec![
            Route::new("/api/", &format!("http://{api}")).unwrap(),
            Route::new("/v1/", &format!("http://{v1}/base")).unwrap(),
            Route::new("/v2", &format!("http://{v2}/base")).unwrap(),
        ],
        ..WebConfig::default()
    });
    (dir, server, [api_seen, v1_seen, v2_seen])
}

#[test]
fn dot_segments_and_encoded_separators_never_leave_a_route() {
    let (_dir, server, [api, v1, v2]) = site();
    for (path, status) in [
        // Resolved before routing: this is `/secret.txt`, a static file that is not there.
        ("/api/../secret.txt", 404),
        // Encoded dots or slashes that would move the request to another route.
        ("/api/%2e%2e/secret.txt", 400),
        ("/api/%2E%2E/secret.txt", 400),
        ("/api/..%2fsecret.txt", 400),
        ("/api/%2e%2e%2fsecret.txt", 400),
        ("/api/..%5csecret.txt", 400),
        ("/api/..\\secret.txt", 400),
        // Climbing above the root.
        ("/v1/../../secret.txt", 400),
        ("/v1/%2e%2e/%2e%2e/secret.txt", 400),
        ("/../secret.txt", 400),
        // Dot segments with a path parameter, which servers that strip parameters take as
        // dot segments.
        ("/api/..;/secret.txt", 400),
        ("/api/..;x=1/secret.txt", 400),
        ("/api/.;/x", 400),
        ("/api/..%3b/secret.txt", 400),
        // A prefix matches whole segments: `/v2..` is not under `/v2`.
        ("/v2../secret.txt", 404),
        ("/v2%2e%2e/secret.txt", 404),
    ] {
        let reply = server.get(path);
        assert_eq!(reply.status, status, "{path}: {}", reply.text());
        assert!(!reply.text().contains("secret\n"), "{path}");
    }
    assert!(targets(&api).is_empty(), "{:?}", targets(&api));
    assert!(targets(&v1).is_empty(), "{:?}", targets(&v1));
    assert!(targets(&v2).is_empty(), "{:?}", targets(&v2));
    assert_eq!(server.recorded.count("GET", "4xx"), 16);
    assert_eq!(server.recorded.refused("path"), 13);
}

#[test]
fn paths_inside_a_route_reach_it_in_normal_form() {
    let (_dir, server, [api, v1, v2]) = site();
    for path in [
        "/api/a/../b",
        "/api/./x/%2e/y",
        "/%61pi/%7Euser",
        "/api/%2fkept%2F",
        "/v1/a/b/../../c?q=../x",
        "/v2",
        "/v2/d",
    ] {
        assert_eq!(server.get(path).status, 200, "{path}");
    }
    assert_eq!(
        targets(&api),
        ["/api/b", "/api/x/y", "/api/~user", "/api/%2Fkept%2F"]
    );
    assert_eq!(targets(&v1), ["/base/c?q=../x"]);
    assert_eq!(targets(&v2), ["/base", "/base/d"]);
}
