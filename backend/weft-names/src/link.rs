//! How upstream queries leave: the [`UpstreamLink`] a forwarder sends through (sockets
//! on the reactor, or a recorder in tests), and the handles it returns, which hold a
//! UDP port or a TCP exchange for as long as an answer may come.

use std::net::SocketAddr;

/// Sends queries to upstream resolvers: sockets on the reactor, or a recorder in tests.
pub trait UpstreamLink {
    /// Sends `packet` to `to` over UDP from a local port of the link's choosing (a random
    /// one, RFC 5452 section 9.2); answers come back through
    /// [`DnsServer::upstream_received`](crate::DnsServer::upstream_received) with the
    /// port they arrived on. Returns that port's lease, held while an answer may come, or
    /// `None` when the query could not be sent.
    fn send(&self, packet: &[u8], to: SocketAddr) -> Option<UdpLease>;

    /// Sends `packet` to `to` over TCP (RFC 1035 section 4.2.2 framing) and calls
    /// `answer` once, with the first message back or why none came. Dropping the
    /// returned exchange abandons it: `answer` is not called and the connection closes.
    fn exchange_tcp(&self, packet: &[u8], to: SocketAddr, answer: TcpAnswer) -> TcpExchange;
}

/// What an upstream TCP exchange came to: the answer's bytes, or why there is none.
pub type TcpAnswer = Box<dyn FnOnce(Result<Vec<u8>, String>)>;

/// An upstream TCP exchange in progress; dropping it abandons the exchange.
#[must_use = "dropping the exchange abandons it"]
pub struct TcpExchange(Option<Box<dyn FnOnce()>>);

impl TcpExchange {
    /// An exchange that `abandon` ends (closing its connection) when dropped.
    pub fn new(abandon: impl FnOnce() + 'static) -> Self {
        Self(Some(Box::new(abandon)))
    }
}

impl Drop for TcpExchange {
    fn drop(&mut self) {
        if let Some(abandon) = self.0.take() {
            abandon();
        }
    }
}

impl std::fmt::Debug for TcpExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TcpExchange")
    }
}

/// The local UDP port an upstream query left from, held while its answer may come;
/// dropping it lets the link close the port once nothing else waits on it.
#[must_use = "dropping the lease lets the port close"]
pub struct UdpLease {
    port: u16,
    /// The port's connection, as the inspector lists it, when it is a real one.
    connection: Option<weft::observe::ConnectionId>,
    release: Option<Box<dyn FnOnce()>>,
}

impl UdpLease {
    /// A lease of local port `port`; `release` runs when it is dropped.
    pub fn new(port: u16, release: impl FnOnce() + 'static) -> Self {
        Self {
            port,
            connection: None,
            release: Some(Box::new(release)),
        }
    }

    /// The lease of a port the inspector lists as `connection`: what a question sent
    /// from it waits on.
    pub fn on(mut self, connection: weft::observe::ConnectionId) -> Self {
        self.connection = Some(connection);
        self
    }

    /// The port's connection, when it is a real one.
    pub fn connection(&self) -> Option<weft::observe::ConnectionId> {
        self.connection
    }

    /// The local port the query left from: its answer must arrive there.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for UdpLease {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

impl std::fmt::Debug for UdpLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("UdpLease").field(&self.port).finish()
    }
}
