//! What a peer can hold on the dashboard's listener: a head not sent in time is closed,
//! idle keep-alive connections too, and one address's flood of idle connections is capped
//! so every other client is still served.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::assert_eventually;
use crate::support::{App, Reply, spawn_app, spawn_app_configured, spawn_app_limited};

/// The dashboard's bound on sending a request head, and on idling between requests.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to `to` leaving from `local` (any 127/8 address is this machine).
fn connect_from(local: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.bind(&SocketAddr::from((local, 0)).into())?;
    s.connect_timeout(&to.into(), Duration::from_secs(5))?;
    Ok(s.into())
}

/// `GET path` on the dashboard from `local`, reading until the server closes; `None` when
/// no answer comes within 5 s.
fn get_from(local: [u8; 4], app: &App, path: &str) -> Option<Reply> {
    let mut s = connect_from(local, app.dashboard).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        app.dashboard
    );
    s.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some(Reply {
        status,
        headers: Vec::new(),
        body: body.to_owned(),
    })
}

/// One sample of `/metrics`, read from `local`.
fn metric_from(local: [u8; 4], app: &App, series: &str) -> Option<f64> {
    let text = get_from(local, app, "/metrics")?.body;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// How long until the server closes `s`; panics if it is still open after `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> Duration {
    let start = Instant::now();
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return start.elapsed(),
            Err(e) => panic!("still open after {within:?} ({e})"),
        }
    }
}

/// A flood of idle connections from one address is held to the peer's cap (64), each
/// past it taking the place of the flood's idlest: other clients are served, and so is
/// a client on the flood's own address (on loopback every local client is one peer).
#[test]
fn idle_connections_from_one_address_cannot_keep_other_clients_out_nor_its_own() {
    // Fewer descriptors than the flood: unbounded, it would take every one.
    let app = spawn_app_limited(Some(256), |_, _| String::new());
    let flood: Vec<TcpStream> = (0..300)
        .filter_map(|_| connect_from([127, 0, 0, 1], app.dashboard).ok())
        .collect();
    assert_eq!(flood.len(), 300);
    let evicted = r#"weft_dashboard_refused_total{reason="idle_evicted"}"#;
    assert_eventually!(
        metric_from([127, 0, 0, 2], &app, evicted).is_some_and(|n| n >= 236.0),
        "the flood is capped and counted: {:?}\n{}",
        metric_from([127, 0, 0, 2], &app, evicted),
        app.log()
    );
    for local in [[127, 0, 0, 1], [127, 0, 0, 2], [127, 0, 0, 3]] {
        let started = Instant::now();
        let r = get_from(local, &app, "/healthz").expect("another client is served");
        assert_eq!(r.status, 200, "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    drop(flood);
}

#[test]
fn a_head_not_sent_in_time_and_an_idle_keep_alive_connection_are_closed() {
    let app = spawn_app();
    let mut idle = TcpStream::connect(app.dashboard).unwrap();
    let mut partial = TcpStream::connect(app.dashboard).unwrap();
    partial
        .write_all(
            format!(
                "GET /healthz HTTP/1.1\r\nHost: {}\r\nX-Slow: ",
                app.dashboard
            )
            .as_bytes(),
        )
        .unwrap();
    // One exchange, then nothing: the connection is kept alive, and then idles.
    let mut kept = TcpStream::connect(app.dashboard).unwrap();
    kept.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", app.dashboard).as_bytes())
        .unwrap();
    let mut head = [0; 12];
    kept.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let started = Instant::now();

    for s in [&mut idle, &mut partial, &mut kept] {
        closed_within(s, HEADER_TIMEOUT + Duration::from_secs(10));
        let took = started.elapsed();
        assert!(
            took >= HEADER_TIMEOUT - Duration::from_secs(1)
                && took <= HEADER_TIMEOUT + Duration::from_secs(5),
            "closed after {took:?}; the bound is {HEADER_TIMEOUT:?}"
        );
    }
    assert!(app.curl("/healthz").is_some());
    // The head cut short is counted; the idle connections are routine.
    let cut = r#"weft_dashboard_refused_total{reason="head_timeout"}"#;
    assert_eventually!(app.metric(cut) == Some(1.0), "{:?}", app.metric(cut));
}

/// Whether the server has closed `s` (without waiting).
fn is_closed(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let closed = match s.peek(&mut [0; 1]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).unwrap();
    closed
}

/// At `max_connections`, a new connection takes the place of the one idle longest, so
/// peers that open connections and send nothing, from as many addresses as it takes, cannot
/// keep a scraper or a browser out (a connection that is answering, or a `/ws` feed, is
/// never the one closed: see the unit tests of `server`).
#[test]
fn at_max_connections_the_idlest_connection_makes_room_for_a_new_one() {
    let app = spawn_app_configured("max_connections = 40\nmax_connections_per_peer = 0", |_| {
        String::new()
    });
    // From several addresses, so only the total can stop them.
    let held: Vec<TcpStream> = (0..60u8)
        .map(|i| connect_from([127, 0, 2, 1 + i % 6], app.dashboard).unwrap())
        .collect();
    assert_eventually!(
        held.iter().filter(|s| is_closed(s)).count() == 20,
        "20 closed to make room: {} closed",
        held.iter().filter(|s| is_closed(s)).count()
    );
    assert!(
        held[..20].iter().all(is_closed) && !held[20..].iter().any(is_closed),
        "the first 20, idle longest"
    );
    assert!(app.curl("/healthz").is_some(), "a scraper gets in");
    assert_eq!(
        app.metric(r#"weft_dashboard_refused_total{reason="idle_evicted"}"#),
        Some(21.0)
    );
    assert_eq!(
        app.metric(r#"weft_dashboard_refused_total{reason="limit_total"}"#),
        Some(0.0)
    );
}
