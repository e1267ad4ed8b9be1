//! Endpoint strings with Twisted's syntax (`serverFromString` / `clientFromString`).
//!
//! Fields are separated by `:`; a backslash escapes the next character (so `\:` is a
//! literal colon, as in an IPv6 address, and `\=` an equals sign that does not make the
//! field an option). Positional fields come first, then `key=value` options, in any order.
//!
//! | server | client |
//! |---|---|
//! | `tcp:8000:interface=127.0.0.1:backlog=1024` | `tcp:example.org:80:timeout=5` |
//! | `tcp6:8000:interface=\:\:1` | `tcp:example.org:80:bindAddress=192.0.2.7` |
//! | `udp:5353:interface=127.0.0.1` | `unix:/run/app.sock:timeout=2` |
//! | `unix:/run/app.sock:mode=660` | `ssl:example.org:443:caCerts=ca.pem` |
//! | `ssl:8443:privateKey=key.pem:certKey=cert.pem` | |
//!
//! A client's `bindAddress` is an IP address (port 0: any free port) or, with the colon
//! escaped, `IP\:PORT`; the connection leaves from there. Twisted's `lockfile=1` for unix
//! servers is refused rather than ignored: weft takes no lock on a socket path.
//!
//! This file holds the endpoint types and what each kind reads; `fields.rs` splits a
//! string into fields and takes them one by one.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

mod fields;

use fields::Fields;

/// Whether `ip` names many hosts or none a stream reaches: a multicast group or the IPv4
/// broadcast address (IPv4-mapped forms included). No TCP connection goes to or from one;
/// the client endpoint parser, and URLs connected to, refuse them.
pub fn is_many_hosts(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_broadcast() || v4.is_multicast(),
        IpAddr::V6(v6) => v6.is_multicast(),
    }
}

/// The address `host` spells, read as the system's resolver reads a numeric host: an IP
/// address, or one of the older IPv4 forms `inet_aton(3)` takes (`127.1`, `2130706433`,
/// `0177.0.0.1`, `0xe0000001`). `None` for a name.
pub fn host_ip(host: &str) -> Option<IpAddr> {
    match host.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => inet_aton(host).map(IpAddr::V4),
    }
}

/// An IPv4 address in one of the forms `inet_aton(3)` reads: one to four parts, each
/// decimal, octal (a leading `0`) or hexadecimal (`0x`), the last filling the bytes left.
fn inet_aton(text: &str) -> Option<Ipv4Addr> {
    let parts: Vec<u32> = text
        .split('.')
        .map(|part| {
            let (digits, radix) = match part.strip_prefix("0x").or(part.strip_prefix("0X")) {
                Some(hex) => (hex, 16),
                None if part.len() > 1 && part.starts_with('0') => (&part[1..], 8),
                None => (part, 10),
            };
            // Digits of the radix only: `from_str_radix` would take a leading `+` too.
            if digits.is_empty() && radix != 8 || !digits.chars().all(|c| c.is_digit(radix)) {
                return None;
            }
            u32::from_str_radix(if digits.is_empty() { "0" } else { digits }, radix).ok()
        })
        .collect::<Option<_>>()?;
    let (last, leading) = parts.split_last()?;
    if leading.len() > 3 || leading.iter().any(|&p| p > 255) {
        return None;
    }
    let room = 8 * (4 - leading.len() as u32);
    if room < 32 && *last >= 1 << room {
        return None;
    }
    let value = leading
        .iter()
        .enumerate()
        .fold(*last, |n, (i, &p)| n | p << (24 - 8 * i as u32));
    Some(Ipv4Addr::from(value))
}

/// Default listen backlog. Twisted's 50 makes a burst of connections wait a second for
/// every 51 (the SYNs beyond the queue are dropped and retried); the kernel lowers this to
/// `net.core.somaxconn` where that is smaller.
pub const DEFAULT_BACKLOG: u32 = 1024;
/// Default client connect timeout, as in Twisted.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest unix socket path: `sun_path` holds 108 bytes on Linux, the last a NUL.
const MAX_UNIX_PATH: usize = 107;

/// A malformed endpoint string; says which part is wrong and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad endpoint {input:?}: {part:?} {reason}")]
pub struct EndpointError {
    /// The whole string.
    pub input: String,
    /// The offending field.
    pub part: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEndpoint {
    /// `tcp:` or `tcp6:`.
    Tcp {
        /// Interface and port.
        addr: SocketAddr,
        /// Listen backlog.
        backlog: u32,
    },
    /// `udp:`.
    Udp {
        /// Interface and port.
        addr: SocketAddr,
    },
    /// `unix:`.
    Unix {
        /// Socket path.
        path: PathBuf,
        /// File mode for the socket, e.g. `0o660`.
        mode: Option<u32>,
        /// Listen backlog.
        backlog: u32,
    },
    /// `ssl:` (TLS over TCP).
    Ssl {
        /// Interface and port.
        addr: SocketAddr,
        /// Listen backlog.
        backlog: u32,
        /// PEM private key (`privateKey=`).
        private_key: PathBuf,
        /// PEM certificate chain (`certKey=`).
        cert: PathBuf,
    },
}

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEndpoint {
    /// `tcp:HOST:PORT`.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
        /// Give up connecting after this long.
        timeout: Duration,
        /// The local address to connect from (`bindAddress=`); the system picks if `None`.
        bind_address: Option<SocketAddr>,
    },
    /// `unix:PATH`.
    Unix {
        /// Socket path.
        path: PathBuf,
        /// Give up connecting after this long.
        timeout: Duration,
    },
    /// `ssl:HOST:PORT` or `tls:HOST:PORT`.
    Ssl {
        /// Host name (also the TLS server name).
        host: String,
        /// Port.
        port: u16,
        /// Give up connecting after this long.
        timeout: Duration,
        /// The local address to connect from (`bindAddress=`); the system picks if `None`.
        bind_address: Option<SocketAddr>,
        /// PEM file of trusted roots (`caCerts=`); the system's roots when absent.
        ca_certs: Option<PathBuf>,
    },
}

impl FromStr for ServerEndpoint {
    type Err = EndpointError;

    fn from_str(input: &str) -> Result<Self, EndpointError> {
        let mut f = Fields::parse(input)?;
        let endpoint = match f.kind.as_str() {
            "tcp" | "tcp6" | "udp" | "ssl" => {
                let default = if f.kind == "tcp6" {
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                } else {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                };
                if let Some(hint) = f.address_before_port() {
                    return Err(hint);
                }
                let port = f.port()?;
                let addr = SocketAddr::new(f.interface(default)?, port);
                if let IpAddr::V6(v6) = addr.ip()
                    && let Some(v4) = v6.to_ipv4_mapped()
                {
                    // A listener on IPv6 takes IPv6 alone (`IPV6_V6ONLY`: every stream
                    // socket, and every UDP socket shared by several reactors), where a
                    // mapped address cannot be bound.
                    return Err(f.err(
                        &format!("interface={v6}"),
                        &format!("is an IPv4-mapped address; listen on interface={v4}"),
                    ));
                }
                match f.kind.as_str() {
                    "udp" => Self::Udp { addr },
                    "ssl" => {
                        let backlog = f.backlog(DEFAULT_BACKLOG)?;
                        let private_key: PathBuf = f.required("privateKey", false)?.into();
                        // Like Twisted, one PEM file may hold both key and certificate.
                        let cert = f
                            .take("certKey", false)
                            .map_or_else(|| private_key.clone(), PathBuf::from);
                        Self::Ssl {
                            addr,
                            backlog,
                            private_key,
                            cert,
                        }
                    }
                    _ => Self::Tcp {
                        addr,
                        backlog: f.backlog(DEFAULT_BACKLOG)?,
                    },
                }
            }
            "unix" => {
                let path: PathBuf = f.required("address", true)?.into();
                let len = path.as_os_str().len();
                if len == 0 {
                    // An empty path binds an unnamed (autobound abstract) socket, which
                    // nothing can find to connect to.
                    return Err(f.err("unix:", "needs a socket path"));
                }
                if len > MAX_UNIX_PATH {
                    return Err(f.err(
                        &path.display().to_string(),
                        &format!(
                            "is {len} bytes; a unix socket path is at most {MAX_UNIX_PATH} \
                             (a shorter path, or one relative to the working directory)"
                        ),
                    ));
                }
                let mode = f.mode()?;
                let backlog = f.backlog(DEFAULT_BACKLOG)?;
                // Twisted's lockfile=1 keeps a second process off a live socket. weft takes no
                // lock (a listener replaces the socket file at its path), so accepting the option
                // would promise a protection that is not there.
                match f.take("lockfile", false).as_deref() {
                    None | Some("0") => {}
                    Some(other) => {
                        return Err(f.err(
                            &format!("lockfile={other}"),
                            "is not supported: weft takes no lock on a unix socket path (a \
                             listener replaces the socket file); remove the option",
                        ));
                    }
                }
                Self::Unix {
                    path,
                    mode,
                    backlog,
                }
            }
            other => {
                let other = other.to_owned();
                // `127.0.0.1:8080` or `8080`, as other servers write a listener.
                let localhost = input
                    .strip_prefix("localhost:")
                    .and_then(|port| port.parse::<u16>().ok());
                let written = match (input.parse::<SocketAddr>(), input.parse::<u16>()) {
                    (Ok(addr), _) => Some(written_as(addr)),
                    (_, Ok(port)) => Some(format!("tcp:{port}")),
                    _ => localhost.map(|port| format!("tcp:{port}:interface=127.0.0.1")),
                };
                let reason = match written {
                    Some(written) => format!(
                        "is not a server endpoint type (tcp, tcp6, udp, unix, ssl); for TCP \
                         write \"{written}\""
                    ),
                    None => "is not a server endpoint type (tcp, tcp6, udp, unix, ssl)".into(),
                };
                return Err(f.err(&other, &reason));
            }
        };
        f.done()?;
        Ok(endpoint)
    }
}

/// `addr` as a TCP listener's endpoint string: the port, then the interface.
fn written_as(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) => format!("tcp:{}:interface={ip}", addr.port()),
        // The colons of an IPv6 address are escaped in an endpoint string.
        IpAddr::V6(ip) => format!(
            "tcp6:{}:interface={}",
            addr.port(),
            fields::escaped(&ip.to_string())
        ),
    }
}

impl FromStr for ClientEndpoint {
    type Err = EndpointError;

    fn from_str(input: &str) -> Result<Self, EndpointError> {
        let mut f = Fields::parse(input)?;
        let endpoint = match f.kind.as_str() {
            "tcp" | "ssl" | "tls" => {
                let host = f.required("host", true)?;
                if host.is_empty() {
                    return Err(f.err("", "host must not be empty"));
                }
                f.one_host("host", &host)?;
                let port = f.port()?;
                if port == 0 {
                    return Err(f.err(
                        "0",
                        "is no port to connect to; name the port the server listens on",
                    ));
                }
                let timeout = f.timeout()?;
                let bind_address = f.bind_address()?;
                if let Some(local) = bind_address {
                    f.one_host("bindAddress", &local.ip().to_string())?;
                }
                if f.kind == "tcp" {
                    Self::Tcp {
                        host,
                        port,
                        timeout,
                        bind_address,
                    }
                } else {
                    let ca_certs = f.take("caCerts", false).map(PathBuf::from);
                    Self::Ssl {
                        host,
                        port,
                        timeout,
                        bind_address,
                        ca_certs,
                    }
                }
            }
            "unix" => {
                let path = f.required("path", true)?.into();
                let timeout = f.timeout()?;
                Self::Unix { path, timeout }
            }
            other => {
                let other = other.to_owned();
                return Err(f.err(&other, "is not a client endpoint type (tcp, unix, ssl)"));
            }
        };
        f.done()?;
        Ok(endpoint)
    }
}

impl fmt::Display for ServerEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { addr, .. } => write!(
                f,
                "tcp:{}:interface={}",
                addr.port(),
                fields::escaped(&addr.ip().to_string())
            ),
            Self::Udp { addr } => write!(
                f,
                "udp:{}:interface={}",
                addr.port(),
                fields::escaped(&addr.ip().to_string())
            ),
            Self::Unix { path, .. } => {
                write!(f, "unix:{}", fields::escaped(&path.display().to_string()))
            }
            Self::Ssl { addr, .. } => write!(
                f,
                "ssl:{}:interface={}",
                addr.port(),
                fields::escaped(&addr.ip().to_string())
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_numeric_host_is_read_as_the_resolver_reads_it() {
        use super::host_ip;
        for (host, ip) in [
            ("127.1", "127.0.0.1"),
            ("2130706433", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("0x7f.0.0.1", "127.0.0.1"),
            ("10.1.2", "10.1.0.2"),
            ("192.0.2.7", "192.0.2.7"),
            ("::1", "::1"),
        ] {
            assert_eq!(host_ip(host), Some(ip.parse().unwrap()), "{host}");
        }
        for name in [
            "db.example",
            "256.1.1.1",
            "1.2.3.4.5",
            "08.1.1.1",
            "",
            "localhost",
            "+224.0.0.1",
            "1.+2",
            "0x+e0000001",
        ] {
            assert_eq!(host_ip(name), None, "{name}");
        }
    }

    use super::*;

    fn server(s: &str) -> ServerEndpoint {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn bad_server(s: &str) -> EndpointError {
        s.parse::<ServerEndpoint>().expect_err(s)
    }

    #[test]
    fn tcp_server_strings() {
        assert_eq!(
            server("tcp:8000"),
            ServerEndpoint::Tcp {
                addr: "0.0.0.0:8000".parse().unwrap(),
                backlog: DEFAULT_BACKLOG
            }
        );
        assert_eq!(
            server("tcp:8000:interface=127.0.0.1:backlog=7"),
            ServerEndpoint::Tcp {
                addr: "127.0.0.1:8000".parse().unwrap(),
                backlog: 7
            }
        );
        assert_eq!(
            server("tcp:port=80:interface=127.0.0.1"),
            ServerEndpoint::Tcp {
                addr: "127.0.0.1:80".parse().unwrap(),
                backlog: DEFAULT_BACKLOG
            }
        );
        assert_eq!(
            server(r"tcp6:8000:interface=\:\:1"),
            ServerEndpoint::Tcp {
                addr: "[::1]:8000".parse().unwrap(),
                backlog: DEFAULT_BACKLOG
            }
        );
        assert_eq!(server("tcp6:9").to_string(), r"tcp:9:interface=\:\:");
    }

    #[test]
    fn udp_unix_and_ssl_server_strings() {
        assert_eq!(
            server("udp:5353:interface=127.0.0.1"),
            ServerEndpoint::Udp {
                addr: "127.0.0.1:5353".parse().unwrap()
            }
        );
        assert_eq!(
            server("unix:/tmp/x.sock:mode=660"),
            ServerEndpoint::Unix {
                path: "/tmp/x.sock".into(),
                mode: Some(0o660),
                backlog: DEFAULT_BACKLOG
            }
        );
        assert_eq!(
            server("ssl:8443:privateKey=k.pem:certKey=c.pem"),
            ServerEndpoint::Ssl {
                addr: "0.0.0.0:8443".parse().unwrap(),
                backlog: DEFAULT_BACKLOG,
                private_key: "k.pem".into(),
                cert: "c.pem".into(),
            }
        );
    }

    #[test]
    fn client_strings() {
        assert_eq!(
            "tcp:example.org:80:timeout=2.5"
                .parse::<ClientEndpoint>()
                .unwrap(),
            ClientEndpoint::Tcp {
                host: "example.org".into(),
                port: 80,
                timeout: Duration::from_millis(2500),
                bind_address: None,
            }
        );
        assert_eq!(
            "tcp:host=h:port=1".parse::<ClientEndpoint>().unwrap(),
            ClientEndpoint::Tcp {
                host: "h".into(),
                port: 1,
                timeout: DEFAULT_CONNECT_TIMEOUT,
                bind_address: None,
            }
        );
        assert_eq!(
            "unix:/run/s".parse::<ClientEndpoint>().unwrap(),
            ClientEndpoint::Unix {
                path: "/run/s".into(),
                timeout: DEFAULT_CONNECT_TIMEOUT
            }
        );
        assert!(matches!(
            "tls:h:443:caCerts=ca.pem"
                .parse::<ClientEndpoint>()
                .unwrap(),
            ClientEndpoint::Ssl {
                port: 443,
                ca_certs: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn listeners_that_cannot_be_bound_are_refused_as_they_are_read() {
        let mapped = bad_server(r"tcp:80:interface=\:\:ffff\:127.0.0.1");
        assert_eq!(mapped.part, "interface=::ffff:127.0.0.1");
        assert!(
            mapped.to_string().contains("interface=127.0.0.1"),
            "{mapped}"
        );
        assert!(
            bad_server(r"ssl:443:interface=\:\:ffff\:10.0.0.1:privateKey=k")
                .reason
                .contains("IPv4-mapped")
        );
        let udp = bad_server(r"udp:53:interface=\:\:ffff\:127.0.0.1");
        assert!(udp.reason.contains("IPv4-mapped"), "{udp}");
        assert!(bad_server("unix:").reason.contains("needs a socket path"));
        let long = format!("unix:/tmp/{}", "x".repeat(103));
        assert!(long.parse::<ServerEndpoint>().is_err(), "108 bytes");
        let fits = format!("unix:/tmp/{}", "x".repeat(102));
        assert!(fits.parse::<ServerEndpoint>().is_ok(), "107 bytes");
        let twice = bad_server("tcp:80:interface=127.0.0.1:interface=0.0.0.0");
        assert_eq!(twice.part, "interface=0.0.0.0");
        assert!(twice.reason.contains("second time"), "{twice}");
    }

    #[test]
    fn malformed_strings_name_the_bad_part() {
        let e = bad_server("tcp:80x");
        assert_eq!(e.part, "80x");
        assert!(e.to_string().contains("not a port number"), "{e}");
        assert_eq!(bad_server("tcp:70000").part, "70000");
        assert_eq!(bad_server("tcp:80:interface=nope").part, "interface=nope");
        assert_eq!(bad_server("tcp:80:colour=blue").part, "colour=blue");
        assert_eq!(bad_server("tcp:80:81").part, "81");
        assert_eq!(bad_server("sctp:80").part, "sctp");
        assert_eq!(
            bad_server("").reason,
            "has no endpoint type (tcp, tcp6, udp, unix, ssl)"
        );
        assert!(bad_server("tcp").reason.contains("needs port"));
        assert!(bad_server("ssl:443").reason.contains("needs privateKey"));
        assert_eq!(bad_server("unix:/x:mode=9z").part, "mode=9z");
        // More than permissions, or none that lets anyone connect.
        for (mode, says) in [
            ("77777777", "at most 777"),
            ("1777", "at most 777"),
            ("0", "lets no one connect"),
            ("555", "lets no one connect"),
        ] {
            let e = bad_server(&format!("unix:/x:mode={mode}"));
            assert_eq!(e.part, format!("mode={mode}"));
            assert!(e.reason.contains(says), "{mode}: {e}");
        }
        assert!(matches!(
            server("unix:/x:mode=200"),
            ServerEndpoint::Unix {
                mode: Some(0o200),
                ..
            }
        ));
        // No queue, and addresses that are no host's.
        for (endpoint, part) in [
            ("tcp:80:backlog=0", "backlog=0"),
            ("unix:/x:backlog=0", "backlog=0"),
            ("udp:53:interface=224.0.0.1", "interface=224.0.0.1"),
            (
                "tcp:80:interface=255.255.255.255",
                "interface=255.255.255.255",
            ),
            (r"udp:53:interface=ff02\:\:1", "interface=ff02::1"),
        ] {
            assert_eq!(bad_server(endpoint).part, part, "{endpoint}");
        }
        assert!(matches!(
            server("tcp:80:backlog=1"),
            ServerEndpoint::Tcp { backlog: 1, .. }
        ));
        assert!(bad_server("tcp:80\\").reason.contains("backslash"));
        let e = "tcp:h:1:timeout=-1".parse::<ClientEndpoint>().unwrap_err();
        assert!(e.reason.contains("positive"), "{e}");
        let e = "tcp:h:1:timeout=1e20"
            .parse::<ClientEndpoint>()
            .unwrap_err();
        assert_eq!(e.part, "timeout=100000000000000000000");
        // One past ten years, and one that rounds to no time at all.
        for timeout in ["1.8e19", "315576001", "1e-300", "1e-9", "0.0009"] {
            let e = format!("tcp:h:1:timeout={timeout}")
                .parse::<ClientEndpoint>()
                .unwrap_err();
            assert!(
                e.reason
                    .contains("at least a millisecond (0.001) and at most ten years"),
                "{timeout}: {e}"
            );
        }
        assert!(
            "tcp:h:1:timeout=315576000"
                .parse::<ClientEndpoint>()
                .is_ok()
        );
        assert!("tcp:h:1:timeout=0.001".parse::<ClientEndpoint>().is_ok());
        let e = "tcp:h".parse::<ClientEndpoint>().unwrap_err();
        assert!(e.reason.contains("needs port"), "{e}");
        // Nothing a connection could reach: port 0, or many hosts.
        let e = "tcp:h:0".parse::<ClientEndpoint>().unwrap_err();
        assert!(e.reason.contains("no port to connect to"), "{e}");
        for (client, part) in [
            ("tcp:224.0.0.1:80", "224.0.0.1"),
            ("ssl:255.255.255.255:443", "255.255.255.255"),
            (r"tcp:ff02\:\:1:80", "ff02::1"),
            (r"tcp:\:\:ffff\:239.1.1.1:80", "::ffff:239.1.1.1"),
            ("tcp:h:80:bindAddress=224.0.0.1", "bindAddress=224.0.0.1"),
            // The forms the resolver reads as IPv4 addresses.
            ("tcp:0xe0000001:80", "0xe0000001"),
            ("tcp:4294967295:80", "4294967295"),
            ("tcp:224.1:80", "224.1"),
        ] {
            let e = client.parse::<ClientEndpoint>().unwrap_err();
            assert_eq!(e.part, part, "{client}: {e}");
            assert!(e.reason.contains("multicast or broadcast"), "{client}: {e}");
        }
        assert!(
            "tcp:127.0.0.1:80:bindAddress=127.0.0.1"
                .parse::<ClientEndpoint>()
                .is_ok()
        );
        let e = "tcp:h:1:bindAddress=eth0"
            .parse::<ClientEndpoint>()
            .unwrap_err();
        assert_eq!(e.part, "bindAddress=eth0");
        let e = "tcp::80".parse::<ClientEndpoint>().unwrap_err();
        assert!(e.reason.contains("host"), "{e}");
    }

    #[test]
    fn a_listener_written_as_other_servers_write_one_is_told_how_it_is_written_here() {
        for (written, says) in [
            ("tcp:127.0.0.1:8080", "\"tcp:8080:interface=127.0.0.1\""),
            ("udp:10.0.0.1:53", "\"udp:53:interface=10.0.0.1\""),
            ("127.0.0.1:8080", "write \"tcp:8080:interface=127.0.0.1\""),
            ("[::1]:8080", "write \"tcp6:8080:interface=\\:\\:1\""),
            ("8080", "write \"tcp:8080\""),
            ("tcp:8080:interface=localhost", "interface=127.0.0.1"),
            ("tcp6:127.0.0.1:8080", "\"tcp:8080:interface=127.0.0.1\""),
            (
                "ssl:0.0.0.0:443:privateKey=k.pem:backlog=9",
                "\"ssl:443:interface=0.0.0.0:privateKey=k.pem:backlog=9\"",
            ),
            (":8080", "write \"tcp:8080\""),
            ("udp:53:interface=::", "interface=\\:\\:1"),
            ("tcp6:[::1]:8080", "\"tcp6:8080:interface=\\:\\:1\""),
            ("tcp:[::1]:8080", "\"tcp6:8080:interface=\\:\\:1\""),
            ("tcp:::1:8080", "\"tcp6:8080:interface=\\:\\:1\""),
            ("udp:[::]:53", "\"udp:53:interface=\\:\\:\""),
            (
                "tcp:127.0.0.1:8080:interface=127.0.0.1",
                "\"tcp:8080:interface=127.0.0.1\"",
            ),
            (
                "tcp:[::1]:8080:interface=127.0.0.1",
                "\"tcp:8080:interface=127.0.0.1\"",
            ),
            (
                "tcp6:fe80::1:2:3:80",
                "\"tcp6:80:interface=fe80\\:\\:1\\:2\\:3\"",
            ),
            ("localhost:8080", "write \"tcp:8080:interface=127.0.0.1\""),
        ] {
            let e = bad_server(written);
            assert!(e.reason.contains(says), "{written}: {e}");
            // The suggestion is itself an endpoint that reads.
            let suggested = says.rsplit('"').nth(1).unwrap_or(says);
            if ["tcp", "udp", "ssl"]
                .iter()
                .any(|k| suggested.starts_with(k))
            {
                server(suggested);
            }
        }
    }

    #[test]
    fn a_client_binds_to_its_bind_address_as_in_twisted() {
        let bind = |s: &str| match s.parse::<ClientEndpoint>().unwrap() {
            ClientEndpoint::Tcp { bind_address, .. } | ClientEndpoint::Ssl { bind_address, .. } => {
                bind_address
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(
            bind("tcp:h:80:bindAddress=192.0.2.7"),
            Some("192.0.2.7:0".parse().unwrap()),
            "an address alone: any local port"
        );
        assert_eq!(
            bind(r"tcp:h:80:bindAddress=192.0.2.7\:4000"),
            Some("192.0.2.7:4000".parse().unwrap())
        );
        assert_eq!(
            bind(r"ssl:h:443:bindAddress=\:\:1"),
            Some("[::1]:0".parse().unwrap())
        );
        assert_eq!(bind("tcp:h:80"), None);
        let e = "unix:/run/s:bindAddress=127.0.0.1"
            .parse::<ClientEndpoint>()
            .unwrap_err();
        assert!(e.reason.contains("not an option of unix:"), "{e}");
    }

    #[test]
    fn a_unix_lockfile_is_refused_not_ignored() {
        let e = bad_server("unix:/run/app.sock:lockfile=1");
        assert_eq!(e.part, "lockfile=1");
        assert!(e.reason.contains("not supported"), "{e}");
        assert_eq!(
            server("unix:/run/app.sock:lockfile=0"),
            server("unix:/run/app.sock"),
            "lockfile=0 asks for what weft does"
        );
    }

    #[test]
    fn an_escaped_equals_sign_is_part_of_a_field_and_written_escaped() {
        let endpoint = server(r"unix:/run/a\=b\:c.sock:mode=600");
        assert_eq!(
            endpoint,
            ServerEndpoint::Unix {
                path: "/run/a=b:c.sock".into(),
                mode: Some(0o600),
                backlog: DEFAULT_BACKLOG
            }
        );
        assert_eq!(endpoint.to_string(), r"unix:/run/a\=b\:c.sock");
        assert_eq!(
            server(&endpoint.to_string()),
            server(r"unix:/run/a\=b\:c.sock")
        );
        // Only the first unescaped sign splits an option from its value.
        assert!("unix:/run/a=b".parse::<ServerEndpoint>().is_err());
    }
}
