//! `kind = "discard"`: reads everything and sends nothing back (RFC 863).

use std::net::SocketAddr;
use std::time::Duration;

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

/// `kind = "discard"`: no keys of its own, no metrics of its own.
pub(crate) struct DiscardKind;

impl super::Kind for DiscardKind {
    const NAME: &'static str = "discard";
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
        super::listen_both(on, || factory(|| Discard), || UdpDiscard)
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
    fn sends_nothing_back() {
        let mut t = StringTransport::new();
        Discard.data_received(t.transport(), b"into the void");
        assert!(t.value().is_empty());
    }
}
