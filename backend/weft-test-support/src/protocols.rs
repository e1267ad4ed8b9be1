//! The servers most tests talk to.

use std::net::SocketAddr;

use weft::{DatagramProtocol, DatagramTransport, Protocol, Transport};

/// Writes back every byte it reads.
pub struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        transport.write(data);
    }
}

/// Sends every datagram back to where it came from.
pub struct UdpEcho;

impl DatagramProtocol for UdpEcho {
    fn datagram_received(&mut self, t: &DatagramTransport, data: &[u8], from: SocketAddr) {
        t.write(data, from);
    }
}
