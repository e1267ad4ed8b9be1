//! What `run` would refuse once it binds, connects or opens, found before anything binds:
//! listeners whose addresses overlap, addresses this host does not have, unix sockets with
//! no directory to live in, TLS files that do not load (through the functions listening
//! and connecting use), and links to files that could not be made where they lead.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use weft::net::FilesDigest;

use weft::endpoint::{ClientEndpoint, ServerEndpoint};

/// What one listener takes from the system.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Socket {
    /// A TCP port on an address (`tcp:` and `ssl:`).
    Stream(SocketAddr),
    /// A UDP port on an address.
    Datagram(SocketAddr),
    /// A socket file.
    Unix(PathBuf),
}

/// The listeners claimed so far, each with its endpoint and its owner (`dashboard.listen`,
/// `service[2] (web)`).
#[derive(Debug, Default)]
pub(crate) struct Listeners {
    taken: Vec<(Socket, String, String)>,
}

impl Listeners {
    /// Claims `endpoint` for `owner`; the error says which earlier listener it overlaps.
    pub(crate) fn claim(
        &mut self,
        endpoint: &str,
        parsed: &ServerEndpoint,
        owner: String,
    ) -> Result<(), String> {
        let socket = match parsed {
            ServerEndpoint::Tcp { addr, .. } | ServerEndpoint::Ssl { addr, .. } => {
                Socket::Stream(*addr)
            }
            ServerEndpoint::Udp { addr } => Socket::Datagram(*addr),
            ServerEndpoint::Unix { path, .. } => Socket::Unix(path.clone()),
            _ => return Ok(()),
        };
        let dual_stack_udp = udp_v6_wildcard_takes_ipv4();
        if let Some((taken, other, other_owner)) = self
            .taken
            .iter()
            .find(|(taken, ..)| overlap(taken, &socket, dual_stack_udp))
        {
            // Name the narrower address: the one both take.
            let on = |a: &SocketAddr| match taken {
                Socket::Stream(t) | Socket::Datagram(t) if a.ip().is_unspecified() => t.ip(),
                _ => a.ip(),
            };
            let what = match &socket {
                Socket::Stream(a) => format!("the same TCP port {} on {}", a.port(), on(a)),
                Socket::Datagram(a) => format!("the same UDP port {} on {}", a.port(), on(a)),
                Socket::Unix(p) => format!("the same socket file {}", p.display()),
            };
            return Err(format!(
                "{endpoint:?} overlaps {other:?} of {other_owner}: both take {what}, so one \
                 could not listen; give them different ports, interfaces or paths"
            ));
        }
        self.taken.push((socket, endpoint.to_owned(), owner));
        Ok(())
    }

    /// The listener claimed (its endpoint and owner) that `parsed` overlaps at another
    /// address of the same port: `tcp:53` (`0.0.0.0`) for `127.0.0.1:53`, or the other
    /// way. Neither can be bound while the other is.
    pub(crate) fn elsewhere_on_the_port(&self, parsed: &ServerEndpoint) -> Option<(&str, &str)> {
        let socket = match parsed {
            ServerEndpoint::Tcp { addr, .. } | ServerEndpoint::Ssl { addr, .. } => {
                Socket::Stream(*addr)
            }
            ServerEndpoint::Udp { addr } => Socket::Datagram(*addr),
            _ => return None,
        };
        let dual_stack_udp = udp_v6_wildcard_takes_ipv4();
        self.taken
            .iter()
            .find(|(taken, ..)| *taken != socket && overlap(taken, &socket, dual_stack_udp))
            .map(|(_, endpoint, owner)| (endpoint.as_str(), owner.as_str()))
    }
}

/// Whether two listeners cannot both be bound: the same transport and port (port 0 is
/// any free port: never a clash) on addresses one of which includes the other. TCP on
/// IPv6 is bound IPv6-only; UDP on `::` takes IPv4 too unless the system says otherwise.
fn overlap(a: &Socket, b: &Socket, dual_stack_udp: bool) -> bool {
    match (a, b) {
        (Socket::Stream(a), Socket::Stream(b)) => {
            a.port() != 0 && a.port() == b.port() && addresses_overlap(a.ip(), b.ip(), false)
        }
        (Socket::Datagram(a), Socket::Datagram(b)) => {
            a.port() != 0
                && a.port() == b.port()
                && addresses_overlap(a.ip(), b.ip(), dual_stack_udp)
        }
        // One file however it is spelled: through `..`, a symlinked directory or a link.
        (Socket::Unix(a), Socket::Unix(b)) => a == b || through_symlinks(a) == through_symlinks(b),
        _ => false,
    }
}

pub(super) fn addresses_overlap(a: IpAddr, b: IpAddr, dual_stack: bool) -> bool {
    match (a, b) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
            a == b || a.is_unspecified() || b.is_unspecified()
        }
        (IpAddr::V6(v6), IpAddr::V4(v4)) | (IpAddr::V4(v4), IpAddr::V6(v6)) => {
            dual_stack
                && (v6.is_unspecified()
                    || v6
                        .to_ipv4_mapped()
                        .is_some_and(|m| v4.is_unspecified() || m == v4))
        }
    }
}

/// Whether a UDP socket bound to `::` also receives IPv4 (Linux's
/// `net.ipv6.bindv6only`, 0 by default): then it clashes with IPv4 listeners on its port.
fn udp_v6_wildcard_takes_ipv4() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only").map_or(true, |v| v.trim() != "1")
}

/// What would stop `endpoint` from listening, short of the port being in use: an
/// `interface=` this host has no address for; a unix socket's missing or unwritable
/// directory or a file in its place; an `ssl:` endpoint's key or certificate that does not
/// load (loaded as listening loads them).
pub(crate) fn check_server(endpoint: &str, parsed: &ServerEndpoint) -> Result<(), String> {
    server_files(endpoint, parsed).map(drop)
}

/// [`check_server`], saying what the files an `ssl:` endpoint loads held (the default
/// digest for other endpoints).
pub(crate) fn server_files(endpoint: &str, parsed: &ServerEndpoint) -> Result<FilesDigest, String> {
    let none = |checked: Result<(), String>| checked.map(|()| FilesDigest::default());
    match parsed {
        ServerEndpoint::Tcp { addr, .. } => {
            none(on_this_host(endpoint, *addr).and_then(|()| one_peer(endpoint, *addr)))
        }
        // A UDP port on a broadcast address hears broadcasts: a use of its own.
        ServerEndpoint::Udp { addr } => none(on_this_host(endpoint, *addr)),
        ServerEndpoint::Unix { path, .. } => {
            let dir = directory_of(path);
            if !dir.is_dir() {
                return Err(format!(
                    "{endpoint:?}: the directory {} does not exist (relative paths start at the \
                     working directory)",
                    dir.display()
                ));
            }
            if let Err(e) = can_make_in_unless(dir, &[path]) {
                return Err(format!(
                    "{endpoint:?}: cannot make the socket in {} ({e})",
                    dir.display(),
                ));
            }
            use std::os::unix::fs::FileTypeExt;
            match std::fs::symlink_metadata(path) {
                Ok(meta) if !meta.file_type().is_socket() => Err(format!(
                    "{endpoint:?}: {} exists and is not a socket; listening would fail",
                    path.display()
                )),
                _ => Ok(FilesDigest::default()),
            }
        }
        ServerEndpoint::Ssl {
            addr,
            private_key,
            cert,
            ..
        } => on_this_host(endpoint, *addr)
            .and_then(|()| one_peer(endpoint, *addr))
            .and_then(|()| {
                weft::net::check_server_files(cert, private_key).map_err(|e| {
                    let option = match &e {
                        weft::net::TlsError::Pem { path, .. }
                            if path == private_key && path == cert =>
                        {
                            "privateKey (also its certKey)"
                        }
                        weft::net::TlsError::Pem { path, .. } if path == private_key => {
                            "privateKey"
                        }
                        weft::net::TlsError::Pem { .. } => "certKey",
                        _ => "privateKey and certKey",
                    };
                    format!("{endpoint:?}: cannot load its {option}: {e}")
                })
            }),
        _ => Ok(FilesDigest::default()),
    }
}

/// Refuses a stream listener on a subnet's broadcast address (`192.168.1.255`, the
/// broadcast address itself the endpoint parser refuses): the system lets it bind, and no
/// TCP connection ever reaches it.
fn one_peer(endpoint: &str, addr: SocketAddr) -> Result<(), String> {
    match is_broadcast(addr.ip()) {
        true => Err(format!(
            "{endpoint:?}: {} is a broadcast address of this host's: a listener there is \
             reached by no connection; listen on the interface's own address",
            addr.ip()
        )),
        false => Ok(()),
    }
}

/// Whether the system routes to `ip` as a broadcast address: a UDP socket may connect to
/// one only with `SO_BROADCAST` set, so connecting one without it fails with EACCES (and
/// sends nothing).
fn is_broadcast(ip: IpAddr) -> bool {
    let IpAddr::V4(v4) = ip.to_canonical() else {
        return false;
    };
    std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0)).is_ok_and(|socket| {
        socket
            .connect((v4, 9))
            .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
    })
}

/// Whether a socket can be bound to `addr`'s address: an address no interface of this host
/// has is refused by `bind` ("Cannot assign requested address"), as is IPv6 on a host
/// without it. Bound on port 0 (a free port, released at once), so a listener already
/// running on the port, this gateway's own on a reload, is no matter.
fn on_this_host(endpoint: &str, addr: SocketAddr) -> Result<(), String> {
    if addr.ip().is_unspecified() {
        return Ok(());
    }
    bindable(addr.ip()).map_err(|e| {
        format!(
            "{endpoint:?}: cannot listen on {}: {e}; name an address of one of this host's \
             interfaces",
            addr.ip()
        )
    })
}

/// Whether a socket can be bound to `ip` (on any free port, let go at once): it is an
/// address of one of this host's interfaces, or the unspecified address.
pub(crate) fn bindable(ip: IpAddr) -> std::io::Result<()> {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).map(drop)
}

/// What would make every connection to `endpoint` fail at once beyond what its parser
/// refuses (port 0, a multicast or broadcast host): a `bindAddress` that is not this
/// host's, trusted roots (`caCerts=`) that do not load, loaded as connecting loads them.
pub(crate) fn check_client(endpoint: &str, parsed: &ClientEndpoint) -> Result<(), String> {
    if let ClientEndpoint::Tcp {
        bind_address: Some(local),
        ..
    }
    | ClientEndpoint::Ssl {
        bind_address: Some(local),
        ..
    } = parsed
        && let Err(e) = bindable(local.ip())
    {
        return Err(format!(
            "{endpoint:?}: cannot connect from bindAddress {}: {e}; every connection would \
             fail; name an address of one of this host's interfaces",
            local.ip()
        ));
    }
    match parsed {
        ClientEndpoint::Ssl {
            ca_certs: Some(ca_certs),
            ..
        } => weft::net::check_ca_certs(ca_certs)
            .map(drop)
            .map_err(|e| format!("{endpoint:?}: cannot load its caCerts: {e}")),
        _ => Ok(()),
    }
}

/// `path` [`resolved`], and where it is a symlink, the path it leads to, resolved in
/// turn, even when that file does not exist yet (the history file before its first
/// start): what a write to `path` would write.
pub(crate) fn through_symlinks(path: &Path) -> PathBuf {
    let mut path = resolved(path);
    // As many links as the kernel follows.
    for _ in 0..40 {
        let Ok(target) = std::fs::read_link(&path) else {
            break;
        };
        let dir = path.parent().map(PathBuf::from).unwrap_or_default();
        path = resolved(&dir.join(target));
    }
    path
}

/// `path` made absolute, its directory's symlinks resolved, for comparing paths of files
/// that may not exist yet.
pub(crate) fn resolved(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    match (absolute.parent(), absolute.file_name()) {
        (Some(dir), Some(name)) => resolved_dir(dir).join(name),
        // Ending in `..` (or the root): no name to keep apart, the whole path resolved
        // (`public/..` is the directory holding `public`, not a path of its own).
        _ => resolved_dir(&absolute),
    }
}

/// The absolute directory `dir`, resolved as far as it exists and the rest applied as
/// written: a directory made later (`create_dir_all`) is a real one, so `new/../public`
/// is `public` whether `new` exists yet or not.
fn resolved_dir(dir: &Path) -> PathBuf {
    for existing in dir.ancestors() {
        let Ok(mut out) = existing.canonicalize() else {
            continue;
        };
        for part in dir
            .strip_prefix(existing)
            .unwrap_or(Path::new(""))
            .components()
        {
            match part {
                std::path::Component::ParentDir => {
                    out.pop();
                }
                std::path::Component::Normal(name) => out.push(name),
                _ => {}
            }
        }
        return out;
    }
    dir.to_owned()
}

/// Why a file made by opening `path` could not be made, where `path` is a symlink to a file
/// that does not exist: opening it creates the file the link leads to (`what`, such as
/// "the log file"), in a directory that must exist and take it. A link to a volume not yet
/// mounted is the case: `run` would fail on it where a check of `path`'s own directory
/// passes.
pub(crate) fn link_target(path: &Path, what: &str) -> Result<(), String> {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link || path.exists() {
        return Ok(());
    }
    let target = through_symlinks(path);
    if std::fs::symlink_metadata(&target).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(format!(
            "{} is a link that leads round a loop of links (or through more than the system \
             follows), so {what} could not be opened",
            path.display()
        ));
    }
    let dir = directory_of(&target);
    if !dir.is_dir() {
        return Err(format!(
            "{} is a link to {}, whose directory {} does not exist ({what} is made through \
             the link, its directory is not)",
            path.display(),
            target.display(),
            dir.display()
        ));
    }
    can_make_in(dir).map_err(|e| {
        format!(
            "{} is a link to {}, and {} cannot be written in ({e})",
            path.display(),
            target.display(),
            dir.display(),
        )
    })
}

/// Whether a file can be made in `dir`, found by making one (unnamed where the system
/// allows, and gone at once): the permission bits say too little, as root passes them
/// where `/proc`, `/sys` or a read-only mount still refuse.
pub(crate) fn can_make_in(dir: &Path) -> std::io::Result<()> {
    tempfile::tempfile_in(dir).map(drop)
}

/// Like [`can_make_in`] while any of `files` (to be made in `dir`) is missing; once they
/// are all there (a running gateway's, checked again by a reload), only the permission
/// bits are asked, and nothing is written: a reload is not refused for a full disk.
pub(crate) fn can_make_in_unless(dir: &Path, files: &[&Path]) -> std::io::Result<()> {
    if files.iter().all(|f| std::fs::symlink_metadata(f).is_ok()) {
        rustix::fs::access(dir, rustix::fs::Access::WRITE_OK).map_err(Into::into)
    } else {
        can_make_in(dir)
    }
}

/// The directory a file named by `path` lives in (`.` for a bare name).
pub(crate) fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clash(a: &str, b: &str) -> bool {
        let mut taken = Listeners::default();
        taken.claim(a, &a.parse().unwrap(), "first".into()).unwrap();
        taken
            .claim(b, &b.parse().unwrap(), "second".into())
            .is_err()
    }

    #[test]
    fn listeners_overlap_as_bind_says() {
        // Refused by bind on Linux while the first listens.
        assert!(clash("tcp:8000", "tcp:8000:interface=127.0.0.1"));
        assert!(clash("tcp:8000:interface=127.0.0.1", "tcp:8000"));
        assert!(clash(
            "tcp:8000:interface=127.0.0.1",
            "ssl:8000:interface=127.0.0.1:privateKey=k"
        ));
        assert!(clash(r"tcp6:8000", r"tcp6:8000:interface=\:\:1"));
        assert!(clash("udp:53", "udp:53:interface=127.0.0.1"));
        assert!(clash("unix:/run/a.sock", "unix:/run/a.sock:mode=600"));
        // Bound side by side.
        assert!(!clash("tcp:8000", "udp:8000"));
        assert!(!clash(
            "tcp:8000:interface=127.0.0.1",
            "tcp:8000:interface=127.0.0.2"
        ));
        assert!(!clash("tcp:8000", "tcp6:8000"), "TCP on IPv6 is IPv6-only");
        assert!(!clash(
            r"udp:53:interface=\:\:1",
            "udp:53:interface=127.0.0.1"
        ));
        assert!(!clash("tcp:0", "tcp:0"), "port 0 is any free port");
        assert!(!clash("unix:/run/a.sock", "unix:/run/b.sock"));
    }

    #[test]
    fn a_socket_file_spelled_two_ways_is_one_listener() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink("a.sock", dir.path().join("b.sock")).unwrap();
        let cwd = std::env::current_dir().unwrap();
        let here = cwd.join("c.sock").display().to_string();
        for (a, b) in [
            (
                format!("unix:{d}/a.sock"),
                format!(
                    "unix:{d}/../{}/a.sock",
                    dir.path().file_name().unwrap().to_string_lossy()
                ),
            ),
            (format!("unix:{d}/a.sock"), format!("unix:{d}/link/a.sock")),
            (format!("unix:{d}/a.sock"), format!("unix:{d}/b.sock")),
            ("unix:c.sock".to_owned(), format!("unix:{here}")),
        ] {
            assert!(clash(&a, &b), "{a} {b}");
        }
        assert!(!clash(
            &format!("unix:{d}/a.sock"),
            &format!("unix:{d}/link/c.sock")
        ));
    }

    #[test]
    fn an_address_no_interface_of_this_host_has_is_refused() {
        let check = |e: &str| check_server(e, &e.parse().unwrap());
        for ok in [
            "tcp:0",
            "tcp:0:interface=127.0.0.1",
            "udp:0:interface=127.0.0.1",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        // Loopback's broadcast address: bound, and reached by no connection.
        for broadcast in [
            "tcp:8000:interface=127.255.255.255",
            "ssl:8443:interface=127.255.255.255:privateKey=k",
        ] {
            let e = check(broadcast).unwrap_err();
            assert!(e.contains("is a broadcast address"), "{e}");
        }
        assert_eq!(check("udp:0:interface=127.255.255.255"), Ok(()));
        // A documentation address (RFC 5737): on no interface.
        for not_here in ["tcp:8000:interface=192.0.2.1", "udp:53:interface=192.0.2.1"] {
            let e = check(not_here).unwrap_err();
            assert!(
                e.starts_with(&format!("{not_here:?}: cannot listen on 192.0.2.1: ")),
                "{e}"
            );
        }
    }

    #[test]
    fn udp_on_the_ipv6_wildcard_takes_ipv4_too_when_the_system_says_so() {
        let v6: SocketAddr = "[::]:53".parse().unwrap();
        let v4: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:53".parse().unwrap();
        let (a, b, m) = (
            Socket::Datagram(v6),
            Socket::Datagram(v4),
            Socket::Datagram(mapped),
        );
        assert!(overlap(&a, &b, true));
        assert!(!overlap(&a, &b, false));
        assert!(overlap(&m, &b, true));
        assert!(!overlap(&Socket::Stream(v6), &Socket::Stream(v4), true));
    }

    #[test]
    fn the_message_names_both_endpoints_and_the_first_owner() {
        let mut taken = Listeners::default();
        let first = "tcp:8000";
        taken
            .claim(first, &first.parse().unwrap(), "service[0] (echo)".into())
            .unwrap();
        let second = "tcp:8000:interface=127.0.0.1";
        let e = taken
            .claim(second, &second.parse().unwrap(), "service[1] (web)".into())
            .unwrap_err();
        assert!(
            e.starts_with(
                "\"tcp:8000:interface=127.0.0.1\" overlaps \"tcp:8000\" of service[0] (echo): \
                 both take the same TCP port 8000 on 127.0.0.1"
            ),
            "{e}"
        );
    }
}
