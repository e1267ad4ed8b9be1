//! Which hosts are served, the headers every answer carries, where login may send a
//! browser, and bad ids.

use super::*;

fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut r = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Body::empty()).unwrap()
}

fn listening() -> DashboardState {
    state().with_listen_addr("127.0.0.1:9180".parse().unwrap())
}

async fn refusals(app: &axum::Router, reason: &str) -> String {
    let scrape = request("GET", "/metrics", &[("authorization", "Bearer s3cret")]);
    let metrics = send(app.clone(), scrape).await.body;
    let series = format!("weft_dashboard_refused_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or("missing")
        .to_owned()
}

#[tokio::test]
async fn another_host_is_refused_on_every_route_before_the_token_is_looked_at() {
    for (app, tokened) in [
        (router(listening()), false),
        (router(listening().with_token("s3cret")), true),
    ] {
        for path in [
            "/",
            "/connections",
            "/api/services",
            "/healthz",
            "/metrics",
            "/ws",
            "/static/app.js",
            "/login",
            "/nowhere",
        ] {
            let a = send(
                app.clone(),
                request("GET", path, &[("host", "evil.example:9180")]),
            )
            .await;
            assert_eq!(a.status, StatusCode::MISDIRECTED_REQUEST, "{path}");
            // Reachable from elsewhere (a token), it names none of its hosts to a stranger.
            assert_eq!(
                a.json()["error"]
                    .as_str()
                    .unwrap()
                    .contains("127.0.0.1:9180, localhost:9180"),
                !tokened,
                "{path}: {}",
                a.body
            );
        }
        let forged = request(
            "POST",
            "/api/connections/1/close",
            &[
                ("host", "evil.example:9180"),
                ("origin", "http://evil.example:9180"),
                ("authorization", "Bearer s3cret"),
            ],
        );
        assert_eq!(
            send(app.clone(), forged).await.status,
            StatusCode::MISDIRECTED_REQUEST
        );
    }
    let app = router(listening());
    for host in ["localhost:9181", "127.0.0.1:80", "127.0.0.1"] {
        let a = send(app.clone(), request("GET", "/healthz", &[("host", host)])).await;
        assert_eq!(a.status, StatusCode::MISDIRECTED_REQUEST, "{host}");
    }
    // The authority of an absolute-form target is the host asked for (RFC 9112 §3.2.2).
    let absolute = request(
        "GET",
        "http://evil.example:9180/healthz",
        &[("host", "127.0.0.1:9180")],
    );
    assert_eq!(
        send(app.clone(), absolute).await.status,
        StatusCode::MISDIRECTED_REQUEST
    );
    assert_eq!(refusals(&app, "host").await, "4");
}

#[tokio::test]
async fn a_missing_or_repeated_host_is_a_bad_request() {
    let app = router(listening());
    let none = app
        .clone()
        .oneshot(request("GET", "/healthz", &[]))
        .await
        .unwrap();
    assert_eq!(none.status(), StatusCode::BAD_REQUEST);
    let twice = request(
        "GET",
        "/healthz",
        &[("host", "127.0.0.1:9180"), ("host", "evil.example:9180")],
    );
    assert_eq!(
        send(app.clone(), twice).await.status,
        StatusCode::BAD_REQUEST
    );
    // RFC 9112 section 3.2: whatever the target's form.
    let absolute = request("GET", "http://127.0.0.1:9180/healthz", &[]);
    let absolute = app.clone().oneshot(absolute).await.unwrap();
    assert_eq!(absolute.status(), StatusCode::BAD_REQUEST);
    let absolute_twice = request(
        "GET",
        "http://127.0.0.1:9180/healthz",
        &[("host", "127.0.0.1:9180"), ("host", "127.0.0.1:9180")],
    );
    assert_eq!(
        send(app.clone(), absolute_twice).await.status,
        StatusCode::BAD_REQUEST
    );
    // HTTP/2 names its authority in the target alone.
    let mut h2 = request("GET", "http://127.0.0.1:9180/healthz", &[]);
    *h2.version_mut() = axum::http::Version::HTTP_2;
    assert_eq!(app.oneshot(h2).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn names_in_allowed_hosts_are_served() {
    let app = router(listening().with_allowed_hosts([
        "weft.lan".parse().unwrap(),
        "proxy.example:443".parse().unwrap(),
    ]));
    for (host, status) in [
        ("weft.lan:9180", StatusCode::OK),
        ("weft.lan", StatusCode::OK),
        ("proxy.example:443", StatusCode::OK),
        ("proxy.example:9180", StatusCode::MISDIRECTED_REQUEST),
        ("localhost:9180", StatusCode::OK),
        ("[::1]:9180", StatusCode::OK),
    ] {
        let a = send(app.clone(), request("GET", "/healthz", &[("host", host)])).await;
        assert_eq!(a.status, status, "{host}");
    }
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let open = router(listening());
    let guarded = router(listening().with_token("s3cret"));
    let answers = [
        get(open.clone(), "/").await,
        get(open.clone(), "/connections").await,
        get(open.clone(), "/api/services").await,
        get(open.clone(), "/static/app.js").await,
        get(open.clone(), "/healthz").await,
        get(open.clone(), "/metrics").await,
        get(open.clone(), "/nowhere").await,
        get(open.clone(), "/ws").await,
        send(
            open.clone(),
            request("GET", "/", &[("host", "evil.example:9180")]),
        )
        .await,
        get(guarded.clone(), "/").await,
        get(guarded.clone(), "/api/services").await,
        get(guarded, "/login").await,
    ];
    for a in answers {
        let h = &a.headers;
        assert_eq!(h["x-content-type-options"], "nosniff", "{}", a.status);
        assert_eq!(h["referrer-policy"], "same-origin");
        assert_eq!(h["content-security-policy"], crate::headers::CSP);
        assert_eq!(h["x-frame-options"], "DENY");
    }
}

#[tokio::test]
async fn pages_need_no_inline_script_or_style() {
    let (_dir, store) = store_with(vec![
        closed_connection(1, "echo", "10.0.0.1:5000").into(),
        deferred(5, "failed").into(),
        step(5, 0, "ok", None).into(),
        step(5, 1, "err", None).into(),
    ])
    .await;
    let app = router(state().with_token("s3cret").with_store(store));
    for path in [
        "/",
        "/connections",
        "/connections/1",
        "/deferreds?state=failed",
        "/deferreds/5",
        "/services",
        "/login",
        "/nowhere",
    ] {
        let page = send(
            app.clone(),
            request("GET", path, &[("authorization", "Bearer s3cret")]),
        )
        .await
        .body;
        // What `script-src 'self'` and `style-src 'self'` would block.
        assert!(!page.contains("style="), "{path}: {page}");
        assert!(!page.contains("<style"), "{path}");
        let scripts = page.matches("<script").count();
        let external = page
            .matches(r#"<script type="module" src="/static/"#)
            .count();
        assert_eq!(scripts, external, "{path}");
    }
    let waterfall = get_with_token(&app, "/deferreds/5").await;
    assert!(
        waterfall.contains(r#"<rect class="step ok" x="0.00" width="42.86""#),
        "{waterfall}"
    );
}

async fn get_with_token(app: &axum::Router, path: &str) -> String {
    let r = request("GET", path, &[("authorization", "Bearer s3cret")]);
    send(app.clone(), r).await.body
}

/// The form's hidden `next` field.
fn next_field(page: &str) -> &str {
    let at = page.find(r#"name="next" value=""#).expect("the next field") + 19;
    &page[at..at + page[at..].find('"').unwrap()]
}

#[tokio::test]
async fn login_only_ever_sends_a_browser_to_a_path_of_this_dashboard() {
    let app = router(listening().with_token("s3cret"));
    let login = |token: &str, next: &str| {
        Request::post("/login")
            .header(header::HOST, "127.0.0.1:9180")
            .header(header::ORIGIN, "http://127.0.0.1:9180")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={token}&next={next}")))
            .unwrap()
    };
    for next in [
        "%2F%09%2Fevil.example",
        "%2F%2Fevil.example",
        "%2F.%2F%2Fevil.example",
        "%2F%5Cevil.example",
        "%5C%5Cevil.example",
        "https%3A%2F%2Fevil.example",
        "%2F%0D%0ASet-Cookie%3A%20x%3Dy",
        "%2Fconnections%0A",
        "%09%2F%2Fevil.example",
        "%2F%C3%A9",
        "",
    ] {
        let form = get(app.clone(), &format!("/login?next={next}")).await;
        assert_eq!(form.status, StatusCode::OK, "{next}");
        assert_eq!(next_field(&form.body), "/", "{next}");
        let ok = send(app.clone(), login("s3cret", next)).await;
        assert_eq!(ok.status, StatusCode::SEE_OTHER, "{next}: {}", ok.body);
        assert_eq!(ok.headers[header::LOCATION], "/", "{next}");
        assert!(ok.headers.contains_key(header::SET_COOKIE));
        let failed = send(app.clone(), login("nope", next)).await;
        assert_eq!(failed.status, StatusCode::UNAUTHORIZED, "{next}");
        assert!(!failed.headers.contains_key(header::SET_COOKIE), "{next}");
    }
    let kept = send(
        app.clone(),
        login("s3cret", "%2Fconnections%3Fservice%3Decho"),
    )
    .await;
    assert_eq!(kept.headers[header::LOCATION], "/connections?service=echo");
    assert_eq!(refusals(&app, "token").await, "11");
}

#[tokio::test]
async fn a_bad_id_gets_the_not_found_page_and_the_api_a_json_400() {
    let app = router(state());
    for path in [
        "/connections/abc%3Cscript%3E",
        "/connections/-1",
        "/connections/99999999999999999999999",
        "/connections/%201",
        "/deferreds/abc%3Cscript%3E",
        "/deferreds/1.5",
    ] {
        let a = get(app.clone(), path).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
        assert!(a.kind.starts_with("text/html"), "{path}");
        assert!(a.body.contains("<h1>Not Found</h1>"), "{path}");
        assert!(
            !a.body.contains("abc") && !a.body.contains("script%3E"),
            "{path}"
        );
    }
    for path in [
        "/api/connections/abc",
        "/api/deferreds/-1",
        "/api/connections/1e3",
    ] {
        let a = get(app.clone(), path).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(a.kind, "application/json", "{path}");
        assert!(a.json()["error"].as_str().unwrap().contains("whole number"));
    }
    // A whole number too large to be an id is one nothing has.
    for path in [
        "/api/deferreds/99999999999999999999",
        "/api/connections/99999999999999999999",
    ] {
        let a = get(app.clone(), path).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!a.body.contains("whole number"), "{path}: {}", a.body);
    }
    let action = request(
        "POST",
        "/api/connections/abc/close",
        &[("sec-fetch-site", "same-origin")],
    );
    let a = send(app.clone(), action).await;
    assert_eq!(
        (a.status, a.kind.as_str()),
        (StatusCode::BAD_REQUEST, "application/json")
    );
    let nowhere = get(app, "/api/nowhere").await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    assert_eq!(nowhere.json()["error"], "page not found");
}

#[tokio::test]
async fn a_head_over_its_bound_is_refused_however_it_arrived() {
    let app = router(listening());
    let head = |bytes: usize| request("GET", "/healthz", &[("x-big", &"a".repeat(bytes))]);
    let within = send(app.clone(), head(60 << 10)).await;
    assert_eq!(within.status, StatusCode::OK);
    let over = send(app.clone(), head(70 << 10)).await;
    assert_eq!(over.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(over.body.contains("over 64 KiB"), "{}", over.body);
    assert_eq!(refusals(&app, "head_too_large").await, "1");
}

/// A body that never ends: a client trickling its login form, then stopping.
struct Endless;

impl hyper::body::Body for Endless {
    type Data = axum::body::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<axum::body::Bytes>, std::io::Error>>>
    {
        std::task::Poll::Pending
    }
}

#[tokio::test(start_paused = true)]
async fn the_login_form_s_body_is_bounded_in_size_and_time_before_any_token_is_asked() {
    let app = router(listening().with_token("s3cret"));
    let post = |body: Body| {
        Request::post("/login")
            .header(header::HOST, "127.0.0.1:9180")
            .header(header::ORIGIN, "http://127.0.0.1:9180")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .unwrap()
    };
    let padded = format!("token=nope&next=%2F&pad={}", "a".repeat(16 << 10));
    let large = send(app.clone(), post(Body::from(padded))).await;
    assert_eq!(
        large.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        large.body
    );
    assert_eq!(large.headers[header::CONNECTION], "close");
    // Time is paused: the deadline passes as soon as nothing else is left to run.
    let slow = send(app.clone(), post(Body::new(Endless))).await;
    assert_eq!(slow.status, StatusCode::REQUEST_TIMEOUT, "{}", slow.body);
    assert_eq!(refusals(&app, "body").await, "2");
    // A form of the usual size is read as before.
    let within = send(app.clone(), post(Body::from("token=nope&next=%2F"))).await;
    assert_eq!(within.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_dashboard_on_the_ipv6_wildcard_leaves_the_ipv4_port_to_a_service() {
    let Ok(v6) = bind("[::]:0".parse().unwrap()) else {
        // No IPv6 on this host: nothing to share a port with.
        return;
    };
    let port = v6.local_addr().unwrap().port();
    let v4 = std::net::TcpListener::bind(("127.0.0.1", port));
    assert!(v4.is_ok(), "port {port}: {v4:?}");
}

/// Fetch Metadata's resource isolation policy: what another site's page makes the browser
/// fetch (an `<img>` of an API listing, a script, a `fetch`) is refused before anything
/// runs; a link followed to a page is not, nor are the dashboard's own requests or a
/// client that sends no such field.
#[tokio::test]
async fn requests_another_sites_page_made_are_refused_but_links_followed_to_a_page() {
    let app = router(listening());
    let host = ("host", "127.0.0.1:9180");
    for (site, mode, dest) in [
        ("cross-site", "no-cors", "image"),
        ("cross-site", "cors", "empty"),
        ("same-site", "no-cors", "script"),
        ("cross-site", "navigate", "iframe"),
    ] {
        let a = send(
            app.clone(),
            request(
                "GET",
                "/api/connections?state=closed&limit=10000",
                &[
                    host,
                    ("sec-fetch-site", site),
                    ("sec-fetch-mode", mode),
                    ("sec-fetch-dest", dest),
                ],
            ),
        )
        .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{site} {mode} {dest}");
    }
    for headers in [
        vec![
            host,
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "document"),
        ],
        vec![
            host,
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-mode", "cors"),
        ],
        vec![
            host,
            ("sec-fetch-site", "none"),
            ("sec-fetch-mode", "navigate"),
        ],
        vec![host],
    ] {
        let a = send(app.clone(), request("GET", "/connections", &headers)).await;
        assert_eq!(a.status, StatusCode::OK, "{headers:?}");
    }
    assert_eq!(refusals(&app, "cross_site").await, "4");
}

/// An error the router answers by itself (a method a page does not take, a static file
/// that is not there) says what it is, in plain text, rather than with an empty body of
/// no type.
#[tokio::test]
async fn errors_the_router_answers_say_what_they_are() {
    let app = router(listening());
    let host = ("host", "127.0.0.1:9180");
    for (method, path, status, says) in [
        (
            "POST",
            "/",
            StatusCode::METHOD_NOT_ALLOWED,
            "POST is not allowed here",
        ),
        (
            "DELETE",
            "/metrics",
            StatusCode::METHOD_NOT_ALLOWED,
            "DELETE is not allowed here",
        ),
        ("GET", "/static/nope.js", StatusCode::NOT_FOUND, "not found"),
    ] {
        let a = send(app.clone(), request(method, path, &[host])).await;
        assert_eq!(a.status, status, "{method} {path}");
        assert!(
            a.kind.starts_with("text/plain"),
            "{method} {path}: {}",
            a.kind
        );
        assert!(a.body.contains(says), "{method} {path}: {}", a.body);
    }
}
