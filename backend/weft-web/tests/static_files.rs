//! Static files over real loopback sockets: what a browser or curl gets.

mod support;

use support::Server;
use weft_web::WebConfig;

fn site() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("public");
    std::fs::create_dir_all(root.join("docs")).unwrap();
    std::fs::write(root.join("index.html"), "<h1>home</h1>").unwrap();
    std::fs::write(root.join("style.css"), "body{}").unwrap();
    std::fs::write(root.join("docs/index.html"), "docs").unwrap();
    std::fs::write(root.join("digits.txt"), "0123456789").unwrap();
    std::fs::write(root.join("big.bin"), vec![7u8; 600 * 1024]).unwrap();
    std::fs::write(dir.path().join("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("leak.txt")).unwrap();
    let server = Server::start(WebConfig {
        root: Some(root),
        ..WebConfig::default()
    });
    (dir, server)
}

#[test]
fn files_come_with_type_length_and_last_modified() {
    let (_dir, server) = site();
    let reply = server.get("/style.css");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "body{}");
    assert_eq!(
        reply.header("content-type"),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(reply.header("content-length"), Some("6"));
    assert!(
        reply
            .header("last-modified")
            .is_some_and(|d| d.ends_with("GMT"))
    );
    assert_eq!(server.recorded.count("GET", "2xx"), 1);
}

#[test]
fn directories_serve_their_index_and_redirect_without_a_slash() {
    let (_dir, server) = site();
    assert_eq!(server.get("/").text(), "<h1>home</h1>");
    assert_eq!(server.get("/docs/").text(), "docs");
    let redirect = server.get("/docs?x=1");
    assert_eq!(redirect.status, 301);
    assert_eq!(redirect.header("location"), Some("/docs/?x=1"));
}

#[test]
fn missing_hidden_and_escaping_paths_are_refused() {
    let (_dir, server) = site();
    assert_eq!(server.get("/nope.html").status, 404);
    assert_eq!(
        server.get("/leak.txt").status,
        404,
        "a symlink out of the root"
    );
    assert_eq!(server.get("/../secret.txt").status, 400);
    assert_eq!(server.get("/%2e%2e/secret.txt").status, 400);
    assert_eq!(server.get("/docs/%2e%2e%2f%2e%2e%2fsecret.txt").status, 400);
    let reply = server.get("/%2e%2e/secret.txt");
    assert!(!reply.text().contains("secret"), "{}", reply.text());
    assert_eq!(server.recorded.count("GET", "4xx"), 6);
}

#[test]
fn head_has_the_headers_and_no_body() {
    let (_dir, server) = site();
    let mut client = server.connect();
    let reply = client.request("HEAD /digits.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length"), Some("10"));
    // The connection is still usable, so no body bytes were left on it.
    let next = client.request("GET /digits.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(next.text(), "0123456789");
}

#[test]
fn if_modified_since_gets_304_and_a_stale_date_gets_the_file() {
    let (_dir, server) = site();
    let lm = server
        .get("/digits.txt")
        .header("last-modified")
        .unwrap()
        .to_owned();
    let mut client = server.connect();
    let fresh = client.request(&format!(
        "GET /digits.txt HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: {lm}\r\n\r\n"
    ));
    assert_eq!(fresh.status, 304);
    let stale = client.request(
        "GET /digits.txt HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n",
    );
    assert_eq!(stale.status, 200);
}

#[test]
fn byte_ranges_are_served_partially() {
    let (_dir, server) = site();
    let mut client = server.connect();
    let reply = client.request("GET /digits.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=2-4\r\n\r\n");
    assert_eq!(reply.status, 206);
    assert_eq!(reply.text(), "234");
    assert_eq!(reply.header("content-range"), Some("bytes 2-4/10"));
    let tail = client.request("GET /digits.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=-3\r\n\r\n");
    assert_eq!(tail.text(), "789");
    let past = client.request("GET /digits.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=50-\r\n\r\n");
    assert_eq!(past.status, 416);
    assert_eq!(past.header("content-range"), Some("bytes */10"));
}

#[test]
fn large_files_stream_whole_and_in_ranges() {
    let (_dir, server) = site();
    let mut client = server.connect();
    let whole = client.request("GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(whole.body.len(), 600 * 1024);
    assert!(whole.body.iter().all(|&b| b == 7));
    let part =
        client.request("GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=500000-500009\r\n\r\n");
    assert_eq!(part.body, vec![7u8; 10]);
}

#[test]
fn other_methods_get_405_with_allow() {
    let (_dir, server) = site();
    let reply = server
        .connect()
        .request("DELETE /digits.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(server.recorded.count("DELETE", "4xx"), 1);
}

/// RFC 9110 §9.3.7: OPTIONS of a path, or of the server (`*`), says what is allowed.
#[test]
fn options_is_answered_with_what_is_allowed() {
    let (_dir, server) = site();
    let mut client = server.connect();
    for target in ["*", "/digits.txt"] {
        let reply = client.request(&format!("OPTIONS {target} HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert_eq!(reply.status, 200, "{target}");
        assert_eq!(
            reply.header("allow"),
            Some("GET, HEAD, OPTIONS"),
            "{target}"
        );
        assert_eq!(reply.header("content-length"), Some("0"), "{target}");
        assert!(reply.body.is_empty(), "{target}");
    }
    assert_eq!(server.recorded.count("OPTIONS", "2xx"), 2);
}

#[test]
fn keep_alive_serves_many_requests_on_one_registered_connection() {
    let (_dir, server) = site();
    let mut client = server.connect();
    for _ in 0..5 {
        assert_eq!(
            client
                .request("GET /digits.txt HTTP/1.1\r\nHost: t\r\n\r\n")
                .status,
            200
        );
    }
    assert_eq!(server.connections(), ["web"]);
    assert_eq!(server.recorded.count("GET", "2xx"), 5);
}

/// A file dated in the future has no `Last-Modified` (see the conditional tests), and a
/// date in `If-Unmodified-Since` is not compared with anything (RFC 9110 §13.1.4: a
/// recipient MUST ignore it without a modification date): a client sending the `Date` it
/// got is answered, not refused 412; its `ETag` still validates.
#[test]
fn a_file_dated_in_the_future_is_judged_by_its_etag_alone() {
    let (dir, server) = site();
    let path = dir.path().join("public/future.txt");
    std::fs::write(&path, "later").unwrap();
    let year = std::time::Duration::from_secs(365 * 24 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + 100 * year)
        .unwrap();
    let sent = server.get("/future.txt");
    assert_eq!(sent.header("last-modified"), None);
    let date = sent.header("date").unwrap().to_owned();
    let again = server.connect().request(&format!(
        "GET /future.txt HTTP/1.1\r\nHost: t\r\nIf-Unmodified-Since: {date}\r\n\r\n"
    ));
    assert_eq!(again.status, 200, "{}", again.text());
    let tag = sent.header("etag").unwrap();
    let cached = server.connect().request(&format!(
        "GET /future.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: {tag}\r\n\r\n"
    ));
    assert_eq!(cached.status, 304);
}

/// A directory moved out of the root, a symlink to it put in its place: what the path now
/// leads to is outside the root, and is not served, though the file (the same inode, its
/// metadata unchanged) is what the path led to before.
#[test]
fn a_file_whose_directory_moved_out_of_the_root_is_no_longer_served() {
    let (dir, server) = site();
    let inside = dir.path().join("public/mv");
    std::fs::create_dir(&inside).unwrap();
    // Over what the cache holds in memory: read from disk each time.
    std::fs::write(inside.join("big.bin"), vec![1u8; 2 << 20]).unwrap();
    assert_eq!(server.get("/mv/big.bin").status, 200);
    let outside = dir.path().join("moved");
    std::fs::rename(&inside, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &inside).unwrap();
    assert_eq!(server.get("/mv/big.bin").status, 404);
    assert_eq!(server.get("/mv/other.bin").status, 404);
}
