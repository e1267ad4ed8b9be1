//! `kind = "echo"`: sends back every byte (TCP) or datagram (UDP) it receives (RFC 862).

use std::net::SocketAddr;

use weft::{DatagramProtocol, DatagramTransport, ListenError, Protocol, Transport, factory};

use crate::config::ConfigError;
use crate::config::validate::ServiceCtx;

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

pub(crate) fn validate(ctx: &ServiceCtx<'_>) -> Result<(), ConfigError> {
    ctx.only_keys(&[])
}

pub(crate) fn start(on: &super::Listeners<'_>) -> Result<Vec<weft::Address>, ListenError> {
    super::listen_both(on, || factory(|| Echo), || UdpEcho)
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
