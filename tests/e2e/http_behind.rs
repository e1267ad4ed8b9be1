//! `trusted_proxies` on the `http` kind, on the real binary with curl from two loopback
//! addresses, one of them a proxy in front: its `X-Forwarded-For` and
//! `X-Forwarded-Proto` name the client that `deny` judges, the log names and upstreams
//! hear of, and the scheme `https_redirect` goes by; the same fields from any other peer
//! change nothing.

use crate::http_peers::{RawClient, Upstream, curl_status, web_service};

#[test]
fn a_trusted_proxy_names_the_client_and_its_scheme_and_no_other_peer_can() {
    let upstream = Upstream::start();
    let (app, web) = web_service(&format!(
        r#"trusted_proxies = ["127.0.0.2"]
deny = ["198.51.100.66"]
https_redirect = 8443
[[service.route]]
prefix = "/api/"
upstream = "http://{upstream}"
"#,
        upstream = upstream.addr,
    ));
    let https = "X-Forwarded-Proto: https";
    // Through the proxy: the client is the rightmost address it did not add itself.
    let chain = "X-Forwarded-For: 203.0.113.1, 198.51.100.7";
    assert_eq!(
        curl_status(web, "127.0.0.2", "/api/x", &[chain, https]),
        200
    );
    assert_eq!(upstream.header(0, "x-real-ip"), ["198.51.100.7"]);
    assert_eq!(
        upstream.header(0, "x-forwarded-for"),
        ["203.0.113.1, 198.51.100.7, 127.0.0.2"],
        "the chain kept, the hop it came over appended"
    );
    assert_eq!(upstream.header(0, "x-forwarded-proto"), ["https"]);
    crate::assert_eventually!(
        app.log().contains("198.51.100.7 - - ["),
        "the access log names the client\n{}",
        app.log()
    );
    // A client the proxy names is denied by its address.
    let denied = "X-Forwarded-For: 198.51.100.66";
    assert_eq!(
        curl_status(web, "127.0.0.2", "/f.txt", &[denied, https]),
        403
    );
    // The proxy says the client came over plain HTTP: redirected.
    let plain = "X-Forwarded-Proto: http";
    assert_eq!(
        curl_status(web, "127.0.0.2", "/f.txt", &[chain, plain]),
        301
    );

    // Any other peer is its own client, whatever it says: not denied by the address it
    // claims, and redirected for coming over plain HTTP though it claims https.
    assert_eq!(
        curl_status(web, "127.0.0.1", "/f.txt", &[denied, https]),
        301
    );
    assert_eq!(upstream.received(), 1);
    // The log names the peer for that one, and the client the proxy named for the 403.
    let logged = |client: &str, status: &str| {
        app.log()
            .lines()
            .any(|l| l.contains(&format!("{client} - - [")) && l.contains(&format!("\" {status} ")))
    };
    crate::assert_eventually!(logged("127.0.0.1", "301"), "{}", app.log());
    assert!(logged("198.51.100.66", "403"), "{}", app.log());
    assert!(!logged("198.51.100.66", "301"), "{}", app.log());
}

/// A client cannot hide behind bytes that are not text: the address its proxy appended
/// is still found. And a reload that stops trusting the proxy stops it on the keep-alive
/// connection it holds.
#[test]
fn a_proxy_s_word_is_read_as_bytes_and_a_reload_can_take_it_back() {
    let (app, web) = web_service("trusted_proxies = [\"127.0.0.2\"]\ndeny = [\"198.51.100.66\"]\n");
    let mut held = RawClient::connect_from([127, 0, 0, 2].into(), web);
    held.send(
        b"GET /f.txt HTTP/1.1\r\nHost: web\r\nX-Forwarded-For: \xff\xfe, 198.51.100.66\r\n\r\n",
    );
    assert_eq!(
        held.read_reply().status,
        403,
        "the appended address, denied"
    );
    let named = b"GET /f.txt HTTP/1.1\r\nHost: web\r\nX-Forwarded-For: 198.51.100.66\r\n\r\n";
    held.send(named);
    assert_eq!(held.read_reply().status, 403);

    app.edit_config(|text| text.replace("trusted_proxies = [\"127.0.0.2\"]\n", ""));
    app.reload_by_signal("ok");
    held.send(named);
    assert_eq!(
        held.read_reply().status,
        200,
        "no longer believed on the connection held across the reload"
    );
}

/// A front end on the same host that connects over a unix socket names its clients when
/// `"unix:"` is among the trusted proxies; without it, such a peer has no address and
/// names no one.
#[test]
fn a_front_end_on_a_unix_socket_names_its_clients_when_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("web.sock");
    let service = |trust: &str| {
        format!(
            "[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = \"unix:{sock}\"\n\
             root = \"{root}\"\ndeny = [\"198.51.100.66\"]\n{trust}",
            sock = socket.display(),
            root = dir.path().display(),
        )
    };
    std::fs::write(dir.path().join("f.txt"), "a file\n").unwrap();
    let status = |xff: &str| {
        let mut curl = std::process::Command::new("curl");
        curl.arg("--unix-socket").arg(&socket);
        let field = format!("X-Forwarded-For: {xff}");
        crate::http_peers::curl_code(curl, "http://web/f.txt", &[&field])
    };
    let app = crate::support::spawn_app_with(|_| service("trusted_proxies = [\"unix:\"]\n"));
    crate::assert_eventually!(status("203.0.113.1") == 200, "{}", app.log());
    assert_eq!(
        status("198.51.100.66"),
        403,
        "the client the front end named, denied"
    );
    crate::assert_eventually!(
        app.log().contains("198.51.100.66 - - ["),
        "the log names it\n{}",
        app.log()
    );
    drop(app);

    let app = crate::support::spawn_app_with(|_| service(""));
    crate::assert_eventually!(status("203.0.113.1") == 200, "{}", app.log());
    assert_eq!(
        status("198.51.100.66"),
        200,
        "not trusted: no address to deny"
    );
    drop(app);
}
