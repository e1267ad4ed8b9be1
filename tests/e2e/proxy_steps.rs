//! A tcp-proxy connection explains itself in the inspector: its chain names the step it is
//! at (`connect upstream`, then `relay`) and the upstream, so a client stuck behind an
//! upstream that does not answer shows where and on what.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use socket2::{Domain, Socket, Type};

use crate::support::{App, Locked, free_port, proxy_service, spawn_app_with};

/// A listener whose accept queue is full and never drained: the kernel drops a further
/// SYN to it, so a connect hangs (retrying) rather than failing.
pub(crate) struct Unanswering {
    listener: Socket,
    queued: Vec<TcpStream>,
    pub(crate) addr: SocketAddr,
}

impl Unanswering {
    /// Starts answering: empties the accept queue, so the next SYN to it (a connect
    /// retrying) is taken; returns the listener, non-blocking.
    fn answer(self) -> Socket {
        for _ in &self.queued {
            self.listener.accept().unwrap();
        }
        self.listener.set_nonblocking(true).unwrap();
        self.listener
    }
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
        listener,
        queued,
        addr,
    }
}

/// Sockets of this machine still connecting (SYN sent, no answer) to `to`, an IPv4
/// address, read from /proc/net/tcp (state 02 is SYN_SENT).
fn connecting_to(to: SocketAddr) -> usize {
    let SocketAddr::V4(to) = to else {
        panic!("IPv4 only")
    };
    // The kernel prints the address as the u32 it holds, in host byte order.
    let remote = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(to.ip().octets()),
        to.port()
    );
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(2) == Some(&remote.as_str()) && f.get(3) == Some(&"02")
        })
        .count()
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
fn a_client_that_leaves_while_the_upstream_is_connecting_ends_its_chain_at_once() {
    let upstream = unanswering();
    let (app, proxy) = proxy_to(upstream.addr);
    let client = TcpStream::connect(proxy).unwrap();
    crate::assert_eventually!(
        proxy_chain(&app, "/api/deferreds?state=pending&service=proxy"),
        "the client's chain is pending\n{}",
        app.log()
    );
    assert_eq!(connecting_to(upstream.addr), 1, "the proxy is connecting");
    // An abortive close (RST): the client is gone, not merely done sending.
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    let since = Instant::now();
    let failed = crate::assert_eventually!(
        proxy_chain(&app, "/api/deferreds?state=failed&service=proxy"),
        "the chain ends when the client leaves\n{}",
        app.log()
    );
    assert!(
        since.elapsed() < Duration::from_secs(2),
        "ended {:?} after the client left",
        since.elapsed()
    );
    assert_eq!(failed["step_name"], "connect upstream", "{failed}");
    assert!(
        failed["failure"]
            .as_str()
            .is_some_and(|f| f.contains("the client left before upstream")),
        "{failed}"
    );
    assert!(
        proxy_chain(&app, "/api/deferreds?state=pending&service=proxy").is_none(),
        "nothing left pending"
    );
    crate::assert_eventually!(
        (connecting_to(upstream.addr) == 0).then_some(()),
        "the abandoned connect's socket is closed"
    );
}

/// A client the idle timeout closes while the upstream is still connecting ends its chain
/// saying so: weft cut it, it did not leave.
#[test]
fn a_client_idle_past_its_timeout_while_connecting_ends_its_chain_saying_so() {
    let upstream = unanswering();
    let port = free_port();
    let app = spawn_app_with(|_| proxy_service(port, upstream.addr) + "idle_timeout = \"1s\"\n");
    let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let failed = crate::assert_eventually!(
        proxy_chain(&app, "/api/deferreds?state=failed&service=proxy"),
        "the chain ends when the idle timeout closes the client\n{}",
        app.log()
    );
    let failure = failed["failure"].as_str().unwrap_or_default();
    assert!(
        failure.contains("the client was closed, idle past its idle timeout, before upstream"),
        "{failed}"
    );
}

/// A cancel from the inspector ends what the chain stands for: the connect upstream is
/// dropped and the client reset, as a connect that failed leaves it (the chain was said
/// cancelled while the connect went on, and the client would have been relayed had the
/// upstream answered).
#[test]
fn cancelling_a_connection_stuck_connecting_upstream_resets_the_client_and_drops_the_connect() {
    let upstream = unanswering();
    let (app, proxy) = proxy_to(upstream.addr);
    let mut client = TcpStream::connect(proxy).unwrap();
    let listed = crate::assert_eventually!(
        proxy_chain(&app, "/api/deferreds?state=pending&service=proxy"),
        "the client's chain is pending\n{}",
        app.log()
    );
    assert_eq!(connecting_to(upstream.addr), 1, "the proxy is connecting");
    let host = app.dashboard.to_string();
    let reply = crate::support::http(
        app.dashboard,
        &format!(
            "POST /api/deferreds/{}/cancel HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n\
             Content-Type: application/json\r\n",
            listed["id"]
        ),
        "{}",
    );
    assert_eq!(reply.status, 202, "{reply:?}");
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let read = client.read(&mut [0; 16]);
    assert!(
        matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "the client is reset at once: {read:?}"
    );
    let id = listed["id"].as_i64().unwrap();
    let ended = crate::assert_eventually!(
        json(&app, &format!("/api/deferreds/{id}")).filter(|d| d["state"] == "cancelled"),
        "the chain ends cancelled\n{}",
        app.log()
    );
    crate::http_chains::assert_cancelled_by_the_dashboard(&ended);
    crate::assert_eventually!(
        (connecting_to(upstream.addr) == 0).then_some(()),
        "the connect is dropped"
    );
    // An operator's cancel, as a close from the dashboard is: no I/O error.
    let closed = |reason: &str| {
        app.metric(&format!(
            r#"weft_connections_closed_total{{reason="{reason}",service="proxy",transport="tcp"}}"#
        ))
        .unwrap_or(0.0)
    };
    crate::assert_eventually!(
        closed("aborted") == 1.0,
        "the client's connection closed as aborted\n{}",
        app.log()
    );
    assert_eq!(closed("error"), 0.0);
}

#[test]
fn what_a_client_sends_and_its_half_close_before_the_upstream_answers_reach_the_upstream() {
    let upstream = unanswering();
    let addr = upstream.addr;
    let (app, proxy) = proxy_to(addr);
    let mut client = TcpStream::connect(proxy).unwrap();
    client.write_all(b"sent early").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    crate::assert_eventually!(
        proxy_chain(&app, "/api/deferreds?state=pending&service=proxy"),
        "the client's chain is pending\n{}",
        app.log()
    );
    assert_eq!(
        connecting_to(addr),
        1,
        "the half-closed client's connect goes on"
    );

    let listener = upstream.answer();
    let (conn, _) = crate::assert_eventually!(
        listener.accept().ok(),
        "the proxy's connect, retried, is accepted\n{}",
        app.log()
    );
    let mut conn = TcpStream::from(conn);
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    conn.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"sent early", "the bytes, then the end of stream");
    conn.write_all(b"the answer").unwrap();
    drop(conn);
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"the answer");
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
