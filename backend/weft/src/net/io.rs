//! The kinds of established stream connection, as one type: what connecting hands back
//! before the caller knows the kind, and what an [`InspectedStream`](super::InspectedStream)
//! wraps.

use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::{client, server};

/// An established connection of any stream kind.
pub(super) enum Io {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// Boxed: a rustls session is large, and plain connections should not pay for it.
    TlsServer(Box<server::TlsStream<TcpStream>>),
    /// Boxed, as above.
    TlsClient(Box<client::TlsStream<TcpStream>>),
}

/// Runs `$e` with `$s` bound to the stream inside an [`Io`], whatever its kind.
macro_rules! with_io {
    ($io:expr, $s:ident => $e:expr) => {
        match $io {
            Io::Tcp($s) => $e,
            Io::Unix($s) => $e,
            Io::TlsServer($s) => $e,
            Io::TlsClient($s) => $e,
        }
    };
}
pub(super) use with_io;

impl From<TcpStream> for Io {
    fn from(s: TcpStream) -> Self {
        Self::Tcp(s)
    }
}

impl From<UnixStream> for Io {
    fn from(s: UnixStream) -> Self {
        Self::Unix(s)
    }
}

impl From<server::TlsStream<TcpStream>> for Io {
    fn from(s: server::TlsStream<TcpStream>) -> Self {
        Self::TlsServer(Box::new(s))
    }
}

impl From<client::TlsStream<TcpStream>> for Io {
    fn from(s: client::TlsStream<TcpStream>) -> Self {
        Self::TlsClient(Box::new(s))
    }
}
