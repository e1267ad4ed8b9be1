//! `kind = "discard"`: reads everything and sends nothing back (RFC 863).

use std::net::SocketAddr;

use weft::{DatagramProtocol, DatagramTransport, Protocol, Transport};

/// Discard over a stream.
#[derive(Debug, Default)]
pub struct Discard;

impl Protocol for Discard {
    fn data_received(&mut self, _transport: &Transport, _data: &[u8]) {}
}

/// Discard over UDP.
#[derive(Debug, Default)]
pub struct UdpDiscard;

impl DatagramProtocol for UdpDiscard {
    fn datagram_received(&mut self, _: &DatagramTransport, _: &[u8], _: SocketAddr) {}
}

/// `kind = "discard"`: no keys of its own, over TCP and UDP.
pub(crate) struct DiscardKind;

impl super::Plain for DiscardKind {
    const NAME: &'static str = "discard";
    type Stream = Discard;
    type Datagram = UdpDiscard;
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft::testing::StringTransport;

    #[test]
    fn sends_nothing_back() {
        let mut t = StringTransport::new();
        Discard.data_received(t.transport(), b"into the void");
        assert!(t.value().is_empty());
    }
}
