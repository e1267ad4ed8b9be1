//! An HTTP upstream on threads that records every request it receives, so a test can
//! say exactly which paths and headers reached it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

/// A request as the upstream saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub head: String,
    pub body: Vec<u8>,
}

impl Seen {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    /// Every value of header `name`, in order.
    pub fn headers(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .collect()
    }

    /// The request target of the request line.
    pub fn target(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or("")
    }
}

/// What the upstream received, in arrival order.
pub type Log = Arc<Mutex<Vec<Seen>>>;

/// Makes the upstream's answer to one request.
pub type Respond = fn(&Seen) -> Vec<u8>;

/// An upstream answering one request per connection with `respond`.
pub fn upstream(respond: Respond) -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Log::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let log = log.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let mut seen = Seen {
                    head,
                    body: Vec::new(),
                };
                if let Some(len) = seen.header("content-length") {
                    let mut body = vec![0; len.parse().unwrap()];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    seen.body = body;
                } else if seen.header("transfer-encoding").as_deref() == Some("chunked") {
                    match weft_test_support::net::read_chunked(&mut reader) {
                        Some(body) => seen.body = body,
                        None => return,
                    }
                }
                log.lock().unwrap().push(seen.clone());
                let _ = reader.get_mut().write_all(&respond(&seen));
            });
        }
    });
    (addr, seen)
}

/// `200 OK` with `upstream saw <request line>` as the body.
pub fn ok(seen: &Seen) -> Vec<u8> {
    let body = format!("upstream saw {}", seen.head.lines().next().unwrap());
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\nX-Upstream: yes\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The request targets the upstream received.
pub fn targets(log: &Log) -> Vec<String> {
    log.lock()
        .unwrap()
        .iter()
        .map(|s| s.target().to_owned())
        .collect()
}

/// How a [`KeepAlive`] upstream treats a connection after each response.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum AfterResponse {
    /// Waits for the next request on the same connection.
    KeepOpen,
    /// Closes it, without saying so in the response (as a server whose keep-alive
    /// timeout just ran out does).
    Close,
}

/// An HTTP/1.1 upstream that serves many requests per connection and counts what it
/// accepted: each response's body is `NAME #N` (its Nth request). `GET /slow` waits until
/// [`release`](Self::release); `GET /drip` sends its head and all but the last byte of its
/// body at once, and that byte once released; `GET /healthz` says 200 like any other path. It can be
/// killed (listener and connections closed) and revived on the same port.
#[derive(Clone)]
pub struct KeepAlive {
    pub addr: SocketAddr,
    pub name: &'static str,
    state: Arc<KeepAliveState>,
}

#[derive(Default)]
struct KeepAliveState {
    accepted: std::sync::atomic::AtomicUsize,
    requests: std::sync::atomic::AtomicUsize,
    /// Bumped by `kill`: connections of an older generation stop answering.
    generation: std::sync::atomic::AtomicUsize,
    released: std::sync::atomic::AtomicBool,
    after: Mutex<Option<AfterResponse>>,
}

impl KeepAlive {
    pub fn start(name: &'static str, after: AfterResponse) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let upstream = Self {
            addr: listener.local_addr().unwrap(),
            name,
            state: Arc::default(),
        };
        *upstream.state.after.lock().unwrap() = Some(after);
        upstream.serve(listener);
        upstream
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.state
            .accepted
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.state
            .requests
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Lets every `GET /slow` answer.
    pub fn release(&self) {
        self.state
            .released
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Stops listening and closes every connection: connecting is refused from now on.
    pub fn kill(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.state.generation.fetch_add(1, SeqCst);
        // Wakes the accept loop so it sees the new generation and drops the listener.
        let _ = std::net::TcpStream::connect(self.addr);
        weft_test_support::eventually("the killed upstream refuses connections", || {
            std::net::TcpStream::connect(self.addr).is_err()
        });
    }

    /// Listens again on the same port.
    pub fn revive(&self) {
        let listener = TcpListener::bind(self.addr).unwrap();
        self.serve(listener);
    }

    fn serve(&self, listener: TcpListener) {
        use std::sync::atomic::Ordering::SeqCst;
        let me = self.clone();
        let generation = self.state.generation.load(SeqCst);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if me.state.generation.load(SeqCst) != generation {
                    return;
                }
                let Ok(stream) = stream else { return };
                me.state.accepted.fetch_add(1, SeqCst);
                let me = me.clone();
                std::thread::spawn(move || me.connection(stream, generation));
            }
        });
    }

    fn connection(&self, stream: std::net::TcpStream, generation: usize) {
        use std::sync::atomic::Ordering::SeqCst;
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_millis(50)));
        let mut reader = BufReader::new(stream);
        loop {
            let mut head = String::new();
            loop {
                if self.state.generation.load(SeqCst) != generation {
                    return;
                }
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        head.push_str(&line);
                        continue;
                    }
                    Err(_) => return,
                }
                head.push_str(&line);
                if head.ends_with("\r\n\r\n") {
                    break;
                }
            }
            let seen = Seen {
                head,
                body: Vec::new(),
            };
            if seen.target() == "/slow" {
                while !self.state.released.load(SeqCst) {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
            if self.state.generation.load(SeqCst) != generation {
                return;
            }
            let n = self.state.requests.fetch_add(1, SeqCst) + 1;
            let body = format!("{} #{n}", self.name);
            let drip = seen.target() == "/drip";
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len() + usize::from(drip)
            );
            if reader.get_mut().write_all(reply.as_bytes()).is_err() {
                return;
            }
            if drip {
                while !self.state.released.load(SeqCst) {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                if reader.get_mut().write_all(b".").is_err() {
                    return;
                }
            }
            if *self.state.after.lock().unwrap() == Some(AfterResponse::Close) {
                return;
            }
        }
    }
}
