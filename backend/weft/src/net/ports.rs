//! The reactor's listening ports, and handing a port's socket to the listener that
//! replaces it.
//!
//! Every stream listener and UDP port is entered here with the socket it accepts or
//! receives on, so [`Reactor::listening_ports`] lists them and a [`Handover`] can give a
//! socket to a new listener. A program that reconfigures a service opens a handover
//! offering the service's ports, listens again the usual way (`listen_with`,
//! `listen_stream_with`, `listen_udp`), and commits:
//!
//! - a listen call whose endpoint asks for the address an offered port is bound to (the
//!   same IP and port, or the same socket file, however its path is spelled; port 0 asks
//!   for a fresh port and never matches) takes that port's socket instead of binding, so
//!   the socket is never closed: connections the kernel completed before the switch wait
//!   in its accept queue and are accepted by the new listener, never reset. A socket file
//!   removed or replaced outside weft matches nothing: its old socket cannot be reached.
//!   At the commit, the new listener applies its own backlog and a unix socket's mode to
//!   the socket it takes (an endpoint that drops the `mode=` the old one set gets the mode
//!   a fresh socket would have); a rollback leaves both as they were. A port that stops
//!   removes its socket file only if the path still leads to the file it bound.
//! - nothing made during a handover accepts or receives before the commit; then, in one
//!   step on the reactor thread, the new listeners start and the offered ports whose
//!   sockets were taken stop. Connections already accepted keep the protocol, handler and
//!   options they were accepted with: they finish under the old settings.
//! - dropping a handover without committing puts everything back: the new listeners never
//!   start, sockets bound for them close, and the offered ports go on as before. Binding
//!   the new endpoints is what can fail (an address in use, a TLS file), and it all
//!   happens before the commit, so a failure leaves the old listeners serving.
//!
//! The commit hands back the offered ports nobody took; the caller decides whether they
//! stop (an endpoint that moved) or go on.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::listen::ListeningPort;
use crate::address::Address;
use crate::endpoint::ServerEndpoint;
use crate::observe::ListenerInfo;
use crate::reactor::Reactor;

/// A stream listener's socket, registered with the reactor's runtime.
pub(crate) enum StreamSocket {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

/// The socket a port holds; shared with the listener that takes it over.
#[derive(Clone)]
pub(crate) enum PortSocket {
    Stream(Rc<StreamSocket>),
    Datagram(Rc<tokio::net::UdpSocket>),
}

/// The socket an endpoint asks for: two endpoints asking for the same one can share it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SocketKey {
    /// A TCP port on an address (`tcp:` and `ssl:`).
    Stream(SocketAddr),
    /// A socket file (`unix:`), by the device and inode of the file its path leads to: two
    /// spellings of one path (through a symlinked directory, with `..`, relative) are one
    /// socket.
    Unix { dev: u64, ino: u64 },
    /// A UDP port on an address.
    Datagram(SocketAddr),
}

impl SocketKey {
    /// The socket `endpoint` asks for; `None` for port 0, which asks for a fresh one, and
    /// for a socket file that does not exist (yet).
    pub(crate) fn of(endpoint: &ServerEndpoint) -> Option<Self> {
        match endpoint {
            ServerEndpoint::Tcp { addr, .. } | ServerEndpoint::Ssl { addr, .. }
                if addr.port() != 0 =>
            {
                Some(Self::Stream(*addr))
            }
            ServerEndpoint::Udp { addr } if addr.port() != 0 => Some(Self::Datagram(*addr)),
            ServerEndpoint::Unix { path, .. } => Self::of_socket_file(path),
            _ => None,
        }
    }

    /// The socket file `path` leads to now; `None` if there is none.
    pub(crate) fn of_socket_file(path: &std::path::Path) -> Option<Self> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let file = std::fs::metadata(path).ok()?;
        file.file_type().is_socket().then(|| Self::Unix {
            dev: file.dev(),
            ino: file.ino(),
        })
    }

    /// Whether the socket this key was taken from is still the one its address leads to: a
    /// socket file can be removed, or replaced by another, outside weft.
    fn still_at(&self, local: &Address) -> bool {
        match (self, local) {
            (Self::Unix { .. }, Address::Unix(Some(path))) => {
                Self::of_socket_file(path).as_ref() == Some(self)
            }
            (Self::Unix { .. }, _) => false,
            _ => true,
        }
    }
}

struct Entry {
    info: Arc<ListenerInfo>,
    /// The socket's address or file, matched against a handover's listen calls; `None` for
    /// port 0 and for a socket file gone when it was bound, which never match.
    key: Option<SocketKey>,
    /// Kept so a handover can offer it to the listener that replaces this one.
    socket: PortSocket,
    stop: CancellationToken,
    /// Set when a new listener took the socket, so the old port leaves a unix socket's file in
    /// place.
    handed_over: Rc<Cell<bool>>,
}

/// The table of listening ports, and the handover open now, if any.
#[derive(Default)]
pub(crate) struct Ports {
    /// The next port's id; ids are never reused, so a stale id finds nothing.
    next_id: Cell<u64>,
    /// Every listening port by id, for `listening_ports` and for a handover to offer.
    entries: RefCell<BTreeMap<u64, Entry>>,
    /// The handover open now, if any: listen calls consult it before binding.
    handover: RefCell<Option<Rc<HandoverState>>>,
}

struct Offered {
    port: ListeningPort,
    key: Option<SocketKey>,
    socket: PortSocket,
    handed_over: Rc<Cell<bool>>,
    /// Set when a new listener claimed this socket, so no second listener claims it and commit
    /// stops this port.
    taken: bool,
}

struct HandoverState {
    /// The ports being replaced, whose sockets listen calls may claim until commit or rollback.
    offered: RefCell<Vec<Offered>>,
    /// The stop tokens of the listeners made during the handover: a rollback cancels them.
    made: RefCell<Vec<CancellationToken>>,
    /// What the commit does, in the order the listen calls asked: a taken socket's new
    /// backlog and mode, a new listener's start (its factory's start, its events).
    on_commit: RefCell<Vec<Box<dyn FnOnce()>>>,
    /// Cancelled at the commit: the new listeners' signal to start.
    go: CancellationToken,
}

impl Ports {
    /// The socket of an offered port bound to `key`, and the endpoint that port was asked
    /// for, if a handover is open and offers one not taken yet; it is taken from then on.
    pub(crate) fn claim(&self, key: Option<&SocketKey>) -> Option<(PortSocket, String)> {
        let key = key?;
        let state = self.handover.borrow().clone()?;
        let mut offered = state.offered.borrow_mut();
        let port = offered
            .iter_mut()
            .find(|o| !o.taken && o.key.as_ref() == Some(key))?;
        port.taken = true;
        Some((port.socket.clone(), port.port.info().endpoint.clone()))
    }

    /// Runs `apply` at the commit of the handover open now, before the new listeners start;
    /// a rollback drops it. With no handover open, at once.
    pub(crate) fn at_commit(&self, apply: impl FnOnce() + 'static) {
        // Not borrowed while `apply` runs: it may open a handover itself.
        let open = self.handover.borrow().clone();
        match open {
            Some(state) => state.on_commit.borrow_mut().push(Box::new(apply)),
            None => apply(),
        }
    }

    /// Enters a new port. It starts (runs `start`, then its loop may go) at once, or at
    /// the commit of the handover open now.
    pub(crate) fn open(
        &self,
        reactor: &Reactor,
        port: PortOpening,
        start: impl FnOnce() + 'static,
    ) -> Opened {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let handed_over = Rc::new(Cell::new(false));
        self.entries.borrow_mut().insert(
            id,
            Entry {
                info: port.info.clone(),
                key: port.key.clone(),
                socket: port.socket,
                stop: port.stop.clone(),
                handed_over: handed_over.clone(),
            },
        );
        // Not borrowed while `start` runs (a factory's start may open a handover).
        let open = self.handover.borrow().clone();
        let gate = match open {
            Some(state) => {
                state.made.borrow_mut().push(port.stop);
                state.on_commit.borrow_mut().push(Box::new(start));
                Some(state.go.clone())
            }
            None => {
                start();
                None
            }
        };
        Opened {
            reactor: reactor.clone(),
            id,
            gate,
            handed_over,
            fresh: port.fresh,
            local: port.info.local.clone(),
            key: port.key,
        }
    }

    fn list(&self) -> Vec<ListeningPort> {
        self.entries
            .borrow()
            .iter()
            .map(|(id, e)| ListeningPort::new(e.info.clone(), e.stop.clone(), *id))
            .collect()
    }
}

/// What [`Ports::open`] enters.
pub(crate) struct PortOpening {
    pub(crate) info: Arc<ListenerInfo>,
    pub(crate) key: Option<SocketKey>,
    pub(crate) socket: PortSocket,
    pub(crate) stop: CancellationToken,
    /// Whether the port bound its socket itself (rather than taking it over).
    pub(crate) fresh: bool,
}

/// A port's place in the table, held by its loop.
pub(crate) struct Opened {
    reactor: Reactor,
    /// Its key in the table, removed by `close`.
    id: u64,
    /// Cancelled at commit; a port made during a handover waits on it before accepting. `None`:
    /// start at once.
    gate: Option<CancellationToken>,
    /// Shared with the table entry; set when a replacing listener took this port's socket.
    handed_over: Rc<Cell<bool>>,
    /// Whether the port bound its socket itself; one that took a socket and never started must not
    /// remove a unix socket's file.
    fresh: bool,
    /// The bound address, whose unix socket file `close` removes.
    local: Address,
    /// The socket file's key when the port bound it: `close` removes only that file, not
    /// one that replaced it.
    key: Option<SocketKey>,
}

impl Opened {
    /// Its place in the table.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Waits until the port may start; `false` if it was stopped first (a handover rolled
    /// back): it never started and reports nothing.
    pub(crate) async fn started(&self, stop: &CancellationToken) -> bool {
        let Some(gate) = &self.gate else {
            return true;
        };
        tokio::select! {
            biased;
            () = stop.cancelled() => false,
            () = gate.cancelled() => true,
        }
    }

    /// The port stopped: it leaves the table, and a unix socket's file goes with it unless
    /// the socket lives on in another listener (it was handed over, or this one never
    /// started on a socket it took).
    pub(crate) fn close(self, started: bool) {
        self.reactor
            .inner
            .ports
            .entries
            .borrow_mut()
            .remove(&self.id);
        let shared = self.handed_over.get() || (!started && !self.fresh);
        if let (Address::Unix(Some(path)), false) = (&self.local, shared) {
            // Only the file this port bound: one removed and bound again outside weft, or
            // by the listener a reload made, is not this port's to remove. (A file swapped
            // in between this check and the removal would still go: a narrow window,
            // which only a process racing weft for the path at that instant can hit.)
            if let Some(key) = &self.key {
                if key.still_at(&self.local) {
                    let _ = std::fs::remove_file(path);
                }
                // The reactors' shared listener goes either way: one whose file is gone
                // can be reached by no one, and kept it would listen on for ever.
                if let Some(group) = super::group::current() {
                    group.forget_unix(path, key);
                }
            }
        }
    }
}

/// A set of ports being replaced, opened by [`Reactor::handover`].
///
/// While it is open, a listen call whose endpoint asks for the address an offered port is
/// bound to (the same IP and port, or the same socket file; port 0 never matches) takes
/// that port's socket instead of binding, so connections queued in the kernel during the
/// switch are accepted by the new listener, never reset; and nothing made meanwhile accepts
/// or receives. [`commit`](Self::commit) starts the new listeners and stops the offered
/// ports whose sockets were taken, in one step; connections already accepted keep the
/// settings they were accepted with. Dropping it rolls back: the new listeners never start,
/// sockets bound for them close, and the offered ports go on as before.
#[must_use = "dropping a handover rolls it back"]
pub struct Handover {
    reactor: Reactor,
    /// `None` once committed; dropping it while `Some` rolls the handover back.
    state: Option<Rc<HandoverState>>,
}

impl std::fmt::Debug for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let offered = self.state.as_ref().map_or(0, |s| s.offered.borrow().len());
        f.debug_struct("Handover")
            .field("offered", &offered)
            .finish_non_exhaustive()
    }
}

impl Handover {
    /// Starts the listeners made since the handover opened and stops the offered ports
    /// whose sockets they took, in one step; returns the offered ports nobody took, still
    /// listening.
    pub fn commit(mut self) -> Vec<ListeningPort> {
        let Some(state) = self.close() else {
            return Vec::new();
        };
        let starts = std::mem::take(&mut *state.on_commit.borrow_mut());
        for start in starts {
            start();
        }
        state.go.cancel();
        let mut kept = Vec::new();
        for offered in state.offered.take() {
            if offered.taken {
                offered.handed_over.set(true);
                offered.port.stop_listening();
            } else {
                kept.push(offered.port);
            }
        }
        kept
    }

    fn close(&mut self) -> Option<Rc<HandoverState>> {
        let state = self.state.take()?;
        self.reactor.inner.ports.handover.borrow_mut().take();
        Some(state)
    }
}

impl Drop for Handover {
    fn drop(&mut self) {
        if let Some(state) = self.close() {
            for stop in state.made.take() {
                stop.cancel();
            }
        }
    }
}

impl Reactor {
    /// Every listening port (stream listeners and UDP ports), oldest first.
    pub fn listening_ports(&self) -> Vec<ListeningPort> {
        self.inner.ports.list()
    }

    /// Runs `apply` when the [`Handover`] open on this reactor is committed, and never if
    /// it is dropped (a reload that fails); at once when none is open. A service started
    /// during a handover hands what it takes over from its predecessor this way, so a
    /// failed reload leaves the predecessor as it was.
    pub fn at_commit(&self, apply: impl FnOnce() + 'static) {
        self.inner.ports.at_commit(apply);
    }

    /// Opens a [`Handover`] of `ports` (those still listening; others are ignored): until
    /// it is committed or dropped, a listen call for the address one of them is bound to
    /// takes its socket, and nothing made meanwhile starts.
    ///
    /// # Panics
    /// When another handover is open on this reactor.
    pub fn handover(&self, ports: impl IntoIterator<Item = ListeningPort>) -> Handover {
        let ports_table = &self.inner.ports;
        assert!(
            ports_table.handover.borrow().is_none(),
            "a handover is already open on this reactor"
        );
        let entries = ports_table.entries.borrow();
        let offered = ports
            .into_iter()
            .filter_map(|port| {
                let entry = entries.get(&port.id())?;
                Some(Offered {
                    key: (entry.key.clone()).filter(|key| key.still_at(&entry.info.local)),
                    socket: entry.socket.clone(),
                    handed_over: entry.handed_over.clone(),
                    port,
                    taken: false,
                })
            })
            .collect();
        drop(entries);
        let state = Rc::new(HandoverState {
            offered: RefCell::new(offered),
            made: RefCell::default(),
            on_commit: RefCell::default(),
            go: CancellationToken::new(),
        });
        *ports_table.handover.borrow_mut() = Some(state.clone());
        Handover {
            reactor: self.clone(),
            state: Some(state),
        }
    }
}
