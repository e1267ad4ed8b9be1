//! What every service kind bounds per connection, per peer and in total: `idle_timeout`,
//! `max_connections_per_peer` and `max_connections`, with a default for each kind that is
//! safe without configuration.

use std::time::Duration;

use weft::ListenOptions;

use super::ServiceKind;
use crate::config::ConfigError;
use crate::config::validate::ServiceCtx;

/// Connections from one peer (an IPv4 address or an IPv6 /64) a service holds at once,
/// unless configured.
pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: usize = 256;

/// Connections a service holds at once (on each reactor), unless configured: room for
/// forty peers at their default cap, far below the descriptors a production host allows
/// (a tcp-proxy connection takes two), yet a bound on the memory a flood of idle
/// connections from many addresses can pin (a few KiB each, more with buffered output).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The largest `max_connections`: a cap is always set, and beyond this it would bound
/// nothing a host could serve.
pub const MAX_MAX_CONNECTIONS: usize = 1_000_000;

/// The default idle timeout of the byte-stream kinds (echo, discard, tcp-proxy).
pub(crate) const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The slowest steady reader a streaming service keeps with its least `TCP_NOTSENT_LOWAT`
/// ([`keep_steady_readers`]), in bytes a second.
const STEADY_READER: f64 = 32.0 * 1024.0;

/// The least and the most unsent data [`keep_steady_readers`] lets the kernel hold: below
/// 128 KiB a bulk transfer pays for many more, smaller writes; 4 MiB is the kernel's
/// largest send buffer, past which the mark changes nothing.
const UNSENT: (f64, f64) = (128.0 * 1024.0, 4.0 * 1024.0 * 1024.0);

/// Has the kernel hold so little unsent for `transport` (`TCP_NOTSENT_LOWAT`) that a peer
/// reading steadily is written to, and so not idle, within `idle` (the idle timeout it is
/// cut by): a peer's reading shows only as room to write, and by default the kernel holds
/// megabytes and says there is room once a third of them is read. The mark is what a peer
/// reading [`STEADY_READER`] takes in twice `idle`, within [`UNSENT`]: at the default 5
/// minutes, 4 MiB (bulk transfers write as they do without a mark); at 1 s, 128 KiB. The
/// kernel also waits for a third of the send buffer to be free, and the peer's window to
/// reopen, before it reports room, so at short timeouts a reader must keep up more than
/// the mark says (measured on loopback: 192 KiB/s kept at 1 s, 96 KiB/s cut; the README
/// has the figures). Nothing without an idle timeout.
pub(crate) fn keep_steady_readers(transport: &weft::Transport, idle: Option<Duration>) {
    let Some(idle) = idle else {
        return;
    };
    let unsent = (idle.as_secs_f64() * 2.0 * STEADY_READER).clamp(UNSENT.0, UNSENT.1);
    // Within u32 by the clamp.
    transport.set_tcp_notsent_lowat(unsent as u32);
}

/// A service's bounds on the connections it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceLimits {
    /// Close a connection with nothing read or written for this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Refuse a connection from a peer holding this many (`None`: no cap).
    pub max_connections_per_peer: Option<usize>,
    /// Refuse a connection while this many are open (always set: no service is unbounded).
    pub max_connections: usize,
    /// The kernel's send buffer asked for each accepted connection (`None`: its own).
    pub send_buffer: Option<u32>,
    /// The kernel's receive buffer asked for each accepted connection (`None`: its own).
    pub receive_buffer: Option<u32>,
}

/// The least `send_buffer` and `receive_buffer`: below it the kernel keeps its minimum
/// anyway.
pub const MIN_SOCKET_BUFFER: i64 = 4096;
/// The most: past it a buffer bounds nothing a host could give one connection.
pub const MAX_SOCKET_BUFFER: i64 = 64 << 20;

impl ServiceLimits {
    /// The defaults of `kind`: DNS over TCP closes after 10 s idle (RFC 7766 §6.2.3
    /// suggests seconds), HTTP after 60 s (its keep-alive wait is `request_timeout`),
    /// the byte-stream kinds after 5 minutes.
    pub fn default_for(kind: &ServiceKind) -> Self {
        let idle = kind.idle_timeout();
        Self {
            idle_timeout: Some(idle),
            max_connections_per_peer: Some(DEFAULT_MAX_CONNECTIONS_PER_PEER),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            send_buffer: None,
            receive_buffer: None,
        }
    }

    /// Listener options applying these limits. Give every listener of a service a clone of
    /// one value: clones share the per-peer counts.
    pub fn listen_options(&self) -> ListenOptions {
        ListenOptions::new()
            .idle_timeout(self.idle_timeout)
            .max_connections_per_peer(self.max_connections_per_peer)
            .max_connections(Some(self.max_connections))
            .send_buffer(self.send_buffer)
            .receive_buffer(self.receive_buffer)
    }

    /// The limits as a JSON object, for the services table.
    pub fn settings_json(&self) -> serde_json::Value {
        serde_json::json!({
            "idle_timeout_ms": self.idle_timeout.map(|d| d.as_millis() as u64),
            "max_connections_per_peer": self.max_connections_per_peer,
            "max_connections": self.max_connections,
            "send_buffer": self.send_buffer,
            "receive_buffer": self.receive_buffer,
        })
    }
}

/// Reads `idle_timeout` (`"0s"` turns it off), `max_connections_per_peer` (`0` turns it
/// off) and `max_connections` (1 to [`MAX_MAX_CONNECTIONS`]: it cannot be turned off),
/// over the defaults of `kind`.
pub(crate) fn validate(
    ctx: &ServiceCtx<'_>,
    kind: &ServiceKind,
) -> Result<ServiceLimits, ConfigError> {
    let mut limits = ServiceLimits::default_for(kind);
    if let Some(value) = &ctx.raw.idle_timeout {
        let off =
            crate::config::validate::parse_duration(value.get_ref()).is_ok_and(|d| d.is_zero());
        limits.idle_timeout = if off {
            None
        } else {
            Some(ctx.duration("idle_timeout", Some(value), Duration::ZERO)?)
        };
    }
    if let Some(value) = &ctx.raw.max_connections_per_peer {
        let n = *value.get_ref();
        let n = usize::try_from(n).map_err(|_| {
            ctx.error(
                value.span(),
                "max_connections_per_peer",
                format!("must be 0 (no cap) or more, got {n}"),
            )
        })?;
        limits.max_connections_per_peer = (n > 0).then_some(n);
    }
    if let Some(value) = &ctx.raw.max_connections {
        let n = *value.get_ref();
        limits.max_connections = usize::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_MAX_CONNECTIONS).contains(n))
            .ok_or_else(|| {
                ctx.error(
                    value.span(),
                    "max_connections",
                    format!(
                        "must be between 1 and {MAX_MAX_CONNECTIONS} (a service always has \
                         a total cap), got {n}"
                    ),
                )
            })?;
    }
    limits.send_buffer = socket_buffer(ctx, "send_buffer", &ctx.raw.send_buffer, "wmem_max")?;
    limits.receive_buffer =
        socket_buffer(ctx, "receive_buffer", &ctx.raw.receive_buffer, "rmem_max")?;
    // A cap per peer written above the total caps nothing: one peer could take every
    // connection, which the file seems to mean to prevent. (The default one above a lower
    // total is only not reached.)
    if let (Some(written), Some(per_peer)) = (
        &ctx.raw.max_connections_per_peer,
        limits.max_connections_per_peer,
    ) && per_peer > limits.max_connections
    {
        return Err(ctx.error(
            written.span(),
            "max_connections_per_peer",
            format!(
                "{per_peer} is above the total (max_connections = {}): one peer could take \
                 every connection; make it at most the total, or 0 for no cap per peer",
                limits.max_connections
            ),
        ));
    }
    Ok(limits)
}

/// Reads `send_buffer` or `receive_buffer` (bytes, [`MIN_SOCKET_BUFFER`] to
/// [`MAX_SOCKET_BUFFER`]); warns where the kernel's `net.core.{sysctl}` caps it lower,
/// since the socket gets that instead.
fn socket_buffer(
    ctx: &ServiceCtx<'_>,
    key: &str,
    value: &Option<toml::Spanned<i64>>,
    sysctl: &str,
) -> Result<Option<u32>, ConfigError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let n = *value.get_ref();
    if !(MIN_SOCKET_BUFFER..=MAX_SOCKET_BUFFER).contains(&n) {
        return Err(ctx.error(
            value.span(),
            key,
            format!("must be between {MIN_SOCKET_BUFFER} and {MAX_SOCKET_BUFFER} bytes, got {n}"),
        ));
    }
    let cap = std::fs::read_to_string(format!("/proc/sys/net/core/{sysctl}"))
        .ok()
        .and_then(|text| text.trim().parse::<i64>().ok());
    if let Some(cap) = cap
        && n > cap
    {
        ctx.warn(
            value.span(),
            key,
            format!(
                "{n} is above the kernel's cap (net.core.{sysctl} = {cap}): sockets get the cap \
                 (doubled, as the kernel doubles every size it is given)"
            ),
        );
    }
    // Within u32 by the range.
    Ok(Some(n as u32))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_PEER, ServiceLimits};
    use crate::config::Config;

    fn limits(kind: &str, keys: &str) -> Result<ServiceLimits, String> {
        let needs = match kind {
            "tcp-proxy" => "upstream = \"tcp:127.0.0.1:1\"\n",
            "http" => "[[service.route]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:1\"\n",
            "dns" => "forward = [\"127.0.0.1:1\"]\n",
            _ => "",
        };
        let text = format!(
            "[[service]]\nname = \"s\"\nkind = \"{kind}\"\nlisten = \"tcp:7000\"\n{keys}\n{needs}"
        );
        Config::parse("weft.toml", &text)
            .map(|c| c.services[0].limits)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_cap_per_peer_written_above_the_total_is_refused() {
        let e = limits(
            "echo",
            "max_connections = 10\nmax_connections_per_peer = 11",
        )
        .unwrap_err();
        assert!(
            e.contains(
                "service[0].max_connections_per_peer: 11 is above the total (max_connections = 10)"
            ),
            "{e}"
        );
        let l = limits("echo", "max_connections = 10").unwrap();
        assert_eq!(
            l.max_connections_per_peer,
            Some(DEFAULT_MAX_CONNECTIONS_PER_PEER)
        );
        let l = limits("echo", "max_connections = 10\nmax_connections_per_peer = 0").unwrap();
        assert_eq!(l.max_connections_per_peer, None);
    }

    #[test]
    fn socket_buffers_are_bytes_within_their_range_and_off_by_default() {
        let l = limits("echo", "send_buffer = 65536\nreceive_buffer = 8192").unwrap();
        assert_eq!((l.send_buffer, l.receive_buffer), (Some(65536), Some(8192)));
        let options = l.listen_options().get_socket_buffers();
        assert_eq!((options.send, options.receive), (Some(65536), Some(8192)));
        let l = limits("http", "").unwrap();
        assert_eq!((l.send_buffer, l.receive_buffer), (None, None));
        for (key, value) in [
            ("send_buffer", "4095"),
            ("receive_buffer", "0"),
            ("send_buffer", "67108865"),
            ("receive_buffer", "-1"),
        ] {
            let e = limits("tcp-proxy", &format!("{key} = {value}")).unwrap_err();
            assert!(
                e.contains(&format!(
                    "service[0].{key}: must be between 4096 and 67108864 bytes, got {value}"
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn a_socket_buffer_above_the_kernel_s_cap_is_warned_of() {
        let Some(cap) = std::fs::read_to_string("/proc/sys/net/core/wmem_max")
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
            .filter(|&cap| cap < super::MAX_SOCKET_BUFFER)
        else {
            return;
        };
        let text = format!(
            "[[service]]\nname = \"s\"\nkind = \"echo\"\nlisten = \"tcp:7000\"\n\
             send_buffer = {}\n",
            cap + 1
        );
        let config = Config::parse("weft.toml", &text).unwrap();
        let said: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
        assert!(
            said.iter().any(|w| w.contains(&format!(
                "service[0].send_buffer: {} is above the kernel's cap (net.core.wmem_max = {cap})",
                cap + 1
            ))),
            "{said:?}"
        );
    }

    #[test]
    fn every_kind_has_an_idle_timeout_and_a_peer_cap_by_default() {
        for (kind, idle) in [
            ("echo", 300),
            ("discard", 300),
            ("tcp-proxy", 300),
            ("http", 60),
        ] {
            let l = limits(kind, "").unwrap();
            assert_eq!(l.idle_timeout, Some(Duration::from_secs(idle)), "{kind}");
            assert_eq!(
                l.max_connections_per_peer,
                Some(DEFAULT_MAX_CONNECTIONS_PER_PEER)
            );
            assert_eq!(l.max_connections, DEFAULT_MAX_CONNECTIONS);
        }
    }

    #[test]
    fn zero_turns_either_limit_off() {
        let l = limits(
            "echo",
            "idle_timeout = \"0s\"\nmax_connections_per_peer = 0",
        )
        .unwrap();
        assert_eq!(l.idle_timeout, None);
        assert_eq!(l.max_connections_per_peer, None);
        let l = limits(
            "echo",
            "idle_timeout = \"90s\"\nmax_connections_per_peer = 8",
        )
        .unwrap();
        assert_eq!(l.idle_timeout, Some(Duration::from_secs(90)));
        assert_eq!(l.max_connections_per_peer, Some(8));
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = limits("echo", "idle_timeout = \"soon\"").unwrap_err();
        assert!(e.contains("service[0].idle_timeout"), "{e}");
        let e = limits("echo", "idle_timeout = \"500000000000years\"").unwrap_err();
        assert!(e.contains("too long"), "{e}");
        let e = limits("echo", "max_connections_per_peer = -1").unwrap_err();
        assert!(e.contains("service[0].max_connections_per_peer"), "{e}");
    }

    #[test]
    fn the_total_cap_is_read_for_every_kind_and_zero_or_past_a_million_is_rejected() {
        for kind in ["echo", "discard", "tcp-proxy", "http", "dns"] {
            let l = limits(kind, "max_connections = 5").unwrap();
            assert_eq!(l.max_connections, 5, "{kind}");
        }
        assert_eq!(
            limits("echo", "max_connections = 1000000")
                .unwrap()
                .max_connections,
            1_000_000
        );
        for bad in ["0", "-1", "1000001"] {
            let e = limits("echo", &format!("max_connections = {bad}")).unwrap_err();
            assert!(e.contains("service[0].max_connections"), "{e}");
            assert!(e.contains("between 1 and 1000000"), "{e}");
        }
    }
}
