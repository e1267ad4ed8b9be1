//! Two protocols wired together in memory (Twisted's `iosim.connect`).

use crate::address::Address;
use crate::observe::CloseReason;
use crate::protocol::Protocol;

use super::StringTransport;

/// A client and a server protocol connected in memory; [`pump`](Self::pump) moves bytes.
pub struct Loopback<C, S> {
    /// The client side's protocol.
    pub client: C,
    /// The server side's protocol.
    pub server: S,
    client_wire: StringTransport,
    server_wire: StringTransport,
    /// Set once either side closes, so pumping stops delivering bytes.
    closed: bool,
}

/// Connects `client` and `server` in memory and calls `connection_made` on both.
pub fn loopback<C: Protocol, S: Protocol>(mut client: C, mut server: S) -> Loopback<C, S> {
    let client_addr = Address::Memory("client".into());
    let server_addr = Address::Memory("server".into());
    let mut server_wire = StringTransport::with_addresses(client_addr.clone(), server_addr.clone());
    let mut client_wire = StringTransport::with_addresses(server_addr, client_addr);
    server_wire.connect(&mut server);
    client_wire.connect(&mut client);
    Loopback {
        client,
        server,
        client_wire,
        server_wire,
        closed: false,
    }
}

impl<C: Protocol, S: Protocol> Loopback<C, S> {
    /// Delivers written bytes both ways until nothing moves, asking each side's pull
    /// producer for more as what it wrote is delivered; then, if either side asked to
    /// close, closes both (a producer still writing has kept the loop going until it
    /// stopped, as a driver's close waits for it). Returns whether anything moved.
    pub fn pump(&mut self) -> bool {
        let mut moved = false;
        while !self.closed {
            let to_server = take(&mut self.client_wire);
            let to_client = take(&mut self.server_wire);
            if to_server.is_empty() && to_client.is_empty() {
                // Both asked, whether or not the first wrote: each side's own.
                let asked = [self.client_wire.produce(), self.server_wire.produce()];
                if asked.contains(&true) {
                    moved = true;
                    continue;
                }
                break;
            }
            moved = true;
            if !to_server.is_empty() {
                self.server_wire.receive(&mut self.server, &to_server);
            }
            if !to_client.is_empty() {
                self.client_wire.receive(&mut self.client, &to_client);
            }
        }
        // Nothing is owed to a pull producer here (the loop above asked them all): a side
        // asked to close closes, as a driver closes once its producer is not owed a call.
        let done = |wire: &StringTransport| wire.disconnecting();
        if !self.closed && (done(&self.client_wire) || done(&self.server_wire)) {
            self.closed = true;
            let (client_reason, server_reason) = if done(&self.client_wire) {
                (CloseReason::Done, CloseReason::PeerClosed)
            } else {
                (CloseReason::PeerClosed, CloseReason::Done)
            };
            self.client_wire.lose(&mut self.client, client_reason);
            self.server_wire.lose(&mut self.server, server_reason);
            moved = true;
        }
        moved
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The client side's transport.
    pub fn client_transport(&self) -> &crate::transport::Transport {
        self.client_wire.transport()
    }

    /// The server side's transport.
    pub fn server_transport(&self) -> &crate::transport::Transport {
        self.server_wire.transport()
    }
}

fn take(wire: &mut StringTransport) -> Vec<u8> {
    let data = wire.value().to_vec();
    wire.clear();
    data
}
