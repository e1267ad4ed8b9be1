//! `Upgrade` through an http service's proxy route: a WebSocket client and a WebSocket
//! upstream talking through the gateway, closed from the dashboard from either end; a
//! protocol of its own after 101, with a half-close; and a 101 the client never asked
//! for, which is a 502.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::assert_eventually;
use crate::support::{App, free_port, http, spawn_app_with};

/// A WebSocket upstream: greets each client, then echoes its messages; counts the
/// connections it has seen end.
struct WsEcho {
    addr: SocketAddr,
    ended: Arc<AtomicUsize>,
}

impl WsEcho {
    fn start() -> Self {
        Self::serve(None)
    }

    /// Over TLS with `tls`'s certificate.
    fn start_tls(tls: tokio_rustls::TlsAcceptor) -> Self {
        Self::serve(Some(tls))
    }

    fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let ended = Arc::new(AtomicUsize::new(0));
        let counter = ended.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((socket, _)) = listener.accept().await else {
                        return;
                    };
                    let ended = counter.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        match tls {
                            Some(tls) => {
                                if let Ok(socket) = tls.accept(socket).await {
                                    echo(socket).await;
                                }
                            }
                            None => echo(socket).await,
                        }
                        ended.fetch_add(1, Ordering::SeqCst);
                    });
                }
            });
        });
        Self { addr, ended }
    }
}

/// Greets a WebSocket client on `socket`, then echoes its messages until it ends.
async fn echo<S>(socket: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Ok(mut ws) = tokio_tungstenite::accept_async(socket).await {
        let _ = ws.send(Message::text("welcome")).await;
        while let Some(Ok(message)) = ws.next().await {
            if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
                break;
            }
        }
    }
}

/// The gateway with an http service whose `/chat/` route goes to `upstream`; returns the
/// app and the service's address.
fn gateway(upstream: SocketAddr) -> (App, SocketAddr) {
    gateway_with(upstream, "")
}

/// Like [`gateway`], with `keys` added to the service.
fn gateway_with(upstream: SocketAddr, keys: &str) -> (App, SocketAddr) {
    gateway_routed(keys, |_| format!("upstream = \"http://{upstream}\""))
}

/// The gateway with an http service (with `keys`) whose `/chat/` route has the upstream
/// keys `route` gives for the gateway's directory (where it may write files they name).
fn gateway_routed(keys: &str, route: impl FnOnce(&std::path::Path) -> String) -> (App, SocketAddr) {
    let port = free_port();
    let app = spawn_app_with(|dir| {
        let route = route(dir);
        format!(
            r#"
[[service]]
name = "web"
kind = "http"
listen = "tcp:{port}:interface=127.0.0.1"
{keys}
[[service.route]]
prefix = "/chat/"
{route}
"#
        )
    });
    (app, ([127, 0, 0, 1], port).into())
}

/// The open connections of the service `web`: (id, peer).
fn open_connections(app: &App) -> Vec<(u64, String)> {
    let body = app
        .curl("/api/connections?state=open&service=web")
        .unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    json["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|c| {
                    (
                        c["id"].as_u64().unwrap(),
                        c["peer"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The dashboard's close action on connection `id`.
fn close_from_dashboard(app: &App, id: u64) {
    let reply = app.close_from_dashboard(id);
    assert_eq!(reply.status, 202, "{reply:?}");
}

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket through the gateway that has been greeted and had messages echoed both
/// ways.
async fn talk(web: SocketAddr) -> Client {
    let (mut ws, response) = tokio_tungstenite::connect_async(format!("ws://{web}/chat/room"))
        .await
        .expect("the WebSocket handshake goes through the proxy");
    assert_eq!(response.status(), 101);
    assert_eq!(next(&mut ws).await, Message::text("welcome"));
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("hello"));
    let big: Vec<u8> = (0..256 * 1024).map(|i: u32| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(big));
    ws
}

/// The next message, within 10 s.
async fn next(ws: &mut Client) -> Message {
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a message within 10 s")
        .expect("the socket is open")
        .expect("a message")
}

/// Whether the WebSocket ends (closed, reset, or end of stream) within 10 s.
async fn ends(ws: &mut Client) -> bool {
    let ended = async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), ended)
        .await
        .is_ok()
}

#[test]
fn a_websocket_goes_through_the_proxy_and_the_dashboard_closes_it_from_either_end() {
    let upstream = WsEcho::start();
    let (app, web) = gateway(upstream.addr);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let echo_peer = upstream.addr.to_string();
    runtime.block_on(async {
        let mut ws = talk(web).await;
        let tunnelled = r#"weft_http_upgrades_total{outcome="tunnelled",service="web"}"#;
        assert_eq!(app.metric(tunnelled), Some(1.0), "{}", app.log());
        assert_eq!(
            app.metric(r#"weft_http_tunnels_open{service="web"}"#),
            Some(1.0)
        );
        // Both ends are the service's connections: the client's and the upstream's.
        let open = open_connections(&app);
        assert_eq!(open.len(), 2, "{open:?}");
        let (upstream_id, _) = open.iter().find(|(_, p)| *p == echo_peer).unwrap().clone();

        // Closing the upstream end ends the client's too.
        close_from_dashboard(&app, upstream_id);
        assert!(ends(&mut ws).await, "the client's end was closed");
        assert_eventually!(
            upstream.ended.load(Ordering::SeqCst) == 1,
            "the upstream saw its connection end"
        );
        assert_eventually!(
            open_connections(&app).is_empty(),
            "{:?}",
            open_connections(&app)
        );

        // Closing the client's end ends the upstream's.
        let mut ws = talk(web).await;
        let open = open_connections(&app);
        let (client_id, _) = open.iter().find(|(_, p)| *p != echo_peer).unwrap().clone();
        close_from_dashboard(&app, client_id);
        assert!(ends(&mut ws).await, "the client's end was closed");
        assert_eventually!(
            upstream.ended.load(Ordering::SeqCst) == 2,
            "the upstream saw its connection end"
        );
        assert_eventually!(
            open_connections(&app).is_empty(),
            "{:?}",
            open_connections(&app)
        );
    });
    assert_eq!(
        app.metric(r#"weft_http_upgrades_total{outcome="tunnelled",service="web"}"#),
        Some(2.0)
    );
    assert_eventually!(
        app.metric(r#"weft_http_tunnels_open{service="web"}"#) == Some(0.0),
        "no tunnel left open"
    );
    // Each tunnel's upstream end is a new connection used, counted as a pooled one is.
    assert_eq!(
        app.metric(&format!(
            r#"weft_http_upstream_connections_total{{reused="false",service="web",upstream="http://{echo_peer}"}}"#
        )),
        Some(2.0)
    );
}

/// Reads a response head off `reader`: the status and the lines.
fn read_head(reader: &mut impl BufRead) -> (u16, Vec<String>) {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        lines.push(line.trim_end().to_ascii_lowercase());
    }
    let status = lines
        .first()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, lines)
}

/// An upstream that switches every request to `answer`'s protocol (or answers it with
/// `answer` as it is, when it is not a 101), then shouts back what it reads, upper-cased,
/// and says `bye` when the client has finished; keeps each request head.
fn raw_upstream(answer: &'static str) -> (SocketAddr, Arc<std::sync::Mutex<Vec<Vec<String>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = heads.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (_, head) = read_head(&mut reader);
                seen.lock().unwrap().push(head);
                let mut stream = stream;
                if stream.write_all(answer.as_bytes()).is_err() {
                    return;
                }
                let mut buf = [0; 4096];
                while let Ok(n @ 1..) = reader.read(&mut buf) {
                    let _ = stream.write_all(&buf[..n].to_ascii_uppercase());
                }
                let _ = stream.write_all(b"bye");
            });
        }
    });
    (addr, heads)
}

/// A tunnel through the gateway at `web` to a [`raw_upstream`] answering [`SWITCH`], asked
/// for at `path` with `early` right behind the head; its two ends once the 101 is read
/// (reads time out after 10 s).
fn shout_tunnel(
    app: &App,
    web: SocketAddr,
    path: &str,
    early: &str,
) -> (TcpStream, BufReader<TcpStream>) {
    let stream = TcpStream::connect(web).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: site.test\r\nConnection: Upgrade\r\nUpgrade: shout\r\n\r\n{early}"
    );
    writer.write_all(head.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let (status, head) = read_head(&mut reader);
    assert_eq!(status, 101, "{head:?}\n{}", app.log());
    (writer, reader)
}

const SWITCH: &str =
    "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: shout\r\n\r\n";

#[test]
fn another_protocol_after_101_is_tunnelled_both_ways_and_a_half_close_is_relayed() {
    let (upstream, heads) = raw_upstream(SWITCH);
    let (app, web) = gateway(upstream);
    let stream = TcpStream::connect(web).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    // Bytes sent right behind the head belong to the new protocol.
    writer
        .write_all(
            b"GET /chat/raw HTTP/1.1\r\nHost: site.test\r\nConnection: keep-alive, Upgrade\r\n\
              Upgrade: shout\r\n\r\nearly ",
        )
        .unwrap();
    let mut reader = BufReader::new(stream);
    let (status, head) = read_head(&mut reader);
    assert_eq!(status, 101, "{head:?}\n{}", app.log());
    assert!(head.contains(&"upgrade: shout".to_owned()), "{head:?}");
    assert!(head.contains(&"connection: upgrade".to_owned()), "{head:?}");
    writer.write_all(b"and late").unwrap();
    writer.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    reader
        .read_to_end(&mut back)
        .expect("the tunnel ends cleanly");
    assert_eq!(String::from_utf8_lossy(&back), "EARLY AND LATEbye");

    let heads = heads.lock().unwrap();
    let asked = &heads[0];
    assert!(asked.contains(&"upgrade: shout".to_owned()), "{asked:?}");
    assert!(
        asked.contains(&"connection: upgrade".to_owned()),
        "{asked:?}"
    );
    assert_eq!(
        app.metric(r#"weft_http_upgrades_total{outcome="tunnelled",service="web"}"#),
        Some(1.0)
    );
}

/// SIGTERM with a tunnel open: it goes on carrying both ways until a side closes (here
/// the client's half-close, answered by the upstream's end), as a tcp-proxy pair does;
/// cut at once, what the client sent after the signal never arrived.
#[test]
fn sigterm_lets_a_tunnel_finish_its_exchange() {
    let (upstream, _) = raw_upstream(SWITCH);
    let (mut app, web) = gateway(upstream);
    let (mut writer, mut reader) = shout_tunnel(&app, web, "/chat/raw", "before ");
    let mut first = [0; 7];
    reader.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"BEFORE ");

    app.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    writer.write_all(b"after").unwrap();
    writer.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    reader
        .read_to_end(&mut back)
        .expect("the tunnel ends cleanly");
    assert_eq!(String::from_utf8_lossy(&back), "AFTERbye", "{}", app.log());
    assert_eq!(app.wait_exit().code(), Some(0), "{}", app.log());
}

#[test]
fn a_101_the_client_did_not_ask_for_is_a_502_and_upgrade_alone_is_not_passed_on() {
    let (upstream, heads) = raw_upstream(SWITCH);
    let (app, web) = gateway(upstream);
    // No Upgrade at all, then Upgrade without `Connection: upgrade`: neither asks.
    let plain = http(web, "GET /chat/a HTTP/1.1\r\nHost: site.test\r\n", "");
    assert_eq!(plain.status, 502, "{plain:?}");
    let alone = http(
        web,
        "GET /chat/b HTTP/1.1\r\nHost: site.test\r\nUpgrade: shout\r\n",
        "",
    );
    assert_eq!(alone.status, 502, "{alone:?}");
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 2, "{heads:?}");
    for head in &heads {
        assert!(
            !head.iter().any(|l| l.starts_with("upgrade:")),
            "no Upgrade is passed on unasked: {head:?}"
        );
    }
    // A protocol the client did not offer.
    let other = http(
        web,
        "GET /chat/c HTTP/1.1\r\nHost: site.test\r\nConnection: upgrade\r\nUpgrade: websocket\r\n",
        "",
    );
    assert_eq!(other.status, 502, "{other:?}");
    assert_eq!(
        app.metric(r#"weft_http_upgrades_total{outcome="invalid",service="web"}"#),
        Some(1.0)
    );
    assert_eq!(
        app.metric(r#"weft_http_upstream_errors_total{service="web"}"#),
        Some(3.0)
    );
    // Each is the upstream's failure, in its own figures too, whatever it switched to.
    let failures: f64 = app
        .curl("/metrics")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("weft_http_upstream_failures_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(failures, 3.0);

    // An upstream that declines answers the client as it is, and the connection goes on.
    let (declining, _) =
        raw_upstream("HTTP/1.1 426 Upgrade Required\r\nContent-Length: 2\r\n\r\nno");
    let (app, web) = gateway(declining);
    let declined = http(
        web,
        "GET /chat/d HTTP/1.1\r\nHost: site.test\r\nConnection: upgrade\r\nUpgrade: shout\r\n",
        "",
    );
    assert_eq!((declined.status, declined.body.as_str()), (426, "no"));
    assert_eq!(
        app.metric(r#"weft_http_upgrades_total{outcome="declined",service="web"}"#),
        Some(1.0)
    );
}

#[test]
fn an_upgrade_asked_with_a_body_is_ignored_and_the_body_over_the_limit_refused_before_any_upstream()
{
    let (upstream, heads) = raw_upstream(SWITCH);
    let (app, web) = gateway_with(upstream, "limits = { max_body_bytes = 16 }");
    let refused = http(
        web,
        "POST /chat/big HTTP/1.1\r\nHost: site.test\r\nConnection: upgrade\r\nUpgrade: shout\r\n",
        &"x".repeat(64),
    );
    assert_eq!(refused.status, 413, "{refused:?}");
    // A request with a body goes as any other (its body read ahead, so a slow one holds
    // no upstream connection): its Upgrade is ignored.
    assert_eq!(
        app.metric(r#"weft_http_upgrades_total{outcome="failed",service="web"}"#),
        Some(0.0)
    );
    assert_eq!(
        app.metric(r#"weft_http_requests_refused_total{reason="body_too_large",service="web"}"#),
        Some(1.0)
    );
    // Upstream connections are the service's too: only the client's was opened. (An
    // upstream connection would have been counted before the 413 was sent.)
    assert_eq!(
        app.metric(r#"weft_connections_opened_total{service="web",transport="tcp"}"#),
        Some(1.0)
    );
    // And the upstream, which records every connection it accepts with whatever head
    // came (none, when the connection closes first), saw none.
    std::thread::sleep(Duration::from_millis(300));
    let heads = heads.lock().unwrap();
    assert!(
        heads.is_empty(),
        "no upstream connection was opened: {heads:?}"
    );
}

#[test]
fn a_tunnel_idle_past_the_services_idle_timeout_is_closed_at_both_ends() {
    let (upstream, _) = raw_upstream(SWITCH);
    let (app, web) = gateway_with(upstream, "idle_timeout = \"1s\"");
    let (_writer, mut reader) = shout_tunnel(&app, web, "/chat/idle", "ping");
    let mut echoed = [0; 4];
    reader.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"PING");
    // Then nothing either way: the gateway closes the client's end, and the upstream's.
    let idle = std::time::Instant::now();
    reader
        .read_to_end(&mut Vec::new())
        .expect("closed, not timed out on this side");
    let took = idle.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "closed after {took:?}; the idle timeout is 1 s"
    );
    assert_eventually!(
        open_connections(&app).is_empty(),
        "{:?}",
        open_connections(&app)
    );
    // Counted as timed out: the client's end, and the upstream's when the same check
    // found it idle too.
    let timed_out = app
        .metric(r#"weft_connections_closed_total{reason="timeout",service="web",transport="tcp"}"#);
    assert!(timed_out >= Some(1.0), "{timed_out:?}");
}

#[test]
fn an_upgrade_on_a_balanced_route_passes_over_an_upstream_that_is_down() {
    let upstream = WsEcho::start();
    // A port nothing listens on: connections to it are refused.
    let down = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let route = format!(
        "upstreams = [\"http://{down}\", \"http://{}\"]\nbalance = \"round_robin\"",
        upstream.addr
    );
    let (app, web) = gateway_routed("", |_| route);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Round robin starts each one at the next upstream: both orders are tried.
        for _ in 0..4 {
            let mut ws = talk(web).await;
            ws.close(None).await.unwrap();
        }
    });
    assert_eq!(
        app.metric(r#"weft_http_upgrades_total{outcome="tunnelled",service="web"}"#),
        Some(4.0),
        "{}",
        app.log()
    );
    let refused = format!(
        r#"weft_http_upstream_failures_total{{reason="refused",service="web",upstream="http://{down}"}}"#
    );
    assert!(app.metric(&refused).unwrap_or(0.0) >= 1.0, "{}", app.log());
}

#[test]
fn a_websocket_goes_to_an_https_upstream_verified_against_the_route_ca() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let tls = {
        use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    };
    let upstream = WsEcho::start_tls(tls);
    let pem = cert.cert.pem();
    let (app, web) = gateway_routed("", |dir| {
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, &pem).unwrap();
        format!(
            "upstream = \"https://localhost:{}\"\nca = \"{}\"",
            upstream.addr.port(),
            ca.display()
        )
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut ws = talk(web).await;
        ws.close(None).await.unwrap();
    });
    assert_eq!(
        app.metric(r#"weft_http_upgrades_total{outcome="tunnelled",service="web"}"#),
        Some(1.0),
        "{}",
        app.log()
    );
}

/// `Upgrade: h2c` is never passed on: an upstream that switched would have the client
/// speak HTTP/2 to it straight through the tunnel, past the proxy's routes and rules (h2c
/// smuggling). The request goes as any other, without the field, and an upstream's 101
/// to it is refused as unasked for.
#[test]
fn an_h2c_upgrade_is_not_passed_on_to_the_upstream() {
    let switch_h2c =
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
    let (upstream, heads) = raw_upstream(switch_h2c);
    let (app, web) = gateway(upstream);
    let smuggled = http(
        web,
        "GET /chat/h2c HTTP/1.1\r\nHost: site.test\r\nConnection: Upgrade, HTTP2-Settings\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
        "",
    );
    assert_eq!(smuggled.status, 502, "{smuggled:?}");
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        !heads[0]
            .iter()
            .any(|l| l.starts_with("upgrade:") || l.starts_with("http2-settings:")),
        "{:?}",
        heads[0]
    );
    assert_eq!(
        app.metric(r#"weft_http_upgrades_total{outcome="tunnelled",service="web"}"#),
        Some(0.0)
    );
}
