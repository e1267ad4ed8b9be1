//! systemd's service notification protocol (`sd_notify(3)`): under `Type=notify`, systemd
//! calls the unit started only when the service says `READY=1`, so units ordered after
//! weft, and `systemctl start` itself, wait until every service listens.
//!
//! The protocol is one datagram of `KEY=value` lines to the Unix socket named by
//! `$NOTIFY_SOCKET`: a path, or an abstract name written with a leading `@`. Without the
//! variable (not run by systemd) nothing is sent. Ready means what `/readyz` reports: the
//! hub's readiness, with every expected listener up and the reactor running.
//!
//! A reload announces itself with [`Notifier::reloading`] and ends with
//! [`Notifier::ready_when_serving`], which says `READY=1` again once the hub is ready.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;

use weft::{Phase, Reactor};
use weft_telemetry::Hub;

/// How often readiness is looked at again while some listener is not up yet.
const RECHECK: Duration = Duration::from_millis(20);

/// Sends state changes to systemd; does nothing when the process was not started by it.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    /// `$NOTIFY_SOCKET`, read once at start; `None` when systemd did not start the process.
    socket: Option<SocketAddr>,
}

/// Why `$NOTIFY_SOCKET` cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The address is neither an absolute path nor `@` and an abstract name.
    #[error("NOTIFY_SOCKET={0:?}: not an absolute path or an @abstract socket name")]
    Unsupported(String),
    /// The address is of the right form but the system refuses it (too long, say).
    #[error("NOTIFY_SOCKET={address:?}: {source}")]
    Address {
        /// The value of the variable.
        address: String,
        /// The system's reason.
        #[source]
        source: std::io::Error,
    },
}

impl Notifier {
    /// The notifier for `$NOTIFY_SOCKET`; one that sends nothing when it is unset, or
    /// unusable (that is logged).
    pub fn from_env() -> Self {
        match std::env::var_os("NOTIFY_SOCKET") {
            None => Self::default(),
            Some(address) => Self::for_address(&address.to_string_lossy()).unwrap_or_else(|e| {
                tracing::warn!("not notifying systemd: {e}");
                Self::default()
            }),
        }
    }

    /// The notifier for a `$NOTIFY_SOCKET` value.
    pub fn for_address(address: &str) -> Result<Self, NotifyError> {
        let parsed = if let Some(name) = address.strip_prefix('@') {
            abstract_name(name.as_bytes())
        } else if address.starts_with('/') {
            SocketAddr::from_pathname(address)
        } else {
            // systemd 254 can also hand out `vsock:` addresses, for services in VMs.
            return Err(NotifyError::Unsupported(address.to_owned()));
        };
        let socket = parsed.map_err(|source| NotifyError::Address {
            address: address.to_owned(),
            source,
        })?;
        Ok(Self {
            socket: Some(socket),
        })
    }

    /// Whether there is a service manager to tell anything.
    pub fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// Says `READY=1` as soon as `hub` reports ready (every expected listener up, the
    /// reactor running); at start, and again at the end of a reload. Gives up if shutdown
    /// begins first.
    pub fn ready_when_serving(&self, reactor: &Reactor, hub: &Arc<Hub>) {
        if !self.is_enabled() {
            return;
        }
        let (notifier, hub) = (self.clone(), hub.clone());
        // Looked at from a timer, not from the reactor's start callbacks: the reactor
        // handles SIGTERM only once those callbacks have returned, and systemd may stop
        // the service the moment it reads READY=1.
        reactor.call_when_running(move || {
            if let Some(reactor) = Reactor::try_current() {
                reactor.call_later(Duration::ZERO, move || notifier.ready_once_up(&hub));
            }
        });
    }

    /// Says `READY=1` once `hub` reports ready, looking again until it does; for the end
    /// of a reload, on the reactor thread.
    pub fn ready_once_serving(&self, hub: &Arc<Hub>) {
        if self.is_enabled() {
            self.clone().ready_once_up(hub);
        }
    }

    fn ready_once_up(self, hub: &Arc<Hub>) {
        let report = hub.readiness();
        if report.ready {
            self.send("READY=1\nSTATUS=serving\n");
        } else if report.status != "stopping" {
            let hub = hub.clone();
            if let Some(reactor) = Reactor::try_current() {
                reactor.call_later(RECHECK, move || self.ready_once_up(&hub));
            }
        }
    }

    /// Says `RELOADING=1` (with the monotonic timestamp systemd matches reloads by); the
    /// reload then ends with [`ready_when_serving`](Self::ready_when_serving).
    pub fn reloading(&self) {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let usec = u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000
            + u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000;
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading the configuration\n"
        ));
    }

    /// Says `STOPPING=1`: shutdown began, connections are draining.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=draining connections\n");
    }

    /// Sends one message; a failure is logged, never fatal: systemd's own timeout says
    /// more about a service that could not report than stopping it here would.
    fn send(&self, message: &str) {
        let Some(socket) = &self.socket else { return };
        let sent = UnixDatagram::unbound().and_then(|s| s.send_to_addr(message.as_bytes(), socket));
        let state = message.lines().next().unwrap_or_default();
        match sent {
            Ok(_) => tracing::info!(state, "told systemd"),
            Err(error) => tracing::warn!(state, %error, "cannot notify systemd"),
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_name(name: &[u8]) -> std::io::Result<SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_name(_: &[u8]) -> std::io::Result<SocketAddr> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract socket names exist on Linux only",
    ))
}

/// Tells systemd (when it started the process) that the gateway is ready once `hub` says
/// every service listens, and that it is stopping when shutdown begins. Returns the
/// notifier, for a reload to announce itself.
pub fn install(reactor: &Reactor, hub: &Arc<Hub>) -> Notifier {
    let notifier = Notifier::from_env();
    if notifier.is_enabled() {
        notifier.ready_when_serving(reactor, hub);
        let stopping = notifier.clone();
        reactor.add_shutdown_hook(Phase::Before, move || stopping.stopping());
    }
    notifier
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn a_path_socket_gets_each_state_as_one_datagram() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::for_address(path.to_str().unwrap()).unwrap();
        notifier.stopping();
        assert_eq!(
            received(&socket),
            "STOPPING=1\nSTATUS=draining connections\n"
        );
        notifier.reloading();
        let message = received(&socket);
        let usec: u64 = message
            .lines()
            .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {message:?}"));
        assert!(message.starts_with("RELOADING=1\n"), "{message:?}");
        assert!(usec > 0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_at_sign_names_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("weft-notify-test-{}", std::process::id());
        let socket =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        Notifier::for_address(&format!("@{name}"))
            .unwrap()
            .stopping();
        assert!(received(&socket).starts_with("STOPPING=1\n"));
    }

    #[test]
    fn other_addresses_are_refused_by_name_and_a_missing_socket_is_not_fatal() {
        for address in ["vsock:2:1234", "relative/path", ""] {
            let e = Notifier::for_address(address).unwrap_err();
            assert!(e.to_string().contains("NOTIFY_SOCKET"), "{e}");
        }
        assert!(!Notifier::default().is_enabled());
        // Nobody listens there: the send fails, is logged, and nothing else happens.
        Notifier::for_address("/nonexistent/weft-notify")
            .unwrap()
            .stopping();
    }
}
