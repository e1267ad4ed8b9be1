//! A reactor with an HTTP service on its own thread, a recorder the test can read, and a
//! raw HTTP/1.1 client over std sockets (so what is on the wire is exactly what we send).

#![allow(dead_code, unreachable_pub)]

pub mod upstream;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use weft::testing::RecordingObserver;
use weft::{Reactor, ReactorHandle};
use weft_test_support::{Running, spawn_reactor};
use weft_web::{
    ConnectionsUsed, HttpService, MethodLabel, Recorder, Refusal, StatusClass, UpstreamFailure,
    UpstreamSnapshot, UpstreamsView, WebConfig,
};

/// What the service recorded: `(method, class)` per request, upstream errors, and the
/// reason of each refusal.
#[derive(Default)]
pub struct Recorded {
    pub requests: Mutex<Vec<(&'static str, &'static str)>>,
    pub upstream_errors: Mutex<u32>,
    pub refusals: Mutex<Vec<&'static str>>,
    /// Upstream connections used, by whether they came from the pool.
    pub upstream_connections: ConnectionsUsed,
    /// `(upstream, reason)` of each upstream failure.
    pub upstream_failures: Mutex<Vec<(String, &'static str)>>,
    /// The upstreams ejected, in order.
    pub ejected: Mutex<Vec<String>>,
    /// The routes that found every upstream ejected, once per request.
    pub unavailable: Mutex<Vec<String>>,
}

impl Recorded {
    pub fn count(&self, method: &str, class: &str) -> usize {
        let requests = self.requests.lock().unwrap();
        requests.iter().filter(|r| **r == (method, class)).count()
    }

    pub fn upstream_connections(&self, reused: bool) -> u64 {
        self.upstream_connections.get(reused)
    }

    pub fn failures(&self, reason: &str) -> usize {
        let failures = self.upstream_failures.lock().unwrap();
        failures.iter().filter(|(_, r)| *r == reason).count()
    }

    pub fn refused(&self, reason: &str) -> usize {
        let refusals = self.refusals.lock().unwrap();
        refusals.iter().filter(|r| **r == reason).count()
    }
}

struct Shared(Arc<Recorded>);

impl Recorder for Shared {
    fn request(
        &self,
        method: MethodLabel,
        status: StatusClass,
        _elapsed: Duration,
        _span: Option<weft::observe::exemplar::SpanRef>,
    ) {
        let mut requests = self.0.requests.lock().unwrap();
        requests.push((method.as_str(), status.as_str()));
    }
    fn upstream_error(&self) {
        *self.0.upstream_errors.lock().unwrap() += 1;
    }
    fn refused(&self, reason: Refusal) {
        self.0.refusals.lock().unwrap().push(reason.as_str());
    }
    fn upstream_connections(&self, _upstream: &str) -> ConnectionsUsed {
        self.0.upstream_connections.clone()
    }
    fn upstream_failed(&self, upstream: &str, reason: UpstreamFailure) {
        let mut failures = self.0.upstream_failures.lock().unwrap();
        failures.push((upstream.to_owned(), reason.as_str()));
    }
    fn upstream_ejected(&self, upstream: &str) {
        self.0.ejected.lock().unwrap().push(upstream.to_owned());
    }
    fn upstream_unavailable(&self, route: &str) {
        self.0.unavailable.lock().unwrap().push(route.to_owned());
    }
}

/// An HTTP service running on a reactor thread; stopped on drop.
pub struct Server {
    pub addr: SocketAddr,
    pub handle: ReactorHandle,
    pub recorded: Arc<Recorded>,
    /// The service's upstreams, as a dashboard reads them.
    pub upstreams: UpstreamsView,
    /// Stops the reactor and joins its thread when the server is dropped.
    reactor: Running<(SocketAddr, UpstreamsView)>,
}

impl Server {
    pub fn start(config: WebConfig) -> Self {
        Self::start_on(config, "tcp:0:interface=127.0.0.1")
    }

    /// The service listening on `endpoint` (an `ssl:` one, say).
    pub fn start_on(config: WebConfig, endpoint: &str) -> Self {
        Self::start_with(config, endpoint, None)
    }

    /// The service with `observer` receiving its reactor's events (tasks spawned, chains).
    pub fn start_observed(config: WebConfig, observer: Arc<RecordingObserver>) -> Self {
        Self::start_with(config, "tcp:0:interface=127.0.0.1", Some(observer))
    }

    fn start_with(
        config: WebConfig,
        endpoint: &str,
        observer: Option<Arc<RecordingObserver>>,
    ) -> Self {
        let recorded = Arc::new(Recorded::default());
        let shared = recorded.clone();
        let endpoint = endpoint.to_owned();
        let reactor = spawn_reactor(move |reactor| {
            if let Some(observer) = observer {
                reactor.set_observer(observer);
            }
            let web = HttpService::new("web", config, Rc::new(Shared(shared))).unwrap();
            let port = web.listen(reactor, &endpoint).unwrap();
            (port.local_addr().unwrap(), web.upstreams())
        });
        Self {
            addr: reactor.value.0,
            upstreams: reactor.value.1.clone(),
            handle: reactor.handle.clone(),
            recorded,
            reactor,
        }
    }

    /// The snapshot of the upstream whose URL is `url`.
    pub fn upstream(&self, url: &str) -> UpstreamSnapshot {
        let all = self.upstreams.snapshot();
        all.into_iter()
            .find(|u| u.url == url)
            .unwrap_or_else(|| panic!("no upstream {url}"))
    }

    /// Open connections, by service, as the reactor lists them.
    pub fn connections(&self) -> Vec<String> {
        let (tx, rx) = mpsc::channel();
        self.handle.call_from_thread(move || {
            let list = Reactor::current()
                .connections()
                .iter()
                .map(|t| t.info().service.to_string())
                .collect();
            tx.send(list).unwrap();
        });
        rx.recv().unwrap()
    }

    /// The connections the live tasks spawned in a file ending with `file` are listed
    /// under, and the ids of the open connections.
    pub fn tasks_spawned_in(&self, file: &'static str) -> (Vec<Option<u64>>, Vec<u64>) {
        let (tx, rx) = mpsc::channel();
        self.handle.call_from_thread(move || {
            let tasks = weft::tasks::pending_tasks()
                .iter()
                .filter(|t| t.site.0.file().ends_with(file))
                .map(|t| t.figures.connection.map(|c| c.0))
                .collect();
            let open = Reactor::current()
                .connections()
                .iter()
                .map(|t| t.info().id.0)
                .collect();
            tx.send((tasks, open)).unwrap();
        });
        rx.recv().unwrap()
    }

    /// Closes, as the dashboard does, the open connection whose peer is `peer`.
    pub fn close_connection_to(&self, peer: SocketAddr) -> bool {
        let (tx, rx) = mpsc::channel();
        self.handle.call_from_thread(move || {
            let reactor = Reactor::current();
            let id = reactor
                .connections()
                .iter()
                .find(|t| t.info().peer.socket_addr() == Some(peer))
                .map(|t| t.info().id);
            tx.send(id.is_some_and(|id| reactor.close_connection(id)))
                .unwrap();
        });
        rx.recv().unwrap()
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// One request on a fresh connection.
    pub fn get(&self, path: &str) -> Reply {
        self.connect()
            .request(&format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"))
    }
}

/// A parsed response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw HTTP/1.1 client on one connection.
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Self {
            reader: BufReader::new(s),
        }
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.reader.get_mut().write_all(raw).unwrap();
    }

    /// Sends `raw` and reads one response (no body for HEAD or 304).
    pub fn request(&mut self, raw: &str) -> Reply {
        self.send(raw.as_bytes());
        self.read_reply(raw.starts_with("HEAD "))
    }

    pub fn read_reply(&mut self, head_only: bool) -> Reply {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':').unwrap();
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        if head_only || status == 304 || status == 204 {
            return reply;
        }
        if let Some(len) = reply.header("content-length") {
            let mut body = vec![0; len.parse().unwrap()];
            self.reader.read_exact(&mut body).unwrap();
            reply.body = body;
        } else if reply
            .header("transfer-encoding")
            .is_some_and(|t| t.contains("chunked"))
        {
            reply.body = self.read_chunked();
        } else {
            self.reader.read_to_end(&mut reply.body).unwrap();
        }
        reply
    }

    fn read_chunked(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            self.reader.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            self.reader.read_exact(&mut chunk).unwrap();
            if n == 0 {
                return body;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }

    /// Whether the server closed the connection (reads end-of-stream).
    pub fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.reader.read(&mut buf), Ok(0) | Err(_))
    }
}
