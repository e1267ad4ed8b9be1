//! Loopback ports and clients.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

/// Where [`free_port`] looks: below Linux's ephemeral range (32768–60999 by default), so
/// that no client socket of a test running alongside is given the port between the
/// moment it is found free and the moment the server binds it.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// The next port [`free_port`] tries; starts at a place that depends on the process, so
/// two test binaries run one after the other do not walk the same ports.
static NEXT: AtomicU16 = AtomicU16::new(0);

/// A port free for both TCP and UDP on every interface right now, for a test that must
/// name a port before it binds (a configuration file, a handed-over listener). Each call
/// in a process returns a different port.
pub fn free_port() -> u16 {
    let span = PORTS.end - PORTS.start;
    let _ = NEXT.compare_exchange(
        0,
        (std::process::id() % u32::from(span)) as u16 + 1,
        Ordering::AcqRel,
        Ordering::Acquire,
    );
    loop {
        let offset = NEXT.fetch_add(1, Ordering::AcqRel) % span;
        let port = PORTS.start + offset;
        let any = (Ipv4Addr::UNSPECIFIED, port);
        if TcpListener::bind(any).is_ok() && UdpSocket::bind(any).is_ok() {
            return port;
        }
    }
}

/// A blocking client with a read timeout, so a broken server fails the test instead of
/// hanging it.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// A chunked HTTP/1.1 body (without trailer fields) read from `reader` and decoded, for a
/// test's upstream; `None` if it breaks off or is malformed.
pub fn read_chunked(reader: &mut impl std::io::BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).ok()?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}
