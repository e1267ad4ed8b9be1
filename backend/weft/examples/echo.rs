//! The quickstart: an echo server on port 8000.
//!
//! ```text
//! cargo run -p weft --example echo
//! ```

use weft::{Protocol, Reactor, Transport, factory};

struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        transport.write(data);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let reactor = Reactor::new()?;
    reactor.listen("tcp:8000", factory(|| Echo))?;
    println!("Echo server started on port 8000. Press Ctrl+C to stop.");
    reactor.run()?;
    Ok(())
}
