//! The server on the reactor: a [`DatagramProtocol`] for UDP, weft's 2-byte length framer
//! and a [`weft::Protocol`] for TCP (RFC 1035 section 4.2.2), the UDP port upstream
//! queries go out of, and the TCP connections that ask an upstream again when its UDP
//! answer was truncated.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use weft::endpoint::ServerEndpoint;
use weft::framing::{Int16StringReceiver, StringHandler, send_int16_string};
use weft::observe::{self, CloseReason, ErrorKind};
use weft::{
    Address, DatagramProtocol, DatagramTransport, ListenOptions, Reactor, Transport, factory,
};

use crate::error::NamesError;
use crate::forward::{TcpAnswer, TcpExchange, UpstreamLink};
use crate::metrics::ServiceMetrics;
use crate::server::{DnsConfig, DnsServer, Outcome, Via};
use crate::transfer::{Plan, Streamer};

/// Runs `config` as service `name` on `endpoints` (`udp:` ones get [`DnsUdp`], the
/// others [`DnsTcp`], accepted under `options`: idle timeout, per-peer cap); opens a UDP
/// port for upstream queries when it forwards. Returns the server and the addresses bound,
/// in order.
pub fn listen(
    reactor: &Reactor,
    name: &str,
    endpoints: &[String],
    options: &ListenOptions,
    config: DnsConfig,
    metrics: ServiceMetrics,
) -> Result<(DnsServer, Vec<Address>), NamesError> {
    let link = Rc::new(Link {
        service: name.into(),
        connect_timeout: config.timeout,
        ports: RefCell::default(),
    });
    let families: Vec<SocketAddr> = config.forward.clone();
    let server = DnsServer::new(config, metrics, link.clone());
    for upstream in &families {
        let ip = upstream.ip();
        if link.transport_for(ip).is_some() {
            continue;
        }
        let endpoint = ServerEndpoint::Udp {
            addr: SocketAddr::new(local_for(ip), 0),
        }
        .to_string();
        let port = reactor.listen_udp(
            name,
            &endpoint,
            UpstreamPort {
                server: server.clone(),
            },
        )?;
        link.ports.borrow_mut().push(port.transport().clone());
    }
    let mut bound = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints {
        if matches!(endpoint.parse(), Ok(ServerEndpoint::Udp { .. })) {
            let port = reactor.listen_udp(name, endpoint, DnsUdp::new(server.clone()))?;
            bound.push(port.transport().host().clone());
        } else {
            let s = server.clone();
            let port = reactor.listen_with(
                name,
                endpoint,
                options,
                factory(move || Int16StringReceiver::new(DnsTcp::new(s.clone()))),
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
        let outcome = self.server.handle(
            data,
            Via::Udp,
            Some(from),
            Box::new(move |answer| {
                t.write(&answer, from);
            }),
        );
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
}

impl DnsTcp {
    /// Serves `server`'s answers.
    pub fn new(server: DnsServer) -> Self {
        Self {
            server,
            transfers: None,
        }
    }
}

impl StringHandler for DnsTcp {
    fn string_received(&mut self, transport: &Transport, data: &[u8]) {
        let t = transport.clone();
        let outcome = self.server.handle(
            data,
            Via::Tcp,
            transport.peer().socket_addr(),
            Box::new(move |answer| {
                if !t.is_closed() {
                    send_int16_string(&t, &answer);
                }
            }),
        );
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
                        Streamer::send(&mut self.transfers, transport, *job, self.server.metrics());
                    }
                }
            }
            _ => {}
        }
    }
}

/// The upstream side: the UDP ports upstream queries leave from, one per address family,
/// and TCP connections made when an answer needs them.
struct Link {
    /// The service the TCP connections are reported under.
    service: Rc<str>,
    /// How long a TCP connection may take to open: the upstream timeout, which bounds
    /// the whole query anyway.
    connect_timeout: Duration,
    /// One UDP port per address family of the upstreams, bound when the service starts:
    /// answers must come back to the port the query left from.
    ports: RefCell<Vec<DatagramTransport>>,
}

impl Link {
    fn transport_for(&self, ip: IpAddr) -> Option<DatagramTransport> {
        self.ports
            .borrow()
            .iter()
            .find(|t| {
                t.host()
                    .socket_addr()
                    .is_some_and(|a| a.is_ipv4() == ip.is_ipv4())
            })
            .cloned()
    }
}

impl UpstreamLink for Link {
    fn send(&self, packet: &[u8], to: SocketAddr) {
        if let Some(port) = self.transport_for(to.ip()) {
            port.write(packet, to);
        }
    }

    fn exchange_tcp(&self, packet: &[u8], to: SocketAddr, answer: TcpAnswer) -> TcpExchange {
        let exchange = Rc::new(RefCell::new(Exchange {
            query: packet.to_vec(),
            answer: Some(answer),
            transport: None,
        }));
        // An endpoint string escapes the colons of an IPv6 address.
        let endpoint = format!(
            "tcp:{}:{}:timeout={}",
            to.ip().to_string().replace(':', "\\:"),
            to.port(),
            self.connect_timeout.as_secs_f64()
        );
        let reactor = Reactor::current();
        let (service, shared) = (self.service.clone(), exchange.clone());
        reactor.clone().spawn(async move {
            let protocol = Int16StringReceiver::new(UpstreamTcp {
                exchange: shared.clone(),
            });
            if let Err(e) = reactor.connect_as(&service, &endpoint, protocol).await {
                let answer = shared.borrow_mut().answer.take();
                if let Some(answer) = answer {
                    answer(Err(e.to_string()));
                }
            }
        });
        TcpExchange::new(move || {
            let transport = {
                let mut exchange = exchange.borrow_mut();
                exchange.answer = None;
                exchange.transport.take()
            };
            if let Some(transport) = transport {
                transport.lose_connection();
            }
        })
    }
}

/// One TCP exchange with an upstream, shared by its protocol and its [`TcpExchange`].
struct Exchange {
    /// The query, sent framed once connected.
    query: Vec<u8>,
    /// Taken by the first answer or failure; gone once abandoned.
    answer: Option<TcpAnswer>,
    /// The connection, while open.
    transport: Option<Transport>,
}

/// Asks an upstream over TCP: the query goes out framed, the first frame back is the
/// answer, then the connection closes.
struct UpstreamTcp {
    exchange: Rc<RefCell<Exchange>>,
}

impl StringHandler for UpstreamTcp {
    fn connection_made(&mut self, transport: &Transport) {
        let mut exchange = self.exchange.borrow_mut();
        if exchange.answer.is_none() {
            // Abandoned while connecting.
            transport.lose_connection();
            return;
        }
        send_int16_string(transport, &exchange.query);
        exchange.transport = Some(transport.clone());
    }

    fn string_received(&mut self, transport: &Transport, data: &[u8]) {
        let answer = {
            let mut exchange = self.exchange.borrow_mut();
            exchange.transport = None;
            exchange.answer.take()
        };
        transport.lose_connection();
        if let Some(answer) = answer {
            answer(Ok(data.to_vec()));
        }
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        let answer = {
            let mut exchange = self.exchange.borrow_mut();
            exchange.transport = None;
            exchange.answer.take()
        };
        if let Some(answer) = answer {
            answer(Err(format!(
                "the connection closed without an answer: {reason}"
            )));
        }
    }
}

/// Receives upstream answers.
struct UpstreamPort {
    server: DnsServer,
}

impl DatagramProtocol for UpstreamPort {
    fn datagram_received(&mut self, transport: &DatagramTransport, data: &[u8], from: SocketAddr) {
        if let Err(why) = self.server.upstream_received(data, from) {
            observe::report_error(transport.info(), ErrorKind::BadFrame, why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let link = Link {
            service: "dns".into(),
            connect_timeout: Duration::from_secs(1),
            ports: RefCell::default(),
        };
        let server = DnsServer::new(config, ServiceMetrics::detached("dns"), Rc::new(link));
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
