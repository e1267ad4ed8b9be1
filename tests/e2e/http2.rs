//! The `http` kind over HTTP/2 and TLS: h2 by ALPN on an `ssl:` listener (HTTP/1.1 when
//! the client offers only that), h2c with prior knowledge on a plain one, driven with
//! curl and with hyper's own h2 client; the scheme passed to upstreams, HSTS, and a
//! client that opens and resets streams as fast as it can.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::assert_eventually;
use crate::http_peers::Upstream;
use crate::support::{App, free_port, spawn_app_with, www};

struct Site {
    app: App,
    up: Upstream,
    /// Plain listener (h2c by prior knowledge, or HTTP/1.1).
    plain: SocketAddr,
    /// `ssl:` listener of the service with HSTS.
    tls: SocketAddr,
    /// `ssl:` listener of a service without HSTS.
    tls_default: SocketAddr,
    /// The self-signed certificate both `ssl:` listeners serve, PEM.
    cert: String,
}

fn start() -> Site {
    let up = Upstream::start();
    let up_addr = up.addr;
    let plain: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let tls: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let tls_default: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_pem = cert.cert.pem();
    let key_pem = cert.signing_key.serialize_pem();
    let app = spawn_app_with(|dir| {
        let root = dir.join("public");
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::write(root.join("index.html"), "<h1>weft</h1>\n").unwrap();
        std::fs::write(root.join("docs/guide.txt"), "read me\n").unwrap();
        std::fs::write(dir.join("cert.pem"), &cert_pem).unwrap();
        std::fs::write(dir.join("key.pem"), &key_pem).unwrap();
        let ssl = |port: u16| {
            format!(
                "ssl:{port}:interface=127.0.0.1:privateKey={}:certKey={}",
                dir.join("key.pem").display(),
                dir.join("cert.pem").display()
            )
        };
        format!(
            r#"
[[service]]
name = "web"
kind = "http"
listen = ["tcp:{plain}:interface=127.0.0.1", "{tls}"]
root = "{root}"
hsts_max_age = "365d"
access_log = "{log}"
[[service.route]]
prefix = "/api/"
upstream = "http://{up_addr}"

[[service]]
name = "plainweb"
kind = "http"
listen = "{tls_default}"
root = "{root}"
"#,
            plain = plain.port(),
            tls = ssl(tls.port()),
            tls_default = ssl(tls_default.port()),
            root = root.display(),
            log = dir.join("access.log").display(),
        )
    });
    Site {
        app,
        up,
        plain,
        tls,
        tls_default,
        cert: cert_pem,
    }
}

/// What curl saw: status, HTTP version (`1.1`, `2`), the response head, the body.
struct Seen {
    code: u16,
    version: String,
    head: String,
    body: String,
}

fn curl(site: &Site, args: &[&str], url: &str) -> Seen {
    let head = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code} %{http_version}",
        ])
        .arg("--cacert")
        .arg(site.app.dir.path().join("cert.pem"))
        .arg("-D")
        .arg(head.path())
        .args(args)
        .arg(url)
        .output()
        .expect("curl must be installed (scripts/test installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap();
    let (code, version) = tail.split_once(' ').unwrap();
    Seen {
        code: code.parse().unwrap_or(0),
        version: version.to_owned(),
        head: std::fs::read_to_string(head.path())
            .unwrap()
            .to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

fn https(addr: SocketAddr, path: &str) -> String {
    format!("https://localhost:{}{path}", addr.port())
}

fn resolve(addr: SocketAddr) -> String {
    format!("localhost:{}:127.0.0.1", addr.port())
}

#[test]
fn http2_by_alpn_and_by_prior_knowledge_serves_files_ranges_and_proxies() {
    let site = start();
    let tls = resolve(site.tls);

    // TLS: h2 by ALPN, and HTTP/1.1 for a client that offers only that.
    let seen = curl(
        &site,
        &["--http2", "--resolve", &tls],
        &https(site.tls, "/"),
    );
    assert_eq!(
        (seen.code, seen.version.as_str(), seen.body.as_str()),
        (200, "2", "<h1>weft</h1>\n"),
        "{}",
        site.app.log()
    );
    let seen = curl(
        &site,
        &["--http1.1", "--resolve", &tls],
        &https(site.tls, "/"),
    );
    assert_eq!((seen.code, seen.version.as_str()), (200, "1.1"));
    let seen = curl(
        &site,
        &["--http2", "--resolve", &tls, "-r", "0-3"],
        &https(site.tls, "/docs/guide.txt"),
    );
    assert_eq!(
        (seen.code, seen.version.as_str(), seen.body.as_str()),
        (206, "2", "read")
    );
    assert!(
        seen.head.contains("content-range: bytes 0-3/8"),
        "{}",
        seen.head
    );
    // 416 says its (empty) length over h2 too, as HTTP/1.1 does.
    let seen = curl(
        &site,
        &["--http2", "--resolve", &tls, "-r", "50-60"],
        &https(site.tls, "/docs/guide.txt"),
    );
    assert_eq!((seen.code, seen.version.as_str()), (416, "2"));
    assert!(
        seen.head.contains("content-range: bytes */8") && seen.head.contains("content-length: 0"),
        "{}",
        seen.head
    );

    // Proxied over h2 to an HTTP/1.1 upstream, which learns the client came over TLS.
    let seen = curl(
        &site,
        &["--http2", "--resolve", &tls],
        &https(site.tls, "/api/items?id=7"),
    );
    assert_eq!(
        (seen.code, seen.version.as_str(), seen.body.as_str()),
        (
            200,
            "2",
            "upstream: GET /api/items?id=7 HTTP/1.1 xff=127.0.0.1 body="
        )
    );
    let seen = curl(
        &site,
        &["--http2", "--resolve", &tls, "--data-binary", "payload"],
        &https(site.tls, "/api/post"),
    );
    assert_eq!(
        seen.body,
        "upstream: POST /api/post HTTP/1.1 xff=127.0.0.1 body=payload"
    );
    let seen = curl(
        &site,
        &["--http1.1", "--resolve", &tls],
        &https(site.tls, "/api/one"),
    );
    assert_eq!(seen.code, 200);
    for i in 0..3 {
        assert_eq!(
            site.up.header(i, "x-forwarded-proto"),
            ["https"],
            "request {i}"
        );
        let forwarded = site.up.header(i, "forwarded");
        assert!(forwarded[0].ends_with(";proto=https"), "{forwarded:?}");
        assert_eq!(
            site.up.header(i, "host"),
            [format!("localhost:{}", site.tls.port())]
        );
    }

    // Plain: h2c by prior knowledge; the upstream is told `http`.
    let plain = |path: &str| format!("http://{}{path}", site.plain);
    let seen = curl(
        &site,
        &["--http2-prior-knowledge"],
        &plain("/docs/guide.txt"),
    );
    assert_eq!(
        (seen.code, seen.version.as_str(), seen.body.as_str()),
        (200, "2", "read me\n")
    );
    // A 304 carries the validators and no length: over h2 hyper sends the fields it is
    // given, where over HTTP/1.1 it would drop a Content-Length itself.
    let tag = seen
        .head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .expect("an etag")
        .trim()
        .to_owned();
    let seen = curl(
        &site,
        &[
            "--http2-prior-knowledge",
            "-H",
            &format!("If-None-Match: {tag}"),
        ],
        &plain("/docs/guide.txt"),
    );
    assert_eq!((seen.code, seen.version.as_str()), (304, "2"));
    assert!(seen.head.contains("etag: "), "{}", seen.head);
    assert!(!seen.head.contains("content-length"), "{}", seen.head);
    let seen = curl(&site, &["--http2-prior-knowledge"], &plain("/api/plain"));
    assert_eq!(seen.code, 200);
    assert_eq!(site.up.header(3, "x-forwarded-proto"), ["http"]);
    assert!(site.up.header(3, "forwarded")[0].ends_with(";proto=http"));
    assert_eq!(curl(&site, &[], &plain("/")).version, "1.1");

    // Counted and logged like any request, with the protocol version.
    assert_eventually!(
        site.app
            .metric(r#"weft_http_requests_total{code="2xx",method="GET",service="web"}"#)
            == Some(8.0),
        "{}",
        site.app.curl("/metrics").unwrap_or_default()
    );
    assert_eq!(
        site.app
            .metric(r#"weft_http_requests_total{code="2xx",method="POST",service="web"}"#),
        Some(1.0)
    );
    let access_log = site.app.dir.path().join("access.log");
    let log = || std::fs::read_to_string(&access_log).unwrap_or_default();
    assert_eventually!(
        log().contains("\"POST /api/post HTTP/2.0\" 200"),
        "{}",
        log()
    );
    let log = log();
    assert!(
        log.contains("\"GET /docs/guide.txt HTTP/2.0\" 206 4"),
        "{log}"
    );
    assert!(log.contains("\"GET / HTTP/1.1\" 200 14"), "{log}");
}

#[test]
fn hsts_is_sent_over_tls_when_configured_and_never_over_plain_http() {
    let site = start();
    let seen = curl(
        &site,
        &["--http2", "--resolve", &resolve(site.tls)],
        &https(site.tls, "/"),
    );
    assert_eq!(seen.code, 200);
    assert!(
        seen.head
            .contains("strict-transport-security: max-age=31536000\r\n"),
        "{}",
        seen.head
    );
    // RFC 6797 §7.2: not over plain HTTP.
    let seen = curl(&site, &[], &format!("http://{}/", site.plain));
    assert_eq!(seen.code, 200);
    assert!(
        !seen.head.contains("strict-transport-security"),
        "{}",
        seen.head
    );
    // Off by default.
    let seen = curl(
        &site,
        &["--http2", "--resolve", &resolve(site.tls_default)],
        &https(site.tls_default, "/"),
    );
    assert_eq!((seen.code, seen.version.as_str()), (200, "2"));
    assert!(
        !seen.head.contains("strict-transport-security"),
        "{}",
        seen.head
    );
}

/// One request on an h2 connection made by hyper's client: (status, version, body).
async fn h2_get(
    sender: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    authority: &str,
    scheme: &str,
    path: &str,
    range: Option<&str>,
) -> (u16, http::Version, String) {
    let mut request = http::Request::get(format!("{scheme}://{authority}{path}"));
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let response = sender
        .send_request(request.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let version = response.version();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, version, String::from_utf8_lossy(&body).into_owned())
}

fn tls_client(cert_pem: &str, alpn: &[u8]) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[test]
fn hyper_h2_client_gets_files_ranges_and_proxied_answers_over_tls_and_h2c() {
    let site = start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Over TLS, h2 chosen by ALPN, several streams on one connection.
        let tcp = tokio::net::TcpStream::connect(site.tls).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let stream = tls_client(&site.cert, b"h2")
            .connect(name, tcp)
            .await
            .unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        let authority = format!("localhost:{}", site.tls.port());
        let (mut s1, mut s2, mut s3) = (sender.clone(), sender.clone(), sender.clone());
        let (a, b, c) = tokio::join!(
            h2_get(&mut s1, &authority, "https", "/", None),
            h2_get(
                &mut s2,
                &authority,
                "https",
                "/docs/guide.txt",
                Some("bytes=5-")
            ),
            h2_get(&mut s3, &authority, "https", "/api/x", None),
        );
        assert_eq!(a, (200, http::Version::HTTP_2, "<h1>weft</h1>\n".into()));
        assert_eq!(b, (206, http::Version::HTTP_2, "me\n".into()));
        assert_eq!(
            c,
            (
                200,
                http::Version::HTTP_2,
                "upstream: GET /api/x HTTP/1.1 xff=127.0.0.1 body=".into()
            )
        );

        // h2c with prior knowledge.
        let tcp = tokio::net::TcpStream::connect(site.plain).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(connection);
        let authority = site.plain.to_string();
        let got = h2_get(&mut sender, &authority, "http", "/docs/guide.txt", None).await;
        assert_eq!(got, (200, http::Version::HTTP_2, "read me\n".into()));
        let got = h2_get(&mut sender, &authority, "http", "/api/y", None).await;
        assert_eq!(got.0, 200);
        assert_eq!(got.2, "upstream: GET /api/y HTTP/1.1 xff=127.0.0.1 body=");
        let got = h2_get(&mut sender, &authority, "http", "/missing", None).await;
        assert_eq!(got.0, 404);
    });
    assert_eq!(site.up.targets(), ["/api/x", "/api/y"]);
}

/// An HTTP/2 frame head: length, type, flags, stream.
pub(crate) fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    out.extend_from_slice(&len[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// The client preface and a SETTINGS frame with `settings` (6-byte entries).
pub(crate) fn preface(settings: &[u8]) -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut out, 0x4, 0, 0, settings);
    out
}

/// SETTINGS_INITIAL_WINDOW_SIZE = 0: no stream may send a byte of its body.
pub(crate) const NO_WINDOW: [u8; 6] = [0, 4, 0, 0, 0, 0];

/// The HPACK block of a request for `path` over http with `:authority` "localhost", its
/// method from the static table (`0x82` GET, `0x83` POST).
pub(crate) fn request_head(method: u8, path: &str) -> Vec<u8> {
    let mut head = vec![method, 0x86, 0x44, u8::try_from(path.len()).unwrap()];
    head.extend_from_slice(path.as_bytes());
    head.extend_from_slice(&[0x41, 9]);
    head.extend_from_slice(b"localhost");
    head
}

/// Sends `bytes` on a fresh connection and reads until the server closes; the error code
/// of the GOAWAY it sent, if any.
pub(crate) fn goaway_for(web: SocketAddr, bytes: &[u8]) -> Option<u32> {
    let mut conn = TcpStream::connect(web).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The server may close before it has read everything.
    let _ = conn.write_all(bytes);
    let mut seen = Vec::new();
    let _ = conn.read_to_end(&mut seen);
    let mut goaway = None;
    let mut at = 0;
    while at + 9 <= seen.len() {
        let len = usize::from(seen[at]) << 16
            | usize::from(seen[at + 1]) << 8
            | usize::from(seen[at + 2]);
        if seen[at + 3] == 0x7 && at + 9 + 8 <= seen.len() {
            let code = &seen[at + 13..at + 17];
            goaway = Some(u32::from_be_bytes(code.try_into().unwrap()));
        }
        at += 9 + len;
    }
    goaway
}

/// The frames the server sends on stream 1 for `block` (an HPACK request head on
/// stream 1, ending the stream), until it ends the stream: (type, flags, payload length).
fn stream_one_frames(web: SocketAddr, block: &[u8]) -> Vec<(u8, u8, usize)> {
    let mut out = preface(&[]);
    frame(&mut out, 0x1, 0x5, 1, block);
    let mut conn = TcpStream::connect(web).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(&out).unwrap();
    let (mut read, mut frames) = (Vec::new(), Vec::new());
    let mut buf = [0; 16 << 10];
    loop {
        while read.len() >= 9 {
            let len = usize::from(read[0]) << 16 | usize::from(read[1]) << 8 | usize::from(read[2]);
            if read.len() < 9 + len {
                break;
            }
            let stream = u32::from_be_bytes(read[5..9].try_into().unwrap()) & 0x7fff_ffff;
            let (kind, flags) = (read[3], read[4]);
            read.drain(..9 + len);
            if stream == 1 {
                frames.push((kind, flags, len));
                // END_STREAM on HEADERS or DATA, or a reset.
                if (kind <= 0x1 && flags & 0x1 != 0) || kind == 0x3 {
                    return frames;
                }
            }
        }
        match conn.read(&mut buf) {
            Ok(n) if n > 0 => read.extend_from_slice(&buf[..n]),
            _ => return frames,
        }
    }
}

/// RFC 9110 §9.3.2: no answer to HEAD carries content. Over HTTP/1.1 hyper leaves the
/// body of a HEAD answer unread; over HTTP/2 it sends whatever the body gives, so an
/// error page the service made itself went out as DATA after a HEAD.
#[test]
fn an_http2_head_request_is_answered_with_a_head_alone_whatever_its_status() {
    let site = start();
    for path in [
        "/nope",
        "/docs",
        "/%2e%2e/x",
        "/docs/guide.txt",
        "/api/hello",
    ] {
        // `:method: HEAD`, a literal with the static table's name, then the rest of a GET.
        let mut block = vec![0x02, 4];
        block.extend_from_slice(b"HEAD");
        block.extend_from_slice(&request_head(0x82, path)[1..]);
        let frames = stream_one_frames(site.plain, &block);
        let data: Vec<_> = frames.iter().filter(|f| f.0 == 0x0 && f.2 > 0).collect();
        assert!(
            data.is_empty() && frames.first().is_some_and(|f| f.0 == 0x1),
            "HEAD {path}: frames on its stream (type, flags, length) {frames:?}\n{}",
            site.app.log()
        );
    }
}

#[test]
fn http2_rapid_reset_is_ended_with_goaway_and_other_connections_go_on() {
    let site = start();
    // A connection opened before the abuse, still served after it.
    let bystander = Command::new("curl")
        .args(["-s", "--http2-prior-knowledge", "--max-time", "10"])
        .arg(format!("http://{}/docs/guide.txt", site.plain))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&bystander.stdout), "read me\n");

    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut out, 0x4, 0, 0, &[]);
    // GET / with :authority "localhost", from the HPACK static table.
    let mut headers = vec![0x82, 0x86, 0x84, 0x41, 9];
    headers.extend_from_slice(b"localhost");
    for i in 0..1000u32 {
        let stream = 2 * i + 1;
        frame(&mut out, 0x1, 0x5, stream, &headers);
        frame(&mut out, 0x3, 0, stream, &8u32.to_be_bytes());
    }
    let goaway = goaway_for(site.plain, &out);
    // ENHANCE_YOUR_CALM (RFC 9113 §7), and the connection closed.
    assert_eq!(goaway, Some(0xb), "the GOAWAY the server sent");
    assert_eventually!(
        site.app
            .metric(r#"weft_http_requests_refused_total{reason="protocol",service="web"}"#)
            == Some(1.0),
        "{}",
        site.app.curl("/metrics").unwrap_or_default()
    );
    let seen = curl(
        &site,
        &["--http2-prior-knowledge"],
        &format!("http://{}/", site.plain),
    );
    assert_eq!((seen.code, seen.version.as_str()), (200, "2"));
}

#[test]
fn an_http2_request_head_left_unfinished_is_ended_within_the_request_timeout() {
    let port = free_port();
    let app = spawn_app_with(|dir| {
        std::fs::write(www(dir).join("index.html"), "<h1>weft</h1>\n").unwrap();
        format!(
            "\n[[service]]\nname = \"web\"\nkind = \"http\"\n\
             listen = \"tcp:{port}:interface=127.0.0.1\"\nroot = \"{}\"\n\
             limits = {{ request_timeout = \"1s\" }}\n",
            www(dir).display()
        )
    });
    let web: SocketAddr = ([127, 0, 0, 1], port).into();
    let preface = || {
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        frame(&mut out, 0x4, 0, 0, &[]);
        out
    };
    // GET / with :authority "localhost", from the HPACK static table.
    let mut head = vec![0x82, 0x86, 0x84, 0x41, 9];
    head.extend_from_slice(b"localhost");

    // A complete request on a connection then kept open: the bound is on heads, not on
    // connections.
    let mut patient = TcpStream::connect(web).unwrap();
    let mut out = preface();
    frame(&mut out, 0x1, 0x5, 1, &head);
    patient.write_all(&out).unwrap();

    // HEADERS without END_HEADERS, and the CONTINUATION that would end it never sent.
    let mut out = preface();
    frame(&mut out, 0x1, 0x1, 1, &head[..3]);
    let started = std::time::Instant::now();
    let goaway = goaway_for(web, &out);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "closed after {took:?}; request_timeout is 1 s"
    );
    assert_eq!(goaway, Some(0), "told GOAWAY before the close");
    assert_eventually!(
        app.metric(r#"weft_http_requests_refused_total{reason="head_timeout",service="web"}"#)
            == Some(1.0),
        "counted\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    // An HTTP/1.1 head sent too slowly is ended the same way; each is logged and counted
    // as a request, 408 (as nginx logs a `client_header_timeout`).
    let mut slow = TcpStream::connect(web).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = slow.read(&mut [0; 64]);
    assert_eventually!(
        app.metric(r#"weft_http_requests_refused_total{reason="head_timeout",service="web"}"#)
            == Some(2.0)
            && app.metric(r#"weft_http_requests_total{code="4xx",method="other",service="web"}"#)
                == Some(2.0),
        "counted as requests\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    assert_eq!(app.log().matches("\"-\" 408 -").count(), 2, "{}", app.log());

    // So is a preface left unfinished (the magic and half its SETTINGS frame), which
    // hyper would wait for until the connection's idle timeout (60 s).
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut out, 0x4, 0, 0, &[0, 3, 0, 0, 0, 100]);
    out.truncate(out.len() - 3);
    let started = std::time::Instant::now();
    let mut half = TcpStream::connect(web).unwrap();
    half.write_all(&out).unwrap();
    half.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let _ = half.read_to_end(&mut Vec::new());
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "closed after {took:?}; request_timeout is 1 s"
    );
    assert_eventually!(
        app.metric(r#"weft_http_requests_refused_total{reason="head_timeout",service="web"}"#)
            == Some(3.0),
        "counted\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    assert_eventually!(
        app.log().matches("\"-\" 408 -").count() == 3,
        "{}",
        app.log()
    );

    patient
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0; 4096];
    let still_open = loop {
        match patient.read(&mut buf) {
            Ok(0) => break false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break true,
            Err(e) => panic!("{e}"),
        }
    };
    assert!(
        still_open,
        "a connection whose heads were complete stays open past the timeout"
    );
    assert!(
        seen.windows(b"<h1>weft</h1>".len())
            .any(|w| w == b"<h1>weft</h1>"),
        "and was answered"
    );
}

/// An HTTP/2 client that stops cooperating is let go of: asked to close once idle (GOAWAY
/// and a PING), a connection that then moves nothing either way for the close timeout
/// (10 s), with no request waiting on a file or an upstream, is dropped and counted as
/// `send_timeout`, as an HTTP/1.1 client that stops reading is. Here one client never
/// answers the server's SETTINGS or PING, and another asks for a file with a window of 0
/// it never opens.
#[test]
fn an_http2_client_that_stops_cooperating_is_dropped_after_the_close_timeout() {
    let port = free_port();
    let app = spawn_app_with(|dir| {
        std::fs::write(www(dir).join("big.bin"), vec![7u8; 2 << 20]).unwrap();
        format!(
            "\n[[service]]\nname = \"web\"\nkind = \"http\"\n\
             listen = \"tcp:{port}:interface=127.0.0.1\"\nroot = \"{}\"\n\
             idle_timeout = \"1s\"\n",
            www(dir).display()
        )
    });
    let web: SocketAddr = ([127, 0, 0, 1], port).into();
    let silent = preface(&[]);
    let stalled = {
        let mut out = preface(&NO_WINDOW);
        frame(&mut out, 0x1, 0x5, 1, &request_head(0x82, "/big.bin"));
        out
    };
    let closes = |bytes: Vec<u8>| {
        std::thread::spawn(move || {
            let mut conn = TcpStream::connect(web).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            conn.write_all(&bytes).unwrap();
            let started = std::time::Instant::now();
            let mut buf = [0; 4096];
            loop {
                match conn.read(&mut buf) {
                    Ok(0) => return Ok(started.elapsed()),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                        return Ok(started.elapsed());
                    }
                    Err(e) => return Err(format!("still open after {:?}: {e}", started.elapsed())),
                }
            }
        })
    };
    let (silent, stalled) = (closes(silent), closes(stalled));
    for (what, client) in [("silent", silent), ("stalled", stalled)] {
        let took = client
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            took < Duration::from_secs(20),
            "{what}: closed after {took:?} (idle 1 s, then 10 s of nothing)"
        );
    }
    assert_eventually!(
        app.metric(
            r#"weft_connections_closed_total{reason="send_timeout",service="web",transport="tcp"}"#
        ) == Some(2.0),
        "both counted\n{}",
        app.log()
    );
    // A client that does its part is served as ever.
    let out = Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("http://{web}/big.bin"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
}

/// A peer's HTTP/2 requests in flight, over all its connections, are capped at its
/// connection cap: streams that would hold more files (or upstream connections) at once
/// than as many HTTP/1.1 connections could get 503, counted as `limit_peer`, and the places
/// come back as the responses end.
#[test]
fn a_peer_s_http2_requests_in_flight_are_capped_at_its_connection_cap() {
    let port = free_port();
    let app = spawn_app_with(|dir| {
        std::fs::write(www(dir).join("big.bin"), vec![7u8; 2 << 20]).unwrap();
        format!(
            "\n[[service]]\nname = \"web\"\nkind = \"http\"\n\
             listen = \"tcp:{port}:interface=127.0.0.1\"\nroot = \"{}\"\n\
             max_connections_per_peer = 4\n",
            www(dir).display()
        )
    });
    let web: SocketAddr = ([127, 0, 0, 1], port).into();
    // A window of 0: no response body moves, so every answered stream stays in flight.
    let mut out = preface(&NO_WINDOW);
    let head = request_head(0x82, "/big.bin");
    for i in 0..10u32 {
        frame(&mut out, 0x1, 0x5, 2 * i + 1, &head);
    }
    let mut greedy = TcpStream::connect(web).unwrap();
    greedy.write_all(&out).unwrap();
    let refused = || {
        app.metric(r#"weft_http_requests_refused_total{reason="limit_peer",service="web"}"#)
            .unwrap_or(0.0)
    };
    assert_eventually!(refused() == 6.0, "six of ten refused: {}", refused());
    // Another connection of the same peer is held to the same count.
    let out = Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-D",
            "-",
        ])
        .arg(format!("http://{web}/big.bin"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        said.starts_with("http/2 503") && said.contains("retry-after: 1"),
        "{said}"
    );
    // Once the greedy connection goes, its places come back.
    drop(greedy);
    assert_eventually!(
        Command::new("curl")
            .args([
                "-s",
                "--http2-prior-knowledge",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}"
            ])
            .arg(format!("http://{web}/big.bin"))
            .output()
            .is_ok_and(|o| o.stdout == b"200"),
        "served again"
    );
}

/// A connection that has made `limits.max_requests_per_connection` requests is told
/// GOAWAY, as nginx's `keepalive_requests` does: a client that heeds it goes on over a
/// new connection; one that goes on opening streams on the old one is cut off.
#[test]
fn an_http2_connection_is_told_goaway_at_its_request_cap_and_closed_if_it_goes_on() {
    let port = free_port();
    let app = spawn_app_with(|dir| {
        std::fs::write(www(dir).join("ok.txt"), "ok").unwrap();
        format!(
            "\n[[service]]\nname = \"web\"\nkind = \"http\"\n\
             listen = \"tcp:{port}:interface=127.0.0.1\"\nroot = \"{}\"\n\
             limits = {{ max_requests_per_connection = 5 }}\n",
            www(dir).display()
        )
    });
    let web: SocketAddr = ([127, 0, 0, 1], port).into();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(web).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        let connection = tokio::spawn(connection);
        let authority = web.to_string();
        for _ in 0..5 {
            let got = h2_get(&mut sender, &authority, "http", "/ok.txt", None).await;
            assert_eq!(got, (200, http::Version::HTTP_2, "ok".into()));
        }
        // The fifth was its last: the server says GOAWAY and closes once it is answered.
        let ended = tokio::time::timeout(Duration::from_secs(10), connection).await;
        assert!(matches!(ended, Ok(Ok(Ok(())))), "{ended:?}");
        let request = http::Request::get(format!("http://{authority}/ok.txt"))
            .body(Empty::new())
            .unwrap();
        assert!(sender.send_request(request).await.is_err());
    });

    // A client that reads what it gets (GOAWAY too) and goes on opening streams, a few at
    // a time, never answering the PING that follows the GOAWAY.
    let mut conn = TcpStream::connect(web).unwrap();
    let mut reader = conn.try_clone().unwrap();
    reader
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let seen = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 16384];
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            seen.extend_from_slice(&buf[..n]);
        }
        seen
    });
    let head = request_head(0x82, "/ok.txt");
    let mut sent = 0u32;
    let _ = conn.write_all(&preface(&[]));
    'opening: for _ in 0..100 {
        let mut out = Vec::new();
        for _ in 0..10 {
            frame(&mut out, 0x1, 0x5, 2 * sent + 1, &head);
            sent += 1;
        }
        if conn.write_all(&out).is_err() {
            break 'opening;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let seen = seen.join().unwrap();
    let (mut goaway, mut answered, mut at) = (None, 0, 0);
    while at + 9 <= seen.len() {
        let len = usize::from(seen[at]) << 16
            | usize::from(seen[at + 1]) << 8
            | usize::from(seen[at + 2]);
        match seen[at + 3] {
            0x7 if goaway.is_none() && at + 17 <= seen.len() => {
                goaway = Some(u32::from_be_bytes(
                    seen[at + 13..at + 17].try_into().unwrap(),
                ));
            }
            0x1 => answered += 1,
            _ => {}
        }
        at += 9 + len;
    }
    assert_eq!(
        goaway,
        Some(0),
        "told GOAWAY (NO_ERROR) after its fifth request"
    );
    assert!(
        (5..=300).contains(&answered) && sent < 1000,
        "{answered} answered of {sent} opened before the connection was cut"
    );
    assert_eventually!(
        app.metric(r#"weft_http_requests_refused_total{reason="protocol",service="web"}"#)
            == Some(1.0),
        "{}",
        app.curl("/metrics").unwrap_or_default()
    );
}

/// A stream still under way when its connection reaches its request cap is left to
/// finish, however quiet it is (a long poll, server-sent events): only a connection asked
/// to close is given up for its silence.
#[test]
fn a_quiet_stream_outlives_the_goaway_of_its_connection_s_request_cap() {
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = upstream.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut conn, _) = upstream.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
            .unwrap();
        // Quieter than the close timeout (10 s).
        std::thread::sleep(Duration::from_secs(13));
        let _ = conn.write_all(b"cd");
        std::thread::sleep(Duration::from_secs(5));
    });
    let port = free_port();
    let app = spawn_app_with(|dir| {
        std::fs::write(www(dir).join("ok.txt"), "ok").unwrap();
        format!(
            "\n[[service]]\nname = \"web\"\nkind = \"http\"\n\
             listen = \"tcp:{port}:interface=127.0.0.1\"\nroot = \"{}\"\n\
             limits = {{ max_requests_per_connection = 2 }}\n\
             [[service.route]]\nprefix = \"/api/\"\nupstream = \"http://{up_addr}\"\n",
            www(dir).display()
        )
    });
    let web: SocketAddr = ([127, 0, 0, 1], port).into();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(web).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(connection);
        let request = http::Request::get(format!("http://{web}/api/slow"))
            .body(Empty::new())
            .unwrap();
        let slow = sender.send_request(request).await.unwrap();
        assert_eq!(slow.status(), 200);
        let got = h2_get(&mut sender, &web.to_string(), "http", "/ok.txt", None).await;
        assert_eq!(got.0, 200, "its last request");
        let body = tokio::time::timeout(Duration::from_secs(30), slow.into_body().collect())
            .await
            .expect("the quiet stream ends");
        assert_eq!(body.unwrap().to_bytes(), "abcd");
    });
    assert_eq!(
        app.metric(r#"weft_connections_closed_total{reason="send_timeout",service="web"}"#)
            .unwrap_or(0.0),
        0.0
    );
}

/// A TLS client that ends its connection without a `close_notify` (as curl does after an
/// HTTP/2 exchange) has closed the connection, not failed: counted as `peer_closed`, not
/// as an `error`.
#[test]
fn a_tls_client_closing_without_close_notify_is_counted_as_closed_not_failed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let site = start();
    let closed = |reason: &str| {
        site.app
            .metric(&format!(
                r#"weft_connections_closed_total{{reason="{reason}",service="web",transport="tls"}}"#
            ))
            .unwrap_or(0.0)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(site.tls).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tls_client(&site.cert, b"http/1.1")
            .connect(name, tcp)
            .await
            .unwrap();
        tls.write_all(b"GET /docs/guide.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0; 4096];
        while !seen.ends_with(b"read me\n") {
            let n = tls.read(&mut buf).await.unwrap();
            assert!(n > 0, "{}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        // The TCP connection closed under the TLS session: no close_notify.
        let (tcp, _) = tls.into_inner();
        drop(tcp);
    });
    assert_eventually!(closed("peer_closed") == 1.0, "counted as closed");
    assert_eq!(closed("error"), 0.0, "{}", site.app.log());
}

/// A request whose DATA runs past its `content-length` is malformed (RFC 9113 §8.1.1):
/// the stream is reset with PROTOCOL_ERROR, counted once as `stream_error` where the
/// reset is sent, not a second time as a bad body, and logged as cut short.
#[test]
fn a_body_past_its_content_length_is_reset_and_counted_once() {
    let site = start();
    let mut out = preface(&[]);
    let mut head = request_head(0x83, "/api/overlong");
    // content-length: 10, a literal with the static table's name (index 28).
    head.extend_from_slice(&[0x0f, 0x0d, 2]);
    head.extend_from_slice(b"10");
    frame(&mut out, 0x1, 0x4, 1, &head);
    frame(&mut out, 0x0, 0x1, 1, &[b'a'; 20]);
    let mut client = TcpStream::connect(site.plain).unwrap();
    client.write_all(&out).unwrap();
    let log = site.app.dir.path().join("access.log");
    assert_eventually!(
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("\"POST /api/overlong HTTP/2.0\""),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let line = std::fs::read_to_string(&log).unwrap();
    assert!(line.contains("cut short"), "{line}");
    let refused = |reason: &str| {
        site.app
            .metric(&format!(
                r#"weft_http_requests_refused_total{{reason="{reason}",service="web"}}"#
            ))
            .unwrap_or(0.0)
    };
    assert_eventually!(refused("stream_error") == 1.0, "the reset is counted");
    assert_eq!(refused("body"), 0.0, "and only once");
    assert!(site.up.targets().is_empty(), "nothing went upstream");
}

/// A client that cancels its HTTP/2 request (RST_STREAM CANCEL) while its body is being
/// read has gone away: logged as 499 (nginx's "client closed request"), not refused as a
/// broken body with a 400 nobody receives. So has one that closes its connection.
#[test]
fn a_request_cancelled_mid_body_is_logged_as_the_client_gone_not_as_a_bad_body() {
    let site = start();
    let log = site.app.dir.path().join("access.log");
    for (path, cancels) in [("/api/cancelled", true), ("/api/closed", false)] {
        let mut out = preface(&[]);
        // The request, its body to come.
        frame(&mut out, 0x1, 0x4, 1, &request_head(0x83, path));
        frame(&mut out, 0x0, 0, 1, b"the first part");
        let mut client = TcpStream::connect(site.plain).unwrap();
        client.write_all(&out).unwrap();
        // Until the service has the request, reading its body: a reset in the same read
        // as the request would end the stream before anything took it up.
        let reading = || {
            let pending = site
                .app
                .curl("/api/deferreds?state=pending")
                .unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(&pending).unwrap_or_default();
            v["items"]
                .as_array()
                .is_some_and(|items| items.iter().any(|d| d["label"] == "http request"))
        };
        assert_eventually!(reading(), "the request is taken up");
        if cancels {
            let mut cancel = Vec::new();
            frame(&mut cancel, 0x3, 0, 1, &8u32.to_be_bytes());
            client.write_all(&cancel).unwrap();
        } else {
            drop(client);
        }
        assert_eventually!(
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(&format!("\"POST {path} HTTP/2.0\" 499")),
            "{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    assert_eq!(
        site.app
            .metric(r#"weft_http_requests_refused_total{reason="body",service="web"}"#)
            .unwrap_or(0.0),
        0.0
    );
    assert!(site.up.targets().is_empty(), "nothing went upstream");
}

/// An HTTP/2 client may send a path in raw UTF-8 (the `http` crate takes it; the URI
/// rules do not): it is percent-encoded, so an upstream is sent a request line of visible
/// ASCII, and a file named so is found by that spelling as by the encoded one.
#[test]
fn a_raw_utf8_path_over_http2_is_percent_encoded_before_it_is_forwarded_or_served() {
    let site = start();
    let body = "cr\u{e8}me\n";
    std::fs::write(site.app.dir.path().join("public/caf\u{e9}.txt"), body).unwrap();
    let frames = stream_one_frames(
        site.plain,
        &request_head(0x82, "/api/caf\u{e9}?q=\u{e9}t\u{e9}"),
    );
    assert!(frames.iter().any(|f| f.0 == 0x1), "answered: {frames:?}");
    assert_eventually!(
        site.up
            .targets()
            .contains(&"/api/caf%C3%A9?q=%C3%A9t%C3%A9".to_owned()),
        "the upstream got the path and query encoded: {:?}",
        site.up.targets()
    );
    for path in ["/caf\u{e9}.txt", "/caf%c3%a9.txt"] {
        let frames = stream_one_frames(site.plain, &request_head(0x82, path));
        let data: usize = frames.iter().filter(|f| f.0 == 0x0).map(|f| f.2).sum();
        assert_eq!(data, body.len(), "{path}: {frames:?}");
    }
}

#[test]
fn an_http2_client_over_tls_that_sends_nothing_is_closed_at_the_request_timeout_uncounted() {
    // ALPN chose h2 before the client sent a byte of its preface: a client that then
    // says nothing is closed as a silent HTTP/1.1 one is, not counted as a slow head.
    let port = free_port();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_pem = cert.cert.pem();
    let key_pem = cert.signing_key.serialize_pem();
    let app = spawn_app_with(|dir| {
        std::fs::write(dir.join("cert.pem"), &cert_pem).unwrap();
        std::fs::write(dir.join("key.pem"), &key_pem).unwrap();
        format!(
            "\n[[service]]\nname = \"web\"\nkind = \"http\"\n\
             listen = \"ssl:{port}:interface=127.0.0.1:privateKey={}:certKey={}\"\n\
             root = \"{}\"\nlimits = {{ request_timeout = \"1s\" }}\n",
            dir.join("key.pem").display(),
            dir.join("cert.pem").display(),
            www(dir).display()
        )
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let took = runtime.block_on(async {
        use tokio::io::AsyncReadExt;
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut stream = tls_client(&cert_pem, b"h2")
            .connect(name, tcp)
            .await
            .unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let started = std::time::Instant::now();
        let read = tokio::time::timeout(Duration::from_secs(8), async {
            let mut all = Vec::new();
            let _ = stream.read_to_end(&mut all).await;
        })
        .await;
        assert!(read.is_ok(), "still open after 8 s");
        started.elapsed()
    });
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "closed after {took:?}; request_timeout is 1 s"
    );
    assert_eventually!(
        app.metric(
            r#"weft_connections_closed_total{reason="timeout",service="web",transport="tls"}"#
        ) == Some(1.0),
        "{}",
        app.curl("/metrics").unwrap_or_default()
    );
    assert_eq!(
        app.metric(r#"weft_http_requests_refused_total{reason="head_timeout",service="web"}"#)
            .unwrap_or(0.0),
        0.0,
        "{}",
        app.curl("/metrics").unwrap_or_default()
    );
    assert!(!app.log().contains("\" 408 "), "{}", app.log());
}
