//! `kind = "echo"`: sends back every byte (TCP) or datagram (UDP) it receives (RFC 862).

use std::net::SocketAddr;

use weft::{DatagramProtocol, DatagramTransport, Protocol, Transport};

/// Echo over a stream.
#[derive(Debug, Default)]
pub struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        transport.write(data);
    }
}

/// Echo over UDP: each datagram goes back to its sender.
#[derive(Debug, Default)]
pub struct UdpEcho;

impl DatagramProtocol for UdpEcho {
    fn datagram_received(&mut self, transport: &DatagramTransport, data: &[u8], from: SocketAddr) {
        transport.write(data, from);
    }
}

/// `kind = "echo"`: no keys of its own, over TCP and UDP.
pub(crate) struct EchoKind;

impl super::Plain for EchoKind {
    const NAME: &'static str = "echo";
    type Stream = Echo;
    type Datagram = UdpEcho;
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft::testing::StringTransport;

    #[test]
    fn echoes_every_chunk() {
        let mut t = StringTransport::new();
        let mut echo = Echo;
        echo.data_received(t.transport(), b"one ");
        echo.data_received(t.transport(), b"two");
        assert_eq!(t.value(), b"one two");
    }
}
