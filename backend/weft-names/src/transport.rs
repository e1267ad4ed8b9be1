//! The server on the reactor: a [`DatagramProtocol`] for UDP, and weft's 2-byte length
//! framer and a [`weft::Protocol`] for TCP (RFC 1035 section 4.2.2); the upstream side
//! (ports and connections) is `outgoing`'s.

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use weft::endpoint::ServerEndpoint;
use weft::framing::{Int16StringReceiver, StringHandler, send_int16_string};
use weft::observe::{self, CloseReason, ErrorKind};
use weft::{
    Address, DatagramProtocol, DatagramTransport, HalfClose, ListenOptions, Reactor, Transport,
    factory,
};

use crate::error::NamesError;
use crate::metrics::ServiceMetrics;
use crate::outgoing::Link;
use crate::server::{DnsConfig, DnsServer, Outcome, Via};
use crate::transfer::{Plan, Streamer};

/// Runs `config` as service `name` on `endpoints` (`udp:` ones get [`DnsUdp`], the
/// others [`DnsTcp`], accepted under `options`: idle timeout, per-peer cap); upstream
/// queries leave from random UDP ports opened as they are needed. Returns the server and the addresses bound,
/// in order.
pub fn listen(
    reactor: &Reactor,
    name: &str,
    endpoints: &[String],
    options: &ListenOptions,
    config: DnsConfig,
    metrics: ServiceMetrics,
) -> Result<(DnsServer, Vec<Address>), NamesError> {
    listen_after(reactor, name, endpoints, options, config, metrics, None)
}

/// [`listen`] for a service replacing `previous` (the same service before a reload),
/// whose server takes over what must survive it ([`DnsServer::succeeding`]); call
/// [`DnsServer::put_in_force`] on it when the reload commits, for `previous`'s TCP
/// connections to move to it.
pub fn listen_after(
    reactor: &Reactor,
    name: &str,
    endpoints: &[String],
    options: &ListenOptions,
    config: DnsConfig,
    metrics: ServiceMetrics,
    previous: Option<&DnsServer>,
) -> Result<(DnsServer, Vec<Address>), NamesError> {
    let link = Rc::new(Link::new(
        name,
        config.forwarding.ports,
        config.timeout,
        metrics.clone(),
    ));
    let server = DnsServer::succeeding(config, metrics, link.clone(), previous);
    link.serve(server.downgrade());
    for upstream in server.upstreams() {
        link.top_up(local_for(upstream.ip()));
    }
    let mut bound = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints {
        if matches!(endpoint.parse(), Ok(ServerEndpoint::Udp { .. })) {
            let port = reactor.listen_udp(name, endpoint, DnsUdp::new(server.clone()))?;
            bound.push(port.transport().host().clone());
        } else {
            let s = server.clone();
            // A question must arrive whole within the idle timeout of its first byte.
            let whole_within = options.idle();
            let port = reactor.listen_with(
                name,
                endpoint,
                options,
                factory(move || {
                    Int16StringReceiver::new(DnsTcp::new(s.clone())).message_timeout(whole_within)
                }),
            )?;
            bound.push(port.local_address().clone());
        }
    }
    Ok((server, bound))
}

/// The address a socket talking to `peer` binds: loopback for a loopback peer, any
/// address of its family otherwise.
pub(crate) fn local_for(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(v4) if v4.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(v6) if v6.is_loopback() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// DNS over UDP: each datagram is a query; its answer goes back to the sender.
pub struct DnsUdp {
    server: DnsServer,
}

impl DnsUdp {
    /// Serves `server`'s answers.
    pub fn new(server: DnsServer) -> Self {
        Self { server }
    }
}

impl DatagramProtocol for DnsUdp {
    fn datagram_received(&mut self, transport: &DatagramTransport, data: &[u8], from: SocketAddr) {
        let t = transport.clone();
        let outcome = self
            .server
            .handle(data, Via::Udp, Some(from), move |answer: Vec<u8>| {
                t.write(&answer, from);
            });
        match outcome {
            Outcome::Malformed(why) | Outcome::Dropped(why) => {
                observe::report_error(
                    transport.info(),
                    ErrorKind::BadFrame,
                    format!("DNS query from {from}: {why}"),
                );
            }
            Outcome::Transfer(asked) => {
                // Over UDP a transfer request gets one message (NOTIMP, REFUSED, an SOA).
                if let Plan::Answer(answer) =
                    self.server.transfer(*asked, Some(from.ip()), Via::Udp)
                {
                    transport.write(&answer, from);
                }
            }
            _ => {}
        }
    }
}

/// DNS over TCP, under an [`Int16StringReceiver`]: each frame is a query; answers are
/// framed back, in the order they are ready; a zone transfer streams its messages.
pub struct DnsTcp {
    server: DnsServer,
    /// The connection's zone transfers, once one was asked for.
    transfers: Option<Rc<Streamer>>,
    /// Its questions whose answers are still to come.
    waiting: Rc<Waiting>,
}

/// The most questions one connection may have waiting on upstreams: past it, its
/// reading pauses until an answer goes out, so one pipelining client cannot take every
/// forwarding slot of the service (RFC 7766 §6.2.1.1 lets a server bound this).
pub const MAX_WAITING_PER_CONNECTION: usize = 64;

/// A connection's questions still to be answered, and whether its peer is done asking.
#[derive(Debug, Default)]
struct Waiting {
    count: Cell<usize>,
    /// Reading paused at [`MAX_WAITING_PER_CONNECTION`].
    paused: Cell<bool>,
    /// The peer half-closed: the connection closes after the last answer.
    peer_done: Cell<bool>,
    /// Asked to drain (shutdown, the service removed): reading stopped for good, and the
    /// connection closes after the last answer.
    draining: Cell<bool>,
    /// A zone transfer is being sent (reading is paused until it is).
    transferring: Cell<bool>,
    /// The connection's idle timeout, set aside while questions wait on upstreams
    /// (`Some` then): a client waiting on one slower than the idle timeout is not idle
    /// (RFC 7766 §6.2.3 times out connections with no query pending).
    idle: Cell<Option<Option<Duration>>>,
}

impl Waiting {
    /// Sets the idle timeout aside while questions are left waiting (not for those
    /// answered at once).
    fn hold_idle(&self, transport: &Transport) {
        if self.count.get() > 0 && self.idle.get().is_none() {
            self.idle.set(Some(transport.idle_timeout()));
            transport.set_idle_timeout(None);
        }
    }

    /// Whether nothing is owed: no answer to come, no transfer being sent.
    fn settled(&self) -> bool {
        self.count.get() == 0 && !self.transferring.get()
    }

    /// The connection's zone transfers are all sent: it reads again or, when it reads no
    /// more, closes once no answer is left to come.
    fn transfers_sent(&self, transport: &Transport) {
        self.transferring.set(false);
        if self.draining.get() || self.peer_done.get() {
            self.close_if_settled(transport);
        } else if !self.paused.get() {
            transport.resume_reading();
        }
    }

    /// Closes a connection that is draining or whose peer is done asking, once nothing
    /// is owed.
    fn close_if_settled(&self, transport: &Transport) {
        if !self.settled() {
            return;
        }
        if self.draining.get() {
            transport.lose_connection();
        } else if self.peer_done.get() {
            transport.lose_connection_with(CloseReason::PeerClosed);
        }
    }
}

/// One question waiting for its answer: counted while it lives, and given back when the
/// answer is sent or the question is given up (its reply dropped unsent).
struct Question {
    waiting: Rc<Waiting>,
    transport: Transport,
}

impl Question {
    fn new(waiting: &Rc<Waiting>, transport: &Transport) -> Self {
        let count = waiting.count.get() + 1;
        waiting.count.set(count);
        if count >= MAX_WAITING_PER_CONNECTION && !waiting.paused.replace(true) {
            transport.pause_reading();
        }
        Self {
            waiting: waiting.clone(),
            transport: transport.clone(),
        }
    }

    fn answer(&self, answer: &[u8]) {
        if !self.transport.is_closed() {
            send_int16_string(&self.transport, answer);
        }
    }
}

impl Drop for Question {
    fn drop(&mut self) {
        let w = &self.waiting;
        let left = w.count.get() - 1;
        w.count.set(left);
        // Reading stays paused while a zone transfer is sent: it resumes after that.
        if left < MAX_WAITING_PER_CONNECTION
            && !w.draining.get()
            && w.paused.replace(false)
            && !w.transferring.get()
        {
            self.transport.resume_reading();
        }
        if left == 0 {
            if let Some(idle) = w.idle.take() {
                self.transport.set_idle_timeout(idle);
            }
            w.close_if_settled(&self.transport);
        }
    }
}

impl DnsTcp {
    /// Serves `server`'s answers.
    pub fn new(server: DnsServer) -> Self {
        Self {
            server,
            transfers: None,
            waiting: Rc::default(),
        }
    }
}

impl StringHandler for DnsTcp {
    fn connection_made(&mut self, transport: &Transport) {
        // A zone transfer streams megabytes: a secondary reading it over a slow link must
        // not look idle while the kernel's buffer drains.
        transport.set_tcp_notsent_lowat(weft::transport::NOTSENT_LOWAT);
    }

    /// Each question is answered by the service's server in force: after a reload or a
    /// transfer, the zones, keys and transfer rules it put in force, not those the
    /// connection was accepted under (a question waiting on an upstream is answered by
    /// the server it asked, which its forwarder keeps while questions are out).
    fn string_received(&mut self, transport: &Transport, data: &[u8]) {
        if let Some(current) = self.server.succeeded_by() {
            self.server = current;
        }
        let question = Question::new(&self.waiting, transport);
        let outcome = self.server.handle(
            data,
            Via::Tcp,
            transport.peer().socket_addr(),
            move |answer: Vec<u8>| question.answer(&answer),
        );
        self.waiting.hold_idle(transport);
        match outcome {
            Outcome::Malformed(why) => {
                observe::report_error(transport.info(), ErrorKind::BadFrame, why);
            }
            Outcome::Dropped(why) => {
                observe::report_error(transport.info(), ErrorKind::BadFrame, why.clone());
                transport
                    .lose_connection_with(CloseReason::Protocol(format!("not a DNS query: {why}")));
            }
            Outcome::Transfer(asked) => {
                let peer = transport.peer().socket_addr().map(|a| a.ip());
                match self.server.transfer(*asked, peer, Via::Tcp) {
                    Plan::Answer(answer) => send_int16_string(transport, &answer),
                    Plan::Stream(job) => {
                        self.waiting.transferring.set(true);
                        let (waiting, sender) = (self.waiting.clone(), transport.clone());
                        Streamer::send(
                            &mut self.transfers,
                            transport,
                            *job,
                            self.server.metrics(),
                            move || waiting.transfers_sent(&sender),
                        );
                    }
                }
            }
            _ => {}
        }
    }

    /// Asked to end (shutdown, or the service removed), the connection reads no more
    /// questions and closes after answering those it took, which may wait on upstreams,
    /// and sending the zone transfers it took, to their end; the drain's deadline bounds
    /// both (a transfer cut there before its last message was made is counted `aborted`,
    /// and the secondary asks again).
    fn drain(&mut self, transport: &Transport) {
        if self.waiting.settled() {
            transport.lose_connection();
            return;
        }
        self.waiting.draining.set(true);
        transport.pause_reading();
    }

    /// A client that half-closes after its questions still gets their answers and the
    /// zone transfers it asked for: the connection closes after the last one (RFC 7766
    /// §6.2.4), or at once with none due.
    fn read_connection_lost(&mut self, _transport: &Transport) -> HalfClose {
        if self.waiting.settled() {
            return HalfClose::Close;
        }
        self.waiting.peer_done.set(true);
        HalfClose::KeepWriting
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use weft::testing::StringTransport;

    #[test]
    fn tcp_queries_get_framed_answers_and_garbage_closes() {
        let clock = weft::testing::Clock::fake();
        let _installed = clock.install();
        let zone = crate::zone::Zone::parse(
            std::path::Path::new("example.test.zone"),
            include_str!("../testdata/example.test.zone"),
        )
        .unwrap();
        let mut config = DnsConfig::default();
        config.zones.add(zone).unwrap();
        let metrics = ServiceMetrics::detached("dns");
        let link = Link::new(
            "dns",
            crate::ForwardOptions::DEFAULT_PORTS,
            Duration::from_secs(1),
            metrics.clone(),
        );
        let server = DnsServer::new(config, metrics, Rc::new(link));
        let mut wire = StringTransport::new();
        let mut proto = Int16StringReceiver::new(DnsTcp::new(server));
        let query =
            crate::wire::tests::query(3, "www.example.test.", hickory_proto::rr::RecordType::A);
        let mut framed = (query.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&query);
        wire.receive(&mut proto, &framed);
        let out = wire.value().to_vec();
        let len = usize::from(u16::from_be_bytes([out[0], out[1]]));
        assert_eq!(out.len(), 2 + len);
        let answer = hickory_proto::op::Message::from_vec(&out[2..]).unwrap();
        assert_eq!((answer.metadata.id, answer.answers.len()), (3, 1));

        wire.receive(&mut proto, b"\x00\x02hi");
        assert!(wire.disconnecting(), "a frame that is not a query closes");
    }
}
