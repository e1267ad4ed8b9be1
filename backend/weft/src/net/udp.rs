//! UDP: `DatagramProtocol` on a `UdpPort` (Twisted's `listenUDP`).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::panic::Location;
use std::rc::Rc;
use std::sync::Arc;

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::listen::ListenError;
use super::ports::{PortOpening, PortSocket, SocketKey};
use super::udp_batch::{Inbox, Outbox, Sent};
use crate::address::Address;
use crate::endpoint::ServerEndpoint;
use crate::observe::{
    self, CloseReason, ConnectionClosed, ConnectionInfo, ErrorKind, Event, ListenerInfo, Stopwatch,
    TransportKind,
};
use crate::reactor::Reactor;
use crate::tasks::TaskKind;
use crate::transport::guarded_call;

/// The largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;

/// The largest UDP payload over IPv6 (65,535 bytes less the UDP header; no jumbograms).
pub const MAX_DATAGRAM_V6: usize = 65_527;

/// Ports of services that answer any datagram at all (echo, daytime, quote of the day,
/// chargen, time), and port 0, which no one can answer from.
const ANSWERING_PORTS: [u16; 6] = [0, 7, 13, 17, 19, 37];

/// Whether a datagram from `from` must go unanswered by a protocol that answers what it
/// cannot make sense of (an echo, a DNS server's NOTIMP or FORMERR): it came from a port
/// whose service answers any datagram, so one datagram forged to come from there would
/// go back and forth between the two for ever, as inetd's services know; or from port 0,
/// where an answer cannot go. The ports of such services this process runs count too
/// ([`answering_port`]), whatever the address: a datagram forged from one of them to
/// another (or to itself, through an address the port is bound to every one of), or from
/// the same port of another host running the same service, would loop as well.
pub fn answered_back(from: SocketAddr) -> bool {
    let port = from.port();
    ANSWERING_PORTS.contains(&port) || OWN_ANSWERING.holds(port)
}

/// Marks `port` as one where a service of this process answers any datagram, for
/// [`answered_back`], for as long as the guard is kept (a port a reload hands over is
/// marked by both its old and its new service until the old one lets go).
pub fn answering_port(port: u16) -> AnsweringPort {
    OWN_ANSWERING.add(port);
    AnsweringPort(port)
}

/// Keeps a port marked as answering any datagram ([`answering_port`]).
#[derive(Debug)]
pub struct AnsweringPort(u16);

impl Drop for AnsweringPort {
    fn drop(&mut self) {
        OWN_ANSWERING.remove(self.0);
    }
}

/// The ports of this process's services that answer any datagram: a bit a port, read
/// for every datagram such a service gets, and how many services hold each one.
struct Answering {
    bits: [std::sync::atomic::AtomicU64; 1024],
    holders: std::sync::Mutex<std::collections::BTreeMap<u16, usize>>,
}

static OWN_ANSWERING: Answering = Answering {
    bits: [const { std::sync::atomic::AtomicU64::new(0) }; 1024],
    holders: std::sync::Mutex::new(std::collections::BTreeMap::new()),
};

impl Answering {
    fn holds(&self, port: u16) -> bool {
        let word = self.bits[usize::from(port / 64)].load(std::sync::atomic::Ordering::Relaxed);
        word & (1 << (port % 64)) != 0
    }

    fn add(&self, port: u16) {
        let mut holders = self.holders.lock().unwrap_or_else(|e| e.into_inner());
        *holders.entry(port).or_insert(0) += 1;
        self.bits[usize::from(port / 64)]
            .fetch_or(1 << (port % 64), std::sync::atomic::Ordering::Relaxed);
    }

    fn remove(&self, port: u16) {
        let mut holders = self.holders.lock().unwrap_or_else(|e| e.into_inner());
        let Some(n) = holders.get_mut(&port) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            holders.remove(&port);
            self.bits[usize::from(port / 64)]
                .fetch_and(!(1 << (port % 64)), std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Handles datagrams on one UDP port (Twisted's `DatagramProtocol`).
pub trait DatagramProtocol: 'static {
    /// The port is open; `transport` sends datagrams.
    fn start_protocol(&mut self, transport: &DatagramTransport) {
        let _ = transport;
    }
    /// One datagram arrived from `from`.
    fn datagram_received(&mut self, transport: &DatagramTransport, data: &[u8], from: SocketAddr);
    /// The port is connected ([`DatagramTransport::connect`]) and its peer said nothing
    /// listens there (an ICMP port unreachable for a datagram sent to it): Twisted's
    /// `ConnectedDatagramProtocol.connectionRefused`. The port stays open.
    fn connection_refused(&mut self, transport: &DatagramTransport) {
        let _ = transport;
    }
    /// The port stopped receiving (it may still send what is owed).
    fn stop_protocol(&mut self) {}
    /// The name used when this protocol's callbacks are reported.
    fn name(&self) -> &'static str {
        std::any::type_name::<Self>()
    }
}

struct Shared {
    /// Shared with a port that takes it over; this transport may still send on it.
    socket: Rc<UdpSocket>,
    info: Arc<ConnectionInfo>,
    /// Set when the port never started (its handover rolled back), so sends are refused.
    /// A port that stopped receiving still sends: answers owed when it stopped go out.
    closed: Cell<bool>,
    /// Cancels the port's receive loop: by itself when the port alone is closed (its
    /// service removed or changed), through `with_reactor` when the reactor's ports are.
    stop: CancellationToken,
    /// The reactor's token `stop` is a child of: cancelled, the port closed with them all.
    with_reactor: CancellationToken,
    /// The reactor's listening token, cancelled as shutdown begins: a port its owner
    /// stops during shutdown (a service's outgoing ports, as the service goes) closed for
    /// the shutdown, not for its service stopping alone.
    reactor_stopping: CancellationToken,
    /// Set when its owner closed it as done with it ([`DatagramTransport::close`]), not as
    /// a service that stopped.
    done: Cell<bool>,
    /// What is written while a batch of received datagrams is handled.
    outbox: RefCell<Outbox>,
    /// A client's own port (`open_udp`), which may connect; a service's port is shared
    /// with the other reactors and may not.
    client: bool,
    /// The one peer it is connected to ([`DatagramTransport::connect`]).
    peer: Cell<Option<SocketAddr>>,
    /// Refusals a send took (the kernel reports a connected port's ICMP error to whichever
    /// call comes first), for the receive loop to tell the protocol outside the send.
    refusals: Cell<u32>,
    /// Wakes the receive loop for them.
    refused: tokio::sync::Notify,
}

/// Why [`DatagramTransport::connect`] was refused.
#[derive(Debug, thiserror::Error)]
pub enum UdpConnectError {
    /// A service's port takes datagrams from every peer (and is shared with the other
    /// reactors): only a client's own port (`open_udp`) connects.
    #[error("only a client's own UDP port (open_udp) can connect, not a service's")]
    NotAClientPort,
    /// It is connected already (Twisted refuses a second `connect` too).
    #[error("the UDP port is connected to {0} already")]
    Connected(SocketAddr),
    /// The system refused (another address family, say).
    #[error("cannot connect the UDP port to {addr}: {source}")]
    System {
        /// The peer asked for.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
}

/// Sends datagrams from a UDP port. Cheap to clone.
#[derive(Clone)]
pub struct DatagramTransport {
    shared: Rc<Shared>,
}

impl std::fmt::Debug for DatagramTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatagramTransport")
            .field("local", &self.shared.info.local)
            .finish()
    }
}

impl DatagramTransport {
    /// Sends `data` to `addr`: now, or, from within
    /// [`DatagramProtocol::datagram_received`], with the other answers to the batch of
    /// datagrams the port received, in one system call when the batch is handled (then
    /// `true` means queued). A datagram the socket cannot take at once (its send buffer
    /// full) is dropped and counted, as UDP would drop it anyway; the port's memory stays
    /// bounded.
    pub fn write(&self, data: &[u8], addr: SocketAddr) -> bool {
        if self.shared.closed.get() {
            return false;
        }
        if let Some(peer) = self.shared.peer.get()
            && peer != addr
        {
            // Twisted refuses it too: a connected port has one peer.
            self.dropped(
                addr,
                &std::io::Error::other(format!("the port is connected to {peer}")),
            );
            return false;
        }
        let mut outbox = self.shared.outbox.borrow_mut();
        if outbox.open {
            if outbox.is_full() {
                self.flush(&mut outbox);
            }
            outbox.push(data, addr);
            return true;
        }
        drop(outbox);
        // Straight to the socket, as the batch's `sendmmsg` goes: tokio's `try_send_to`
        // answers from the readiness it last saw, and a socket it has not polled yet
        // (a port just opened) would refuse its first datagram without trying.
        let socket = socket2::SockRef::from(&*self.shared.socket);
        match socket.send_to(data, &addr.into()) {
            Ok(n) => {
                let info = &self.shared.info;
                info.stats.record_write(n, Stopwatch::start());
                true
            }
            Err(err) => {
                self.dropped(addr, &err);
                false
            }
        }
    }

    /// Connects the port to `addr` (Twisted's `transport.connect(host, port)`, with an IP
    /// address as Twisted requires): from then on only datagrams from `addr` are received
    /// (the kernel drops the others; datagrams queued before the call are still read),
    /// [`send`](Self::send) sends to it, a datagram to any
    /// other address is refused, and an ICMP port unreachable from it is heard as
    /// [`DatagramProtocol::connection_refused`]. Only a client's own port
    /// ([`Reactor::open_udp`](crate::Reactor::open_udp)), once.
    pub fn connect(&self, addr: SocketAddr) -> Result<(), UdpConnectError> {
        if !self.shared.client {
            return Err(UdpConnectError::NotAClientPort);
        }
        if let Some(peer) = self.shared.peer.get() {
            return Err(UdpConnectError::Connected(peer));
        }
        socket2::SockRef::from(&*self.shared.socket)
            .connect(&addr.into())
            .map_err(|source| UdpConnectError::System { addr, source })?;
        self.shared.peer.set(Some(addr));
        Ok(())
    }

    /// The peer it is connected to, if it is.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.shared.peer.get()
    }

    /// Sends `data` to the peer the port is connected to (Twisted's `write(data)` on a
    /// connected port); false when it is not connected, or as [`write`](Self::write).
    pub fn send(&self, data: &[u8]) -> bool {
        match self.shared.peer.get() {
            Some(peer) => self.write(data, peer),
            None => false,
        }
    }

    /// Sends what the batch being handled wrote.
    fn flush(&self, outbox: &mut Outbox) {
        let info = &self.shared.info;
        // One reading of the stopwatch for the datagrams of one send.
        let at = Stopwatch::start();
        outbox.flush(self.shared.socket.as_raw_fd(), |sent| match sent {
            Sent::Sent(n) => info.stats.record_write(n, at),
            Sent::Failed(addr, err) => self.dropped(addr, &err),
        });
    }

    fn dropped(&self, addr: SocketAddr, err: &std::io::Error) {
        if err.kind() == std::io::ErrorKind::ConnectionRefused && self.shared.peer.get().is_some() {
            // The peer's refusal, taken by this send: the protocol hears it from the receive
            // loop (a send runs inside the protocol's own callbacks).
            self.shared.refusals.set(self.shared.refusals.get() + 1);
            self.shared.refused.notify_one();
            return;
        }
        observe::report_error(
            &self.shared.info,
            ErrorKind::DatagramDropped,
            format!("sending to {addr}: {err}"),
        );
    }

    /// The local address.
    pub fn host(&self) -> &Address {
        &self.shared.info.local
    }

    /// The endpoint's id and counters (reads and writes count datagrams).
    pub fn info(&self) -> &Arc<ConnectionInfo> {
        &self.shared.info
    }

    /// Closes the port (its service stopped: [`CloseReason::ServiceStopped`]).
    pub fn stop_listening(&self) {
        self.shared.stop.cancel();
    }

    /// Closes the port its owner is done with while its service goes on (an outgoing
    /// port retired after its share of queries): [`CloseReason::Done`].
    pub fn close(&self) {
        self.shared.done.set(true);
        self.shared.stop.cancel();
    }
}

/// A listening UDP port (Twisted's `IListeningPort` for UDP).
#[derive(Debug, Clone)]
pub struct UdpPort {
    transport: DatagramTransport,
}

impl UdpPort {
    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.transport.host().socket_addr()
    }
    /// The transport, to send from outside the protocol.
    pub fn transport(&self) -> &DatagramTransport {
        &self.transport
    }
    /// Closes the port.
    pub fn stop_listening(&self) {
        self.transport.stop_listening();
    }
}

impl Reactor {
    /// Listens on a `udp:` endpoint string with `protocol`, reporting under `service`.
    /// The port's task is said to be spawned at the caller's line.
    #[track_caller]
    pub fn listen_udp(
        &self,
        service: &str,
        endpoint: &str,
        protocol: impl DatagramProtocol,
    ) -> Result<UdpPort, ListenError> {
        self.listen_udp_with(service, endpoint, protocol, MAX_DATAGRAM_V6)
    }

    /// Like [`listen_udp`](Self::listen_udp), dropping (and counting) datagrams larger
    /// than `max_datagram` bytes.
    #[track_caller]
    pub fn listen_udp_with(
        &self,
        service: &str,
        endpoint: &str,
        protocol: impl DatagramProtocol,
        max_datagram: usize,
    ) -> Result<UdpPort, ListenError> {
        self.udp_port(service, endpoint, protocol, max_datagram, Role::Listener)
    }

    /// Opens a UDP port of a client's own on a `udp:` endpoint, reporting under
    /// `service`: the port its queries leave from and their answers come back to (what
    /// Twisted's `listenUDP(0, protocol)` is on a client). It works as a
    /// [`listen_udp`](Self::listen_udp) port and shows as one of `service`'s connections,
    /// but it is nobody's listener:
    ///
    /// - it is bound on its own, never with `SO_REUSEPORT` nor onto a port another reactor
    ///   of a [`ReactorPool`](crate::ReactorPool) got for the same endpoint, so no other
    ///   socket (a listener's, another client's) shares its port and takes its answers;
    /// - it is not announced as a listener: its opening is logged at debug level, it
    ///   sends no listener events and is not among the reactor's listening ports (a
    ///   reload's handover never offers it), so a client that opens many (a resolver
    ///   drawing a new random port every few queries) floods neither the log nor the
    ///   live feed and history;
    /// - it starts at once, even while a handover is open.
    ///
    /// The port's task is said to be spawned at the caller's line.
    #[track_caller]
    pub fn open_udp(
        &self,
        service: &str,
        endpoint: &str,
        protocol: impl DatagramProtocol,
    ) -> Result<UdpPort, ListenError> {
        self.udp_port(service, endpoint, protocol, MAX_DATAGRAM_V6, Role::Client)
    }

    #[track_caller]
    fn udp_port(
        &self,
        service: &str,
        endpoint: &str,
        protocol: impl DatagramProtocol,
        max_datagram: usize,
        role: Role,
    ) -> Result<UdpPort, ListenError> {
        let parsed: ServerEndpoint = endpoint.parse()?;
        let ServerEndpoint::Udp { addr } = parsed else {
            return Err(ListenError::WrongKind {
                endpoint: endpoint.to_owned(),
                reason: "a DatagramProtocol needs a udp: endpoint",
            });
        };
        let bind_err = |source| ListenError::Bind {
            endpoint: endpoint.to_owned(),
            source,
        };
        let key = SocketKey::of(&parsed);
        let claimed = match role {
            Role::Listener => self.inner.ports.claim(key.as_ref()).map(|(s, _)| s),
            Role::Client => None,
        };
        let (socket, fresh) = match claimed {
            Some(PortSocket::Datagram(socket)) => (socket, false),
            _ => {
                let group = match role {
                    Role::Listener => super::group::current(),
                    Role::Client => None,
                };
                let at = group.as_ref().map_or(addr, |g| g.resolve(true, addr));
                let std_socket = match &group {
                    Some(g) => g.bind_shared(
                        true,
                        addr,
                        || super::group::probe_udp(at),
                        || super::group::bind_udp(at, true),
                    ),
                    None => super::group::bind_udp(at, false),
                }
                .map_err(bind_err)?;
                if let Some(group) = &group {
                    group.record(true, addr, std_socket.local_addr().map_err(bind_err)?);
                }
                std_socket.set_nonblocking(true).map_err(bind_err)?;
                // Datagrams the kernel drops for a full receive queue are told with the
                // next one received, and counted (`ErrorKind::ReceiveQueueFull`).
                if let Err(err) = nix::sys::socket::setsockopt(
                    &std_socket,
                    nix::sys::socket::sockopt::RxqOvfl,
                    &1,
                ) {
                    tracing::debug!(%err, "SO_RXQ_OVFL not set: kernel drops go uncounted");
                }
                let _enter = self.runtime_context();
                let socket = UdpSocket::from_std(std_socket).map_err(bind_err)?;
                (Rc::new(socket), true)
            }
        };
        let bound = socket.local_addr().map_err(bind_err)?;
        let local = Address::Ip(bound);
        let service: Arc<str> = service.into();
        // A port takes datagrams from any peer: its peer is the unspecified address (as
        // `ss` shows `0.0.0.0:*`), not an address of its own.
        let any = match bound {
            SocketAddr::V4(_) => SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0)),
            SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
        };
        let info = ConnectionInfo::new(
            service.clone(),
            TransportKind::Udp,
            Address::Ip(any),
            local.clone(),
        );
        let listener = Arc::new(ListenerInfo {
            service: service.clone(),
            endpoint: endpoint.to_owned(),
            transport: TransportKind::Udp,
            local,
        });
        // A listener stops with the others at shutdown; a client port lives on through the
        // drain, since answers owed to clients may still come back to it.
        let with_reactor = match role {
            Role::Listener => self.listening_token(),
            Role::Client => self.clients_token(),
        };
        let stop = with_reactor.child_token();
        let transport = DatagramTransport {
            shared: Rc::new(Shared {
                socket: socket.clone(),
                info: info.clone(),
                closed: Cell::new(false),
                stop: stop.clone(),
                with_reactor,
                reactor_stopping: self.listening_token(),
                done: Cell::new(false),
                outbox: RefCell::new(Outbox::new()),
                client: role == Role::Client,
                peer: Cell::new(None),
                refusals: Cell::new(0),
                refused: tokio::sync::Notify::new(),
            }),
        };
        let name = protocol.name();
        let protocol = Rc::new(RefCell::new(protocol));
        let starting = (transport.clone(), protocol.clone(), listener.clone());
        let start = move || {
            let (t, protocol, listener) = starting;
            let info = &t.shared.info;
            if role == Role::Listener {
                observe::emit(|| Event::ListenerStarted(&listener));
            }
            observe::emit(|| Event::ConnectionOpened(info));
            let (service, endpoint, local) =
                (&listener.service, &listener.endpoint, &listener.local);
            match role {
                Role::Listener => tracing::info!(%service, %endpoint, %local, "listening"),
                Role::Client => {
                    tracing::debug!(%service, %endpoint, %local, "client UDP port open")
                }
            }
            let _ = guarded_call(info, name, "start_protocol", || {
                protocol.borrow_mut().start_protocol(&t)
            });
        };
        let opened = match role {
            Role::Listener => Some(self.inner.ports.open(
                self,
                PortOpening {
                    info: listener.clone(),
                    key,
                    socket: PortSocket::Datagram(socket),
                    stop: stop.clone(),
                    fresh,
                },
                start,
            )),
            Role::Client => {
                start();
                None
            }
        };
        let t = transport.clone();
        let port = info.id;
        // A UDP port waits on its peers: idle there is not a stall.
        let serve = crate::tasks::awaiting_outside_events(async move {
            if let Some(o) = &opened
                && !o.started(&stop).await
            {
                t.shared.closed.set(true);
                if let Some(opened) = opened {
                    opened.close(false);
                }
                return;
            }
            let reason = receive_loop(&t, &*protocol, name, max_datagram, fresh, &stop).await;
            // Nothing more is received; what the port still sends (answers that were
            // waiting on an upstream, to be drained at shutdown or after a reload) goes
            // out on its socket, which lives as long as something holds the transport.
            let _ = guarded_call(&info, name, "stop_protocol", || {
                protocol.borrow_mut().stop_protocol()
            });
            observe::emit(|| {
                Event::ConnectionClosed(ConnectionClosed {
                    info: info.clone(),
                    reason: reason.clone(),
                    duration: info.opened.elapsed(),
                })
            });
            if let Some(opened) = opened {
                observe::emit(|| Event::ListenerStopped(&listener));
                opened.close(true);
            }
        });
        let site = Location::caller();
        // The port's task is listed under the port, and so under its service.
        observe::with_connection(Some(port), || match role {
            Role::Listener => self.spawn_task(TaskKind::Spawned, None, site, serve),
            // Stopped after the drain, which must not wait for it.
            Role::Client => self.spawn_task_untracked(TaskKind::Spawned, site, serve),
        });
        Ok(UdpPort { transport })
    }
}

/// What a UDP port is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A service's port that peers send to: bound with the reactors' port group, announced,
    /// among the listening ports.
    Listener,
    /// A client's own port (`Reactor::open_udp`).
    Client,
}

/// Datagrams handled before the receive loop lets other tasks run.
const RECEIVE_BUDGET: usize = 64;

/// An error the socket reported: ICMP errors from an earlier send surface so; they are not
/// fatal. On a connected port, "nothing listens there" is the protocol's to hear.
fn socket_error(
    transport: &DatagramTransport,
    protocol: &RefCell<impl DatagramProtocol>,
    name: &'static str,
    err: &std::io::Error,
) {
    if err.kind() == std::io::ErrorKind::ConnectionRefused && transport.shared.peer.get().is_some()
    {
        refused(transport, protocol, name);
    } else {
        tracing::debug!(%err, "UDP receive error");
    }
}

/// Tells a connected port's protocol that nothing listens at its peer.
fn refused(
    transport: &DatagramTransport,
    protocol: &RefCell<impl DatagramProtocol>,
    name: &'static str,
) {
    let _ = guarded_call(&transport.shared.info, name, "connection_refused", || {
        protocol.borrow_mut().connection_refused(transport)
    });
}

async fn receive_loop(
    transport: &DatagramTransport,
    protocol: &RefCell<impl DatagramProtocol>,
    name: &'static str,
    max_datagram: usize,
    fresh: bool,
    stop: &CancellationToken,
) -> CloseReason {
    let info = transport.shared.info.clone();
    let socket = &transport.shared.socket;
    // No datagram is larger than its family allows: IPv4's limit on an IPv4 socket.
    let largest = match socket.local_addr() {
        Ok(SocketAddr::V4(_)) => MAX_DATAGRAM,
        _ => MAX_DATAGRAM_V6,
    };
    let max_datagram = max_datagram.min(largest);
    // One byte more than allowed reveals a datagram that was cut short.
    // A socket handed over by a reload has counted its drops since it was made, and the
    // loop before this one counted them: this one counts from the first count it hears.
    let mut inbox = Inbox::new(max_datagram + 1, fresh);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => {
                let shared = &transport.shared;
                return if shared.with_reactor.is_cancelled() {
                    CloseReason::Shutdown
                } else if shared.done.get() {
                    CloseReason::Done
                } else if shared.reactor_stopping.is_cancelled() {
                    CloseReason::Shutdown
                } else {
                    CloseReason::ServiceStopped
                };
            }
            () = transport.shared.refused.notified() => {
                for _ in 0..transport.shared.refusals.replace(0) {
                    refused(transport, protocol, name);
                }
                continue;
            }
            // An error alone (an ICMP port unreachable on a connected port) makes the socket
            // ready without a datagram to read: waited for too.
            ready = socket.ready(Interest::READABLE | Interest::ERROR) => {
                match ready {
                    Err(err) => return CloseReason::from_io(&err),
                    Ok(ready) if ready.is_error() => {
                        // Taken (`SO_ERROR`), the error is gone; its readiness is cleared
                        // so the loop waits for the next.
                        let error = socket.take_error();
                        let _ = socket.try_io(Interest::ERROR, || {
                            Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
                        });
                        if let Ok(Some(err)) = error {
                            socket_error(transport, protocol, name, &err);
                        }
                        if !ready.is_readable() {
                            continue;
                        }
                    }
                    Ok(_) => {}
                }
            }
        }
        // Drain what is queued, a batch a system call, then wait again; after a full budget,
        // only once every other task had its turn. A socket that is readable again at once
        // (a flood, or a datagram that echoes back to its own port) must not keep the
        // reactor from its other connections, timers and shutdown.
        let mut handled = 0;
        while handled < RECEIVE_BUDGET {
            let fd = socket.as_raw_fd();
            match socket.try_io(Interest::READABLE, || inbox.receive(fd)) {
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(err) => {
                    handled += 1;
                    socket_error(transport, protocol, name, &err);
                    continue;
                }
            }
            transport.shared.outbox.borrow_mut().open = true;
            // The datagrams of a batch arrived by the time it was taken: one reading.
            let at = Stopwatch::start();
            for (got, data) in inbox.received() {
                handled += 1;
                if got.truncated || got.len > max_datagram {
                    let from = got.from;
                    observe::report_error(
                        &info,
                        ErrorKind::DatagramTruncated,
                        format!(
                            "datagram from {from} is larger than {max_datagram} bytes; dropped"
                        ),
                    );
                    continue;
                }
                info.stats.record_read(got.len, at);
                let _ = guarded_call(&info, name, "datagram_received", || {
                    protocol
                        .borrow_mut()
                        .datagram_received(transport, data, got.from)
                });
            }
            let mut outbox = transport.shared.outbox.borrow_mut();
            outbox.open = false;
            transport.flush(&mut outbox);
            drop(outbox);
            let dropped = inbox.take_dropped();
            if dropped > 0 {
                observe::report_errors(
                    &info,
                    ErrorKind::ReceiveQueueFull,
                    dropped,
                    format!(
                        "receive queue full: the kernel dropped {dropped} datagrams sent to \
                         this port"
                    ),
                );
            }
        }
        if handled >= RECEIVE_BUDGET {
            tokio::task::yield_now().await;
        }
    }
}
