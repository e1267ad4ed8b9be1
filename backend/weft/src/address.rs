//! Addresses of both ends of a connection.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A transport address: `IPv4Address`/`IPv6Address`/`UNIXAddress` in Twisted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// An IP address and port (TCP, UDP, TLS).
    Ip(SocketAddr),
    /// A Unix socket path; `None` for an unnamed socket.
    Unix(Option<PathBuf>),
    /// An in-memory transport in tests.
    Memory(String),
}

impl Address {
    /// The socket address, for IP transports.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Ip(addr) => Some(*addr),
            _ => None,
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Self {
        Self::Ip(addr)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(addr) => addr.fmt(f),
            Self::Unix(Some(path)) => write!(f, "unix:{}", path.display()),
            Self::Unix(None) => f.write_str("unix:(unnamed)"),
            Self::Memory(name) => write!(f, "memory:{name}"),
        }
    }
}
