//! `kind = "echo"`: sends back every byte (TCP) or datagram (UDP) it receives (RFC 862).

use std::net::SocketAddr;
use std::time::Duration;

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

/// `kind = "echo"`: no keys of its own, no metrics of its own.
pub(crate) struct EchoKind;

impl super::Kind for EchoKind {
    const NAME: &'static str = "echo";
    const IDLE_TIMEOUT: Duration = super::limits::STREAM_IDLE_TIMEOUT;
    type Settings = ();
    type Metrics = ();

    fn validate(ctx: &ServiceCtx<'_>) -> Result<(), ConfigError> {
        ctx.only_keys(&[])
    }

    fn metrics(_: Option<&prometheus::Registry>) {}

    fn start(
        on: &super::Listeners<'_>,
        (): &(),
        _: &super::ServiceEnv,
    ) -> Result<Vec<weft::Address>, ListenError> {
        super::listen_both(on, || factory(|| Echo), || UdpEcho)
    }

    fn describe((): &()) -> serde_json::Value {
        serde_json::json!({})
    }
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
