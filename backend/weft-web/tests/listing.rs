//! Directory listings over real sockets: off unless `listing` is on, and then every name
//! escaped; and `cache_control` on what the files answer.

mod support;

use http::HeaderValue;
use support::Server;
use weft_web::{FileOptions, WebConfig};

fn site(files: FileOptions) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("public");
    std::fs::create_dir_all(root.join("dl/sub")).unwrap();
    std::fs::write(root.join("dl/<img src=x onerror=alert(1)>.txt"), "x").unwrap();
    std::fs::write(root.join("dl/a&b \"q\".txt"), "y").unwrap();
    std::fs::write(root.join("dl/.secret"), "z").unwrap();
    std::os::unix::fs::symlink(".secret", root.join("dl/to-secret")).unwrap();
    std::fs::write(root.join("index.html"), "home").unwrap();
    let server = Server::start(WebConfig {
        root: Some(root),
        files,
        ..WebConfig::default()
    });
    (dir, server)
}

#[test]
fn a_directory_without_an_index_is_not_listed_by_default() {
    let (_dir, server) = site(FileOptions::default());
    let reply = server.get("/dl/");
    assert_eq!(reply.status, 404);
    assert!(!reply.text().contains("alert"));
}

#[test]
fn a_listing_escapes_every_name_and_hides_hidden_files() {
    let (_dir, server) = site(FileOptions {
        listing: true,
        ..FileOptions::default()
    });
    let reply = server.get("/dl/");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let page = reply.text();
    assert!(!page.contains("<img"), "{page}");
    assert!(
        page.contains("&lt;img src=x onerror=alert(1)&gt;.txt"),
        "{page}"
    );
    assert!(page.contains("a&amp;b &quot;q&quot;.txt"), "{page}");
    assert!(page.contains("href=\"a%26b%20%22q%22.txt\""), "{page}");
    assert!(
        page.contains("href=\"%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E.txt\""),
        "{page}"
    );
    assert!(page.contains("href=\"sub/\""), "{page}");
    assert!(!page.contains("secret"), "{page}");
    assert!(
        !page.contains("to-secret"),
        "a link to a hidden name: {page}"
    );
    // The index still wins where there is one.
    assert_eq!(server.get("/").text(), "home");
}

#[test]
fn cache_control_is_sent_with_files_and_304s_but_not_errors() {
    let (_dir, server) = site(FileOptions {
        cache_control: Some(HeaderValue::from_static("public, max-age=60")),
        ..FileOptions::default()
    });
    let reply = server.get("/index.html");
    assert_eq!(reply.header("cache-control"), Some("public, max-age=60"));
    let tag = reply.header("etag").unwrap().to_owned();
    let not_modified = server.connect().request(&format!(
        "GET /index.html HTTP/1.1\r\nHost: t\r\nIf-None-Match: {tag}\r\n\r\n"
    ));
    assert_eq!(not_modified.status, 304);
    assert_eq!(
        not_modified.header("cache-control"),
        Some("public, max-age=60")
    );
    assert_eq!(server.get("/nope").header("cache-control"), None);
}

/// A directory with more names than a listing holds lists the first ones in order, not
/// the first ones the directory happened to give, and says how many more there are.
#[test]
fn a_listing_past_its_cap_keeps_the_first_names_in_order() {
    let (dir, server) = site(FileOptions {
        listing: true,
        ..FileOptions::default()
    });
    let many = dir.path().join("public/many");
    std::fs::create_dir(&many).unwrap();
    for i in 0..5_010 {
        std::fs::write(many.join(format!("f{i:05}")), "").unwrap();
    }
    let page = server.get("/many/").text();
    assert!(
        page.contains(">f00000<") && page.contains(">f04999<"),
        "the first 5,000"
    );
    let later: Vec<_> = (5_000..5_010)
        .map(|i| format!(">f{i:05}<"))
        .filter(|n| page.contains(n.as_str()))
        .collect();
    assert!(later.is_empty(), "{later:?}");
    assert!(page.contains("10 more not listed"), "{page}");
}
