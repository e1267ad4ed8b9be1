//! What counts as progress on an HTTP/2 connection: requests and response bytes, not
//! PINGs. A client that only pings is idle, and one stream a client makes no room for is
//! reset while the rest of its connection goes on.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::assert_eventually;
use crate::http2::{NO_WINDOW, frame, preface, request_head};
use crate::support::{App, free_port, spawn_app_with};

const PING: u8 = 0x6;
const RST_STREAM: u8 = 0x3;
const DATA: u8 = 0x0;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
/// RST_STREAM's CANCEL (RFC 9113 §7).
const CANCEL: u32 = 0x8;

/// A service with a 1 s idle timeout serving a 2 MiB file, a 256 KiB one (read whole,
/// and handed to hyper in one piece) and a small one.
fn start() -> (App, SocketAddr) {
    let port = free_port();
    let app = spawn_app_with(|dir| {
        let site = dir.join("site");
        std::fs::create_dir(&site).unwrap();
        std::fs::write(site.join("big.bin"), vec![7u8; 2 << 20]).unwrap();
        std::fs::write(site.join("whole.bin"), vec![7u8; 256 << 10]).unwrap();
        std::fs::write(site.join("small.txt"), "small\n").unwrap();
        format!(
            "\n[[service]]\nname = \"web\"\nkind = \"http\"\n\
             listen = \"tcp:{port}:interface=127.0.0.1\"\nroot = \"{}\"\n\
             idle_timeout = \"1s\"\naccess_log = \"{}\"\n",
            site.display(),
            dir.join("access.log").display()
        )
    });
    (app, ([127, 0, 0, 1], port).into())
}

/// One frame the server sent.
#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// A raw HTTP/2 client: writes what it is given, and reads the server's frames.
struct Peer {
    conn: TcpStream,
    read: Vec<u8>,
    /// Set once the server closed (or reset) the connection.
    closed: bool,
}

impl Peer {
    fn open(web: SocketAddr, first: &[u8]) -> Self {
        let mut conn = TcpStream::connect(web).unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        conn.write_all(first).unwrap();
        Self {
            conn,
            read: Vec::new(),
            closed: false,
        }
    }

    /// Sends `bytes`; false once the server is gone.
    fn send(&mut self, bytes: &[u8]) -> bool {
        self.conn.write_all(bytes).is_ok()
    }

    /// Reads for up to 100 ms; the whole frames that came.
    fn frames(&mut self) -> Vec<Frame> {
        let mut buf = [0; 64 << 10];
        match self.conn.read(&mut buf) {
            Ok(0) => self.closed = true,
            Ok(n) => self.read.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => self.closed = true,
        }
        self.frames_read()
    }

    /// The whole frames among the bytes read so far.
    fn frames_read(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        while self.read.len() >= 9 {
            let len = usize::from(self.read[0]) << 16
                | usize::from(self.read[1]) << 8
                | usize::from(self.read[2]);
            if self.read.len() < 9 + len {
                break;
            }
            let stream = u32::from_be_bytes(self.read[5..9].try_into().unwrap()) & 0x7fff_ffff;
            frames.push(Frame {
                kind: self.read[3],
                flags: self.read[4],
                stream,
                payload: self.read[9..9 + len].to_vec(),
            });
            self.read.drain(..9 + len);
        }
        frames
    }
}

fn ping() -> Vec<u8> {
    let mut out = Vec::new();
    frame(&mut out, PING, 0, 0, b"pingpong");
    out
}

/// Pings every 200 ms until the server closes, answering the server's PINGs if `acks`;
/// how long that took, and whether it sent GOAWAY first.
fn ping_until_closed(mut peer: Peer, acks: bool) -> Result<(Duration, bool), String> {
    let within = Duration::from_secs(30);
    let started = Instant::now();
    let mut goaway = false;
    let mut last_ping = Instant::now();
    while started.elapsed() < within {
        for f in peer.frames() {
            goaway |= f.kind == GOAWAY;
            if acks && f.kind == PING && f.payload != b"pingpong" {
                let mut ack = Vec::new();
                frame(&mut ack, PING, 0x1, 0, &f.payload);
                peer.send(&ack);
            }
        }
        if peer.closed {
            return Ok((started.elapsed(), goaway));
        }
        if last_ping.elapsed() >= Duration::from_millis(200) {
            last_ping = Instant::now();
            if !peer.send(&ping()) {
                return Ok((started.elapsed(), goaway));
            }
        }
    }
    Err(format!("still open after {within:?} of PINGs"))
}

/// PINGs are no progress. A client that sends nothing but PINGs, every 200 ms, is idle:
/// told GOAWAY and closed at the idle timeout, or, if it does not answer the server's
/// PING either, given up after the close timeout as one that stops cooperating. One that
/// pings while it holds a response it opens no window for has that stream reset, and is
/// then as idle as the first.
#[test]
fn an_http2_client_that_only_pings_is_idle() {
    let (app, web) = start();
    let idle = Peer::open(web, &preface(&[]));
    let deaf = Peer::open(web, &preface(&[]));
    let stalled = {
        let mut out = preface(&NO_WINDOW);
        frame(&mut out, 0x1, 0x5, 1, &request_head(0x82, "/big.bin"));
        Peer::open(web, &out)
    };
    let idle = std::thread::spawn(move || ping_until_closed(idle, true));
    let deaf = std::thread::spawn(move || ping_until_closed(deaf, false));
    let stalled = std::thread::spawn(move || ping_until_closed(stalled, true));

    for (what, client) in [("idle", idle), ("stalled", stalled)] {
        let (took, goaway) = client.join().unwrap().unwrap();
        assert!(
            took < Duration::from_secs(5) && goaway,
            "{what}: closed after {took:?}, GOAWAY {goaway}; the idle timeout is 1 s"
        );
    }
    let (took, goaway) = deaf.join().unwrap().unwrap();
    assert!(
        took < Duration::from_secs(20) && goaway,
        "closed after {took:?}, GOAWAY {goaway}: idle at 1 s, then given up after the \
         10 s close timeout"
    );
    assert_eventually!(
        app.metric(
            r#"weft_connections_closed_total{reason="send_timeout",service="web",transport="tcp"}"#
        ) == Some(1.0)
            && app
                .metric(r#"weft_http_requests_refused_total{reason="send_timeout",service="web"}"#)
                == Some(1.0),
        "the deaf client given up, the stalled stream reset\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
}

/// A stream whose client opens it no window is reset after the idle timeout while the
/// client keeps its connection busy with other requests, which go on being answered.
#[test]
fn a_stream_its_client_makes_no_room_for_is_reset_while_its_connection_goes_on() {
    reset_while_its_connection_goes_on("/big.bin");
}

/// A response whose body hands over its last (here its only) piece at once is no
/// different: hyper holds the piece until the client has room for it, and a stream reset
/// meanwhile was cut short, however whole its body was.
#[test]
fn a_stream_whose_last_piece_never_finds_room_is_logged_as_cut_short() {
    reset_while_its_connection_goes_on("/small.txt");
}

fn reset_while_its_connection_goes_on(path: &str) {
    let (app, web) = start();
    let mut out = preface(&NO_WINDOW);
    frame(&mut out, 0x1, 0x5, 1, &request_head(0x82, path));
    let mut peer = Peer::open(web, &out);
    let started = Instant::now();
    let mut reset_at = None;
    let mut answered = Vec::new();
    let mut next = 3u32;
    let mut last_request = Instant::now();
    while started.elapsed() < Duration::from_secs(6) && !peer.closed {
        for f in peer.frames() {
            match f.kind {
                RST_STREAM if f.stream == 1 => {
                    let code = u32::from_be_bytes(f.payload[..4].try_into().unwrap());
                    assert_eq!(code, CANCEL, "the stalled stream's reset");
                    reset_at.get_or_insert(started.elapsed());
                }
                DATA if f.stream > 1 && !f.payload.is_empty() => {
                    assert_eq!(f.payload, b"small\n");
                    answered.push((f.stream, started.elapsed()));
                }
                _ => {}
            }
        }
        // A small request every 250 ms, given room for its answer: the connection is busy.
        if last_request.elapsed() >= Duration::from_millis(250) {
            last_request = Instant::now();
            let mut out = Vec::new();
            frame(&mut out, 0x1, 0x5, next, &request_head(0x82, "/small.txt"));
            frame(&mut out, WINDOW_UPDATE, 0, next, &1000u32.to_be_bytes());
            assert!(peer.send(&out), "the connection is still open");
            next += 2;
        }
    }
    assert!(!peer.closed, "the connection was closed");
    let reset_at = reset_at.expect("the stalled stream was never reset");
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(4)).contains(&reset_at),
        "reset after {reset_at:?}; the idle timeout is 1 s"
    );
    assert!(
        answered
            .iter()
            .any(|(_, at)| *at > reset_at + Duration::from_secs(1)),
        "requests after the reset are answered: {answered:?}"
    );
    assert_eventually!(
        app.metric(r#"weft_http_requests_refused_total{reason="send_timeout",service="web"}"#)
            == Some(1.0),
        "counted\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    let access_log = app.dir.path().join("access.log");
    assert_eventually!(
        std::fs::read_to_string(&access_log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(&format!("GET {path} "))
                && l.contains("cut short: the client took nothing for the idle timeout")),
        "{}",
        std::fs::read_to_string(&access_log).unwrap_or_default()
    );
}

/// Response bytes going out are progress, however long ago the body handed them over: a
/// client that takes a 256 KiB file (handed to hyper whole) at 20 KB/s, opening its
/// window as it reads, gets all of it, though its stream's task ended at once and the
/// idle timeout is 1 s.
#[test]
fn a_slow_download_is_progress_after_its_body_was_handed_over_whole() {
    let (app, web) = start();
    let mut out = preface(&[]);
    frame(&mut out, 0x1, 0x5, 1, &request_head(0x82, "/whole.bin"));
    let conn = TcpStream::connect(web).unwrap();
    let mut peer = Peer {
        conn,
        read: Vec::new(),
        closed: false,
    };
    peer.conn
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    assert!(peer.send(&out));
    let started = Instant::now();
    let (mut got, mut ended) = (0, false);
    while !ended && !peer.closed && started.elapsed() < Duration::from_secs(40) {
        std::thread::sleep(Duration::from_millis(100));
        let mut buf = [0; 2048];
        match peer.conn.read(&mut buf) {
            Ok(0) => peer.closed = true,
            Ok(n) => peer.read.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => peer.closed = true,
        }
        let mut reply = Vec::new();
        for f in peer.frames_read() {
            match f.kind {
                DATA if f.stream == 1 => {
                    got += f.payload.len();
                    ended |= f.flags & 0x1 != 0;
                    if !f.payload.is_empty() {
                        let n = u32::try_from(f.payload.len()).unwrap().to_be_bytes();
                        frame(&mut reply, WINDOW_UPDATE, 0, 0, &n);
                        frame(&mut reply, WINDOW_UPDATE, 0, 1, &n);
                    }
                }
                PING if f.flags & 0x1 == 0 => frame(&mut reply, PING, 0x1, 0, &f.payload),
                RST_STREAM => panic!("the stream was reset after {got} bytes"),
                _ => {}
            }
        }
        if !reply.is_empty() {
            peer.send(&reply);
        }
    }
    assert!(
        ended && got == 256 << 10,
        "{got} bytes in {:?}, the end {ended}\n{}",
        started.elapsed(),
        app.log()
    );
    assert!(
        started.elapsed() > Duration::from_secs(11),
        "the download took {:?}: too fast to outlast an idle timeout and a close timeout",
        started.elapsed()
    );
}
