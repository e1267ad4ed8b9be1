//! `allow` and `deny` on the `http` kind, on the real binary with curl from several
//! loopback addresses: a client the service's or a route's lists refuse is answered 403,
//! counted and logged, and never reaches an upstream.

use std::net::SocketAddr;

use crate::http_peers::{RawClient, Upstream, curl_status, web_service};

/// The status of `path` asked from `source`.
fn status(web: SocketAddr, source: &str, path: &str) -> u16 {
    curl_status(web, source, path, &[])
}

#[test]
fn clients_the_lists_refuse_get_403_and_never_reach_the_upstream() {
    let upstream = Upstream::start();
    let (app, web) = web_service(&format!(
        r#"allow = ["127.0.0.0/8"]
deny = ["127.0.0.3"]
[[service.route]]
prefix = "/admin/"
upstream = "http://{upstream}"
allow = ["127.0.0.1"]
"#,
        upstream = upstream.addr,
    ));
    assert_eq!(status(web, "127.0.0.1", "/f.txt"), 200);
    assert_eq!(status(web, "127.0.0.1", "/admin/x"), 200);
    assert_eq!(upstream.received(), 1);
    // In the service's list, not in the route's.
    assert_eq!(status(web, "127.0.0.2", "/f.txt"), 200);
    assert_eq!(status(web, "127.0.0.2", "/admin/x"), 403);
    assert_eq!(
        upstream.received(),
        1,
        "the refused request never went upstream"
    );
    // Denied by the service, whatever the path.
    assert_eq!(status(web, "127.0.0.3", "/f.txt"), 403);
    assert_eq!(status(web, "127.0.0.3", "/admin/x"), 403);
    assert_eq!(upstream.received(), 1);

    let forbidden = app
        .metric(r#"weft_http_requests_refused_total{reason="forbidden",service="web"}"#)
        .unwrap_or(0.0);
    assert_eq!(forbidden, 3.0);
    let route_4xx = app
        .metric(r#"weft_http_route_requests_total{code="4xx",route="/admin/",service="web"}"#)
        .unwrap_or(0.0);
    assert_eq!(route_4xx, 2.0, "counted under the route they were for");
    crate::assert_eventually!(
        app.log().contains("\"GET /f.txt HTTP/1.1\" 403"),
        "{}",
        app.log()
    );
    // The dashboard's HTTP view counts them by reason, and its page says it in words.
    let refused = || {
        let body = app.curl("/api/http").unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v.as_array()
            .and_then(|services| services.iter().find(|s| s["service"] == "web"))
            .and_then(|s| s["held"].as_array().cloned())
            .and_then(|held| held.into_iter().find(|h| h["name"] == "refused_forbidden"))
            .and_then(|h| h["held"].as_u64())
    };
    crate::assert_eventually!(refused() == Some(3), "{:?}", app.curl("/api/http"));
    let page = app.curl("/http").unwrap_or_default();
    assert!(page.contains("refused: forbidden <b>3</b>"), "{page}");
}

/// A reload that denies a client refuses it on the keep-alive connection it already
/// holds, not only on its next one.
#[test]
fn a_reload_that_denies_a_client_refuses_it_on_the_connection_it_holds() {
    let (app, web) = web_service("");
    let get = b"GET /f.txt HTTP/1.1\r\nHost: web\r\n\r\n";
    let mut held = RawClient::connect_from([127, 0, 0, 2].into(), web);
    held.send(get);
    assert_eq!(held.read_reply().status, 200);

    app.edit_config(|text| format!("{text}deny = [\"127.0.0.2\"]\n"));
    app.reload_by_signal("ok");
    held.send(get);
    assert_eq!(
        held.read_reply().status,
        403,
        "on the connection held across the reload"
    );
    let mut fresh = RawClient::connect_from([127, 0, 0, 2].into(), web);
    fresh.send(get);
    assert_eq!(fresh.read_reply().status, 403);
    let mut other = RawClient::connect_from([127, 0, 0, 1].into(), web);
    other.send(get);
    assert_eq!(other.read_reply().status, 200);

    // A later reload that changes something else keeps the client denied on the
    // connection the first generation accepted (the generation between is gone).
    app.edit_config(|text| text.replace("root = ", "cache_control = \"no-store\"\nroot = "));
    app.reload_by_signal("ok");
    held.send(get);
    assert_eq!(held.read_reply().status, 403, "two reloads on");

    // A reload that fails (a new service's port is taken) changes nothing: the lists it
    // would have put in force (no deny) never judge a request.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    app.edit_config(|text| {
        let open = text.replace("deny = [\"127.0.0.2\"]\n", "");
        format!(
            "{open}[[service]]\nname = \"more\"\nkind = \"echo\"\n\
             listen = \"tcp:{port}:interface=127.0.0.1\"\n"
        )
    });
    app.reload_by_signal("failed");
    held.send(get);
    assert_eq!(held.read_reply().status, 403, "after a failed reload");
    let mut fresh = RawClient::connect_from([127, 0, 0, 2].into(), web);
    fresh.send(get);
    assert_eq!(fresh.read_reply().status, 403);
}
