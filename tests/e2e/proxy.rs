//! tcp-proxy against careless and hostile clients: half-closes relayed, nothing lost,
//! no pair left behind when one side goes away, shutdown not held up by either, and a
//! relay under way left to finish at shutdown.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::assert_eventually;
use crate::support::{App, free_port, proxy_service, spawn_app_beside_echo};

/// The gateway with a tcp-proxy in front of its own echo service.
fn proxy_app() -> (App, SocketAddr) {
    let port = free_port();
    let app = spawn_app_beside_echo(|_, echo| proxy_service(port, echo));
    (app, ([127, 0, 0, 1], port).into())
}

/// Open proxy connections (client and upstream sides) according to the dashboard.
fn open_proxy_connections(app: &App) -> usize {
    let body = app
        .curl("/api/connections?state=open&service=proxy")
        .expect("/api/connections answers");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["items"].as_array().unwrap().len()
}

/// Sends `payload`, shuts the write side, and reads until the proxy closes.
fn send_then_half_close(proxy: SocketAddr, payload: Vec<u8>) -> Vec<u8> {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut writer = s.try_clone().unwrap();
    // Write from another thread: the echo comes back while we are still sending.
    let sender = std::thread::spawn(move || {
        writer.write_all(&payload).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    s.read_to_end(&mut back)
        .expect("the proxy closes after the echo");
    sender.join().unwrap();
    back
}

#[test]
fn a_half_closed_client_gets_every_byte_back() {
    let (app, proxy) = proxy_app();
    assert_eq!(send_then_half_close(proxy, b"hello".to_vec()), b"hello");

    let big: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    let back = send_then_half_close(proxy, big.clone());
    assert_eq!(back.len(), big.len(), "4 MiB through the proxy and back");
    assert!(back == big, "the bytes came back in order");
    drop(app);
}

/// Connects `n` clients that write until the proxy stops reading from them and never
/// read; returns them still connected.
fn stuck_clients(proxy: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(proxy).unwrap();
            s.set_nonblocking(true).unwrap();
            let chunk = vec![7u8; 64 << 10];
            let mut idle_since = Instant::now();
            // Until writes have been refused for a while: every buffer on the way is full.
            while idle_since.elapsed() < Duration::from_millis(300) {
                match s.write(&chunk) {
                    Ok(_) => idle_since = Instant::now(),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("write failed: {e}"),
                }
            }
            s
        })
        .collect()
}

#[test]
fn clients_that_stop_reading_and_leave_take_their_upstreams_with_them() {
    let (app, proxy) = proxy_app();
    let clients = stuck_clients(proxy, 5);
    assert_eq!(
        open_proxy_connections(&app),
        10,
        "five client-upstream pairs"
    );
    let echo = app.echo.to_string();
    drop(clients);
    let left = Instant::now();
    loop {
        let open = open_proxy_connections(&app);
        if open == 0 {
            break;
        }
        assert!(
            left.elapsed() < Duration::from_secs(1),
            "{open} proxy connections still open 1 s after their clients left\n{}",
            app.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Each upstream was aborted, and says so: it did not end cleanly. Closed connections
    // are read from the history, which commits about once a second.
    let closed_upstreams = || -> Vec<serde_json::Value> {
        let body = app
            .curl("/api/connections?state=closed&service=proxy")
            .unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        json["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|c| c["peer"] == echo.as_str())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eventually!(
        closed_upstreams().len() == 5,
        "five closed upstreams in the history: {:?}",
        closed_upstreams()
    );
    let upstreams = closed_upstreams();
    assert!(
        upstreams.iter().all(|c| c["close_reason"] == "aborted"),
        "{upstreams:?}"
    );
}

#[test]
fn sigterm_is_not_held_up_by_pairs_whose_clients_left() {
    let (mut app, proxy) = proxy_app();
    drop(stuck_clients(proxy, 5));
    let asked = Instant::now();
    let status = app.signal_and_wait("TERM");
    assert_eq!(status.code(), Some(0), "{}", app.log());
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "exit took {:?}; the drain deadline is 10 s\n{}",
        asked.elapsed(),
        app.log()
    );
}

/// The gateway with a tcp-proxy to an upstream the test holds; then one client
/// connection through it (reads time out after 10 s) and the upstream's end of its pair.
fn proxy_to_own_upstream() -> (App, SocketAddr, std::net::TcpListener, TcpStream, TcpStream) {
    proxy_to_own_upstream_with("")
}

/// Like [`proxy_to_own_upstream`], with `keys` added to the proxy's service table.
fn proxy_to_own_upstream_with(
    keys: &str,
) -> (App, SocketAddr, std::net::TcpListener, TcpStream, TcpStream) {
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = upstream.local_addr().unwrap();
    let port = free_port();
    let app = spawn_app_beside_echo(|_, _| format!("{}{keys}\n", proxy_service(port, up)));
    let proxy: SocketAddr = ([127, 0, 0, 1], port).into();
    let client = TcpStream::connect(proxy).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (served, _) = upstream.accept().unwrap();
    (app, proxy, upstream, client, served)
}

/// An upstream that resets its connection after part of what it sends reaches the client
/// as a reset: the client learns that what it got was cut short, rather than taking it
/// for the whole (a clean end of stream). And a client that resets reaches the upstream as
/// a reset.
#[test]
fn a_reset_on_either_side_reaches_the_other_as_a_reset() {
    let (app, proxy, upstream, mut client, mut served) = proxy_to_own_upstream();
    served.write_all(&[1u8; 10_000]).unwrap();
    // Read by the client before the reset, so what is cut short is the stream, not them.
    let mut first = [0u8; 10_000];
    client.read_exact(&mut first).unwrap();
    reset(served);
    assert_reset(
        client,
        "the upstream's reset is passed on, not an end of stream",
    );

    // The other way: a client's reset reaches the upstream as one.
    let client = TcpStream::connect(proxy).unwrap();
    let (served, _) = upstream.accept().unwrap();
    served
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Once the pair is made: its upstream connected.
    assert_eventually!(
        open_proxy_connections(&app) == 2,
        "the client and its upstream"
    );
    reset(client);
    assert_reset(
        served,
        "the client's reset is passed on, not an end of stream",
    );
    drop(app);
}

/// Closes `stream` with a reset (`SO_LINGER` 0).
fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

/// Reads `stream` to its end, which must be a reset.
fn assert_reset(mut stream: TcpStream, what: &str) {
    let mut rest = Vec::new();
    let error = stream.read_to_end(&mut rest).expect_err(what);
    assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{what}: {error}");
}

/// SIGTERM with a download under way through the proxy: every byte reaches the client
/// and the stream ends cleanly, before the drain deadline. Closing the pair at once
/// ended the client's stream cleanly with most of it missing.
#[test]
fn sigterm_lets_a_relay_under_way_finish() {
    const BIG: usize = 20_000_000;
    let (mut app, _, _, mut client, mut served) = proxy_to_own_upstream();
    let sender = std::thread::spawn(move || {
        let content: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
        // Refused once the proxy is gone (an abort): the client sees the shortfall.
        let _ = served.write_all(&content);
    });
    let mut got = vec![0u8; 1_000_000];
    client.read_exact(&mut got).unwrap();

    let asked = Instant::now();
    app.signal("TERM");
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), BIG, "every byte arrives\n{}", app.log());
    assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    sender.join().unwrap();
    // The upstream's end reached the client as a half-close; the client, done, closes,
    // and the pair with it.
    drop(client);
    let status = app.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", app.log());
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "exit took {:?}; the drain deadline is 10 s",
        asked.elapsed()
    );
}

/// A client whose upstream cannot be reached is reset, not closed cleanly: a clean end of
/// stream after its request would pass for an empty answer.
#[test]
fn a_client_whose_upstream_is_unreachable_is_reset() {
    // A port nothing listens on.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let port = free_port();
    let app = spawn_app_beside_echo(|_, _| proxy_service(port, nowhere));
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The reset may come before the request is written (the connect fails at once).
    match client.write_all(b"GET / HTTP/1.0\r\n\r\n") {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        written => {
            written.unwrap();
            assert_reset(client, "an unreachable upstream is passed on as a reset");
        }
    }
    // Each client makes a failed connect: logged within the service's budget (20 lines a
    // second of each), not a line or two for each of them.
    for _ in 0..150 {
        // The reset may even come before `connect` returns, the failed connect upstream
        // being that quick on a loaded machine.
        let client = match TcpStream::connect(("127.0.0.1", port)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => continue,
            connected => connected.unwrap(),
        };
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert_reset(client, "every one of them");
    }
    let log = app.log();
    for line in ["upstream unreachable", "connection attempt failed"] {
        let n = log.matches(line).count();
        assert!((1..=60).contains(&n), "{n} lines of {line:?}");
    }
    drop(app);
}

/// A pair cut by its idle timeout in the middle of an answer (the upstream stopped
/// sending) is reset on both sides: the client had part of the answer, and a clean end of
/// stream would make it the whole.
#[test]
fn a_pair_cut_by_its_idle_timeout_is_reset_on_both_sides() {
    let (app, _, _, mut client, mut served) = proxy_to_own_upstream_with("idle_timeout = \"1s\"");
    served
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Part of an answer, then nothing.
    served.write_all(&[7u8; 40_000]).unwrap();
    let mut part = vec![0u8; 40_000];
    client.read_exact(&mut part).unwrap();
    assert_reset(client, "the client learns its answer was cut short");
    assert_reset(served, "and so does the upstream");
    drop(app);
}

/// A client sending steadily to an upstream that stopped reading is not the one cut as
/// idle: its reading is paused while the upstream's side holds what it sent, so the
/// upstream's side is aborted as `send_timeout` (output stuck for the idle timeout) and
/// the client reset with it. The client was timed out as idle before, and the upstream
/// counted aborted, so the close reasons named the wrong peer.
#[test]
fn an_upstream_that_stops_reading_is_cut_as_send_timeout_not_its_client_as_idle() {
    let (app, _, _, client, served) = proxy_to_own_upstream_with("idle_timeout = \"1s\"");
    client.set_nonblocking(true).unwrap();
    let mut client = client;
    let started = Instant::now();
    let chunk = [5u8; 65_536];
    // Sending as fast as the proxy takes it, for three idle timeouts or until cut.
    let mut cut = None;
    while started.elapsed() < Duration::from_secs(3) {
        match client.write(&chunk) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                cut = Some(e.kind());
                break;
            }
        }
    }
    let closed = |reason: &str| {
        app.metric(&format!(
            r#"weft_connections_closed_total{{reason="{reason}",service="proxy",transport="tcp"}}"#
        ))
        .unwrap_or(0.0)
    };
    assert_eventually!(
        closed("send_timeout") == 1.0,
        "the side whose peer stopped reading is cut as send_timeout\n{}",
        app.log()
    );
    assert_eq!(closed("timeout"), 0.0, "{}", app.log());
    assert_eq!(
        closed("aborted"),
        1.0,
        "its client reset with it\n{}",
        app.log()
    );
    // The client learns it was cut off: its writing found the reset, or its reading does.
    let cut = cut.unwrap_or_else(|| {
        client.set_nonblocking(false).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        match client.read(&mut [0; 16]) {
            Err(e) => e.kind(),
            Ok(n) => panic!("read {n} bytes, where the client was reset"),
        }
    });
    assert!(
        matches!(
            cut,
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
        "{cut:?}"
    );
    drop((served, app));
}

/// A client that keeps reading, however slowly next to what is sent, is not idle: the
/// proxy writes to it each time it has taken some (TCP_NOTSENT_LOWAT), rather than once
/// megabytes the kernel holds for it are gone, so a steady download outlasts many idle
/// timeouts. Without it, a client reading 200 KB/s was cut at the first one.
#[test]
fn a_client_reading_steadily_is_not_cut_as_idle() {
    // Two seconds: slack for a loaded machine, where this test's reads come late.
    let (app, _, _, mut client, mut served) = proxy_to_own_upstream_with("idle_timeout = \"2s\"");
    // An upstream with more to send than the client will ever read, until it is cut off.
    let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let upstream_cut = cut.clone();
    std::thread::spawn(move || {
        while served.write_all(&[9u8; 65_536]).is_ok() {}
        upstream_cut.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    // About 200 KB a second for 8 s: four idle timeouts.
    let started = Instant::now();
    let mut got = 0;
    let mut buf = vec![0u8; 10_000];
    while started.elapsed() < Duration::from_secs(8) {
        match client.read(&mut buf) {
            Ok(0) => panic!(
                "the stream ended after {got} bytes, {:?}",
                started.elapsed()
            ),
            Ok(n) => got += n,
            Err(e) => panic!("{e} after {got} bytes, {:?}", started.elapsed()),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(got > 400_000, "read {got} bytes");
    // What the kernel holds hides a cut from the client for a while: ask the proxy.
    assert!(
        !cut.load(std::sync::atomic::Ordering::SeqCst),
        "the pair was cut while its client read on\n{}",
        app.log()
    );
    assert_eq!(
        app.metric(
            r#"weft_connections_closed_total{reason="timeout",service="proxy",transport="tcp"}"#
        )
        .unwrap_or(0.0),
        0.0,
        "{}",
        app.log()
    );
    drop(app);
}

/// A TLS client that ends its connection without `close_notify` (a bare FIN, which anyone
/// on the path can forge to cut a stream short) reaches the upstream as a reset, not as a
/// clean end it would take for the whole stream (RFC 8446 §6.1). One that says
/// `close_notify` first ends cleanly, its half-close passed on.
#[test]
fn a_tls_client_ending_without_close_notify_reaches_the_upstream_as_a_reset() {
    use std::sync::Arc;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = upstream.local_addr().unwrap();
    let port = free_port();
    let app = spawn_app_beside_echo(|dir, _| {
        std::fs::write(dir.join("c.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.join("k.pem"), cert.signing_key.serialize_pem()).unwrap();
        format!(
            "\n[[service]]\nname = \"proxy\"\nkind = \"tcp-proxy\"\n\
             listen = \"ssl:{port}:interface=127.0.0.1:privateKey={k}:certKey={c}\"\n\
             upstream = \"tcp:{up}\"\n",
            k = dir.join("k.pem").display(),
            c = dir.join("c.pem").display(),
        )
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let tls = |config: &Arc<rustls::ClientConfig>| {
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        rustls::StreamOwned::new(conn, tcp)
    };
    let upstream_end = |served: &mut TcpStream| {
        served
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut got = Vec::new();
        let end = served.read_to_end(&mut got).map_err(|e| e.kind());
        (got.len(), end.map(|_| ()))
    };

    // Truncated: data, then FIN without close_notify.
    let mut client = tls(&config);
    client.write_all(&[7u8; 5_000]).unwrap();
    client.flush().unwrap();
    let (mut served, _) = upstream.accept().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    client.sock.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        upstream_end(&mut served),
        (5_000, Err(ErrorKind::ConnectionReset)),
        "a truncated TLS stream goes on as a reset"
    );

    // Said: close_notify, then FIN: a clean half-close.
    let mut client = tls(&config);
    client.write_all(&[8u8; 5_000]).unwrap();
    client.conn.send_close_notify();
    client.flush().unwrap();
    client.sock.shutdown(Shutdown::Write).unwrap();
    let (mut served, _) = upstream.accept().unwrap();
    assert_eq!(upstream_end(&mut served), (5_000, Ok(())));
    drop(app);
}

/// Connections that wait on their peers are no stall, however long they wait: a pair
/// whose client has half-closed waiting for a slow upstream's answer, a pair whose client
/// never reads a large answer, and TLS clients that connect and never begin their
/// handshake. With `stall_after` at 300 ms, neither
/// is reported (each was, once per connection, before).
#[test]
fn connections_waiting_on_their_peers_are_not_reported_stalled() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = crate::http_tls::write_pair(dir.path(), "echo", "localhost", &["localhost"]);
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = upstream.local_addr().unwrap();
    let (port, tls_port) = (free_port(), free_port());
    let app = crate::support::spawn_app_with(|_| {
        format!(
            "[inspect]\nstall_after = \"300ms\"\n{}
[[service]]
name = \"tlsecho\"
kind = \"echo\"
listen = \"ssl:{tls_port}:interface=127.0.0.1:privateKey={}:certKey={}\"
",
            proxy_service(port, up),
            key.display(),
            cert.display()
        )
    });
    // An upstream that reads the request to its end, thinks for 1.5 s, and answers; then,
    // to a second client, sends 16 MiB at once (which that client never reads: the pair
    // waits on it, paused by back-pressure).
    let answering = std::thread::spawn(move || {
        let (mut s, _) = upstream.accept().unwrap();
        let mut request = Vec::new();
        s.read_to_end(&mut request).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        s.write_all(b"late answer").unwrap();
        drop(s);
        let (mut s, _) = upstream.accept().unwrap();
        let _ = s.write_all(&vec![b'x'; 16 << 20]);
    });
    let silent: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", tls_port)).unwrap())
        .collect();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"question").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"late answer");
    let _never_reading = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Past a sweep of the detectors, with the silent clients still waiting.
    std::thread::sleep(Duration::from_millis(1500));
    let stalled = |service: &str| stalled(&app, service);
    assert_eq!(
        (stalled("proxy"), stalled("tlsecho")),
        (0.0, 0.0),
        "{}",
        app.log()
    );
    drop(silent);
    drop(_never_reading);
    answering.join().unwrap();
}

/// An upstream connect that hangs (a TLS upstream that accepts and never answers the
/// handshake) past `stall_after` is reported once, by the connection's chain at its
/// `connect upstream` step; the task awaiting the connect is not reported beside it (it
/// was, a second detection for the same wait).
#[test]
fn a_hung_upstream_connect_is_reported_once_by_its_chain() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free_port();
    let app = crate::support::spawn_app_with(|_| {
        format!(
            "[inspect]\nstall_after = \"300ms\"
[[service]]
name = \"hung\"
kind = \"tcp-proxy\"
listen = \"tcp:{port}:interface=127.0.0.1\"
upstream = \"ssl:127.0.0.1:{}\"
",
            silent.local_addr().unwrap().port()
        )
    });
    let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(stalled(&app, "hung"), 1.0, "{}", app.log());
    let pending = app.curl("/api/deferreds?state=pending").unwrap();
    assert!(pending.contains("connect upstream"), "{pending}");
    drop(silent);
}

/// HTTP answers whose clients take nothing of them are no stall either: a large file
/// over HTTP/2 whose client opens no window past the first, and the same file through a
/// proxy route to a client over HTTP/1.1 that never reads (the upstream connection's
/// task waits on that client). Each was reported before.
#[test]
fn http_answers_waiting_on_their_clients_are_not_reported_stalled() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("big.bin"), vec![b'x'; 32 << 20]).unwrap();
    let (files, front) = (free_port(), free_port());
    let app = crate::support::spawn_app_with(|_| {
        format!(
            r#"[inspect]
stall_after = "300ms"

[[service]]
name = "files"
kind = "http"
listen = "tcp:{files}:interface=127.0.0.1"
root = "{}"

[[service]]
name = "front"
kind = "http"
listen = "tcp:{front}:interface=127.0.0.1"

[[service.route]]
prefix = "/f/"
upstream = "http://127.0.0.1:{files}/"
"#,
            root.path().display()
        )
    });
    let mut proxied = TcpStream::connect(("127.0.0.1", front)).unwrap();
    proxied
        .write_all(b"GET /f/big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", files))
            .await
            .unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(connection);
        let request = http::Request::get(format!("http://127.0.0.1:{files}/big.bin"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        // The body is never read: the stream's window stays shut past its first 64 KiB.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        drop(response);
    });
    let stalled = |service: &str| stalled(&app, service);
    assert_eq!(
        (stalled("files"), stalled("front")),
        (0.0, 0.0),
        "{}",
        app.log()
    );
    drop(proxied);
}

/// The stall detections counted under `service` so far.
fn stalled(app: &App, service: &str) -> f64 {
    app.metric(&format!(
        r#"weft_deferred_detections_total{{detector="stalled",service="{service}"}}"#
    ))
    .unwrap_or(0.0)
}
