//! The dashboard's HTTP side against the real binary: which hosts it serves, the headers
//! every answer carries, where login may send a browser, bad ids, and a history file
//! another process holds locked.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::assert_eventually;
use crate::support::{App, Locked, Reply, http, spawn_app, spawn_app_configured};

/// An echo connection that has echoed once, and its id on the dashboard.
fn open_echo(app: &App) -> (TcpStream, u64) {
    let mut s = TcpStream::connect(app.echo).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"ping\n").unwrap();
    let mut buf = [0; 5];
    s.read_exact(&mut buf).unwrap();
    let peer = s.local_addr().unwrap().to_string();
    let listed = || -> Option<u64> {
        let list: Value =
            serde_json::from_str(&app.get("/api/connections?state=open").body).ok()?;
        list["items"]
            .as_array()?
            .iter()
            .find(|c| c["peer"] == peer.as_str())?["id"]
            .as_u64()
    };
    assert_eventually!(
        listed().is_some(),
        "the echo connection from {peer} is listed"
    );
    (s, listed().unwrap())
}

fn still_echoes(s: &mut TcpStream) -> bool {
    let mut buf = [0; 5];
    s.write_all(b"more\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"more\n"
}

fn json(r: &Reply) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {r:?}"))
}

#[test]
fn a_request_naming_another_host_is_refused_and_acts_on_nothing() {
    let app = spawn_app();
    let port = app.dashboard.port();
    let evil = format!("evil.example:{port}");
    let (mut conn, id) = open_echo(&app);

    // What a page on a rebound name would send: its own Host and Origin.
    let forged = http(
        app.dashboard,
        &format!(
            "POST /api/connections/{id}/close HTTP/1.1\r\nHost: {evil}\r\nOrigin: http://{evil}\r\n\
             Content-Type: application/json\r\n"
        ),
        "{}",
    );
    assert_eq!(forged.status, 421, "{forged:?}");
    assert!(
        json(&forged)["error"]
            .as_str()
            .unwrap()
            .contains("evil.example"),
        "the refusal names the host: {forged:?}"
    );
    assert!(still_echoes(&mut conn), "the connection was not closed");

    for path in [
        "/",
        "/connections",
        "/api/connections",
        "/healthz",
        "/metrics",
        "/ws",
        "/static/app.js",
        "/login",
    ] {
        let r = app.get_as(&evil, path);
        assert_eq!(r.status, 421, "{path}: {r:?}");
        assert!(
            !r.body.contains(&format!("\"id\":{id}")),
            "{path} leaked data"
        );
    }
    // Without a port, or with a name that merely starts like an allowed one.
    for host in [
        "evil.example",
        "localhost.evil.example",
        "127.0.0.1.evil.example",
    ] {
        assert_eq!(app.get_as(host, "/api/services").status, 421, "{host}");
    }
    let missing = http(app.dashboard, "GET /healthz HTTP/1.0\r\n", "");
    assert_eq!(missing.status, 400, "a request without Host: {missing:?}");

    // The dashboard's own names still work, and the refusals were counted.
    for host in [
        app.dashboard.to_string(),
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
    ] {
        assert_eq!(app.get_as(&host, "/api/services").status, 200, "{host}");
    }
    let refused = app
        .metric(r#"weft_dashboard_refused_total{reason="host"}"#)
        .unwrap_or(0.0);
    assert!(refused >= 12.0, "refusals counted: {refused}");
    assert!(still_echoes(&mut conn));
}

#[test]
fn names_in_allowed_hosts_are_served() {
    let app = spawn_app_configured(r#"allowed_hosts = ["weft.test", "box.lan:8443"]"#, |_| {
        String::new()
    });
    let port = app.dashboard.port();
    for (host, status) in [
        (format!("weft.test:{port}"), 200),
        ("weft.test".to_owned(), 200),
        ("box.lan:8443".to_owned(), 200),
        (format!("box.lan:{port}"), 421),
        (format!("other.test:{port}"), 421),
    ] {
        assert_eq!(app.get_as(&host, "/healthz").status, status, "{host}");
    }
}

#[test]
fn every_answer_carries_the_security_headers() {
    let app = spawn_app();
    let port = app.dashboard.port();
    let mut answers: Vec<(String, Reply)> = [
        "/",
        "/connections",
        "/services",
        "/deferreds",
        "/http",
        "/api/services",
        "/api/http",
        "/static/app.js",
        "/static/http.js",
        "/static/style.css",
        "/healthz",
        "/metrics",
        "/nowhere",
        "/login",
    ]
    .into_iter()
    .map(|p| (p.to_owned(), app.get(p)))
    .collect();
    answers.push((
        "refused".into(),
        app.get_as(&format!("evil.example:{port}"), "/"),
    ));
    for (path, r) in &answers {
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("referrer-policy"), Some("same-origin"), "{path}");
        let csp = r.header("content-security-policy").unwrap_or_default();
        for directive in ["default-src 'self'", "frame-ancestors 'none'"] {
            assert!(csp.contains(directive), "{path}: {csp:?}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp:?}");
    }
}

/// The form's hidden `next` field of a `/login` page.
fn next_field(page: &str) -> &str {
    let at = page.find(r#"name="next" value=""#).expect("the next field") + 19;
    &page[at..at + page[at..].find('"').unwrap()]
}

/// `POST /login` of `token` to go to `next` (form-encoded), from the dashboard's own page.
fn post_login(app: &App, token: &str, next: &str) -> Reply {
    let host = app.dashboard.to_string();
    http(
        app.dashboard,
        &format!(
            "POST /login HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n"
        ),
        &format!("token={token}&next={next}"),
    )
}

#[test]
fn login_only_ever_sends_a_browser_to_a_path_of_this_dashboard() {
    let app = spawn_app_configured(r#"token = "s3cret-0123456789ab""#, |_| String::new());
    let login = |next: &str| post_login(&app, "s3cret-0123456789ab", next);
    for next in [
        "%2F%09%2Fevil.example",
        "%2F%2Fevil.example",
        "%2F%5Cevil.example",
        "%5C%5Cevil.example",
        "https%3A%2F%2Fevil.example",
        "%2F%0D%0ASet-Cookie%3A%20x%3Dy",
        "%2Fconnections%0A",
        "%09%2F%2Fevil.example",
    ] {
        let form = app.get(&format!("/login?next={next}"));
        assert_eq!(form.status, 200, "{next}: {form:?}");
        assert_eq!(next_field(&form.body), "/", "{next}");
        let r = login(next);
        assert_eq!(r.status, 303, "{next}: {r:?}");
        assert_eq!(r.header("location"), Some("/"), "{next}");
        assert!(r.header("set-cookie").is_some(), "{next}");
        assert_eq!(
            r.headers.iter().filter(|(k, _)| k == "set-cookie").count(),
            1
        );
    }
    let kept = login("%2Fconnections%3Fservice%3Decho");
    assert_eq!(kept.header("location"), Some("/connections?service=echo"));
    let wrong = post_login(&app, "nope", "%2F%0D%0Ax");
    assert_eq!(wrong.status, 401, "{wrong:?}");
    assert!(wrong.header("set-cookie").is_none(), "{wrong:?}");
}

/// The cookie `/login` sets holds a session, never the token: a browser sends it to every
/// port of the host, so any other service there sees it.
#[test]
fn signing_in_sets_a_session_cookie_that_gives_the_token_away_to_no_one() {
    const TOKEN: &str = "s3cret-0123456789ab";
    let app = spawn_app_configured(&format!("token = \"{TOKEN}\""), |_| String::new());
    let host = app.dashboard.to_string();
    let signed_in = post_login(&app, TOKEN, "%2F");
    assert_eq!(signed_in.status, 303, "{signed_in:?}");
    let set = signed_in.header("set-cookie").expect("a cookie");
    assert!(!set.contains(TOKEN), "{set}");
    assert!(set.contains("Max-Age=604800"), "{set}");
    let session = set.split(';').next().unwrap();
    let with_cookie = |cookie: &str| {
        http(
            app.dashboard,
            &format!("GET /api/services HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n"),
            "",
        )
        .status
    };
    assert_eq!(with_cookie(session), 200);
    assert_eq!(with_cookie(&format!("weft_token={TOKEN}")), 401);
}

#[test]
fn a_peer_that_tries_too_many_wrong_tokens_waits_whatever_it_presents_and_others_do_not() {
    use weft_dashboard::attempts::{BURST, REFILL};
    const TOKEN: &str = "weft-e2e-token-0123456789";
    let app = spawn_app_configured(&format!("token = \"{TOKEN}\""), |_| String::new());
    let host = app.dashboard.to_string();
    let bearer = |path: &str, token: &str| {
        http(
            app.dashboard,
            &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"),
            "",
        )
    };
    // Another peer (127.0.0.2 is this host too), through a real client.
    let elsewhere = |path: &str| {
        let out = std::process::Command::new("curl")
            .args(["-s", "--max-time", "5", "--interface", "127.0.0.2"])
            .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
            .args(["-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{host}{path}"))
            .output()
            .expect("curl must be installed (scripts/test installs it)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // A stale value sent again and again (a tab left open after the token changed) is one
    // guess, not one a request.
    for _ in 0..3 * BURST {
        assert_eq!(bearer("/api/services", "stale").status, 401);
    }
    for i in 1..BURST {
        let r = bearer("/api/services", &format!("guess-{i}"));
        assert_eq!(r.status, 401, "guess {i}: {r:?}");
    }
    // The burst is spent: the right token is refused too, or the limit would tell a right
    // guess from a wrong one.
    let api = bearer("/api/services", TOKEN);
    assert_eq!(api.status, 429, "{api:?}");
    assert!(api.body.contains("too many wrong tokens"), "{api:?}");
    let wait: u64 = api
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=REFILL.as_secs()).contains(&wait), "{wait}");
    assert_eq!(bearer("/metrics", TOKEN).status, 429);
    let login = post_login(&app, TOKEN, "%2F");
    assert_eq!(login.status, 429, "{login:?}");
    assert!(login.header("set-cookie").is_none(), "{login:?}");
    assert!(login.body.contains("Too many wrong tokens"), "{login:?}");
    // Asking without a token is no guess, and is answered as ever.
    assert_eq!(app.get("/api/services").status, 401);
    // Another peer is not held back, and sees the refusals counted.
    assert_eq!(elsewhere("/api/services"), "200");
    let metrics = {
        let out = std::process::Command::new("curl")
            .args(["-s", "--max-time", "5", "--interface", "127.0.0.2"])
            .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
            .arg(format!("http://{host}/metrics"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let count = |reason: &str| {
        let series = format!("weft_dashboard_refused_total{{reason=\"{reason}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str())?.parse::<f64>().ok())
    };
    assert_eq!(count("token_attempts"), Some(3.0), "{metrics}");
    assert_eq!(
        count("token"),
        Some(f64::from(4 * BURST - 1) + 1.0),
        "every wrong token and the request without one: {metrics}"
    );
    // And logged, naming the peer: an operator can see who guesses.
    let log = app.log();
    assert!(
        log.lines()
            .any(|l| l.contains("dashboard refused a request")
                && l.contains("too many wrong tokens")
                && l.contains("peer=127.0.0.1")),
        "{log}"
    );
    // Once it has waited, it may try again.
    std::thread::sleep(Duration::from_secs(wait));
    assert_eq!(bearer("/api/services", TOKEN).status, 200);
}

#[test]
fn a_bad_id_gets_a_not_found_page_and_the_api_a_json_error() {
    let app = spawn_app();
    for path in [
        "/connections/abc%3Cscript%3E",
        "/connections/-1",
        "/connections/99999999999999999999999",
        "/deferreds/abc%3Cscript%3E",
        "/deferreds/1.5",
    ] {
        let r = app.get(path);
        assert_eq!(r.status, 404, "{path}: {r:?}");
        assert!(
            r.header("content-type").unwrap().starts_with("text/html"),
            "{path}"
        );
        assert!(
            !r.body.contains("<script>") && !r.body.contains("abc"),
            "{path}"
        );
        assert!(r.body.contains("Not Found"), "{path}");
    }
    for path in ["/api/connections/abc", "/api/deferreds/abc"] {
        let r = app.get(path);
        assert_eq!(r.status, 400, "{path}: {r:?}");
        assert!(json(&r)["error"].as_str().unwrap().contains("id"), "{path}");
    }
    let host = app.dashboard.to_string();
    let action = http(
        app.dashboard,
        &format!(
            "POST /api/connections/abc/close HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n"
        ),
        "",
    );
    assert_eq!(action.status, 400, "{action:?}");
    json(&action);
    // A query parameter that does not parse is named in a JSON error, as everything the
    // API answers is JSON.
    for (path, said) in [
        (
            "/api/connections?limit=-1",
            r#"limit: expected a whole number, 0 or more, got "-1""#,
        ),
        (
            "/api/deferreds?limit=abc",
            r#"limit: expected a whole number, 0 or more, got "abc""#,
        ),
        (
            "/api/events?after=18446744073709551616",
            r#"after: expected a smaller whole number, got "18446744073709551616""#,
        ),
        (
            "/api/events?after=-1",
            r#"after: expected a whole number, 0 or more, got "-1""#,
        ),
        (
            "/api/profile?limit=1.5",
            r#"limit: expected a whole number, 0 or more, got "1.5""#,
        ),
        (
            "/api/connections?limit=5&limit=6",
            "limit: given more than once; give it once",
        ),
        (
            "/api/connections?reactor=abc",
            r#"reactor: expected a reactor's index, a whole number from 0 to 65535, got "abc""#,
        ),
    ] {
        let r = app.get(path);
        assert_eq!(r.status, 400, "{path}: {r:?}");
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{path}: {r:?}"
        );
        assert_eq!(json(&r)["error"], said, "{path}");
    }
    let nowhere = app.get("/api/nowhere");
    assert_eq!(nowhere.status, 404, "{nowhere:?}");
    assert_eq!(json(&nowhere)["error"], "page not found");
}

#[test]
fn a_history_file_locked_by_another_process_leaves_every_view_answering() {
    let app = spawn_app();
    // One connection in history, one open.
    let (gone, closed) = open_echo(&app);
    drop(gone);
    assert_eventually!(
        json(&app.get("/api/connections?state=closed"))["items"]
            .as_array()
            .is_some_and(|i| !i.is_empty()),
        "the closed connection reaches history"
    );
    let (mut conn, open) = open_echo(&app);
    let lock = Locked::hold(&app.db);

    // Many at once, so the store must open fresh connections while the lock is held.
    let paths = [
        "/connections",
        "/connections?state=open",
        "/api/connections",
        "/api/events",
        "/",
        "/services",
        "/deferreds?state=failed",
        "/api/services",
    ];
    let dashboard = app.dashboard;
    let answers: Vec<(&str, Reply, Duration)> = std::thread::scope(|scope| {
        let threads: Vec<_> = paths
            .iter()
            .chain(paths.iter())
            .map(|&path| {
                scope.spawn(move || {
                    let started = Instant::now();
                    let r = http(
                        dashboard,
                        &format!("GET {path} HTTP/1.1\r\nHost: {dashboard}\r\n"),
                        "",
                    );
                    (path, r, started.elapsed())
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    // Under the store's busy timeout (2 s), which a view waiting on the lock would take:
    // sixteen pages made at once on a busy machine may take a second without it.
    for (path, r, took) in &answers {
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert!(*took < Duration::from_millis(1900), "{path} took {took:?}");
    }
    let list = json(&app.get("/api/connections"));
    let ids: Vec<u64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["id"].as_u64())
        .collect();
    assert!(ids.contains(&open) && ids.contains(&closed), "{list}");
    assert!(
        list.get("history_error").is_none_or(Value::is_null),
        "{list}"
    );
    let events = json(&app.get("/api/events"));
    assert!(!events.as_array().unwrap().is_empty(), "{events}");
    assert!(still_echoes(&mut conn));
    drop(lock);
}

/// A connection closed from the dashboard reads closed at once, with its reason: before
/// history had the close (its writer commits about once a second) its row said open.
#[test]
fn a_connection_closed_from_the_dashboard_reads_closed_at_once() {
    let app = spawn_app();
    for _ in 0..5 {
        let mut client = TcpStream::connect(app.echo).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.write_all(b"hi\n").unwrap();
        let mut buf = [0; 3];
        client.read_exact(&mut buf).unwrap();
        let port = client.local_addr().unwrap().port().to_string();
        let id = {
            let list: Value = json(&app.get("/api/connections?state=open&service=echo"));
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| {
                    c["peer"]
                        .as_str()
                        .is_some_and(|p| p.ends_with(&format!(":{port}")))
                })
                .expect("the client is listed")["id"]
                .as_u64()
                .unwrap()
        };
        assert_eq!(app.close_from_dashboard(id).status, 202);
        assert_eventually!(
            client.read(&mut buf).map_or(true, |n| n == 0),
            "the client's end closed"
        );
        // The client sees its end a moment before the reactor reports the close; history
        // has it about a second later (404 or `open` until then, before): well within
        // that, the connection reads closed.
        let closed_by = Instant::now() + Duration::from_millis(300);
        let seen = loop {
            let seen = json(&app.get(&format!("/api/connections/{id}")));
            if seen["state"] == "closed" || Instant::now() > closed_by {
                break seen;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(seen["state"], "closed", "{seen:#}");
        assert!(seen["close_reason"].is_string(), "{seen:#}");
        assert!(seen["closed_at_ms"].is_i64(), "{seen:#}");
    }
}

/// A UDP endpoint is listed with the connections, but it is its service's port: closing it
/// is refused with 409 and says why (it went on answering while the dashboard said 202),
/// and its pages offer no close button.
#[test]
fn closing_a_udp_endpoint_is_refused_and_it_goes_on_answering() {
    let app = spawn_app();
    let list: Value = json(&app.get("/api/connections?state=open&service=echo"));
    let endpoint = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["transport"] == "udp")
        .expect("the UDP echo endpoint is listed")
        .clone();
    // It takes datagrams from any peer: no peer of its own address.
    assert_eq!(endpoint["peer"], "0.0.0.0:0", "{endpoint:#}");
    let udp = endpoint["id"].as_u64().unwrap();
    let action = app.close_from_dashboard(udp);
    assert_eq!(action.status, 409, "{action:?}");
    assert!(
        json(&action)["error"]
            .as_str()
            .unwrap()
            .contains("UDP endpoint is its service's port"),
        "{action:?}"
    );
    let page = app.get(&format!("/connections/{udp}"));
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains("opened (a UDP port, with no single peer)"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains(r#"data-action="close""#),
        "{}",
        page.body
    );
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.send_to(b"still", app.echo).unwrap();
    let mut buf = [0; 8];
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"still");
}

/// Heads hyper refuses before the dashboard's own code sees them (more than its 100 fields,
/// a target too long, a line that is no header field) are answered by hyper, 431, 414 or
/// 400 with no body, and still counted.
#[test]
fn heads_hyper_refuses_for_the_dashboard_are_counted() {
    let app = spawn_app();
    let host = app.dashboard;
    let status = |head: String| {
        let mut s = TcpStream::connect(host).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        String::from_utf8_lossy(&reply)
            .split(' ')
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    };
    let fields: String = (0..101).map(|i| format!("x-{i}: 1\r\n")).collect();
    assert_eq!(
        status(format!(
            "GET /healthz HTTP/1.1\r\nHost: {host}\r\n{fields}\r\n"
        )),
        "431"
    );
    let long = "a".repeat(65_600);
    assert_eq!(
        status(format!("GET /{long} HTTP/1.1\r\nHost: {host}\r\n\r\n")),
        "414"
    );
    assert_eq!(
        status(format!(
            "GET /healthz HTTP/1.1\r\nHost: {host}\r\nno colon\r\n\r\n"
        )),
        "400"
    );
    let count = |reason: &str| {
        app.metric(&format!(
            r#"weft_dashboard_refused_total{{reason="{reason}"}}"#
        ))
    };
    assert_eventually!(
        count("head_too_large") == Some(2.0),
        "{:?}",
        count("head_too_large")
    );
    assert_eventually!(count("malformed") == Some(1.0), "{:?}", count("malformed"));
}

/// A flood of datagrams the echo service will not answer (past its 1,000 a second for one
/// peer) is one handled error each: all counted by the metric, while at most twenty a
/// second reach the feed and history, each saying how many of them were left out since
/// the one before (the tail a second after the flood), so a flooder cannot fill the
/// history store's queue and have other peers' records dropped.
#[test]
fn a_flood_of_handled_errors_reaches_history_at_a_bounded_rate_and_is_counted_whole() {
    const FLOOD: usize = 6_000;
    let app = spawn_app();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    // In bursts the socket's buffer holds, within one second: past the first 1,000 each
    // is an error.
    for _ in 0..FLOOD / 200 {
        for _ in 0..200 {
            socket.send_to(b"x", app.echo).unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let series = r#"weft_errors_total{kind="datagram_dropped",service="echo"}"#;
    let counted = || app.metric(series).unwrap_or(0.0) as u64;
    assert_eventually!(counted() >= 1_000, "the flood is counted: {}", counted());
    // The count settles once the reactor has read what the kernel kept.
    let mut settled = 0;
    while counted() != settled {
        settled = counted();
        std::thread::sleep(Duration::from_millis(300));
    }
    let told = || {
        let events = json(&app.get("/api/events?limit=10000"));
        let errors: Vec<u64> = events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["type"] == "protocol_error"
                    && e["data"]["service"] == "echo"
                    && e["data"]["kind"] == "datagram_dropped"
            })
            .map(|e| {
                e["data"]["suppressed"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{e}"))
            })
            .collect();
        errors
    };
    assert_eventually!(
        told().iter().map(|n| n + 1).sum::<u64>() == settled,
        "every error told in history, those left out counted in the next: {:?} for {settled}",
        told()
    );
    let rows = told().len() as u64;
    let allowed = 20 * (started.elapsed().as_secs() + 2);
    assert!(
        rows <= allowed,
        "{rows} rows for {settled} errors in {:?}",
        started.elapsed()
    );
}
