//! UDP: `DatagramProtocol` on a `UdpPort` (Twisted's `listenUDP`).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::listen::ListenError;
use super::ports::{PortOpening, PortSocket, SocketKey};
use crate::address::Address;
use crate::endpoint::ServerEndpoint;
use crate::observe::{
    self, CloseReason, ConnectionClosed, ConnectionInfo, ErrorKind, Event, ListenerInfo,
    TransportKind,
};
use crate::reactor::Reactor;
use crate::transport::{guarded_call, put_read_buf, take_read_buf};

/// The largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;

/// Handles datagrams on one UDP port (Twisted's `DatagramProtocol`).
pub trait DatagramProtocol: 'static {
    /// The port is open; `transport` sends datagrams.
    fn start_protocol(&mut self, transport: &DatagramTransport) {
        let _ = transport;
    }
    /// One datagram arrived from `from`.
    fn datagram_received(&mut self, transport: &DatagramTransport, data: &[u8], from: SocketAddr);
    /// The port closed.
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
    /// Set when the port stops, so later sends are refused instead of going out of a port reported
    /// closed.
    closed: Cell<bool>,
    /// Cancels the port's receive loop.
    stop: CancellationToken,
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
    /// Sends `data` to `addr` now. A datagram the socket cannot take at once is dropped
    /// and counted, as UDP would drop it anyway; the port's memory stays bounded.
    pub fn write(&self, data: &[u8], addr: SocketAddr) -> bool {
        if self.shared.closed.get() {
            return false;
        }
        match self.shared.socket.try_send_to(data, addr) {
            Ok(n) => {
                let info = &self.shared.info;
                info.stats.record_write(n, ns_since(info));
                true
            }
            Err(err) => {
                observe::report_error(
                    &self.shared.info,
                    ErrorKind::DatagramDropped,
                    format!("sending to {addr}: {err}"),
                );
                false
            }
        }
    }

    /// The local address.
    pub fn host(&self) -> &Address {
        &self.shared.info.local
    }

    /// The endpoint's id and counters (reads and writes count datagrams).
    pub fn info(&self) -> &Arc<ConnectionInfo> {
        &self.shared.info
    }

    /// Closes the port.
    pub fn stop_listening(&self) {
        self.shared.stop.cancel();
    }
}

fn ns_since(info: &ConnectionInfo) -> u64 {
    u64::try_from(info.opened.elapsed().as_nanos()).unwrap_or(u64::MAX)
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
    pub fn listen_udp(
        &self,
        service: &str,
        endpoint: &str,
        protocol: impl DatagramProtocol,
    ) -> Result<UdpPort, ListenError> {
        self.listen_udp_with(service, endpoint, protocol, MAX_DATAGRAM)
    }

    /// Like [`listen_udp`](Self::listen_udp), dropping (and counting) datagrams larger
    /// than `max_datagram` bytes.
    pub fn listen_udp_with(
        &self,
        service: &str,
        endpoint: &str,
        protocol: impl DatagramProtocol,
        max_datagram: usize,
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
        let (socket, fresh) = match self.inner.ports.claim(key.as_ref()) {
            Some(PortSocket::Datagram(socket)) => (socket, false),
            _ => {
                let std_socket = std::net::UdpSocket::bind(addr).map_err(bind_err)?;
                std_socket.set_nonblocking(true).map_err(bind_err)?;
                let _enter = self.runtime_context();
                let socket = UdpSocket::from_std(std_socket).map_err(bind_err)?;
                (Rc::new(socket), true)
            }
        };
        let local = Address::Ip(socket.local_addr().map_err(bind_err)?);
        let service: Arc<str> = service.into();
        let info = ConnectionInfo::new(
            service.clone(),
            TransportKind::Udp,
            Address::Ip(addr),
            local.clone(),
        );
        let listener = Arc::new(ListenerInfo {
            service: service.clone(),
            endpoint: endpoint.to_owned(),
            transport: TransportKind::Udp,
            local,
        });
        let stop = self.listening_token().child_token();
        let transport = DatagramTransport {
            shared: Rc::new(Shared {
                socket: socket.clone(),
                info: info.clone(),
                closed: Cell::new(false),
                stop: stop.clone(),
            }),
        };
        let name = protocol.name();
        let protocol = Rc::new(RefCell::new(protocol));
        let starting = (transport.clone(), protocol.clone(), listener.clone());
        let opened = self.inner.ports.open(
            self,
            PortOpening {
                info: listener.clone(),
                key,
                socket: PortSocket::Datagram(socket),
                stop: stop.clone(),
                fresh,
            },
            move || {
                let (t, protocol, listener) = starting;
                let info = &t.shared.info;
                observe::emit(|| Event::ListenerStarted(&listener));
                observe::emit(|| Event::ConnectionOpened(info));
                tracing::info!(service = %listener.service, endpoint = %listener.endpoint, local = %listener.local, "listening");
                let _ = guarded_call(info, name, "start_protocol", || {
                    protocol.borrow_mut().start_protocol(&t)
                });
            },
        );
        let t = transport.clone();
        // A UDP port waits on its peers: idle there is not a stall.
        self.spawn(crate::tasks::awaiting_outside_events(async move {
            if !opened.started(&stop).await {
                t.shared.closed.set(true);
                return opened.close(false);
            }
            let reason = receive_loop(&t, &*protocol, name, max_datagram, &stop).await;
            // A port that took the socket over answers from now on; what this one still
            // sends (answers that were waiting on an upstream) goes out on the same socket.
            if !opened.handed_over() {
                t.shared.closed.set(true);
            }
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
            observe::emit(|| Event::ListenerStopped(&listener));
            opened.close(true);
        }));
        Ok(UdpPort { transport })
    }
}

async fn receive_loop(
    transport: &DatagramTransport,
    protocol: &RefCell<impl DatagramProtocol>,
    name: &'static str,
    max_datagram: usize,
    stop: &CancellationToken,
) -> CloseReason {
    let info = transport.shared.info.clone();
    let socket = &transport.shared.socket;
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return CloseReason::Shutdown,
            ready = socket.readable() => {
                if let Err(err) = ready {
                    return CloseReason::from_io(&err);
                }
            }
        }
        // Drain what is queued, then wait again.
        for _ in 0..64 {
            let mut buf = take_read_buf();
            // One byte more than allowed reveals a datagram that was cut short.
            let limit = (max_datagram + 1).min(buf.len());
            match socket.try_recv_from(&mut buf[..limit]) {
                Ok((n, from)) if n > max_datagram => {
                    put_read_buf(buf);
                    observe::report_error(
                        &info,
                        ErrorKind::DatagramTruncated,
                        format!(
                            "datagram from {from} is larger than {max_datagram} bytes; dropped"
                        ),
                    );
                }
                Ok((n, from)) => {
                    info.stats.record_read(n, ns_since(&info));
                    let _ = guarded_call(&info, name, "datagram_received", || {
                        protocol
                            .borrow_mut()
                            .datagram_received(transport, &buf[..n], from)
                    });
                    put_read_buf(buf);
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    put_read_buf(buf);
                    break;
                }
                Err(err) => {
                    // ICMP errors from an earlier send surface here; they are not fatal.
                    put_read_buf(buf);
                    tracing::debug!(%err, "UDP receive error");
                }
            }
        }
    }
}
