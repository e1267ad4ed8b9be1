//! The syntax of an endpoint string: fields split at unescaped colons, the kind first,
//! positional fields before `key=value` options; each field is taken once by what reads
//! the kind, and [`Fields::done`] names whatever is left over.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use super::{DEFAULT_CONNECT_TIMEOUT, EndpointError};

/// An endpoint string split into its fields, each taken once by what reads its kind.
pub(super) struct Fields<'a> {
    input: &'a str,
    /// The first field: `tcp`, `unix`, ...
    pub(super) kind: String,
    positional: Vec<String>,
    options: Vec<(String, String)>,
}

impl<'a> Fields<'a> {
    /// Splits `input`; fails on a lone backslash, no kind, or a positional field after an
    /// option. A backslash escapes the next character, so `\:` and `\=` are a colon and an
    /// equals sign within a field (`unix:/run/a\=b` is the path `/run/a=b`).
    pub(super) fn parse(input: &'a str) -> Result<Self, EndpointError> {
        // Each field with where its first unescaped `=` is, if it has one.
        let mut fields: Vec<(String, Option<usize>)> = Vec::new();
        let mut current = String::new();
        let mut equals = None;
        let mut chars = input.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(next) => current.push(next),
                    None => return Err(error(input, input, "ends with a lone backslash")),
                },
                ':' => fields.push((std::mem::take(&mut current), equals.take())),
                '=' if equals.is_none() => {
                    equals = Some(current.len());
                    current.push(c);
                }
                c => current.push(c),
            }
        }
        fields.push((current, equals));
        let mut iter = fields.into_iter();
        let kind = iter.next().map(|(kind, _)| kind).unwrap_or_default();
        if kind.is_empty() {
            // `:8080`, as Go and nginx write a port on every address.
            let reason = match input.strip_prefix(':').map(str::parse::<u16>) {
                Some(Ok(port)) => format!(
                    "has no endpoint type (tcp, tcp6, udp, unix, ssl); for TCP on every \
                     address write \"tcp:{port}\""
                ),
                _ => "has no endpoint type (tcp, tcp6, udp, unix, ssl)".to_owned(),
            };
            return Err(error(input, "", &reason));
        }
        let mut positional = Vec::new();
        let mut options = Vec::new();
        for (field, equals) in iter {
            let option = equals.map(|at| (&field[..at], &field[at + 1..]));
            match option {
                Some((key, _)) if options.iter().any(|(k, _)| k == key) => {
                    return Err(error(input, &field, &format!("gives {key}= a second time")));
                }
                Some((key, value)) => options.push((key.to_owned(), value.to_owned())),
                None if options.is_empty() => positional.push(field),
                None => {
                    // `interface=::1`: an IPv6 address's colons split it.
                    let reason = match options.last() {
                        Some((key, value))
                            if value.is_empty()
                                || value.parse::<u16>().is_ok()
                                || key == "interface" =>
                        {
                            format!(
                                "is positional but follows key=value options (the colons of an \
                                 IPv6 address in {key}= are escaped: {key}=\\:\\:1)"
                            )
                        }
                        _ => "is positional but follows key=value options".to_owned(),
                    };
                    return Err(error(input, &field, &reason));
                }
            }
        }
        Ok(Self {
            input,
            kind,
            positional,
            options,
        })
    }

    /// The error naming `part` of this string.
    pub(super) fn err(&self, part: &str, reason: &str) -> EndpointError {
        error(self.input, part, reason)
    }

    /// Takes the option `key`, or the next positional field.
    pub(super) fn take(&mut self, key: &str, positional: bool) -> Option<String> {
        if let Some(i) = self.options.iter().position(|(k, _)| k == key) {
            return Some(self.options.remove(i).1);
        }
        if positional && !self.positional.is_empty() {
            return Some(self.positional.remove(0));
        }
        None
    }

    /// Like [`take`](Self::take), failing with what the kind needs when it is absent.
    pub(super) fn required(
        &mut self,
        key: &str,
        positional: bool,
    ) -> Result<String, EndpointError> {
        self.take(key, positional)
            .ok_or_else(|| self.err(&self.kind.clone(), &format!("needs {key}")))
    }

    /// The error for an address written before the port (`tcp:127.0.0.1:8080`, as
    /// other servers write a listener), saying how it is written here, with the rest of
    /// the string kept; `None` otherwise.
    pub(super) fn address_before_port(&self) -> Option<EndpointError> {
        // An IPv6 address spans several fields (its colons split it), bracketed or not.
        // The longest address first: `fe80::1:2:3:80` is fe80::1:2:3, port 80.
        let (written_host, ip, port, rest) = (1..self.positional.len()).rev().find_map(|i| {
            let written = self.positional[..i].join(":");
            let host = written
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(&written);
            let ip = host.parse::<IpAddr>().ok()?;
            let port = self.positional[i].parse::<u16>().ok()?;
            Some((written.clone(), ip, port, &self.positional[i + 1..]))
        })?;
        // The address that stays says the family: `interface=` when it is given too.
        let stays = self
            .options
            .iter()
            .find(|(key, _)| key == "interface")
            .and_then(|(_, value)| value.parse::<IpAddr>().ok())
            .unwrap_or(ip);
        let kind = match (&self.kind[..], stays) {
            ("tcp", IpAddr::V6(_)) => "tcp6",
            ("tcp6", IpAddr::V4(_)) => "tcp",
            (kind, _) => kind,
        };
        let mut written = format!("{kind}:{port}");
        for field in rest {
            written.push(':');
            written.push_str(&escaped(field));
        }
        // An `interface=` given as well says the address; the one before the port goes.
        if !self.options.iter().any(|(key, _)| key == "interface") {
            written.push_str(&format!(":interface={}", escaped(&ip.to_string())));
        }
        for (key, value) in &self.options {
            written.push_str(&format!(":{key}={}", escaped(value)));
        }
        Some(self.err(
            &written_host,
            &format!(
                "is an address where the port goes: the port comes first, the address as an \
                 option, \"{written}\""
            ),
        ))
    }

    /// The next positional field (or `port=`) as a port number.
    pub(super) fn port(&mut self) -> Result<u16, EndpointError> {
        let port = self.required("port", true)?;
        port.parse()
            .map_err(|_| self.err(&port, "is not a port number (0-65535)"))
    }

    /// The option `key` parsed as `what`, if given.
    pub(super) fn parsed<T: FromStr>(
        &mut self,
        key: &str,
        what: &str,
    ) -> Result<Option<T>, EndpointError> {
        match self.take(key, false) {
            None => Ok(None),
            Some(value) => value
                .parse()
                .map(Some)
                .map_err(|_| self.err(&format!("{key}={value}"), &format!("is not {what}"))),
        }
    }

    /// `interface=`, or `default`: an address of this host's, so not a multicast group nor
    /// the broadcast address (a socket bound to one hears only what is sent to it, nothing
    /// of what is sent to the host).
    pub(super) fn interface(&mut self, default: IpAddr) -> Result<IpAddr, EndpointError> {
        let ip = match self.parsed("interface", "an IP address") {
            Err(e) if e.part.eq_ignore_ascii_case("interface=localhost") => {
                return Err(self.err(
                    &e.part,
                    "is not an IP address: a listener binds an address, not a name; \
                     interface=127.0.0.1 (or, with tcp6, interface=\\:\\:1) is this host's \
                     loopback",
                ));
            }
            parsed => parsed?.unwrap_or(default),
        };
        let what = match ip {
            IpAddr::V4(v4) if v4.is_broadcast() => "the broadcast address",
            ip if ip.is_multicast() => "a multicast group",
            _ => return Ok(ip),
        };
        Err(self.err(
            &format!("interface={ip}"),
            &format!(
                "is {what}, not an address of this host; listen on an interface's address or \
                 on every address (remove the option)"
            ),
        ))
    }

    /// `backlog=`: how many connections may wait to be accepted, 1 or more (the system caps
    /// it at `net.core.somaxconn`), or `default`.
    pub(super) fn backlog(&mut self, default: u32) -> Result<u32, EndpointError> {
        match self.parsed::<u32>("backlog", "a number")? {
            None => Ok(default),
            Some(0) => Err(self.err(
                "backlog=0",
                "leaves no room for connections waiting to be accepted: a burst would be \
                 refused; give 1 or more, or leave it out",
            )),
            Some(n) => Ok(n),
        }
    }

    /// `mode=`: a unix socket's permissions in octal, at most `777`, that let someone
    /// connect (connecting takes write permission).
    pub(super) fn mode(&mut self) -> Result<Option<u32>, EndpointError> {
        let Some(m) = self.take("mode", false) else {
            return Ok(None);
        };
        let part = format!("mode={m}");
        let mode =
            u32::from_str_radix(&m, 8).map_err(|_| self.err(&part, "is not an octal file mode"))?;
        if mode > 0o777 {
            return Err(self.err(
                &part,
                "is more than permissions: a socket's mode is at most 777 (read, write and \
                 execute for its owner, group and others), such as 660",
            ));
        }
        if mode & 0o222 == 0 {
            return Err(self.err(
                &part,
                "lets no one connect: connecting to a unix socket takes write permission; give \
                 its owner or group write, such as 660",
            ));
        }
        Ok(Some(mode))
    }

    /// `timeout=` in seconds (positive), or [`DEFAULT_CONNECT_TIMEOUT`].
    pub(super) fn timeout(&mut self) -> Result<Duration, EndpointError> {
        // Ten years, as every duration of the gateway's configuration: timers add it to the
        // monotonic clock. And at least a millisecond, as every duration of it too: a
        // shorter one fails every connect, and is surely a slip.
        const LONGEST: Duration = Duration::from_secs(10 * 31_557_600);
        const SHORTEST: Duration = Duration::from_millis(1);
        match self.parsed::<f64>("timeout", "a number of seconds")? {
            None => Ok(DEFAULT_CONNECT_TIMEOUT),
            Some(secs)
                if secs > 0.0
                    && let Ok(timeout) = Duration::try_from_secs_f64(secs)
                    && timeout >= SHORTEST
                    && timeout <= LONGEST =>
            {
                Ok(timeout)
            }
            Some(secs) => Err(self.err(
                &format!("timeout={secs}"),
                "must be a positive number of seconds, at least a millisecond (0.001) and at \
                 most ten years (315576000)",
            )),
        }
    }

    /// `bindAddress=IP` (any port) or `bindAddress=IP\:PORT`.
    pub(super) fn bind_address(&mut self) -> Result<Option<SocketAddr>, EndpointError> {
        let Some(value) = self.take("bindAddress", false) else {
            return Ok(None);
        };
        value
            .parse::<SocketAddr>()
            .or_else(|_| value.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 0)))
            .map(Some)
            .map_err(|_| {
                self.err(
                    &format!("bindAddress={value}"),
                    "is not an IP address (or IP\\:PORT, the colon escaped)",
                )
            })
    }

    /// Fails when `value`, the client's `key` (`host`, `bindAddress`), is an address of
    /// many hosts or of none a stream reaches: a multicast group or the broadcast address.
    /// Names are not resolved here.
    pub(super) fn one_host(&self, key: &str, value: &str) -> Result<(), EndpointError> {
        if !super::host_ip(value).is_some_and(super::is_many_hosts) {
            return Ok(());
        }
        let (shown, reason) = match key {
            "host" => (
                value.to_owned(),
                "is a multicast or broadcast address, not one host: no stream reaches it",
            ),
            _ => (
                format!("{key}={value}"),
                "is a multicast or broadcast address, not one host's: no stream comes from it",
            ),
        };
        Err(self.err(&shown, reason))
    }

    /// Fails on anything left over, naming it.
    pub(super) fn done(self) -> Result<(), EndpointError> {
        if let Some(extra) = self.positional.first() {
            return Err(self.err(extra, "is an unexpected extra field"));
        }
        if let Some((key, value)) = self.options.first() {
            return Err(self.err(
                &format!("{key}={value}"),
                &format!("is not an option of {}:", self.kind),
            ));
        }
        Ok(())
    }
}

/// `field` as written in an endpoint string: its colons, equals signs and backslashes
/// escaped.
pub(super) fn escaped(field: &str) -> String {
    field
        .replace('\\', "\\\\")
        .replace(':', "\\:")
        .replace('=', "\\=")
}

fn error(input: &str, part: &str, reason: &str) -> EndpointError {
    EndpointError {
        input: input.to_owned(),
        part: part.to_owned(),
        reason: reason.to_owned(),
    }
}
