//! Routes over several upstreams: balancing, an upstream that dies and comes back,
//! active health checks, every upstream ejected, a pooled connection closed from the
//! dashboard, and `https://` upstreams verified against a CA made here.

mod support;

use std::time::Duration;

use support::Server;
use support::upstream::{AfterResponse, KeepAlive};
use weft::Reactor;
use weft_test_support::eventually;
use weft_web::{ActiveCheck, Balance, Health, PoolConfig, Route, WebConfig};

fn url(up: &KeepAlive) -> String {
    format!("http://{}", up.addr)
}

fn balanced(upstreams: &[&KeepAlive], balance: Balance, health: Health) -> Server {
    let urls: Vec<String> = upstreams.iter().map(|u| url(u)).collect();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let mut route = Route::balanced("/", &urls).unwrap();
    route.balance = balance;
    route.health = health;
    Server::start(WebConfig {
        routes: vec![route],
        ..WebConfig::default()
    })
}

/// Which upstream answered `GET path`, by name (`a #3` → `a`); panics on an error.
fn served_by(server: &Server, path: &str) -> String {
    let reply = server.get(path);
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text().split(' ').next().unwrap().to_owned()
}

#[test]
fn round_robin_survives_a_dead_upstream_ejects_it_and_takes_it_back() {
    let (a, b) = (
        KeepAlive::start("a", AfterResponse::KeepOpen),
        KeepAlive::start("b", AfterResponse::KeepOpen),
    );
    let health = Health {
        max_fails: 1,
        eject_for: Duration::from_millis(300),
        check: None,
    };
    let server = balanced(&[&a, &b], Balance::RoundRobin, health);
    let first: Vec<String> = (0..4).map(|_| served_by(&server, "/x")).collect();
    assert_eq!(first, ["a", "b", "a", "b"]);

    b.kill();
    for _ in 0..6 {
        assert_eq!(
            served_by(&server, "/x"),
            "a",
            "b is dead: a answers everything"
        );
    }
    let dead = server.upstream(&url(&b));
    assert!(dead.consecutive_failures >= 1, "{dead:?}");
    assert!(!dead.recent_errors.is_empty(), "{dead:?}");
    assert!(
        server.recorded.ejected.lock().unwrap().contains(&url(&b)),
        "the ejection is counted"
    );
    assert!(server.recorded.failures("refused") >= 1);
    assert!(server.upstream(&url(&a)).healthy);

    b.revive();
    eventually("b serves again after its ejection ran out", || {
        served_by(&server, "/x") == "b"
    });
    assert!(server.upstream(&url(&b)).healthy);
}

#[test]
fn an_active_check_brings_an_ejected_upstream_back_without_client_requests() {
    let (a, b) = (
        KeepAlive::start("a", AfterResponse::KeepOpen),
        KeepAlive::start("b", AfterResponse::KeepOpen),
    );
    let health = Health {
        max_fails: 1,
        // Longer than the test: only the check can bring it back.
        eject_for: Duration::from_secs(3600),
        check: Some(ActiveCheck {
            path: "/healthz".into(),
            interval: Duration::from_millis(100),
        }),
    };
    let server = balanced(&[&a, &b], Balance::RoundRobin, health);
    b.kill();
    eventually("the check ejects the dead upstream", || {
        !server.upstream(&url(&b)).healthy
    });
    assert!(server.upstream(&url(&b)).ejected_until.is_some());
    for _ in 0..4 {
        assert_eq!(served_by(&server, "/x"), "a");
    }
    b.revive();
    eventually("the check finds it back", || {
        server.upstream(&url(&b)).healthy
    });
    let served: Vec<String> = (0..4).map(|_| served_by(&server, "/x")).collect();
    assert!(served.contains(&"b".to_owned()), "{served:?}");
}

#[test]
fn with_every_upstream_ejected_the_client_gets_503_and_it_is_counted() {
    let (a, b) = (
        KeepAlive::start("a", AfterResponse::KeepOpen),
        KeepAlive::start("b", AfterResponse::KeepOpen),
    );
    let health = Health {
        max_fails: 1,
        eject_for: Duration::from_secs(3600),
        check: None,
    };
    let server = balanced(&[&a, &b], Balance::RoundRobin, health);
    a.kill();
    b.kill();
    let reply = server.get("/x");
    assert_eq!(reply.status, 502, "{}", reply.text());
    let reply = server.get("/x");
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(reply.text().contains("no upstream server is available"));
    // When to ask again: once the first ejection is over (an hour, less the moment since).
    let after: u64 = reply
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("Retry-After: {:?}", reply.headers));
    assert!((3590..=3600).contains(&after), "{after}");
    assert!(!reply.text().contains(&a.addr.port().to_string()));
    assert_eq!(*server.recorded.unavailable.lock().unwrap(), ["/"]);
    assert_eq!(*server.recorded.upstream_errors.lock().unwrap(), 2);
}

/// A route's lone upstream is never ejected (nginx ignores `max_fails` for one server):
/// its failures are counted and shown, and the next request goes to it all the same, so
/// it serves again the moment it can, and no client's failing requests stop the others'.
#[test]
fn a_lone_upstream_is_never_ejected() {
    let a = KeepAlive::start("a", AfterResponse::KeepOpen);
    let health = Health {
        max_fails: 1,
        eject_for: Duration::from_secs(3600),
        check: None,
    };
    let server = balanced(&[&a], Balance::RoundRobin, health);
    a.kill();
    for _ in 0..3 {
        let reply = server.get("/x");
        assert_eq!(reply.status, 502, "{}", reply.text());
    }
    let down = server.upstream(&url(&a));
    assert_eq!(down.consecutive_failures, 3, "{down:?}");
    assert!(down.ejected_until.is_none(), "{down:?}");
    assert!(server.recorded.ejected.lock().unwrap().is_empty());
    a.revive();
    assert_eq!(served_by(&server, "/x"), "a");
}

/// A request whose upstream refused the connection goes to another whatever its method:
/// nothing of it was sent, so nothing of it was applied (RFC 9110 §9.2.2).
#[test]
fn a_post_whose_upstream_refused_the_connection_goes_to_another() {
    let (a, b) = (
        KeepAlive::start("a", AfterResponse::KeepOpen),
        KeepAlive::start("b", AfterResponse::KeepOpen),
    );
    let server = balanced(&[&a, &b], Balance::RoundRobin, Health::default());
    b.kill();
    for _ in 0..4 {
        let reply = server
            .connect()
            .request("POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(reply.text().starts_with("a "), "{}", reply.text());
    }
}

#[test]
fn least_conn_sends_to_the_upstream_with_nothing_in_flight() {
    let (a, b) = (
        KeepAlive::start("a", AfterResponse::KeepOpen),
        KeepAlive::start("b", AfterResponse::KeepOpen),
    );
    let server = balanced(&[&a, &b], Balance::LeastConn, Health::default());
    let mut slow = server.connect();
    slow.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    let busy = eventually("one upstream holds the slow request", || {
        server
            .upstreams
            .snapshot()
            .into_iter()
            .find(|u| u.in_flight == 1)
    });
    let idle = if busy.url == url(&a) { "b" } else { "a" };
    for _ in 0..4 {
        assert_eq!(served_by(&server, "/x"), idle);
    }
    a.release();
    b.release();
    assert_eq!(slow.read_reply(false).status, 200);
}

/// A response whose head came and whose body is still coming is load on its upstream
/// (a download read slowly, a stream of events): `least_conn` counts it until the body
/// ends, as nginx counts a connection until it is done.
#[test]
fn least_conn_counts_a_response_in_flight_until_its_body_ends() {
    let (a, b) = (
        KeepAlive::start("a", AfterResponse::KeepOpen),
        KeepAlive::start("b", AfterResponse::KeepOpen),
    );
    let server = balanced(&[&a, &b], Balance::LeastConn, Health::default());
    let mut dripping = server.connect();
    dripping.send(b"GET /drip HTTP/1.1\r\nHost: t\r\n\r\n");
    let busy = eventually("one upstream is sending the body", || {
        server
            .upstreams
            .snapshot()
            .into_iter()
            .find(|u| u.in_flight == 1)
    });
    // Its head is through: only the body is still to come.
    eventually("the head reached the client", || {
        a.requests() + b.requests() == 1
    });
    std::thread::sleep(Duration::from_millis(100));
    let idle = if busy.url == url(&a) { "b" } else { "a" };
    for _ in 0..4 {
        assert_eq!(served_by(&server, "/x"), idle);
    }
    a.release();
    b.release();
    assert_eq!(dripping.read_reply(false).status, 200);
    eventually("nothing in flight once the body ended", || {
        server.upstreams.snapshot().iter().all(|u| u.in_flight == 0)
    });
}

#[test]
fn a_pooled_connection_closed_from_the_dashboard_does_not_fail_the_next_request() {
    let a = KeepAlive::start("a", AfterResponse::KeepOpen);
    let server = balanced(&[&a], Balance::RoundRobin, Health::default());
    assert_eq!(served_by(&server, "/x"), "a");
    eventually("only the pooled upstream connection is open", || {
        server.upstream(&url(&a)).idle_connections == 1 && server.connections().len() == 1
    });
    server.handle.call_from_thread(|| {
        let reactor = Reactor::current();
        for t in reactor.connections() {
            reactor.close_connection(t.id());
        }
    });
    eventually("the closed connection leaves the pool", || {
        server.upstream(&url(&a)).idle_connections == 0 && server.connections().is_empty()
    });
    assert_eq!(served_by(&server, "/x"), "a");
    assert_eq!(a.accepted(), 2, "a new connection replaced the closed one");
    assert_eq!(*server.recorded.upstream_errors.lock().unwrap(), 0);
}

#[test]
fn a_pooled_connection_the_upstream_closes_leaves_the_pool() {
    let a = KeepAlive::start("a", AfterResponse::KeepOpen);
    let server = balanced(&[&a], Balance::RoundRobin, Health::default());
    assert_eq!(served_by(&server, "/x"), "a");
    eventually("the connection is back in the pool", || {
        server.upstream(&url(&a)).idle_connections == 1 && server.connections().len() == 1
    });
    a.kill();
    eventually("the connection the upstream closed leaves the pool", || {
        server.upstream(&url(&a)).idle_connections == 0 && server.connections().is_empty()
    });
}

/// A self-signed certificate for `localhost` (its own CA), as PEM files in `dir`.
fn certificate(dir: &std::path::Path, name: &str) -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    (
        cert_path.display().to_string(),
        key_path.display().to_string(),
    )
}

#[test]
fn an_https_upstream_is_verified_against_the_route_ca() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("site");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("hello.txt"), "over TLS").unwrap();
    let (cert, key) = certificate(dir.path(), "upstream");
    let (other_ca, _) = certificate(dir.path(), "other");
    let upstream = Server::start_on(
        WebConfig {
            root: Some(root),
            ..WebConfig::default()
        },
        &format!("ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"),
    );
    let https = format!("https://localhost:{}", upstream.addr.port());
    let proxy_with = |ca: &str| {
        let mut route = Route::new("/", &https).unwrap();
        route.ca = Some(ca.into());
        Server::start(WebConfig {
            routes: vec![route],
            ..WebConfig::default()
        })
    };

    let trusted = proxy_with(&cert);
    let reply = trusted.get("/hello.txt");
    assert_eq!((reply.status, reply.text()), (200, "over TLS".to_owned()));
    assert_eq!(trusted.get("/hello.txt").text(), "over TLS");
    assert_eq!(
        trusted.recorded.upstream_connections(true),
        1,
        "TLS connections are pooled too"
    );

    let untrusted = proxy_with(&other_ca);
    let reply = untrusted.get("/hello.txt");
    assert_eq!(reply.status, 502, "{}", reply.text());
    let text = reply.text().to_lowercase();
    for leak in [
        "localhost",
        &upstream.addr.port().to_string(),
        "certificate",
        "tls",
        "os error",
    ] {
        assert!(!text.contains(leak), "{leak:?} in {text:?}");
    }
    assert_eq!(untrusted.recorded.failures("tls"), 1);
    let errors = untrusted.upstream(&https).recent_errors;
    assert!(errors[0].message.contains("certificate"), "{errors:?}");
}

#[test]
fn the_pool_keeps_at_most_max_idle_and_closes_what_idles_too_long() {
    let a = KeepAlive::start("a", AfterResponse::KeepOpen);
    let with_pool = |pool: PoolConfig| {
        Server::start(WebConfig {
            routes: vec![Route::new("/", &url(&a)).unwrap()],
            pool,
            ..WebConfig::default()
        })
    };
    let unpooled = with_pool(PoolConfig {
        max_idle: 0,
        ..PoolConfig::default()
    });
    for _ in 0..3 {
        assert_eq!(served_by(&unpooled, "/x"), "a");
    }
    assert_eq!(a.accepted(), 3, "max_idle = 0: a connection per request");
    eventually("no upstream connection is left open", || {
        unpooled.connections().is_empty()
    });
    drop(unpooled);

    let short = with_pool(PoolConfig {
        max_idle: 8,
        idle_timeout: Duration::from_secs(1),
    });
    assert_eq!(served_by(&short, "/x"), "a");
    eventually("the connection is back in the pool", || {
        short.upstream(&url(&a)).idle_connections == 1
    });
    eventually("the idle connection is closed after its timeout", || {
        short.upstream(&url(&a)).idle_connections == 0 && short.connections().is_empty()
    });
    assert_eq!(served_by(&short, "/x"), "a");
    assert_eq!(a.accepted(), 5, "the timed-out connection was not reused");
}
