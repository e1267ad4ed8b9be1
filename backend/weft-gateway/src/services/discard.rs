//! `kind = "discard"`: reads everything and sends nothing back (RFC 863).

use std::net::SocketAddr;

use weft::{DatagramProtocol, DatagramTransport, ListenError, Protocol, Transport, factory};

use crate::config::ConfigError;
use crate::config::validate::ServiceCtx;

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

pub(crate) fn validate(ctx: &ServiceCtx<'_>) -> Result<(), ConfigError> {
    ctx.only_keys(&[])
}

pub(crate) fn start(on: &super::Listeners<'_>) -> Result<Vec<weft::Address>, ListenError> {
    super::listen_both(on, || factory(|| Discard), || UdpDiscard)
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
