//! `[inspect] notify`: each detection worth a page is posted as JSON to an on-call tool's
//! URL, within a rate limit whose overflow is counted; a receiver that is down costs the
//! services nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::assert_eventually;
use crate::check::check;
use crate::proxy_steps::unanswering;
use crate::support::{App, free_port, proxy_service, spawn_app_with};

/// One request the receiver got: its request line, its headers (lowercased names) and its
/// body.
struct Posted {
    line: String,
    headers: Vec<(String, String)>,
    body: Value,
}

/// A tiny HTTP receiver: answers each request `204` and hands it over.
fn receiver() -> (SocketAddr, mpsc::Receiver<Posted>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            if let Some(posted) = read_request(&stream) {
                let _ =
                    (&stream).write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
                if tx.send(posted).is_err() {
                    return;
                }
            }
        }
    });
    (addr, rx)
}

fn read_request(stream: &TcpStream) -> Option<Posted> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")?
        .1
        .parse()
        .ok()?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Posted {
        line: line.trim_end().to_owned(),
        headers,
        body: serde_json::from_slice(&body).ok()?,
    })
}

/// The gateway with stalls reported after 300 ms, notifications to `notify` (plus `keys`
/// in `[inspect]`), and a tcp-proxy in front of `upstream`; returns it and the proxy.
fn notifying_app(notify: &str, keys: &str, upstream: SocketAddr) -> (App, SocketAddr) {
    let port = free_port();
    let app = spawn_app_with(|_| {
        format!(
            r#"
[inspect]
stall_after = "300ms"
notify = "{notify}"
{keys}
{proxy}"#,
            proxy = proxy_service(port, upstream)
        )
    });
    (app, ([127, 0, 0, 1], port).into())
}

fn echo_works(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut back = [0; 4];
    s.write_all(b"ping").is_ok() && s.read_exact(&mut back).is_ok() && &back == b"ping"
}

#[test]
fn each_stall_is_posted_with_what_paging_needs_and_a_burst_past_the_limit_is_dropped() {
    let (hook, posts) = receiver();
    let upstream = unanswering();
    let (app, proxy) = notifying_app(
        &format!("http://{hook}/hook?team=net"),
        "notify_per_minute = 2",
        upstream.addr,
    );
    // Five clients stuck behind an upstream that does not answer: five stalls.
    let _clients: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(proxy).unwrap()).collect();

    assert_eventually!(
        app.metric(r#"weft_notifications_dropped_total{reason="rate_limited"}"#) == Some(3.0)
            && app.metric("weft_notifications_sent_total") == Some(2.0),
        "two posted, three over the limit\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    let got: Vec<Posted> = posts.try_iter().collect();
    assert_eq!(got.len(), 2, "only two reached the receiver");
    let endpoint = format!("tcp:{}", upstream.addr);
    for posted in &got {
        let n = &posted.body;
        assert_eq!(posted.line, "POST /hook?team=net HTTP/1.1");
        assert!(
            posted
                .headers
                .iter()
                .any(|(k, v)| k == "content-type" && v == "application/json"),
            "{:?}",
            posted.headers
        );
        assert_eq!(n["kind"], "stalled", "{n}");
        assert_eq!(n["service"], "proxy", "{n}");
        assert_eq!(n["label"], "tcp-proxy", "{n}");
        assert_eq!(n["step"], "connect upstream", "{n}");
        assert_eq!(n["step_detail"], endpoint.as_str(), "{n}");
        assert!(
            n["site"]
                .as_str()
                .is_some_and(|s| s.contains("tcp_proxy.rs")),
            "{n}"
        );
        assert!(n["age_ms"].as_u64().is_some_and(|a| a >= 300), "{n}");
        assert!(n["connection"].is_u64(), "{n}");
        let chain = n["chain"].as_u64().expect("the chain's id");
        let listed: Value =
            serde_json::from_str(&app.curl(&format!("/api/deferreds/{chain}")).unwrap()).unwrap();
        assert_eq!(listed["stalled"], true, "{listed}");
        assert_eq!(listed["connection_id"], n["connection"], "{listed}");
    }
    assert_eq!(
        app.metric(r#"weft_notifications_dropped_total{reason="queue_full"}"#),
        Some(0.0)
    );
}

#[test]
fn a_receiver_that_is_down_is_counted_and_the_services_go_on() {
    let down = free_port();
    let upstream = unanswering();
    let (app, proxy) = notifying_app(&format!("http://127.0.0.1:{down}/hook"), "", upstream.addr);
    let _clients: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(proxy).unwrap()).collect();
    assert_eventually!(
        app.metric(r#"weft_notifications_failed_total{reason="connect"}"#) == Some(3.0),
        "each post failed to connect\n{}",
        app.log()
    );
    assert_eq!(app.metric("weft_notifications_sent_total"), Some(0.0));
    assert!(echo_works(app.echo), "echo still answers");
    assert!(app.curl("/readyz").is_some(), "still ready");
}

#[test]
fn check_refuses_a_notification_url_or_limit_it_cannot_use_naming_the_key() {
    let service = "[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = \"tcp:7\"\n";
    for (inspect, key, why) in [
        (
            "notify = \"https://pager.example/hook\"",
            "inspect.notify",
            "only http://",
        ),
        ("notify = \"http:///hook\"", "inspect.notify", ""),
        (
            "notify = \"http://127.0.0.1:9/\"\nnotify_per_minute = 0",
            "inspect.notify_per_minute",
            "between 1 and 100000",
        ),
        (
            "notify = \"http://127.0.0.1:9/\"\nnotify_queue = 100001",
            "inspect.notify_queue",
            "between 1 and 100000",
        ),
        (
            "notify_queue = 10",
            "inspect.notify_queue",
            "only beside `notify`",
        ),
    ] {
        let (code, _, err) = check(&format!("[inspect]\n{inspect}\n\n{service}"));
        assert_eq!(code, Some(1), "{inspect}: {err}");
        assert!(err.contains(key) && err.contains(why), "{inspect}: {err}");
    }
    let (code, out, err) = check(&format!(
        "[inspect]\nnotify = \"http://127.0.0.1:9/hook\"\nnotify_per_minute = 10\nnotify_queue = 5\n\n{service}"
    ));
    assert_eq!(code, Some(0), "{out}{err}");
}
