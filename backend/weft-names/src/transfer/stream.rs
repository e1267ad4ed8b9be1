//! Sending a whole zone over one TCP connection without blocking the reactor: a
//! [`PushProducer`] that writes a few messages per reactor turn, stops while the
//! transport's buffer is above its high-water mark and goes on when it drains.
//!
//! While a zone is being sent the connection reads nothing more: further transfers already
//! read wait in a queue and go next, and other queries wait in the socket, so a client
//! cannot make the server buffer answers it does not read. When the last one is sent, the
//! connection's `sent` hook decides what comes next: reading again, or, when it is
//! draining, its close.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use weft::framing::send_int16_string;
use weft::{PushProducer, Transport};

use super::{Cursor, Job, TransferResult};
use crate::metrics::ServiceMetrics;
use crate::view::Source;

/// Messages written per reactor turn at most: other connections run in between.
const MESSAGES_PER_TURN: usize = 4;

/// The transfers of one connection.
pub(crate) struct Streamer {
    transport: Transport,
    metrics: ServiceMetrics,
    /// The transfer being sent, and those asked for after it.
    work: RefCell<(Option<Cursor>, VecDeque<Job>)>,
    /// Back-pressure: the buffer is above its high-water mark.
    paused: Cell<bool>,
    /// A turn is scheduled on the clock.
    scheduled: Cell<bool>,
    /// The connection is gone.
    stopped: Cell<bool>,
    /// Called when every transfer asked for is sent.
    sent: Box<dyn Fn()>,
}

impl Streamer {
    /// Sends `job` on `transport`: now, or after the transfers `slot` is sending. Reading
    /// pauses until they are all sent; then `sent` is called (the first call's, when
    /// `job` waits behind others).
    pub(crate) fn send(
        slot: &mut Option<Rc<Streamer>>,
        transport: &Transport,
        job: Job,
        metrics: &ServiceMetrics,
        sent: impl Fn() + 'static,
    ) {
        if let Some(streamer) = slot.as_ref().filter(|s| s.is_busy()) {
            streamer.work.borrow_mut().1.push_back(job);
            return;
        }
        let streamer = Rc::new(Streamer {
            transport: transport.clone(),
            metrics: metrics.clone(),
            work: RefCell::new((Some(Cursor::new(job)), VecDeque::new())),
            paused: Cell::new(false),
            scheduled: Cell::new(false),
            stopped: Cell::new(false),
            sent: Box::new(sent),
        });
        transport.pause_reading();
        // One transfer at a time holds the connection (`slot`), so none is registered.
        let registered = transport.register_producer(Rc::new(Producer(streamer.clone())));
        debug_assert!(registered.is_ok());
        streamer.schedule();
        *slot = Some(streamer);
    }

    /// Whether a transfer is being sent or waits to be.
    fn is_busy(&self) -> bool {
        self.work.borrow().0.is_some()
    }

    fn schedule(self: &Rc<Self>) {
        if self.scheduled.get() || self.stopped.get() || self.paused.get() {
            return;
        }
        self.scheduled.set(true);
        let this = self.clone();
        weft::call_later(Duration::ZERO, move || this.turn());
    }

    /// Writes up to [`MESSAGES_PER_TURN`] messages, then schedules the next turn unless
    /// back-pressure paused it or everything is sent.
    fn turn(self: &Rc<Self>) {
        self.scheduled.set(false);
        for _ in 0..MESSAGES_PER_TURN {
            if self.paused.get() || self.stopped.get() {
                return;
            }
            if self.transport.is_disconnecting() {
                self.stop();
                return;
            }
            let next = self.next_message();
            let Some(message) = next else {
                self.transport.unregister_producer();
                (self.sent)();
                return;
            };
            if !whole(&message) {
                // A record no message holds (the zone loader refuses such sets) or one
                // that could not be encoded: the secondary must not take what follows
                // for the zone (RFC 5936 §2.2.1: TC is never set in a transfer).
                tracing::warn!(
                    "a zone transfer was cut off: one of its messages could not be written whole"
                );
                self.transport.lose_connection();
                self.stop();
                return;
            }
            send_int16_string(&self.transport, &message);
        }
        self.schedule();
    }

    /// The next message of the current transfer; when it is done, counts it and starts
    /// the next one queued. `None` when nothing is left.
    fn next_message(&self) -> Option<Vec<u8>> {
        let mut work = self.work.borrow_mut();
        loop {
            let cursor = work.0.as_mut()?;
            if let Some(message) = cursor.next_message() {
                return Some(message);
            }
            self.metrics.transfer().transfer(TransferResult::Complete);
            let request = &cursor.job.request;
            let asked = request.asked;
            self.metrics.answered(
                Some(&request.query),
                asked.client,
                asked.received,
                ResponseCode::NoError,
                Source::Zone,
                None,
            );
            work.0 = work.1.pop_front().map(Cursor::new);
        }
    }

    /// The connection is gone: what was not sent is counted as aborted.
    fn stop(&self) {
        if self.stopped.replace(true) {
            return;
        }
        let mut work = self.work.borrow_mut();
        let unsent = usize::from(work.0.take().is_some()) + work.1.len();
        work.1.clear();
        for _ in 0..unsent {
            self.metrics.transfer().transfer(TransferResult::Aborted);
        }
    }
}

/// Whether an encoded transfer message is whole: not truncated (TC, set by the encoder
/// when records did not fit) and not the SERVFAIL sent in place of one that could not be
/// encoded.
fn whole(message: &[u8]) -> bool {
    message.len() >= 12 && message[2] & 0x02 == 0 && message[3] & 0x0f == 0
}

/// What the transport pauses and resumes: the [`Streamer`] of its connection.
struct Producer(Rc<Streamer>);

impl PushProducer for Producer {
    fn pause_producing(&self) {
        self.0.paused.set(true);
    }

    fn resume_producing(&self) {
        self.0.paused.set(false);
        self.0.schedule();
    }

    fn stop_producing(&self) {
        self.0.stop();
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::{Name, RData, Record, rdata::TXT};

    #[test]
    fn a_message_cut_short_or_failed_is_not_whole() {
        let mut message = Message::response(7, hickory_proto::op::OpCode::Query);
        message.metadata.message_type = MessageType::Response;
        let name = Name::from_ascii("t.example.").unwrap();
        let text = "x".repeat(255);
        message.answers = (0..300)
            .map(|_| Record::from_rdata(name.clone(), 60, RData::TXT(TXT::new(vec![text.clone()]))))
            .collect();
        assert!(
            !super::whole(&crate::wire::encode(&message, None)),
            "truncated"
        );
        message.answers.truncate(10);
        assert!(super::whole(&crate::wire::encode(&message, None)));
        message.metadata.response_code = ResponseCode::ServFail;
        assert!(!super::whole(&crate::wire::encode(&message, None)));
    }
}
