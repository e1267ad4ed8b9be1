//! The upstream side of a DNS service on the reactor: the UDP ports upstream queries
//! leave from, and the TCP connections that ask an upstream again when its UDP answer
//! was truncated.
//!
//! Ports (RFC 5452 section 9.2): each is bound to a port drawn at random from the
//! forwarding options' `ports`, 1024 to 65535 by default (the system picks one if
//! [`BIND_ATTEMPTS`] draws are taken), and each query
//! leaves from one of the [`ACTIVE_PORTS`] open ones, at random. A port carries at most
//! [`QUERIES_PER_PORT`] queries, then it is retired and closed once the last of them is
//! settled, and a new random one takes its place; so an off-path attacker must guess
//! both the id and which of the range's ports (64,512 by default) are open now. At most [`MAX_PORTS`] are open
//! per local address; beyond that queries go out of an open one anyway, counted in
//! `weft_dns_upstream_ports_exhausted_total`.
//!
//! TCP (RFC 7766 section 6.2.1): a connection that answered is kept open, idle, for the
//! next question to that upstream (at most [`IDLE_PER_UPSTREAM`] per upstream, each for
//! [`TCP_IDLE`]); a kept connection that the upstream closed before answering is
//! replaced by a new one, once.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::{Rc, Weak};
use std::time::Duration;

use weft::endpoint::ServerEndpoint;
use weft::framing::{Int16StringReceiver, StringHandler, send_int16_string};
use weft::observe::{self, CloseReason, ErrorKind};
use weft::time::DelayedCall;
use weft::{DatagramProtocol, DatagramTransport, Reactor, Transport};

use crate::link::{TcpAnswer, TcpExchange, UdpLease, UpstreamLink};
use crate::metrics::ServiceMetrics;
use crate::server::WeakServer;
use crate::transport::local_for;

/// Ports per local address that new queries go out of.
pub(crate) const ACTIVE_PORTS: usize = 16;
/// Queries sent from one port before it is retired.
pub(crate) const QUERIES_PER_PORT: u32 = 16;
/// Ports open at most per local address, active and retired ones still waiting.
pub(crate) const MAX_PORTS: usize = 256;
/// Ports a query tries to leave from before it is given up.
const SEND_ATTEMPTS: usize = 3;
/// Long enough for the reactor to have polled a new port: one that still cannot send
/// after it is broken.
const WARM_UP: Duration = Duration::from_secs(1);
/// Random port numbers tried before the system picks one.
const BIND_ATTEMPTS: usize = 8;
/// Idle TCP connections kept per upstream.
pub(crate) const IDLE_PER_UPSTREAM: usize = 4;
/// How long an idle upstream TCP connection is kept.
pub(crate) const TCP_IDLE: Duration = Duration::from_secs(10);

/// The upstream side of one service.
pub(crate) struct Link {
    /// The service its ports and connections are reported under.
    service: Rc<str>,
    metrics: ServiceMetrics,
    /// Who gets the answers; set once the server exists (weak: the server holds the link).
    server: RefCell<Option<WeakServer>>,
    /// The least and the most port number a UDP port is drawn from.
    numbers: (u16, u16),
    ports: Rc<RefCell<Ports>>,
    tcp: Rc<TcpPool>,
}

/// One UDP port queries leave from.
struct Port {
    transport: DatagramTransport,
    interface: IpAddr,
    number: u16,
    /// Queries sent from it so far.
    sent: u32,
    /// Queries whose answers may still come to it.
    outstanding: u32,
    /// Takes no new queries; closes when `outstanding` is 0.
    retired: bool,
    /// When it was opened, on the reactor's clock.
    opened: Duration,
}

#[derive(Default)]
struct Ports {
    open: HashMap<u64, Port>,
    next: u64,
}

impl Link {
    /// The link of service `service`; UDP ports are drawn from `ports` (the least and the
    /// most), and TCP connections take at most `connect_timeout` to open.
    pub(crate) fn new(
        service: &str,
        ports: (u16, u16),
        connect_timeout: Duration,
        metrics: ServiceMetrics,
    ) -> Self {
        Self {
            service: service.into(),
            // Port 0 is no port to draw; a range given backwards is its least port.
            numbers: (ports.0.max(1), ports.1.max(ports.0.max(1))),
            metrics: metrics.clone(),
            server: RefCell::default(),
            ports: Rc::default(),
            tcp: Rc::new(TcpPool {
                service: service.into(),
                connect_timeout,
                metrics,
                idle: RefCell::default(),
            }),
        }
    }

    /// Answers arriving on the ports go to `server`.
    pub(crate) fn serve(&self, server: WeakServer) {
        *self.server.borrow_mut() = Some(server);
    }

    /// Opens ports on `interface` until [`ACTIVE_PORTS`] take new queries (at most
    /// [`MAX_PORTS`] open; reaching it is counted). Replacements are opened as soon as a
    /// port retires, because a socket cannot send until the reactor has polled it once.
    pub(crate) fn top_up(&self, interface: IpAddr) {
        loop {
            let (active, total) = {
                let ports = self.ports.borrow();
                let mine = ports.open.values().filter(|p| p.interface == interface);
                let total = mine.clone().count();
                (mine.filter(|p| !p.retired).count(), total)
            };
            if active >= ACTIVE_PORTS {
                return;
            }
            if total >= MAX_PORTS {
                self.metrics.forwarding().ports_exhausted().inc();
                return;
            }
            if self.open_port(interface).is_none() {
                return;
            }
        }
    }

    /// The ports a query from `interface` may leave from, the one to try first (drawn
    /// at random) first: the active ones, or any open one when none is.
    fn candidates(&self, interface: IpAddr) -> Vec<u64> {
        let ports = self.ports.borrow();
        let of = |active_only: bool| -> Vec<u64> {
            ports
                .open
                .iter()
                .filter(|(_, p)| p.interface == interface && !(active_only && p.retired))
                .map(|(id, _)| *id)
                .collect()
        };
        let mut ids = of(true);
        if ids.is_empty() {
            ids = of(false);
        }
        if let Ok(n @ 1..) = u16::try_from(ids.len()) {
            ids.swap(0, usize::from(crate::random::below(n)));
        }
        ids
    }

    /// Opens a port on `interface` at a random number.
    fn open_port(&self, interface: IpAddr) -> Option<u64> {
        let server = self.server.borrow().clone()?;
        let reactor = Reactor::try_current()?;
        for attempt in 0..=BIND_ATTEMPTS {
            let number = if attempt < BIND_ATTEMPTS {
                let (least, most) = self.numbers;
                least + crate::random::below(most - least + 1)
            } else {
                0
            };
            let endpoint = ServerEndpoint::Udp {
                addr: SocketAddr::new(interface, number),
            }
            .to_string();
            let protocol = UpstreamPort {
                server: server.clone(),
            };
            match reactor.open_udp(&self.service, &endpoint, protocol) {
                Ok(port) => {
                    let transport = port.transport().clone();
                    let number = port.local_addr().map_or(number, |a| a.port());
                    let mut ports = self.ports.borrow_mut();
                    let id = ports.next;
                    ports.next += 1;
                    ports.open.insert(
                        id,
                        Port {
                            transport,
                            interface,
                            number,
                            sent: 0,
                            outstanding: 0,
                            retired: false,
                            opened: weft::time::current_clock().now(),
                        },
                    );
                    return Some(id);
                }
                Err(error) if attempt == BIND_ATTEMPTS => {
                    tracing::warn!(%error, "no UDP port could be opened for upstream queries");
                }
                Err(_) => {}
            }
        }
        None
    }
}

impl Drop for Link {
    /// The service's server is gone, and with it every question (the forwarder keeps the
    /// server while any is out): its ports close. Each runs as a task of its own, which
    /// would otherwise go on holding its socket.
    fn drop(&mut self) {
        let open = std::mem::take(&mut self.ports.borrow_mut().open);
        for port in open.into_values() {
            port.transport.stop_listening();
        }
    }
}

/// A query's answer is settled: the port closes once retired and nothing waits on it.
fn release(ports: &Weak<RefCell<Ports>>, id: u64) {
    let Some(ports) = ports.upgrade() else {
        return;
    };
    let closing = {
        let mut ports = ports.borrow_mut();
        let Some(port) = ports.open.get_mut(&id) else {
            return;
        };
        port.outstanding -= 1;
        if port.retired && port.outstanding == 0 {
            ports.open.remove(&id).map(|p| p.transport)
        } else {
            None
        }
    };
    if let Some(transport) = closing {
        // Done with, while the service goes on: not `service_stopped`.
        transport.close();
    }
}

impl UpstreamLink for Link {
    fn send(&self, packet: &[u8], to: SocketAddr) -> Option<UdpLease> {
        let interface = local_for(to.ip());
        self.top_up(interface);
        // A port opened this turn cannot send yet: then the next candidate does.
        let candidates = self.candidates(interface);
        let now = weft::time::current_clock().now();
        let mut ports = self.ports.borrow_mut();
        let mut sent_from = None;
        for id in candidates.into_iter().take(SEND_ATTEMPTS) {
            let Some(port) = ports.open.get_mut(&id) else {
                continue;
            };
            if port.transport.write(packet, to) {
                sent_from = Some(id);
                break;
            }
            // One that has sent before, or had time to, was stopped (a reload ends the
            // old service's ports) or its socket fails: it is replaced.
            if port.sent > 0 || now.saturating_sub(port.opened) >= WARM_UP {
                port.retired = true;
                if port.outstanding == 0
                    && let Some(gone) = ports.open.remove(&id)
                {
                    gone.transport.stop_listening();
                }
            }
        }
        let id = sent_from?;
        let port = ports.open.get_mut(&id)?;
        port.sent += 1;
        port.outstanding += 1;
        if port.sent >= QUERIES_PER_PORT {
            port.retired = true;
        }
        let weak = Rc::downgrade(&self.ports);
        let connection = port.transport.info().id;
        Some(UdpLease::new(port.number, move || release(&weak, id)).on(connection))
    }

    fn exchange_tcp(&self, packet: &[u8], to: SocketAddr, answer: TcpAnswer) -> TcpExchange {
        self.tcp.exchange(packet, to, answer)
    }
}

/// Receives upstream answers on one port.
struct UpstreamPort {
    server: WeakServer,
}

impl DatagramProtocol for UpstreamPort {
    fn datagram_received(&mut self, transport: &DatagramTransport, data: &[u8], from: SocketAddr) {
        let Some(server) = self.server.upgrade() else {
            return;
        };
        let port = transport.host().socket_addr().map_or(0, |a| a.port());
        if let Err(why) = server.upstream_received(data, from, port) {
            observe::report_error(transport.info(), ErrorKind::BadFrame, why);
        }
    }
}

/// The TCP connections to upstreams, idle ones kept for reuse.
struct TcpPool {
    service: Rc<str>,
    /// How long a TCP connection may take to open: the upstream timeout, which bounds
    /// the whole query anyway.
    connect_timeout: Duration,
    metrics: ServiceMetrics,
    /// Connections that answered and wait for the next question, per upstream.
    idle: RefCell<HashMap<SocketAddr, Vec<Rc<RefCell<Conn>>>>>,
}

/// One TCP connection to an upstream.
struct Conn {
    to: SocketAddr,
    /// Set once connected.
    transport: Option<Transport>,
    /// The exchange it carries; `None` while idle (or abandoned while connecting).
    current: Option<Rc<RefCell<Exchange>>>,
    /// Closes it when it has been idle for [`TCP_IDLE`].
    idle_timer: Option<DelayedCall>,
}

/// One question asked over TCP, shared by its [`TcpExchange`] and the connection.
struct Exchange {
    /// The query, sent framed.
    query: Vec<u8>,
    /// Taken by the first answer or failure; gone once abandoned.
    answer: Option<TcpAnswer>,
    /// The connection carrying it.
    conn: Option<Rc<RefCell<Conn>>>,
    /// Sent on a kept connection: if that closes without an answer (the upstream's idle
    /// timeout raced the query), it is asked once more on a new one.
    reused: bool,
}

impl TcpPool {
    fn exchange(self: &Rc<Self>, packet: &[u8], to: SocketAddr, answer: TcpAnswer) -> TcpExchange {
        let exchange = Rc::new(RefCell::new(Exchange {
            query: packet.to_vec(),
            answer: Some(answer),
            conn: None,
            reused: false,
        }));
        match self.take_idle(to) {
            Some(conn) => {
                self.metrics.forwarding().tcp_reused().inc();
                exchange.borrow_mut().reused = true;
                self.send_on(&conn, &exchange);
            }
            None => self.connect(&exchange, to),
        }
        TcpExchange::new(move || {
            let conn = {
                let mut e = exchange.borrow_mut();
                e.answer = None;
                e.conn.take()
            };
            // Its answer may still come on that connection: it cannot be reused.
            if let Some(conn) = conn {
                let transport = {
                    let mut c = conn.borrow_mut();
                    c.current = None;
                    c.transport.clone()
                };
                if let Some(t) = transport {
                    t.lose_connection();
                }
            }
        })
    }

    /// A kept connection to `to` that is still open, if there is one.
    fn take_idle(&self, to: SocketAddr) -> Option<Rc<RefCell<Conn>>> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&to)?;
        let conn = list.pop();
        if list.is_empty() {
            idle.remove(&to);
        }
        let conn = conn?;
        if let Some(timer) = conn.borrow_mut().idle_timer.take() {
            let _ = timer.cancel();
        }
        Some(conn)
    }

    fn send_on(&self, conn: &Rc<RefCell<Conn>>, exchange: &Rc<RefCell<Exchange>>) {
        exchange.borrow_mut().conn = Some(conn.clone());
        let transport = {
            let mut c = conn.borrow_mut();
            c.current = Some(exchange.clone());
            c.transport.clone()
        };
        if let Some(t) = transport {
            send_int16_string(&t, &exchange.borrow().query);
        }
    }

    fn connect(self: &Rc<Self>, exchange: &Rc<RefCell<Exchange>>, to: SocketAddr) {
        let conn = Rc::new(RefCell::new(Conn {
            to,
            transport: None,
            current: Some(exchange.clone()),
            idle_timer: None,
        }));
        exchange.borrow_mut().conn = Some(conn.clone());
        // An endpoint string escapes the colons of an IPv6 address.
        let endpoint = format!(
            "tcp:{}:{}:timeout={}",
            to.ip().to_string().replace(':', "\\:"),
            to.port(),
            self.connect_timeout.as_secs_f64()
        );
        let reactor = Reactor::current();
        let protocol = Int16StringReceiver::new(UpstreamTcp {
            conn: conn.clone(),
            pool: Rc::downgrade(self),
            draining: false,
        });
        let service = self.service.clone();
        reactor.clone().spawn(async move {
            if let Err(e) = reactor.connect_as(&service, &endpoint, protocol).await {
                let exchange = conn.borrow_mut().current.take();
                if let Some(exchange) = exchange {
                    let answer = {
                        let mut e = exchange.borrow_mut();
                        e.conn = None;
                        e.answer.take()
                    };
                    if let Some(answer) = answer {
                        answer(Err(e.to_string()));
                    }
                }
            }
        });
    }

    /// `conn` answered: keep it for the next question, or close it when enough are kept.
    fn keep(&self, conn: &Rc<RefCell<Conn>>) {
        let to = conn.borrow().to;
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(to).or_default();
        if list.len() >= IDLE_PER_UPSTREAM {
            drop(idle);
            let transport = conn.borrow().transport.clone();
            if let Some(t) = transport {
                t.lose_connection();
            }
            return;
        }
        let weak = Rc::downgrade(conn);
        conn.borrow_mut().idle_timer = Some(weft::time::call_later(TCP_IDLE, move || {
            let transport = weak.upgrade().and_then(|c| c.borrow().transport.clone());
            if let Some(t) = transport {
                t.lose_connection();
            }
        }));
        list.push(conn.clone());
    }

    /// `conn` closed: it is no longer kept.
    fn forget(&self, conn: &Rc<RefCell<Conn>>) {
        let to = conn.borrow().to;
        let mut idle = self.idle.borrow_mut();
        if let Some(list) = idle.get_mut(&to) {
            list.retain(|c| !Rc::ptr_eq(c, conn));
            if list.is_empty() {
                idle.remove(&to);
            }
        }
    }
}

/// Asks an upstream over TCP: each query goes out framed, the next frame back is its
/// answer, then the connection waits, kept, for the next one.
struct UpstreamTcp {
    conn: Rc<RefCell<Conn>>,
    pool: Weak<TcpPool>,
    /// Asked to drain: the exchange it carries finishes, then it closes, never kept.
    draining: bool,
}

impl StringHandler for UpstreamTcp {
    fn connection_made(&mut self, transport: &Transport) {
        // Opened during the shutdown drain (for a question owed a client): it never
        // hears the drain, so it ends with its exchange rather than waiting, kept.
        if Reactor::try_current().is_some_and(|r| r.is_shutting_down()) {
            self.draining = true;
        }
        let exchange = {
            let mut c = self.conn.borrow_mut();
            c.transport = Some(transport.clone());
            c.current.clone()
        };
        match exchange {
            Some(e) => send_int16_string(transport, &e.borrow().query),
            // Abandoned while connecting.
            None => transport.lose_connection(),
        }
    }

    fn string_received(&mut self, transport: &Transport, data: &[u8]) {
        let exchange = self.conn.borrow_mut().current.take();
        let (Some(exchange), Some(pool)) = (exchange, self.pool.upgrade()) else {
            // Nothing asked: not an answer to trust, nor a connection to keep.
            transport.lose_connection();
            return;
        };
        let answer = {
            let mut e = exchange.borrow_mut();
            e.conn = None;
            e.answer.take()
        };
        if self.draining {
            transport.lose_connection();
        } else {
            pool.keep(&self.conn);
        }
        if let Some(answer) = answer {
            answer(Ok(data.to_vec()));
        }
    }

    /// At shutdown, the question it carries may be owed to a client: it waits for the
    /// answer (the question's timeout bounds it), then closes.
    fn drain(&mut self, transport: &Transport) {
        if self.conn.borrow().current.is_none() {
            transport.lose_connection();
            return;
        }
        self.draining = true;
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        let (exchange, timer) = {
            let mut c = self.conn.borrow_mut();
            c.transport = None;
            (c.current.take(), c.idle_timer.take())
        };
        if let Some(timer) = timer {
            let _ = timer.cancel();
        }
        let pool = self.pool.upgrade();
        if let Some(pool) = &pool {
            pool.forget(&self.conn);
        }
        let Some(exchange) = exchange else {
            return;
        };
        let retry = {
            let mut e = exchange.borrow_mut();
            e.conn = None;
            let retry = e.reused && e.answer.is_some();
            e.reused = false;
            retry
        };
        if let (true, Some(pool)) = (retry, pool) {
            let to = self.conn.borrow().to;
            pool.connect(&exchange, to);
            return;
        }
        let answer = exchange.borrow_mut().answer.take();
        if let Some(answer) = answer {
            answer(Err(format!(
                "the connection closed without an answer: {reason}"
            )));
        }
    }
}
