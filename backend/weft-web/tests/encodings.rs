//! Content codings over real sockets: precompressed `.br` / `.gz` siblings and on-the-fly
//! gzip and brotli for compressible types, chosen by the client's `Accept-Encoding`
//! q-values, each coding with its own `ETag`, and `Vary: Accept-Encoding` on every
//! response that could have been coded.

mod support;

use std::io::Read;

use support::Server;
use weft_web::WebConfig;

fn css() -> String {
    (0..300)
        .map(|i| format!(".c{i}{{margin:{i}px}}\n"))
        .collect()
}

fn site() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("public");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("app.js"), "x".repeat(4000)).unwrap();
    std::fs::write(root.join("app.js.gz"), "GZIP-SIBLING").unwrap();
    std::fs::write(root.join("app.js.br"), "BROTLI-SIBLING").unwrap();
    std::fs::write(root.join("site.css"), css()).unwrap();
    std::fs::write(root.join("tiny.css"), "a{}").unwrap();
    std::fs::write(root.join("logo.png"), vec![1u8; 5000]).unwrap();
    let server = Server::start(WebConfig {
        root: Some(root),
        ..WebConfig::default()
    });
    (dir, server)
}

fn get(server: &Server, path: &str, accept: &str) -> support::Reply {
    server.connect().request(&format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nAccept-Encoding: {accept}\r\n\r\n"
    ))
}

#[test]
fn precompressed_siblings_follow_the_client_preferences() {
    let (_dir, server) = site();
    let br = get(&server, "/app.js", "gzip, br");
    assert_eq!(br.text(), "BROTLI-SIBLING");
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert_eq!(
        br.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(br.header("vary"), Some("Accept-Encoding"));
    let gz = get(&server, "/app.js", "br;q=0.5, gzip;q=0.8");
    assert_eq!(gz.text(), "GZIP-SIBLING");
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    let refused = get(&server, "/app.js", "br;q=0, gzip");
    assert_eq!(refused.header("content-encoding"), Some("gzip"));
    let identity = get(&server, "/app.js", "identity");
    assert_eq!(identity.text(), "x".repeat(4000));
    assert_eq!(identity.header("content-encoding"), None);
    assert_eq!(identity.header("vary"), Some("Accept-Encoding"));
    let tags = [&br, &gz, &identity].map(|r| r.header("etag").unwrap().to_owned());
    assert!(
        tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2],
        "one ETag per coding: {tags:?}"
    );
    // The validator of the coded representation is the one compared.
    let not_modified = server.connect().request(&format!(
        "GET /app.js HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nIf-None-Match: {}\r\n\r\n",
        tags[1]
    ));
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("vary"), Some("Accept-Encoding"));
    // The siblings themselves are still plain files.
    assert_eq!(server.get("/app.js.gz").text(), "GZIP-SIBLING");
}

#[test]
fn compressible_files_are_compressed_on_the_fly_with_gzip_or_brotli() {
    let (_dir, server) = site();
    let gz = get(&server, "/site.css", "gzip");
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
    assert!(gz.body.len() < css().len() / 2, "{} bytes", gz.body.len());
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, css());

    let br = get(&server, "/site.css", "gzip;q=0.9, br");
    assert_eq!(br.header("content-encoding"), Some("br"));
    let mut text = String::new();
    brotli::Decompressor::new(&br.body[..], 4096)
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, css());
    let plain = server.get("/site.css");
    let tags = [&gz, &br, &plain].map(|r| r.header("etag").unwrap().to_owned());
    assert!(
        tags[0] != tags[1] && tags[0] != tags[2] && tags[1] != tags[2],
        "{tags:?}"
    );

    let star = get(&server, "/site.css", "*");
    assert!(star.header("content-encoding").is_some());
}

#[test]
fn small_files_binary_types_and_ranges_are_not_compressed() {
    let (_dir, server) = site();
    let tiny = get(&server, "/tiny.css", "gzip, br");
    assert_eq!(
        (tiny.text().as_str(), tiny.header("content-encoding")),
        ("a{}", None)
    );
    assert_eq!(tiny.header("vary"), Some("Accept-Encoding"));
    let png = get(&server, "/logo.png", "gzip, br");
    assert_eq!(png.header("content-encoding"), None);
    assert_eq!(png.header("vary"), None);
    let range = server.connect().request(
        "GET /site.css HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nRange: bytes=0-3\r\n\r\n",
    );
    assert_eq!(range.status, 206);
    assert_eq!(range.header("content-encoding"), None);
    assert_eq!(range.text(), ".c0{");
}

#[test]
fn each_representation_carries_its_own_length_and_only_a_file_as_it_is_takes_ranges() {
    let (_dir, server) = site();
    let sibling = get(&server, "/app.js", "br");
    assert_eq!(sibling.header("content-length"), Some("14"));
    assert_eq!(sibling.header("accept-ranges"), Some("bytes"));
    let on_the_fly = get(&server, "/site.css", "gzip");
    assert_eq!(
        on_the_fly.header("content-length"),
        Some(on_the_fly.body.len().to_string().as_str())
    );
    assert_eq!(on_the_fly.header("accept-ranges"), None);
    let plain = get(&server, "/site.css", "identity");
    assert_eq!(
        plain.header("content-length"),
        Some(css().len().to_string().as_str())
    );
    assert_eq!(plain.header("accept-ranges"), Some("bytes"));
    let tag = plain.header("etag").unwrap().to_owned();
    let not_modified = server.connect().request(&format!(
        "GET /site.css HTTP/1.1\r\nHost: t\r\nIf-None-Match: {tag}\r\n\r\n"
    ));
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("content-length"), None);
    assert_eq!(not_modified.header("etag"), Some(tag.as_str()));
}

#[test]
fn with_compression_off_no_answer_varies_with_accept_encoding() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("site.css"), css()).unwrap();
    std::fs::write(dir.path().join("site.css.gz"), "GZIP-SIBLING").unwrap();
    let mut config = WebConfig {
        root: Some(dir.path().to_owned()),
        ..WebConfig::default()
    };
    config.files.compression.precompressed = false;
    config.files.compression.on_the_fly = false;
    let server = Server::start(config);
    let reply = get(&server, "/site.css", "gzip, br");
    assert_eq!(reply.text(), css());
    assert_eq!(reply.header("content-encoding"), None);
    assert_eq!(reply.header("vary"), None);
    assert_eq!(
        reply.header("content-type"),
        Some("text/css; charset=utf-8")
    );
}

#[test]
fn a_huge_accept_encoding_is_read_only_so_far() {
    let (_dir, server) = site();
    // Thousands of unknown codings before gzip: the service stops reading the list.
    let junk = (0..1000)
        .map(|i| format!("x{i};q=0.1"))
        .collect::<Vec<_>>()
        .join(",");
    let reply = get(&server, "/site.css", &format!("{junk}, gzip"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-encoding"), None);
    assert_eq!(reply.text(), css());
}

/// A precompressed sibling in any coding the client takes comes before a coding made on
/// the fly (it costs nothing, and the operator made it); and a client weighing the file
/// as it is above every coding gets it as it is.
#[test]
fn a_precompressed_sibling_comes_before_compressing_and_identity_can_be_preferred() {
    let (dir, server) = site();
    std::fs::write(dir.path().join("public/site.css.gz"), "GZIP-CSS").unwrap();
    let sibling = get(&server, "/site.css", "br, gzip");
    assert_eq!(sibling.header("content-encoding"), Some("gzip"));
    assert_eq!(sibling.text(), "GZIP-CSS");
    for accept in ["identity, gzip;q=0.5", "*;q=0.5, identity"] {
        let plain = get(&server, "/site.css", accept);
        assert_eq!(plain.header("content-encoding"), None, "{accept}");
        assert_eq!(plain.text(), css(), "{accept}");
    }
}
