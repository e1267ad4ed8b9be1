//! Who may read and who may act.

use super::*;

fn with_header(path: &str, name: &str, value: &str) -> Request<Body> {
    Request::get(path)
        .header(name, value)
        .body(Body::empty())
        .unwrap()
}

fn post(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut r = Request::post(path).header(header::HOST, "127.0.0.1:9180");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn a_token_guards_everything_but_healthz_login_and_assets() {
    let app = router(state().with_token("s3cret"));
    assert_eq!(
        get(app.clone(), "/metrics").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(app.clone(), "/api/services").await.status,
        StatusCode::UNAUTHORIZED
    );
    let wrong = with_header("/metrics", "authorization", "Bearer wrong");
    assert_eq!(
        send(app.clone(), wrong).await.status,
        StatusCode::UNAUTHORIZED
    );
    let right = with_header("/metrics", "authorization", "Bearer s3cret");
    assert_eq!(send(app.clone(), right).await.status, StatusCode::OK);
    // The scheme's name is case-insensitive (RFC 9110 section 11.1).
    for scheme in ["bearer", "BEARER"] {
        let right = with_header("/metrics", "authorization", &format!("{scheme} s3cret"));
        assert_eq!(
            send(app.clone(), right).await.status,
            StatusCode::OK,
            "{scheme}"
        );
    }
    let other = with_header("/metrics", "authorization", "Basic s3cret");
    assert_eq!(
        send(app.clone(), other).await.status,
        StatusCode::UNAUTHORIZED
    );
    for open in ["/healthz", "/login", "/static/style.css"] {
        assert_eq!(
            get(app.clone(), open).await.status,
            StatusCode::OK,
            "{open}"
        );
    }
    let nowhere = with_header("/nowhere", "authorization", "Bearer s3cret");
    assert_eq!(send(app, nowhere).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_browser_without_the_token_is_sent_to_login_and_gets_a_strict_cookie() {
    let app = router(state().with_token("s3cret"));
    let page = get(app.clone(), "/connections?service=echo").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(
        page.headers[header::LOCATION],
        "/login?next=%2Fconnections%3Fservice%3Decho"
    );

    let form = |token: &str, next: &str| {
        Request::post("/login")
            .header(header::HOST, "127.0.0.1:9180")
            .header(header::ORIGIN, "http://127.0.0.1:9180")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={token}&next={next}")))
            .unwrap()
    };
    let bad = send(app.clone(), form("nope", "%2F")).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.body.contains("not right"));

    let ok = send(app.clone(), form("s3cret", "%2Fconnections")).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.headers[header::LOCATION], "/connections");
    let cookie = ok.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    // A session, never the token: the browser sends it to every port of the host.
    let session = cookie.split(';').next().unwrap();
    assert!(
        session.starts_with("weft_token=") && !session.contains("s3cret"),
        "{cookie}"
    );

    let with_cookie = with_header("/api/services", "cookie", &format!("theme=dark; {session}"));
    assert_eq!(send(app.clone(), with_cookie).await.status, StatusCode::OK);
    // Another service's cookie of the same name, sent first, does not hide it.
    let planted = format!("weft_token=planted; {session}");
    let with_both = with_header("/api/services", "cookie", &planted);
    assert_eq!(send(app.clone(), with_both).await.status, StatusCode::OK);
    // The token itself in the cookie (as it was once set) is no session.
    let old = with_header("/api/services", "cookie", "weft_token=s3cret");
    assert_eq!(
        send(app.clone(), old).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Login never redirects off the dashboard.
    let away = send(app, form("s3cret", "%2F%2Fevil.example")).await;
    assert_eq!(away.headers[header::LOCATION], "/");
}

#[tokio::test]
async fn actions_refuse_cross_site_requests() {
    let app = router(state());
    let path = "/api/connections/1/close";
    let forged = post(path, &[("origin", "http://evil.example")]);
    assert_eq!(
        send(app.clone(), forged).await.status,
        StatusCode::FORBIDDEN
    );
    let anonymous = post(path, &[]);
    assert_eq!(
        send(app.clone(), anonymous).await.status,
        StatusCode::FORBIDDEN
    );
    // Same origin passes the check; this dashboard has no reactor to act on.
    let own = post(path, &[("origin", "http://127.0.0.1:9180")]);
    assert_eq!(
        send(app.clone(), own).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let fetch = post(path, &[("sec-fetch-site", "same-origin")]);
    assert_eq!(
        send(app.clone(), fetch).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // No browser names two origins: the first being this one's vouches for nothing.
    let two = post(
        path,
        &[
            ("origin", "http://127.0.0.1:9180"),
            ("origin", "http://evil.example"),
        ],
    );
    assert_eq!(send(app.clone(), two).await.status, StatusCode::FORBIDDEN);
    // An absolute-form target names the host asked for, which the Host check took in
    // place of the field (RFC 9112 §3.2.2): an Origin matching the field vouches for
    // nothing then.
    let absolute = Request::post(format!("http://127.0.0.1:9180{path}"))
        .header(header::HOST, "evil.example")
        .header(header::ORIGIN, "http://evil.example")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        send(app.clone(), absolute).await.status,
        StatusCode::FORBIDDEN
    );
    // One whose Origin names the target's authority passes, whatever its Host field.
    let own = Request::post(format!("http://127.0.0.1:9180{path}"))
        .header(header::HOST, "evil.example")
        .header(header::ORIGIN, "http://127.0.0.1:9180")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(app, own).await.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn the_bearer_token_is_enough_to_act_from_a_script() {
    let reactor = weft::Reactor::new().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(bearer_acts(reactor.handle()));
}

async fn bearer_acts(reactor: weft::ReactorHandle) {
    let state = state().with_token("s3cret").with_reactor(reactor);
    let session = format!(
        "weft_token={}",
        state.sessions.issue(std::time::SystemTime::now())
    );
    let app = router(state);
    let path = "/api/connections/12345/close";
    let cookie_only = post(
        path,
        &[("cookie", &session), ("origin", "http://evil.example")],
    );
    assert_eq!(
        send(app.clone(), cookie_only).await.status,
        StatusCode::FORBIDDEN
    );
    let scripted = post(path, &[("authorization", "Bearer s3cret")]);
    let a = send(app, scripted).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("open connection")
    );
}

#[tokio::test]
async fn the_live_feed_refuses_other_origins() {
    let app = router(state());
    let upgrade = Request::get("/ws")
        .header(header::HOST, "127.0.0.1:9180")
        .header(header::ORIGIN, "http://evil.example")
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(app, upgrade).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn api_errors_are_json_whoever_answers_them() {
    let app = router(state().with_token("s3cret"));
    let unauthorized = get(app.clone(), "/api/services").await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
    assert!(
        unauthorized.json()["error"]
            .as_str()
            .unwrap()
            .contains("token")
    );
    assert_eq!(unauthorized.headers[header::WWW_AUTHENTICATE], "Bearer");
    // Outside the API, the same refusal stays text for curl and Prometheus.
    let metrics = get(app.clone(), "/metrics").await;
    assert_eq!(metrics.status, StatusCode::UNAUTHORIZED);
    assert!(metrics.kind.starts_with("text/plain"), "{}", metrics.kind);

    let app = router(state());
    let wrong = get(app, "/api/connections/1/close").await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.headers[header::ALLOW], "POST");
    let error = wrong.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("GET is not allowed"), "{error}");
}
