//! The traffic generator's clients, each a weft protocol as a Twisted program would write
//! it, every connection reported under the service [`TRAFFIC_SERVICE`]:
//!
//! - [`Ping`]: one line out, closes when it has come back (echo, or echo behind a proxy).
//! - [`Chat`]: a long-lived connection writing a line every couple of seconds from a
//!   `LoopingCall`, so the connections table shows counters moving, until its lifetime
//!   ends.
//! - [`Stream`]: a few kilobytes a tick into discard for a few seconds.
//! - [`get`]: an HTTP/1.1 GET as a Deferred of the answer (Twisted's `getPage`).
//! - [`DnsClient`]: questions over one UDP port, each a Deferred of its answer with a
//!   timeout; [`UdpPinger`]: datagrams to UDP echo.
//!
//! Every client bounds what it holds: idle timeouts on connections, answers of at most
//! [`MAX_ANSWER`] bytes, at most [`MAX_QUESTIONS`] questions out at once.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use weft::defer::{Deferred, Failure, Resolver};
use weft::task::LoopingCall;
use weft::{
    CloseReason, DatagramProtocol, DatagramTransport, DelayedCall, ListenError, Protocol, Reactor,
    Transport, UdpPort, call_later,
};

use super::TRAFFIC_SERVICE;

/// The largest HTTP answer a [`get`] keeps.
pub(crate) const MAX_ANSWER: usize = 64 * 1024;

/// Questions a [`DnsClient`] has out at once at most.
pub(crate) const MAX_QUESTIONS: usize = 64;

/// How long a question waits for its answer.
const DNS_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a client connection may see nothing: past the slowest answer the demo's
/// upstream gives (at most a minute).
const IDLE: Duration = Duration::from_secs(75);

/// Connects `protocol` to `addr`; `failed` hears why, if it could not.
pub(crate) fn connect(
    addr: SocketAddr,
    protocol: impl Protocol,
    failed: impl FnOnce(weft::ConnectError) + 'static,
) {
    let reactor = Reactor::current();
    let endpoint = format!(
        "tcp:{}:{}:timeout=2",
        addr.ip().to_string().replace(':', "\\:"),
        addr.port()
    );
    let connecting = reactor.clone();
    reactor.spawn(async move {
        if let Err(e) = connecting
            .connect_as(TRAFFIC_SERVICE, &endpoint, protocol)
            .await
        {
            failed(e);
        }
    });
}

/// Writes one line and closes once as many bytes came back.
pub(crate) struct Ping {
    line: Vec<u8>,
    /// Bytes echoed back so far: the connection closes once the whole line returned.
    back: usize,
}

impl Ping {
    pub(crate) fn new(line: String) -> Self {
        Self {
            line: line.into_bytes(),
            back: 0,
        }
    }
}

impl Protocol for Ping {
    fn connection_made(&mut self, transport: &Transport) {
        transport.set_idle_timeout(Some(Duration::from_secs(5)));
        transport.write(&self.line);
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        self.back += data.len();
        if self.back >= self.line.len() {
            transport.lose_connection();
        }
    }
}

/// A connection that writes `chunk` every `every` until `lifetime` is over, counted in
/// `alive` from the moment it is asked for (see [`connect`]) until it ends.
pub(crate) struct Chat {
    chunk: Rc<[u8]>,
    every: Duration,
    lifetime: Duration,
    /// The generator's count of its chats on this listener, lowered when this one ends.
    alive: Rc<Cell<usize>>,
    /// The loop that writes `chunk`, with its Deferred, held so both stop when the connection ends.
    ticker: Option<(LoopingCall, Deferred<()>)>,
    /// Hangs up once `lifetime` is over; cancelled if the peer closes first.
    end: Option<DelayedCall>,
}

impl Chat {
    /// A chat; `alive` should already count it.
    pub(crate) fn new(
        chunk: impl Into<Rc<[u8]>>,
        every: Duration,
        lifetime: Duration,
        alive: Rc<Cell<usize>>,
    ) -> Self {
        Self {
            chunk: chunk.into(),
            every,
            lifetime,
            alive,
            ticker: None,
            end: None,
        }
    }
}

impl Protocol for Chat {
    fn connection_made(&mut self, transport: &Transport) {
        transport.set_idle_timeout(Some(IDLE));
        let (t, chunk) = (transport.clone(), self.chunk.clone());
        let ticker = LoopingCall::new(move || {
            t.write(&chunk);
            Ok::<(), Failure>(())
        });
        if let Ok(done) = ticker.start(self.every, true) {
            self.ticker = Some((ticker, done));
        }
        let t = transport.clone();
        self.end = Some(call_later(self.lifetime, move || t.lose_connection()));
    }

    fn data_received(&mut self, _transport: &Transport, _data: &[u8]) {}

    fn connection_lost(&mut self, _reason: &CloseReason) {
        self.alive.set(self.alive.get().saturating_sub(1));
        if let Some((ticker, mut done)) = self.ticker.take() {
            ticker.stop();
            let _ = done.try_take();
        }
        if let Some(end) = self.end.take() {
            let _ = end.cancel();
        }
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub(crate) struct Answer {
    /// Its status code.
    pub(crate) status: u16,
    /// Its body, at most [`MAX_ANSWER`] bytes with the head.
    pub(crate) body: Vec<u8>,
}

/// GETs `path` from `addr` (Twisted's `getPage`): a Deferred labelled `label`, created at
/// the caller's line, that fires with the answer when the server closes, or fails if it
/// cannot connect, answers garbage or too much.
///
/// Once connected, the chain waits on a second Deferred, the answer, created by the
/// connection: the inspector links the request's chain to the connection it waits on.
#[track_caller]
pub(crate) fn get(addr: SocketAddr, path: &str, label: &'static str) -> Deferred<Answer> {
    let (connected, connection) = Deferred::<Deferred<Answer>>::labeled(label);
    let slot = Rc::new(RefCell::new(Some(connected)));
    let protocol = Get {
        request: format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: weft-demo\r\nConnection: close\r\n\r\n"
        ),
        received: Vec::new(),
        connected: slot.clone(),
        answered: None,
    };
    connect(addr, protocol, move |e| {
        if let Some(r) = slot.borrow_mut().take() {
            r.errback(Failure::new(e));
        }
    });
    connection.and_then(|answer| answer)
}

struct Get {
    request: String,
    /// The answer so far, at most [`MAX_ANSWER`] bytes: parsed when the server closes.
    received: Vec<u8>,
    /// Fired with the answer's Deferred once connected.
    connected: Rc<RefCell<Option<Resolver<Deferred<Answer>>>>>,
    /// Fires the answer's Deferred; taken by the first result, so it fires once.
    answered: Option<Resolver<Answer>>,
}

impl Protocol for Get {
    fn connection_made(&mut self, transport: &Transport) {
        // Made in this callback, the answer's Deferred belongs to this connection.
        let (answered, answer) = Deferred::labeled("HTTP answer");
        self.answered = Some(answered);
        if let Some(connected) = self.connected.borrow_mut().take() {
            connected.callback(answer);
        }
        transport.set_idle_timeout(Some(IDLE));
        transport.write(self.request.as_bytes());
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        if self.received.len() + data.len() > MAX_ANSWER {
            if let Some(r) = self.answered.take() {
                r.errback(Failure::msg(format!(
                    "the answer is larger than {MAX_ANSWER} bytes"
                )));
            }
            transport.abort_connection();
            return;
        }
        self.received.extend_from_slice(data);
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        let Some(resolver) = self.answered.take() else {
            return;
        };
        let text = &self.received;
        let head_end = text.windows(4).position(|w| w == b"\r\n\r\n");
        let status = std::str::from_utf8(&text[..head_end.unwrap_or(0)])
            .ok()
            .and_then(|head| head.strip_prefix("HTTP/1.1 "))
            .and_then(|rest| rest.get(..3)?.parse().ok());
        match (status, head_end) {
            (Some(status), Some(end)) => resolver.callback(Answer {
                status,
                body: text[end + 4..].to_vec(),
            }),
            _ => resolver.errback(Failure::msg(format!(
                "no HTTP answer before the connection closed ({reason})"
            ))),
        }
    }
}

/// Writes a few kilobytes every `every` for `lifetime`, then closes: a stream into
/// discard.
pub(crate) fn stream(every: Duration, lifetime: Duration) -> Chat {
    Chat::new(vec![b'.'; 2048], every, lifetime, Rc::default())
}

/// A DNS question's answer, as far as the generator cares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DnsAnswer {
    /// The response code (0 NOERROR, 3 NXDOMAIN, ...).
    pub(crate) rcode: u8,
    /// Records in the answer section.
    pub(crate) answers: u16,
}

/// Question types the generator asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QType {
    A,
    Mx,
    Txt,
}

impl QType {
    fn code(self) -> u16 {
        match self {
            Self::A => 1,
            Self::Mx => 15,
            Self::Txt => 16,
        }
    }
}

type Waiting = Rc<RefCell<HashMap<u16, (SocketAddr, Resolver<DnsAnswer>)>>>;

/// Asks DNS questions over one UDP port.
pub(crate) struct DnsClient {
    port: UdpPort,
    /// Questions out, by message id: an answer finds its Deferred here, shared with the port.
    waiting: Waiting,
    /// Where the search for a free message id starts, so ids rotate instead of repeating.
    next_id: Cell<u16>,
}

impl DnsClient {
    /// A client on a fresh loopback UDP port.
    pub(crate) fn listen(reactor: &Reactor) -> Result<Self, ListenError> {
        let waiting = Waiting::default();
        let port = reactor.open_udp(
            TRAFFIC_SERVICE,
            "udp:0:interface=127.0.0.1",
            Answers(waiting.clone()),
        )?;
        Ok(Self {
            port,
            waiting,
            next_id: Cell::new(1),
        })
    }

    /// Asks `server` for `name`'s `qtype` records: a Deferred labelled `label`, created at
    /// the caller's line, that fails after a few seconds without an answer.
    #[track_caller]
    pub(crate) fn query(
        &self,
        server: SocketAddr,
        name: &str,
        qtype: QType,
        label: &'static str,
    ) -> Deferred<DnsAnswer> {
        let (resolver, answer) = Deferred::labeled(label);
        let mut waiting = self.waiting.borrow_mut();
        if waiting.len() >= MAX_QUESTIONS {
            resolver.errback(Failure::msg(format!(
                "{MAX_QUESTIONS} questions are out already"
            )));
            return answer;
        }
        let mut id = self.next_id.get();
        while waiting.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        self.next_id.set(id.wrapping_add(1));
        waiting.insert(id, (server, resolver));
        drop(waiting);
        self.port
            .transport()
            .write(&encode_query(id, name, qtype), server);
        let waiting = self.waiting.clone();
        answer.add_timeout(DNS_TIMEOUT).add_both(move |result| {
            waiting.borrow_mut().remove(&id);
            result
        })
    }
}

/// Fires the question each answer belongs to.
struct Answers(Waiting);

impl DatagramProtocol for Answers {
    fn datagram_received(&mut self, _transport: &DatagramTransport, data: &[u8], from: SocketAddr) {
        let Some(header) = data.get(..12) else {
            return;
        };
        let id = u16::from_be_bytes([header[0], header[1]]);
        let mut waiting = self.0.borrow_mut();
        // Only the server asked may answer.
        if waiting.get(&id).is_none_or(|(server, _)| *server != from) {
            return;
        }
        let (_, resolver) = waiting.remove(&id).expect("just found");
        drop(waiting);
        resolver.callback(DnsAnswer {
            rcode: header[3] & 0x0f,
            answers: u16::from_be_bytes([header[6], header[7]]),
        });
    }
}

/// A query for `name` (`www.weft.test.`), recursion desired (RFC 1035 §4.1).
fn encode_query(id: u16, name: &str, qtype: QType) -> Vec<u8> {
    let mut packet = Vec::with_capacity(18 + name.len());
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let label = &label.as_bytes()[..label.len().min(63)];
        packet.push(label.len() as u8);
        packet.extend_from_slice(label);
    }
    packet.push(0);
    packet.extend_from_slice(&qtype.code().to_be_bytes());
    packet.extend_from_slice(&1u16.to_be_bytes());
    packet
}

/// Sends datagrams to UDP echo from one port, and lets the echoes be.
pub(crate) struct UdpPinger {
    port: UdpPort,
}

impl UdpPinger {
    /// A pinger on a fresh loopback UDP port.
    pub(crate) fn listen(reactor: &Reactor) -> Result<Self, ListenError> {
        let port = reactor.open_udp(TRAFFIC_SERVICE, "udp:0:interface=127.0.0.1", Echoes)?;
        Ok(Self { port })
    }

    /// Sends `data` to `to`.
    pub(crate) fn ping(&self, to: SocketAddr, data: &[u8]) {
        self.port.transport().write(data, to);
    }
}

struct Echoes;

impl DatagramProtocol for Echoes {
    fn datagram_received(&mut self, _: &DatagramTransport, _: &[u8], _: SocketAddr) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_a_header_a_name_in_labels_a_type_and_class_in() {
        let packet = encode_query(0x1234, "www.weft.test.", QType::Mx);
        assert_eq!(&packet[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&packet[4..6], &[0, 1], "one question");
        assert_eq!(&packet[12..17], b"\x03www\x04");
        assert_eq!(&packet[packet.len() - 5..], &[0, 0, 15, 0, 1]);
    }
}
