//! A line-based client: sends each argument as a line, prints each line it gets back,
//! and reconnects with back-off if the server goes away.
//!
//! ```text
//! cargo run -p weft --example echo &
//! cargo run -p weft --example line_client -- tcp:127.0.0.1:8000 hello world
//! ```

use std::rc::Rc;

use weft::framing::{LineContext, LineHandler, LineReceiver};
use weft::{
    ClientFactory, ConnectError, Connector, Factory, Protocol, Reactor, ReconnectingClientFactory,
};

struct Client {
    lines: Rc<Vec<String>>,
    answered: usize,
}

impl LineHandler for Client {
    fn connection_made(&mut self, ctx: &mut LineContext<'_>) {
        for line in self.lines.iter() {
            ctx.send_line(line.as_bytes());
        }
    }

    fn line_received(&mut self, ctx: &mut LineContext<'_>, line: &[u8]) {
        println!("{}", String::from_utf8_lossy(line));
        self.answered += 1;
        if self.answered == self.lines.len() {
            ctx.transport().lose_connection();
            Reactor::current().stop();
        }
    }
}

struct Lines(Rc<Vec<String>>);

impl Factory for Lines {
    fn build_protocol(&self, _peer: &weft::Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(LineReceiver::new(Client {
            lines: self.0.clone(),
            answered: 0,
        })))
    }
}

/// Logs failures, then lets the reconnecting policy decide.
struct Loud(ReconnectingClientFactory<Lines>);

impl Factory for Loud {
    fn build_protocol(&self, peer: &weft::Address) -> Option<Box<dyn Protocol>> {
        self.0.build_protocol(peer)
    }
}

impl ClientFactory for Loud {
    fn client_connection_failed(&self, connector: &Connector, reason: &ConnectError) {
        eprintln!("{reason}; retrying in {:?}", self.0.current_delay());
        self.0.client_connection_failed(connector, reason);
    }
    fn client_connection_made(&self, connector: &Connector) {
        // The policy resets its back-off here: a wrapper hands every event on.
        self.0.client_connection_made(connector);
    }
    fn client_connection_lost(&self, connector: &Connector, reason: &weft::CloseReason) {
        self.0.client_connection_lost(connector, reason);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().unwrap_or_else(|| "tcp:127.0.0.1:8000".into());
    let lines: Vec<String> = args.collect();
    let lines = Rc::new(if lines.is_empty() {
        vec!["hello".into()]
    } else {
        lines
    });
    let reactor = Reactor::new()?;
    reactor.connect_with(
        &endpoint,
        Loud(ReconnectingClientFactory::new(Lines(lines))),
    )?;
    reactor.run()?;
    Ok(())
}
