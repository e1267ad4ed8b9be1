//! Whether the ports a configuration listens on can be taken now, as `weft check` asks
//! before `run` would find out by binding: a port below the system's first unprivileged
//! port that this process may not bind, and a port another program holds, named with the
//! program. A port held by the gateway already running this configuration is what a
//! reload keeps: noted, not refused.
//!
//! A port is tried by binding it as `run` binds it, and let go at once. Whoever holds a
//! port in use is looked up in `/proc/net` and the processes' open files; the gateway of
//! this configuration is the process that writes its history file or one whose command
//! line runs the same file.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use weft::endpoint::ServerEndpoint;

use super::Config;
use super::preflight::addresses_overlap;

/// One listener of the configuration: what it was written as, whose it is, where.
struct Listener<'a> {
    endpoint: &'a str,
    owner: String,
    socket: Socket,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Socket {
    Stream(SocketAddr),
    Datagram(SocketAddr),
}

impl Socket {
    fn addr(self) -> SocketAddr {
        match self {
            Socket::Stream(a) | Socket::Datagram(a) => a,
        }
    }

    /// As messages say it: `TCP port 8080 on 127.0.0.1`.
    fn said(self) -> String {
        let (what, addr) = match self {
            Socket::Stream(a) => ("TCP", a),
            Socket::Datagram(a) => ("UDP", a),
        };
        format!("{what} port {} on {}", addr.port(), addr.ip())
    }
}

/// A process holding a port, as far as this user can see it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Holder {
    pid: Option<i32>,
    /// The program's name (`comm`), when the process is seen.
    name: Option<String>,
    uid: u32,
    /// The address its socket is bound to, when a port's.
    at: Option<SocketAddr>,
}

/// Tries every TCP and UDP listener of `config` (read from `file`); `Ok` with the notes to
/// print (ports this configuration's running gateway holds), or the first refusal, naming
/// the endpoint, its owner and the cause.
pub(crate) fn check(config: &Config, file: &Path) -> Result<Vec<String>, String> {
    open_files(config)?;
    let ours = Gateway::of(config, file);
    let mut notes = Vec::new();
    // The notes of stream listeners the running gateway holds, by whether the dashboard's.
    let mut kept: Vec<(bool, usize)> = Vec::new();
    let mut dashboard_fixed = false;
    for listener in listeners(config) {
        let Listener {
            endpoint,
            owner,
            socket,
        } = &listener;
        let addr = socket.addr();
        dashboard_fixed |= owner == DASHBOARD;
        match bind_now(*socket, config.gateway.reactors > 1) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(format!(
                    "{owner}: {endpoint:?}: this process may not listen on port {} ({e}): {}",
                    addr.port(),
                    privileged_hint(addr.port())
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                let port = socket.said();
                let at = format!("{owner}: {endpoint:?}");
                let held = holders(*socket);
                if held.is_empty()
                    && let Some(said) = held_by_connection(*socket)
                {
                    return Err(format!("{at}: cannot listen: {said}"));
                }
                // A reload leaves the dashboard where it is: moved, it takes a restart
                // (noted below), wherever it goes.
                let moved_by_reload = (owner != DASHBOARD).then_some(addr);
                let taken = (port.as_str(), "port", moved_by_reload);
                let ours_now = in_use(&at, taken, &held, &ours, &mut notes, Some(addr))?;
                // A dashboard listens on a stream.
                if ours_now && matches!(socket, Socket::Stream(_)) {
                    kept.push((owner == DASHBOARD, notes.len() - 1));
                }
            }
            Err(e) => {
                return Err(format!(
                    "{owner}: {endpoint:?}: cannot listen on {addr}: {e}"
                ));
            }
        }
    }
    for (endpoint, owner, path) in unix_listeners(config) {
        dashboard_fixed |= owner == DASHBOARD;
        if path.exists() && weft::net::unix_socket_served(&path) {
            let socket = format!("the unix socket {}", path.display());
            let at = format!("{owner}: {endpoint:?}");
            let held = unix_holders(&path);
            if in_use(&at, (&socket, "path", None), &held, &ours, &mut notes, None)? {
                kept.push((owner == DASHBOARD, notes.len() - 1));
            }
        }
    }
    // A reload hands a service the listeners of the running services, never the
    // dashboard's, and leaves the dashboard where it is. When the running gateway does not
    // hold this file's dashboard listener, its dashboard is elsewhere: maybe on one of the
    // listeners noted, which a reload could then not take.
    if dashboard_fixed && !kept.iter().any(|(dashboard, _)| *dashboard) {
        for (_, i) in kept {
            notes[i].push_str(
                "; but this file moves the dashboard, which takes a restart: if the running \
                 dashboard is what holds it, a reload fails on it, so restart instead",
            );
        }
    }
    Ok(notes)
}

/// A listener `at` whose `socket` (a port, or a socket file: what to choose `instead`)
/// `holders` hold: noted when the gateway running this configuration is one of them
/// (`Ok(true)`), refused naming them otherwise. A port a reload would listen on at `addr`
/// must be held at that very address.
fn in_use(
    at: &str,
    (socket, instead, addr): (&str, &str, Option<SocketAddr>),
    holders: &[Holder],
    ours: &Gateway,
    notes: &mut Vec<String>,
    wanted: Option<SocketAddr>,
) -> Result<bool, String> {
    if let Some((h, which)) = holders.iter().find_map(|h| Some((h, ours.runs(h)?))) {
        // A reload takes over a socket bound to the very address it listens at; one at
        // another address of the port (`127.0.0.1` for `0.0.0.0`, or back) stays open
        // until the reload is done, and the new one cannot be bound beside it.
        if let (Some(held), Some(wanted)) = (h.at, addr)
            && held != wanted
        {
            return Err(format!(
                "{at}: {socket} is held by process {}, {which}, listening at {held}: a \
                 reload keeps a listener only at the same address and cannot listen at \
                 {wanted} beside it; restart the gateway to move it",
                h.pid.unwrap_or_default()
            ));
        }
        notes.push(format!(
            "{at}: {socket} is held by process {}, {which} (a reload keeps it)",
            h.pid.unwrap_or_default()
        ));
        Ok(true)
    } else if holders.iter().all(|h| h.pid.is_none())
        && let Some(pid) = ours.writer
    {
        notes.push(format!(
            "{at}: {socket} is in use by a process this user cannot see; process {pid}, which \
             writes this configuration's history, may be it"
        ));
        Ok(false)
    } else {
        Err(format!(
            "{at}: cannot listen: {}",
            in_use_said(socket, instead, holders, wanted)
        ))
    }
}

/// `socket` (`TCP port 8080 on 127.0.0.1`, `the unix socket PATH`) in use by `holders`,
/// and what to do: how `check` and a reload say a listener cannot be had.
fn in_use_said(
    socket: &str,
    instead: &str,
    holders: &[Holder],
    wanted: Option<SocketAddr>,
) -> String {
    format!(
        "{socket} is in use{}; stop it or choose another {instead}",
        describe(holders, wanted)
    )
}

/// Who holds the port or socket path `endpoint` listens on, and what to do, as `check`
/// says it (`TCP port 8080 on 127.0.0.1 is in use by process 812 (nginx); stop it or
/// choose another port`); `None` when no socket on it is found or the endpoint is not a
/// listener's. For a listener that could not be bound.
pub(crate) fn in_use_by(endpoint: &str) -> Option<String> {
    let (socket, instead, held, wanted) = match endpoint.parse::<ServerEndpoint>().ok()? {
        ServerEndpoint::Tcp { addr, .. } | ServerEndpoint::Ssl { addr, .. } => {
            let socket = Socket::Stream(addr);
            let held = holders(socket);
            if held.is_empty() {
                return held_by_connection(socket);
            }
            (socket.said(), "port", held, Some(addr))
        }
        ServerEndpoint::Udp { addr } => {
            let socket = Socket::Datagram(addr);
            (socket.said(), "port", holders(socket), Some(addr))
        }
        ServerEndpoint::Unix { path, .. } => (
            format!("the unix socket {}", path.display()),
            "path",
            unix_holders(&path),
            None,
        ),
        _ => return None,
    };
    (!held.is_empty()).then(|| in_use_said(&socket, instead, &held, wanted))
}

/// What holds TCP port `socket` when no listener does: a connection with it as its local
/// port (one in TIME-WAIT after a client closed first, say), which the kernel lets no
/// listener share; `None` when none is found, or for UDP.
fn held_by_connection(socket: Socket) -> Option<String> {
    let Socket::Stream(addr) = socket else {
        return None;
    };
    let on_port: Vec<procfs::net::TcpNetEntry> = [procfs::net::tcp(), procfs::net::tcp6()]
        .into_iter()
        .flat_map(|table| table.unwrap_or_default())
        .filter(|e| {
            e.state != procfs::net::TcpState::Listen
                && e.local_address.port() == addr.port()
                && addresses_overlap(e.local_address.ip(), addr.ip(), true)
        })
        .collect();
    let first = on_port.first()?;
    let state = match &first.state {
        procfs::net::TcpState::TimeWait => "TIME-WAIT".to_owned(),
        procfs::net::TcpState::Established => "ESTABLISHED".to_owned(),
        other => format!("{other:?}").to_uppercase(),
    };
    let more = match on_port.len() {
        1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    // Only a port the system hands connections is worth moving away from: one outside
    // the range is held by a connection accepted on it (a server's, killed), for a while.
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok();
    let range = range.as_deref().and_then(|r| {
        let mut ends = r.split_whitespace().map(|n| n.parse::<u16>().ok());
        Some((ends.next()??, ends.next()??))
    });
    let instead = match range {
        Some((low, high)) if (low..=high).contains(&addr.port()) => format!(
            ", or choose a port outside net.ipv4.ip_local_port_range ({low}-{high}), from \
             which the system gives connections their own ports"
        ),
        _ => String::new(),
    };
    let lasts = match first.state {
        procfs::net::TcpState::TimeWait => " (TIME-WAIT lasts a minute)",
        _ => "",
    };
    Some(format!(
        "{} is held by no listener but by a connection from it to {}, in {state}{more}, \
         which no listener may share; wait for it to end{lasts}{instead}",
        socket.said(),
        first.remote_address,
    ))
}

/// The owner of the dashboard's listener, as messages name it.
const DASHBOARD: &str = "dashboard.listen";

/// Every listener `config` names, parsed, with its owner: the dashboard's, the services',
/// and the demo's upstreams' with `[demo] traffic`.
fn endpoints(config: &Config) -> Vec<(&str, String, ServerEndpoint)> {
    let dashboard = std::iter::once((config.dashboard.listen.as_str(), DASHBOARD.to_owned()));
    let services = config.services.iter().enumerate().flat_map(|(i, s)| {
        s.listen
            .iter()
            .map(move |l| (l.as_str(), format!("service[{i}] ({})", s.name)))
    });
    let demo = crate::demo::LISTENERS
        .iter()
        .filter(|_| config.demo.traffic)
        .map(|(endpoint, what)| (*endpoint, format!("demo.traffic (the demo's {what})")));
    dashboard
        .chain(services)
        .chain(demo)
        .filter_map(|(endpoint, owner)| Some((endpoint, owner, endpoint.parse().ok()?)))
        .collect()
}

/// [`open_files_for_listeners`] under this process's hard limit.
pub(crate) fn open_files(config: &Config) -> Result<(), String> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    open_files_for_listeners(config, limit)
}

/// Open files kept, beyond the listeners, for what `run` opens before it serves (the
/// history file and its journal, access logs, each reactor's own) and its first
/// connections.
const FILES_BESIDE_LISTENERS: u64 = 64;

/// Whether the listening sockets of `config` (each service's on every reactor, and the
/// dashboard's) fit under the open-files limit `run` raises its own to (`limit`, the hard
/// one; `None`: unlimited), with [`FILES_BESIDE_LISTENERS`] to spare: past it, `run`
/// would stop part way through binding them, with a bare "Too many open files".
fn open_files_for_listeners(config: &Config, limit: Option<u64>) -> Result<(), String> {
    let Some(limit) = limit else {
        return Ok(());
    };
    let reactors = u64::from(config.gateway.reactors.max(1));
    let listeners: u64 = config.services.iter().map(|s| s.listen.len() as u64).sum();
    let needed = listeners * reactors + 1;
    if needed + FILES_BESIDE_LISTENERS <= limit {
        return Ok(());
    }
    let each = match reactors {
        1 => String::new(),
        n => format!(" on each of {n} reactors"),
    };
    Err(format!(
        "the services' {listeners} listeners{each} and the dashboard's need {needed} open \
         files, and the open files limit is {limit}, which leaves too little for the rest \
         ({FILES_BESIDE_LISTENERS} are kept for the history file, logs and the first \
         connections); raise the limit (`ulimit -n`, or LimitNOFILE= for systemd) or listen \
         on fewer"
    ))
}

/// The unix listeners of `config`: endpoint, owner, path.
fn unix_listeners(config: &Config) -> Vec<(&str, String, PathBuf)> {
    endpoints(config)
        .into_iter()
        .filter_map(|(endpoint, owner, parsed)| match parsed {
            ServerEndpoint::Unix { path, .. } => Some((endpoint, owner, path)),
            _ => None,
        })
        .collect()
}

/// The TCP and UDP listeners of `config` with a port of their own (port 0 is any free
/// one).
fn listeners(config: &Config) -> Vec<Listener<'_>> {
    endpoints(config)
        .into_iter()
        .filter_map(|(endpoint, owner, parsed)| {
            let socket = match parsed {
                ServerEndpoint::Tcp { addr, .. } | ServerEndpoint::Ssl { addr, .. } => {
                    Socket::Stream(addr)
                }
                ServerEndpoint::Udp { addr } => Socket::Datagram(addr),
                _ => return None,
            };
            (socket.addr().port() != 0).then_some(Listener {
                endpoint,
                owner,
                socket,
            })
        })
        .collect()
}

/// Binds `socket` as listening binds it (without `SO_REUSEPORT`, which would share a
/// port rather than find it taken) and lets it go.
/// Binds `socket`'s address as listening does, and lets it go. A UDP socket on an IPv6
/// address is IPv6-only when several reactors share its port (`shared`), as their sockets
/// are; one reactor's takes IPv4 too, as the system binds it by default.
fn bind_now(socket: Socket, shared: bool) -> io::Result<()> {
    match socket {
        Socket::Stream(addr) => weft::net::tcp_listening_socket(addr)?.bind(&addr.into()),
        Socket::Datagram(addr) if shared => weft::net::probe_udp(addr),
        Socket::Datagram(addr) => std::net::UdpSocket::bind(addr).map(drop),
    }
}

/// How to listen on a privileged port.
fn privileged_hint(port: u16) -> String {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    let below = match start {
        Some(start) if u32::from(port) < start => {
            format!("ports below {start} (net.ipv4.ip_unprivileged_port_start) need privilege")
        }
        _ => "the port needs privilege".to_owned(),
    };
    let exe = std::env::current_exe().map_or_else(|_| "weft".into(), |p| p.display().to_string());
    format!(
        "{below}; run weft as root, give it the capability (setcap \
         cap_net_bind_service=+ep {exe}, or AmbientCapabilities=CAP_NET_BIND_SERVICE in a \
         systemd unit), or choose a port from {}",
        start.unwrap_or(1024)
    )
}

/// " by process 812 (nginx)", " by a process of user 33 this user cannot see", or
/// nothing when no socket on the port is found.
fn describe(holders: &[Holder], wanted: Option<SocketAddr>) -> String {
    let Some(h) = holders.first() else {
        return String::new();
    };
    let by = match (h.pid, &h.name) {
        (Some(pid), Some(name)) => format!(" by process {pid} ({name})"),
        (Some(pid), None) => format!(" by process {pid}"),
        (None, _) => format!(" by a process of user {} this user cannot see", h.uid),
    };
    // Where it listens, when that is another address of the port (127.0.0.1 for 0.0.0.0).
    match h.at {
        Some(at) if Some(at) != wanted => format!("{by}, listening at {at}"),
        _ => by,
    }
}

/// The processes holding a listening unix socket bound to `path`.
fn unix_holders(path: &Path) -> Vec<Holder> {
    let sockets: Vec<(u64, u32, Option<SocketAddr>)> = procfs::net::unix()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.path.as_deref() == Some(path))
        .map(|e| (e.inode, 0, None))
        .collect();
    owners(&sockets)
}

/// The processes holding sockets that take `socket`'s port: TCP sockets listening, or UDP
/// sockets bound, on the port at an address that overlaps its own.
fn holders(socket: Socket) -> Vec<Holder> {
    let dual_stack = true; // for naming only: a wider match costs nothing here
    let taken = |local: SocketAddr, addr: SocketAddr| {
        local.port() == addr.port() && addresses_overlap(local.ip(), addr.ip(), dual_stack)
    };
    let sockets: Vec<(u64, u32, Option<SocketAddr>)> = match socket {
        Socket::Stream(addr) => [procfs::net::tcp(), procfs::net::tcp6()]
            .into_iter()
            .flat_map(|table| table.unwrap_or_default())
            .filter(|e| e.state == procfs::net::TcpState::Listen && taken(e.local_address, addr))
            .map(|e| (e.inode, e.uid, Some(e.local_address)))
            .collect(),
        Socket::Datagram(addr) => [procfs::net::udp(), procfs::net::udp6()]
            .into_iter()
            .flat_map(|table| table.unwrap_or_default())
            .filter(|e| taken(e.local_address, addr))
            .map(|e| (e.inode, e.uid, Some(e.local_address)))
            .collect(),
    };
    owners(&sockets)
}

/// The processes holding any of `sockets` (inode, owner's uid, address); when none can be
/// seen, one holder of unknown process for each socket.
fn owners(sockets: &[(u64, u32, Option<SocketAddr>)]) -> Vec<Holder> {
    if sockets.is_empty() {
        return Vec::new();
    }
    let mut found: Vec<Holder> = Vec::new();
    for process in procfs::process::all_processes()
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(fds) = process.fd() else { continue };
        let holds = fds.flatten().find_map(|fd| match fd.target {
            procfs::process::FDTarget::Socket(inode) => {
                sockets.iter().find(|(i, ..)| *i == inode).copied()
            }
            _ => None,
        });
        if let Some((_, uid, at)) = holds {
            found.push(Holder {
                pid: Some(process.pid),
                name: process.stat().ok().map(|s| s.comm),
                uid,
                at,
            });
        }
    }
    if found.is_empty() {
        found.extend(sockets.iter().map(|&(_, uid, at)| Holder {
            pid: None,
            name: None,
            uid,
            at,
        }));
    }
    found
}

/// How to tell the gateway running this configuration.
struct Gateway {
    /// The process writing its history file (its lock says so), when history is a file.
    writer: Option<u32>,
    /// The configuration file's identity (device, inode).
    file: Option<(u64, u64)>,
}

impl Gateway {
    fn of(config: &Config, file: &Path) -> Gateway {
        Gateway {
            writer: config
                .store
                .url
                .is_none()
                .then(|| weft_store::Store::writer_pid(&config.store.path))
                .flatten(),
            file: identity(file),
        }
    }

    /// Whether `holder` is the gateway of this configuration, said as messages say it:
    /// the one running this very file, or the one writing its history (which a reload
    /// of its own file, once this one is put in its place, is meant for).
    fn runs(&self, holder: &Holder) -> Option<&'static str> {
        let pid = holder.pid?;
        let runs_this_file = || {
            let file = self.file?;
            let process = procfs::process::Process::new(pid).ok()?;
            let (args, cwd) = (process.cmdline().ok()?, process.cwd().ok()?);
            Some(config_argument(&args).is_some_and(|path| identity(&cwd.join(path)) == Some(file)))
        };
        if runs_this_file() == Some(true) {
            Some("the gateway running this configuration")
        } else if u32::try_from(pid).ok() == self.writer {
            Some("the gateway writing this configuration's history")
        } else {
            None
        }
    }
}

/// The file a `weft run` command line names: as its argument, or with `--config` or `-c`.
fn config_argument(args: &[String]) -> Option<PathBuf> {
    let run = args.iter().skip(1).position(|a| a == "run")? + 1;
    let mut args = args[run + 1..].iter();
    while let Some(arg) = args.next() {
        if arg == "--config" || arg == "-c" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
        if let Some(path) = arg.strip_prefix("-c").filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(path));
        }
        if arg == "--log-format" {
            args.next();
        } else if !arg.starts_with('-') {
            return Some(PathBuf::from(arg));
        }
    }
    None
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn the_configuration_of_a_run_command_line_is_found_however_it_is_written() {
        for line in [
            "weft run --config a.toml",
            "weft run -c a.toml",
            "weft run --config=a.toml",
            "weft --log-format json run -ca.toml",
            "weft run a.toml",
            "weft run --log-format json a.toml",
            "/usr/bin/weft --log-format=text run a.toml",
        ] {
            assert_eq!(
                config_argument(&args(line)),
                Some(PathBuf::from("a.toml")),
                "{line}"
            );
        }
        assert_eq!(config_argument(&args("weft check a.toml")), None);
        assert_eq!(config_argument(&args("weft run")), None);
    }

    #[test]
    fn listeners_past_the_open_files_limit_are_refused_before_any_is_bound() {
        let services: String = (0..300)
            .map(|i| {
                format!(
                    "[[service]]\nname = \"e{i}\"\nkind = \"echo\"\nlisten = \"tcp:0:interface=127.0.0.1\"\n"
                )
            })
            .collect();
        let config = Config::parse("weft.toml", &services).unwrap();
        let refused = open_files_for_listeners(&config, Some(256)).unwrap_err();
        assert!(
            refused.contains("300 listeners and the dashboard's need 301 open files")
                && refused.contains("limit is 256"),
            "{refused}"
        );
        open_files_for_listeners(&config, Some(365)).unwrap();
        open_files_for_listeners(&config, None).unwrap();
        // Each reactor listens on its own sockets.
        let two = format!("[gateway]\nreactors = 2\n{services}");
        let config = Config::parse("weft.toml", &two).unwrap();
        let refused = open_files_for_listeners(&config, Some(365)).unwrap_err();
        assert!(refused.contains("on each of 2 reactors"), "{refused}");
    }

    #[test]
    fn a_port_another_socket_holds_names_its_process() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        assert_eq!(
            bind_now(Socket::Stream(addr), false).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
        let found = holders(Socket::Stream(addr));
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(
            found.iter().any(|h| h.pid == Some(me)),
            "{found:?} should hold {me}"
        );
        // The wildcard address's port is the same port.
        let any = SocketAddr::from(([0, 0, 0, 0], addr.port()));
        assert!(
            holders(Socket::Stream(any))
                .iter()
                .any(|h| h.pid == Some(me))
        );
        drop(held);
        bind_now(Socket::Stream(addr), false).unwrap();
        assert!(holders(Socket::Stream(addr)).is_empty());

        let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        assert_eq!(
            bind_now(Socket::Datagram(addr), false).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
        // On IPv6's any address: one reactor's socket takes IPv4 too, so meets the holder;
        // several reactors' sockets are IPv6-only, and do not.
        let v4_any = std::net::UdpSocket::bind(("0.0.0.0", 0)).unwrap();
        let port = v4_any.local_addr().unwrap().port();
        let any6_of = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
        assert_eq!(
            bind_now(Socket::Datagram(any6_of), false)
                .unwrap_err()
                .kind(),
            io::ErrorKind::AddrInUse
        );
        bind_now(Socket::Datagram(any6_of), true).unwrap();
        assert!(
            holders(Socket::Datagram(addr))
                .iter()
                .any(|h| h.pid == Some(me))
        );
    }

    #[test]
    fn the_listeners_tried_are_the_dashboard_s_the_services_and_the_demo_s() {
        let config = Config::parse(
            "weft.toml",
            "[dashboard]\nlisten = \"tcp:9999:interface=127.0.0.1\"\n[demo]\ntraffic = true\n\
             [[service]]\nname = \"e\"\nkind = \"echo\"\n\
             listen = [\"tcp:7000:interface=127.0.0.1\", \"udp:7000:interface=127.0.0.1\", \"tcp:0\"]\n",
        )
        .unwrap();
        let listeners = listeners(&config);
        let tried: Vec<(&str, Socket)> = listeners
            .iter()
            .map(|l| (l.owner.as_str(), l.socket))
            .map(|(o, s)| (o.split(' ').next().unwrap(), s))
            .collect();
        let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        assert_eq!(
            tried,
            [
                ("dashboard.listen", Socket::Stream(at(9999))),
                ("service[0]", Socket::Stream(at(7000))),
                ("service[0]", Socket::Datagram(at(7000))),
                ("demo.traffic", Socket::Stream(at(8081))),
                ("demo.traffic", Socket::Datagram(at(5354))),
            ]
        );
    }

    #[test]
    fn a_holder_is_described_by_what_can_be_seen_of_it() {
        let seen = Holder {
            pid: Some(812),
            name: Some("nginx".into()),
            uid: 33,
            at: None,
        };
        assert_eq!(
            describe(std::slice::from_ref(&seen), None),
            " by process 812 (nginx)"
        );
        // Held at another address of the port than the one wanted: said.
        let wanted: SocketAddr = "0.0.0.0:80".parse().unwrap();
        let elsewhere = Holder {
            at: Some("127.0.0.1:80".parse().unwrap()),
            ..seen.clone()
        };
        assert_eq!(
            describe(&[elsewhere], Some(wanted)),
            " by process 812 (nginx), listening at 127.0.0.1:80"
        );
        let there = Holder {
            at: Some(wanted),
            ..seen
        };
        assert_eq!(describe(&[there], Some(wanted)), " by process 812 (nginx)");
        let unseen = Holder {
            pid: None,
            name: None,
            uid: 33,
            at: None,
        };
        assert_eq!(
            describe(&[unseen], None),
            " by a process of user 33 this user cannot see"
        );
        assert_eq!(describe(&[], None), "");
    }
}
