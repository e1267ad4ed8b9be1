//! Files held in memory (a site built into a program), served over real loopback sockets
//! by the same code and rules as a root directory.

mod support;

use support::Server;
use weft_web::{EmbeddedFiles, HttpService, NoRecorder, WebConfig};

fn files() -> EmbeddedFiles {
    EmbeddedFiles::new([
        ("index.html", &b"<h1>home</h1>"[..]),
        ("style.css", b"body{}"),
        ("docs/index.html", b"docs"),
        ("docs/guide/part.txt", b"0123456789"),
        (".well-known/security.txt", b"Contact: x"),
    ])
    .unwrap()
}

fn site() -> Server {
    Server::start(WebConfig {
        embedded: Some(files()),
        ..WebConfig::default()
    })
}

#[test]
fn embedded_files_come_with_type_length_and_last_modified() {
    let server = site();
    let reply = server.get("/style.css");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "body{}");
    assert_eq!(
        reply.header("content-type"),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(reply.header("content-length"), Some("6"));
    let lm = reply.header("last-modified").unwrap().to_owned();
    let mut client = server.connect();
    let fresh = client.request(&format!(
        "GET /style.css HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: {lm}\r\n\r\n"
    ));
    assert_eq!(fresh.status, 304);
    let head = client.request("HEAD /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        (head.status, head.header("content-length")),
        (200, Some("6"))
    );
    assert_eq!(server.recorded.count("GET", "2xx"), 1);
}

#[test]
fn embedded_directories_serve_their_index_and_redirect_without_a_slash() {
    let server = site();
    assert_eq!(server.get("/").text(), "<h1>home</h1>");
    assert_eq!(server.get("/docs/").text(), "docs");
    let redirect = server.get("/docs?x=1");
    assert_eq!(redirect.status, 301);
    assert_eq!(redirect.header("location"), Some("/docs/?x=1"));
    assert_eq!(
        server.get("/docs/guide/").status,
        404,
        "a directory without an index"
    );
    assert_eq!(server.get("/docs/guide").status, 301);
    assert_eq!(server.get("/docs//guide/part.txt").text(), "0123456789");
}

#[test]
fn embedded_files_follow_the_path_rules_of_a_root() {
    let server = site();
    assert_eq!(server.get("/nope.html").status, 404);
    assert_eq!(server.get("/docs/../style.css").text(), "body{}");
    assert_eq!(server.get("/%2e%2e/style.css").status, 400);
    assert_eq!(server.get("/docs/%2e%2e%2fstyle.css").status, 400);
    assert_eq!(server.get("/.well-known/security.txt").status, 200);
    assert_eq!(server.get("/inde").status, 404, "a prefix is not a file");
    assert_eq!(server.get("/doc").status, 404, "nor a directory");
    let mut client = server.connect();
    let part =
        client.request("GET /docs/guide/part.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=2-4\r\n\r\n");
    assert_eq!((part.status, part.text().as_str()), (206, "234"));
    let delete = client.request("DELETE /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(delete.status, 405);
}

#[test]
fn names_that_could_never_be_served_are_refused_when_embedding() {
    for name in [
        "",
        "/abs.html",
        "a//b",
        "a/../b",
        "./a",
        ".env",
        "a/.git/x",
        "a/",
    ] {
        let err = EmbeddedFiles::new([(name, &b"x"[..])]).unwrap_err();
        assert!(err.to_string().contains(&format!("{name:?}")), "{err}");
    }
    let err = EmbeddedFiles::new([("a", &b"x"[..]), ("a/b", b"y")]).unwrap_err();
    assert!(
        err.to_string().contains("both a file and a directory"),
        "{err}"
    );
}

#[test]
fn a_root_and_embedded_files_together_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = WebConfig {
        root: Some(dir.path().to_owned()),
        embedded: Some(files()),
        ..WebConfig::default()
    };
    let err = HttpService::new("web", config, std::rc::Rc::new(NoRecorder)).unwrap_err();
    assert!(err.to_string().contains("not both"), "{err}");
}
