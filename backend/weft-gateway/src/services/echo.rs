//! `kind = "echo"`: sends back every byte (TCP) or datagram (UDP) it receives (RFC 862).

use std::net::SocketAddr;

use weft::observe::{self, ErrorKind};
use weft::{DatagramProtocol, DatagramTransport, Protocol, Transport};

/// Echo over a stream.
#[derive(Debug, Default)]
pub struct Echo;

impl Protocol for Echo {
    /// A client that sends more than it reads, and reads on steadily, is written to
    /// within its idle timeout (`limits::keep_steady_readers`): with the kernel's default
    /// it would be written to once a third of the megabytes it holds are read, and be cut
    /// as idle meanwhile.
    fn connection_made(&mut self, transport: &Transport) {
        super::limits::keep_steady_readers(transport, transport.idle_timeout());
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        transport.write(data);
    }
}

/// Echo over UDP: each datagram goes back to its sender, unless the sender is one that
/// would answer the echo in turn. Its port is marked as answering any datagram while it
/// serves ([`weft::net::answering_port`]), so no echo of this process answers one from
/// it: not itself through another of the addresses it is bound to, not another echo port.
#[derive(Debug, Default)]
pub struct UdpEcho {
    answering: Option<weft::net::AnsweringPort>,
}

/// Whether echoing a datagram from `from` to `from` on a port bound at `own` could start a
/// loop: it comes from the port itself, or from a service that answers datagrams.
fn loops(from: SocketAddr, own: Option<SocketAddr>) -> bool {
    own == Some(from) || weft::net::answered_back(from)
}

impl DatagramProtocol for UdpEcho {
    fn start_protocol(&mut self, transport: &DatagramTransport) {
        if let Some(own) = transport.host().socket_addr() {
            self.answering = Some(weft::net::answering_port(own.port()));
        }
    }

    fn stop_protocol(&mut self) {
        self.answering = None;
    }

    fn datagram_received(&mut self, transport: &DatagramTransport, data: &[u8], from: SocketAddr) {
        if loops(from, transport.host().socket_addr()) {
            observe::report_error(
                transport.info(),
                ErrorKind::DatagramDropped,
                format!("not echoed: a datagram from {from} would be answered back (a loop)"),
            );
            return;
        }
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
    fn datagrams_that_would_be_answered_back_are_not_echoed() {
        let own: SocketAddr = "192.0.2.1:7000".parse().unwrap();
        assert!(loops(own, Some(own)), "from the port itself");
        for port in [0, 7, 13, 17, 19, 37] {
            let from = SocketAddr::from(([198, 51, 100, 1], port));
            assert!(loops(from, Some(own)), "{from}");
        }
        let client: SocketAddr = "198.51.100.1:40000".parse().unwrap();
        assert!(!loops(client, Some(own)));
        assert!(!loops("192.0.2.1:7001".parse().unwrap(), Some(own)));
        // An echo port of this process, from any address: its own port reached through
        // another address of a wildcard bind, or another echo service's port.
        let other_echo = weft::net::answering_port(7002);
        for from in ["127.0.0.1:7002", "192.0.2.1:7002", "198.51.100.9:7002"] {
            assert!(loops(from.parse().unwrap(), Some(own)), "{from}");
        }
        drop(other_echo);
        assert!(!loops("127.0.0.1:7002".parse().unwrap(), Some(own)), "let go");
    }

    #[test]
    fn echoes_every_chunk() {
        let mut t = StringTransport::new();
        let mut echo = Echo;
        echo.data_received(t.transport(), b"one ");
        echo.data_received(t.transport(), b"two");
        assert_eq!(t.value(), b"one two");
    }
}
