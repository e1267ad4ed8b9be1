//! Listening on one address from several reactors: each reactor of a
//! [`ReactorPool`](crate::reactor::ReactorPool) binds its own socket with `SO_REUSEPORT`,
//! so the kernel spreads connections and datagrams over them and no socket is shared
//! between threads.
//!
//! An endpoint asking for port 0 gets the port the first reactor was given, so every
//! reactor listens on the same address. A unix socket cannot be bound twice: the reactors
//! after the first accept on a duplicate of the first one's descriptor.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::ports::SocketKey;

/// What the reactors of one pool bound, so the next binds the same.
#[derive(Debug, Default)]
pub(crate) struct PortGroup {
    state: Mutex<GroupState>,
}

#[derive(Debug, Default)]
struct GroupState {
    /// The address each (udp?, address asked for) was bound at by the first reactor.
    bound: HashMap<(bool, SocketAddr), SocketAddr>,
    /// The first reactor's unix listeners, by path, with the socket file each was bound at.
    unix: HashMap<PathBuf, (SocketKey, UnixListener)>,
    /// The (udp?, address) pairs a reactor of the pool has bound.
    claimed: std::collections::HashSet<(bool, SocketAddr)>,
}

impl PortGroup {
    fn lock(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The address to bind for `asked`: the one an earlier reactor got for it, if any.
    pub(crate) fn resolve(&self, udp: bool, asked: SocketAddr) -> SocketAddr {
        if asked.port() != 0 {
            return asked;
        }
        self.lock()
            .bound
            .get(&(udp, asked))
            .copied()
            .unwrap_or(asked)
    }

    /// Records that `asked` was bound at `local`.
    pub(crate) fn record(&self, udp: bool, asked: SocketAddr, local: SocketAddr) {
        if asked.port() == 0 {
            self.lock().bound.entry((udp, asked)).or_insert(local);
        }
    }

    /// Binds the address `asked` for one reactor with `bind` (a socket with
    /// `SO_REUSEPORT`). The first of the pool to bind an address first makes sure no other
    /// process holds it (`probe`: a bind without the flag, let go at once), or
    /// `SO_REUSEPORT` would share the port with that process, splitting its traffic,
    /// without a word. Port 0 asks for a free port: nothing to probe.
    pub(crate) fn bind_shared<T>(
        &self,
        udp: bool,
        asked: SocketAddr,
        probe: impl FnOnce() -> io::Result<()>,
        bind: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        let mut state = self.lock();
        if asked.port() != 0 && !state.claimed.contains(&(udp, asked)) {
            probe()?;
        }
        let bound = bind()?;
        state.claimed.insert((udp, asked));
        Ok(bound)
    }

    /// A duplicate of the listener an earlier reactor bound at `path`, if `path` still
    /// leads to the file it was bound at (a listener whose file was removed, or replaced,
    /// is forgotten: nobody can reach it).
    pub(crate) fn unix(&self, path: &Path) -> Option<io::Result<UnixListener>> {
        let mut state = self.lock();
        let (key, listener) = state.unix.get(path)?;
        if SocketKey::of_socket_file(path).as_ref() != Some(key) {
            state.unix.remove(path);
            return None;
        }
        Some(listener.try_clone())
    }

    /// Keeps a duplicate of `listener`, just bound at `path`, for the reactors after this
    /// one.
    pub(crate) fn record_unix(&self, path: &Path, listener: &UnixListener) -> io::Result<()> {
        let key = SocketKey::of_socket_file(path).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "the socket file went as it was bound",
            )
        })?;
        let copy = listener.try_clone()?;
        self.lock().unix.insert(path.to_owned(), (key, copy));
        Ok(())
    }

    /// Forgets the listener bound at `path` to the socket file `key`: its file is gone.
    pub(crate) fn forget_unix(&self, path: &Path, key: &SocketKey) {
        let mut state = self.lock();
        if state.unix.get(path).is_some_and(|(bound, _)| bound == key) {
            state.unix.remove(path);
        }
    }
}

/// This thread's port group, when its reactor is one of several.
pub(crate) fn current() -> Option<Arc<PortGroup>> {
    crate::context::with(|cx| cx.port_group.borrow().clone())
}

/// Makes `group` this thread's (the pool calls it before the thread's reactor exists).
pub(crate) fn install(group: Option<Arc<PortGroup>>) {
    crate::context::with(|cx| *cx.port_group.borrow_mut() = group);
}

/// Binds a UDP socket on `addr` as the sockets of several reactors sharing a port are
/// bound (IPv6-only on an IPv6 address), but without `SO_REUSEPORT`, and lets it go:
/// whether another process holds the port.
pub fn probe_udp(addr: SocketAddr) -> io::Result<()> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        None,
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())
}

/// A UDP socket on `addr`, with `SO_REUSEPORT` when `reuse_port`.
pub(crate) fn bind_udp(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::UdpSocket> {
    if !reuse_port {
        return std::net::UdpSocket::bind(addr);
    }
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        None,
    )?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_resolves_to_the_first_reactors_port() {
        let group = PortGroup::default();
        let asked: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let got: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        assert_eq!(group.resolve(false, asked), asked);
        group.record(false, asked, got);
        assert_eq!(group.resolve(false, asked), got);
        // UDP and TCP ports are separate.
        assert_eq!(group.resolve(true, asked), asked);
        let fixed: SocketAddr = "127.0.0.1:53".parse().unwrap();
        assert_eq!(group.resolve(false, fixed), fixed);
    }
}
