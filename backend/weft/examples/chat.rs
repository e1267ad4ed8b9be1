//! A chat server: every line a client sends goes to every other client.
//!
//! ```text
//! cargo run -p weft --example chat      # then: nc 127.0.0.1 8001 (twice)
//! ```
//!
//! Each protocol keeps its transport in a shared room, so one connection writes to the
//! others; a timer announces the head count every minute.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use weft::framing::{LineContext, LineHandler, LineReceiver};
use weft::observe::ConnectionId;
use weft::{CloseReason, Reactor, Transport};

/// The most a client may fall behind the room, in bytes unsent.
const MAX_BEHIND: usize = 1 << 20;

#[derive(Default)]
struct Room {
    members: RefCell<BTreeMap<ConnectionId, (String, Transport)>>,
}

impl Room {
    fn broadcast(&self, from: Option<ConnectionId>, line: &str) {
        for (id, (_, transport)) in self.members.borrow().iter() {
            if Some(*id) != from {
                transport.write_sequence([line.as_bytes(), b"\r\n"]);
            }
        }
    }
}

struct Chatter {
    room: Rc<Room>,
    id: Option<ConnectionId>,
}

impl LineHandler for Chatter {
    fn connection_made(&mut self, ctx: &mut LineContext<'_>) {
        let transport = ctx.transport().clone();
        // What the room sends a client comes from the others' lines, which its own
        // back-pressure does not slow: a client that does not read is cut off once it is
        // a MiB behind (`send_buffer_full`), rather than holding the room's lines forever.
        transport.set_max_buffered(Some(MAX_BEHIND));
        let name = format!("guest-{}", transport.id());
        ctx.send_line(format!("welcome, {name}").as_bytes());
        self.room.broadcast(None, &format!("* {name} joined"));
        self.id = Some(transport.id());
        self.room
            .members
            .borrow_mut()
            .insert(transport.id(), (name, transport));
    }

    fn line_received(&mut self, ctx: &mut LineContext<'_>, line: &[u8]) {
        let id = ctx.transport().id();
        let name = self.room.members.borrow()[&id].0.clone();
        let text = String::from_utf8_lossy(line);
        self.room.broadcast(Some(id), &format!("<{name}> {text}"));
    }

    fn connection_lost(&mut self, _reason: &CloseReason) {
        if let Some((name, _)) = self
            .id
            .and_then(|id| self.room.members.borrow_mut().remove(&id))
        {
            self.room.broadcast(None, &format!("* {name} left"));
        }
    }
}

fn announce(room: Rc<Room>) {
    let count = room.members.borrow().len();
    room.broadcast(None, &format!("* {count} here"));
    weft::call_later(Duration::from_secs(60), move || announce(room));
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let reactor = Reactor::new()?;
    let room = Rc::new(Room::default());
    let r = room.clone();
    reactor.listen_as(
        "chat",
        "tcp:8001:interface=127.0.0.1",
        weft::factory(move || {
            LineReceiver::new(Chatter {
                room: r.clone(),
                id: None,
            })
        }),
    )?;
    reactor.call_when_running(move || announce(room));
    println!("Chat server on 127.0.0.1:8001. Press Ctrl+C to stop.");
    reactor.run()?;
    Ok(())
}
