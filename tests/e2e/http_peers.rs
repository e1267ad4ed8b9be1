//! The peers of the `http` tests: an upstream that records what reaches it (and can hold
//! its answers until the test lets them go), and a raw HTTP/1.1 client that sends exactly
//! the bytes it is given.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// An HTTP upstream on threads. Each request is answered with
/// `upstream: <request line> xff=<X-Forwarded-For> body=<body>`, on keep-alive connections;
/// a body is read by its `Content-Length`, or chunked.
pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Each request's head, one line per entry.
    heads: Mutex<Vec<Vec<String>>>,
    /// Connections accepted.
    connections: std::sync::atomic::AtomicUsize,
    held: Mutex<bool>,
    released: Condvar,
}

impl Upstream {
    /// An upstream that answers at once.
    pub(crate) fn start() -> Self {
        Self::with_hold(false)
    }

    /// An upstream that answers only after [`release`](Self::release).
    pub(crate) fn holding() -> Self {
        Self::with_hold(true)
    }

    fn with_hold(held: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            held: Mutex::new(held),
            ..Shared::default()
        });
        let serving = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                serving
                    .connections
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let shared = serving.clone();
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        Self { addr, shared }
    }

    /// Lets held answers go.
    pub(crate) fn release(&self) {
        *self.shared.held.lock().unwrap() = false;
        self.shared.released.notify_all();
    }

    /// How many requests arrived.
    pub(crate) fn received(&self) -> usize {
        self.shared.heads.lock().unwrap().len()
    }

    /// How many connections it accepted.
    pub(crate) fn connections(&self) -> usize {
        self.shared
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The request target of each request, in order.
    pub(crate) fn targets(&self) -> Vec<String> {
        let heads = self.shared.heads.lock().unwrap();
        heads
            .iter()
            .map(|h| h[0].split(' ').nth(1).unwrap_or("").to_owned())
            .collect()
    }

    /// Every value of header `name` in request `i`.
    pub(crate) fn header(&self, i: usize, name: &str) -> Vec<String> {
        let heads = self.shared.heads.lock().unwrap();
        header_values(&heads[i][1..], name)
    }
}

fn header_values(lines: &[String], name: &str) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
        .collect()
}

fn serve(stream: TcpStream, shared: &Shared) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            head.push(line.trim_end().to_owned());
        }
        let len: usize = header_values(&head[1..], "content-length")
            .first()
            .map_or(0, |v| v.parse().unwrap());
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if header_values(&head[1..], "transfer-encoding") == ["chunked"] {
            match weft_test_support::net::read_chunked(&mut reader) {
                Some(chunked) => body = chunked,
                None => return,
            }
        }
        let xff = header_values(&head[1..], "x-forwarded-for")
            .pop()
            .unwrap_or_default();
        let reply = format!(
            "upstream: {} xff={xff} body={}",
            head[0],
            String::from_utf8_lossy(&body)
        );
        shared.heads.lock().unwrap().push(head);
        let mut held = shared.held.lock().unwrap();
        while *held {
            held = shared.released.wait(held).unwrap();
        }
        drop(held);
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        );
        if reader.get_mut().write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// A response as the raw client read it.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A connection that sends raw bytes and reads responses.
pub(crate) struct RawClient {
    reader: BufReader<TcpStream>,
}

impl RawClient {
    pub(crate) fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Self {
            reader: BufReader::new(s),
        }
    }

    /// A connection to `addr` from the local address `from` (any port).
    pub(crate) fn connect_from(from: std::net::IpAddr, addr: SocketAddr) -> Self {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .unwrap();
        socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
        socket.connect(&addr.into()).unwrap();
        let s: TcpStream = socket.into();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Self {
            reader: BufReader::new(s),
        }
    }

    pub(crate) fn send(&mut self, raw: &[u8]) {
        self.reader.get_mut().write_all(raw).unwrap();
    }

    /// Its socket, to write from another thread.
    pub(crate) fn try_clone_stream(&self) -> TcpStream {
        self.reader.get_ref().try_clone().unwrap()
    }

    /// Ends what it sends (a half-close); it can still read.
    pub(crate) fn shut_write(&mut self) {
        self.reader
            .get_ref()
            .shutdown(std::net::Shutdown::Write)
            .unwrap();
    }

    /// The status line and headers of the next response (empty status 0 if the server
    /// closed instead).
    pub(crate) fn read_head(&mut self) -> Reply {
        let mut line = String::new();
        let _ = self.reader.read_line(&mut line);
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut headers = Vec::new();
        if status != 0 {
            loop {
                let mut line = String::new();
                self.reader.read_line(&mut line).unwrap();
                let Some((k, v)) = line.trim_end().split_once(':') else {
                    break;
                };
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        Reply {
            status,
            headers,
            body: Vec::new(),
        }
    }

    /// The next response, its body read by `Content-Length`, or its chunks (decoded), or
    /// to the end.
    pub(crate) fn read_reply(&mut self) -> Reply {
        let mut reply = self.read_head();
        if reply.header("transfer-encoding") == Some("chunked") {
            reply.body = weft_test_support::net::read_chunked(&mut self.reader)
                .expect("a well-formed chunked body");
            return reply;
        }
        match reply.header("content-length").map(|l| l.parse().unwrap()) {
            Some(len) => {
                reply.body = vec![0; len];
                self.reader.read_exact(&mut reply.body).unwrap();
            }
            None if reply.status != 0 => {
                let _ = self.reader.read_to_end(&mut reply.body);
            }
            None => {}
        }
        reply
    }

    /// Reads what is left until the server closes.
    pub(crate) fn read_to_end(&mut self, out: &mut Vec<u8>) -> std::io::Result<usize> {
        self.reader.read_to_end(out)
    }

    /// Reads up to `n` body bytes.
    pub(crate) fn read_some(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.reader.read_exact(&mut buf).unwrap();
        buf
    }

    /// Whether the server closed the connection (reads end-of-stream).
    pub(crate) fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.reader.read(&mut buf), Ok(0) | Err(_))
    }
}

/// One request on a fresh connection; the response is read by its `Content-Length`.
pub(crate) fn exchange(addr: SocketAddr, raw: &str) -> Reply {
    let mut client = RawClient::connect(addr);
    client.send(raw.as_bytes());
    client.read_reply()
}

/// An http service named `web` on a loopback port, serving `public/f.txt` ("a file\n"),
/// with `keys` added to it (its own settings, then any `[[service.route]]` tables).
pub(crate) fn web_service(keys: &str) -> (crate::support::App, SocketAddr) {
    let web: SocketAddr = ([127, 0, 0, 1], crate::support::free_port()).into();
    let app = crate::support::spawn_app_with(|dir| {
        let root = dir.join("public");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("f.txt"), "a file\n").unwrap();
        format!(
            "[[service]]\nname = \"web\"\nkind = \"http\"\n\
             listen = \"tcp:{port}:interface=127.0.0.1\"\nroot = \"{root}\"\n{keys}",
            port = web.port(),
            root = root.display(),
        )
    });
    (app, web)
}

/// The status of `path` on `web`, asked with curl from the local address `source` with
/// the header fields `fields` (`"Name: value"`); 0 when curl got none.
pub(crate) fn curl_status(web: SocketAddr, source: &str, path: &str, fields: &[&str]) -> u16 {
    let mut curl = std::process::Command::new("curl");
    curl.args(["--interface", source]);
    curl_code(curl, &format!("http://{web}{path}"), fields)
}

/// The status `curl` (a command with the options that say how to reach the server) gets
/// for `url` with the header fields `fields`; 0 when it got none.
pub(crate) fn curl_code(mut curl: std::process::Command, url: &str, fields: &[&str]) -> u16 {
    curl.args(["-s", "--max-time", "10", "-o", "/dev/null"])
        .args(["-w", "%{http_code}"]);
    for field in fields {
        curl.args(["-H", field]);
    }
    let out = curl.arg(url).output().expect("curl must be installed");
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}
