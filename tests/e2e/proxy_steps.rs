//! A tcp-proxy connection explains itself in the inspector: its chain names the step it is
//! at (`connect upstream`, then `relay`) and the upstream, so a client stuck behind an
//! upstream that does not answer shows where and on what.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use socket2::{Domain, Socket, Type};

use crate::support::{App, Locked, free_port, proxy_service, spawn_app_with};

/// A listener whose accept queue is full and never drained: the kernel drops a further
/// SYN to it, so a connect hangs (retrying) rather than failing.
pub(crate) struct Unanswering {
    _listener: Socket,
    _queued: Vec<TcpStream>,
    pub(crate) addr: SocketAddr,
}

pub(crate) fn unanswering() -> Unanswering {
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut queued = Vec::new();
    while let Ok(c) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
        queued.push(c);
        assert!(queued.len() < 16, "the accept queue never filled");
    }
    Unanswering {
        _listener: listener,
        _queued: queued,
        addr,
    }
}

/// The gateway with a tcp-proxy in front of `upstream`; returns it and the proxy's address.
fn proxy_to(upstream: SocketAddr) -> (App, SocketAddr) {
    let port = free_port();
    let app = spawn_app_with(|_| proxy_service(port, upstream));
    (app, ([127, 0, 0, 1], port).into())
}

fn json(app: &App, path: &str) -> Option<Value> {
    serde_json::from_str(&app.curl(path)?).ok()
}

/// The proxy's chain in the list at `path`, if there.
fn proxy_chain(app: &App, path: &str) -> Option<Value> {
    json(app, path)?["items"]
        .as_array()?
        .iter()
        .find(|d| d["label"] == "tcp-proxy")
        .cloned()
}

#[test]
fn a_connection_stuck_connecting_upstream_names_the_step_and_the_upstream() {
    let upstream = unanswering();
    let (app, proxy) = proxy_to(upstream.addr);
    let _client = TcpStream::connect(proxy).unwrap();
    let endpoint = format!("tcp:{}", upstream.addr);

    let listed = crate::assert_eventually!(
        proxy_chain(&app, "/api/deferreds?state=pending&service=proxy"),
        "the client's chain is pending\n{}",
        app.log()
    );
    assert_eq!(listed["step_name"], "connect upstream", "{listed}");
    assert_eq!(listed["step_detail"], endpoint.as_str(), "{listed}");
    let id = listed["id"].as_i64().unwrap();
    let chain = json(&app, &format!("/api/deferreds/{id}")).expect("its page");
    let steps = chain["named_steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{chain}");
    assert_eq!(steps[0]["name"], "connect upstream", "{chain}");
    assert_eq!(steps[0]["detail"], endpoint.as_str(), "{chain}");
    assert!(steps[0]["duration_ms"].is_null(), "still at it: {chain}");
    let clients = json(&app, "/api/connections?state=open&service=proxy").unwrap();
    let client = &clients["items"][0];
    assert_eq!(chain["connection_id"], client["id"], "{chain}\n{clients}");
}

#[test]
fn a_connection_whose_upstream_refuses_ends_failed_in_the_api_at_once() {
    // Nothing listens there: the connect is refused.
    let refused: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let (app, proxy) = proxy_to(refused);
    // History cannot commit meanwhile: what the API lists comes from the hub.
    let _locked = Locked::hold(&app.db);
    let since = Instant::now();
    let mut client = TcpStream::connect(proxy).unwrap();
    let mut rest = Vec::new();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = client.read_to_end(&mut rest);
    let failed = crate::assert_eventually!(
        proxy_chain(&app, "/api/deferreds?state=failed&service=proxy"),
        "the failed chain is listed\n{}",
        app.log()
    );
    assert!(
        since.elapsed() < Duration::from_millis(1000),
        "listed {:?} after the client connected, history locked",
        since.elapsed()
    );
    assert_eq!(failed["step_name"], "connect upstream", "{failed}");
    assert!(
        failed["failure"]
            .as_str()
            .is_some_and(|f| f.contains(&format!("upstream tcp:{refused}"))),
        "{failed}"
    );
}
