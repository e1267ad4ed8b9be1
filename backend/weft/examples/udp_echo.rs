//! A UDP echo server on port 8000.
//!
//! ```text
//! cargo run -p weft --example udp_echo   # then: echo hi | nc -u -w1 127.0.0.1 8000
//! ```

use std::net::SocketAddr;

use weft::{DatagramProtocol, DatagramTransport, Reactor};

struct Echo;

impl DatagramProtocol for Echo {
    fn datagram_received(&mut self, transport: &DatagramTransport, data: &[u8], from: SocketAddr) {
        transport.write(data, from);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let reactor = Reactor::new()?;
    reactor.listen_udp("udp-echo", "udp:8000:interface=127.0.0.1", Echo)?;
    println!("UDP echo server started on port 8000. Press Ctrl+C to stop.");
    reactor.run()?;
    Ok(())
}
