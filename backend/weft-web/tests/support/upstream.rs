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
