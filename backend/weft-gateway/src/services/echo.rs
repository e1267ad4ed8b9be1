//! `kind = "echo"`: sends back every byte (TCP) or datagram (UDP) it receives (RFC 862).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use weft::observe::{self, ErrorKind};
use weft::{DatagramProtocol, DatagramTransport, Protocol, Transport};

/// Echo over a stream.
#[derive(Debug, Default)]
pub struct Echo;

impl Protocol for Echo {
    /// A client that sends more than it reads, and reads on steadily, is written to
    /// within its idle timeout (`limits::keep_steady_readers`): with the kernel's default
    /// it would be written to once a third of the megabytes it holds are read, and be cut
    /// as idle meanwhile.
    fn connection_made(&mut self, transport: &Transport) {
        super::limits::keep_steady_readers(transport, transport.idle_timeout());
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        transport.write(data);
    }
}

/// Echo over UDP: each datagram goes back to its sender, unless the sender is one that
/// would answer the echo in turn, or has had its share of echoes this second. Its port
/// is marked as answering any datagram while it serves ([`weft::net::answering_port`]),
/// so no echo of this process answers one from it: not itself through another of the
/// addresses it is bound to, not another echo port. What no port rule can see, an echo
/// on another host set against this one by one forged datagram, or this one aimed at a
/// forged victim, is bounded by a budget: each address gets at most
/// [`ECHOES_PER_SECOND`].
#[derive(Debug, Default)]
pub struct UdpEcho {
    answering: Option<weft::net::AnsweringPort>,
    budgets: Option<Budgets>,
}

/// Echoes one source address gets a second, on each reactor's port, after a burst of as
/// many.
pub const ECHOES_PER_SECOND: u32 = 1_000;

/// Buckets addresses share: a fixed table, so a flood of forged addresses costs no memory.
const BUCKETS: usize = 4_096;

/// The echo budget of each source address: a token bucket of [`ECHOES_PER_SECOND`] (and
/// as many at once), kept in [`BUCKETS`] buckets the addresses hash into with a key of
/// this process's (so no one can aim at another's bucket); addresses that share a bucket
/// share its budget.
#[derive(Debug)]
struct Budgets {
    hasher: std::hash::RandomState,
    buckets: Box<[Bucket]>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Echoes left, in thousandths.
    tokens: u64,
    /// When `tokens` was last brought up to date.
    at: Option<Instant>,
}

/// One echo, in thousandths of a token.
const UNIT: u64 = 1_000;

impl Budgets {
    fn new() -> Self {
        Self {
            hasher: std::hash::RandomState::new(),
            buckets: vec![
                Bucket {
                    tokens: 0,
                    at: None,
                };
                BUCKETS
            ]
            .into_boxed_slice(),
        }
    }

    /// Takes one echo from `ip`'s budget at `now`; `false` when none is left.
    fn take(&mut self, ip: IpAddr, now: Instant) -> bool {
        use std::hash::BuildHasher;
        let full = u64::from(ECHOES_PER_SECOND) * UNIT;
        let i = (self.hasher.hash_one(ip) as usize) % BUCKETS;
        let bucket = &mut self.buckets[i];
        let tokens = match bucket.at {
            None => full,
            Some(at) => {
                let earned = now.saturating_duration_since(at).as_micros()
                    * u128::from(ECHOES_PER_SECOND)
                    / 1_000;
                bucket
                    .tokens
                    .saturating_add(u64::try_from(earned).unwrap_or(u64::MAX))
                    .min(full)
            }
        };
        bucket.at = Some(now);
        match tokens.checked_sub(UNIT) {
            Some(left) => {
                bucket.tokens = left;
                true
            }
            None => {
                bucket.tokens = tokens;
                false
            }
        }
    }
}

/// Whether echoing a datagram from `from` to `from` on a port bound at `own` could start a
/// loop: it comes from the port itself, or from a service that answers datagrams.
fn loops(from: SocketAddr, own: Option<SocketAddr>) -> bool {
    own == Some(from) || weft::net::answered_back(from)
}

impl DatagramProtocol for UdpEcho {
    fn start_protocol(&mut self, transport: &DatagramTransport) {
        if let Some(own) = transport.host().socket_addr() {
            self.answering = Some(weft::net::answering_port(own.port()));
        }
    }

    fn stop_protocol(&mut self) {
        self.answering = None;
    }

    fn datagram_received(&mut self, transport: &DatagramTransport, data: &[u8], from: SocketAddr) {
        if loops(from, transport.host().socket_addr()) {
            observe::report_error(
                transport.info(),
                ErrorKind::DatagramDropped,
                format!("not echoed: a datagram from {from} would be answered back (a loop)"),
            );
            return;
        }
        let budgets = self.budgets.get_or_insert_with(Budgets::new);
        if !budgets.take(from.ip(), Instant::now()) {
            observe::report_error(
                transport.info(),
                ErrorKind::DatagramDropped,
                format!(
                    "not echoed: {} had its {ECHOES_PER_SECOND} echoes this second",
                    from.ip()
                ),
            );
            return;
        }
        transport.write(data, from);
    }
}

/// `kind = "echo"`: no keys of its own, over TCP and UDP.
pub(crate) struct EchoKind;

impl super::Plain for EchoKind {
    const NAME: &'static str = "echo";
    type Stream = Echo;
    type Datagram = UdpEcho;
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft::testing::StringTransport;

    #[test]
    fn datagrams_that_would_be_answered_back_are_not_echoed() {
        let own: SocketAddr = "192.0.2.1:7000".parse().unwrap();
        assert!(loops(own, Some(own)), "from the port itself");
        for port in [0, 7, 13, 17, 19, 37] {
            let from = SocketAddr::from(([198, 51, 100, 1], port));
            assert!(loops(from, Some(own)), "{from}");
        }
        let client: SocketAddr = "198.51.100.1:40000".parse().unwrap();
        assert!(!loops(client, Some(own)));
        assert!(!loops("192.0.2.1:7001".parse().unwrap(), Some(own)));
        // An echo port of this process, from any address: its own port reached through
        // another address of a wildcard bind, or another echo service's port.
        let other_echo = weft::net::answering_port(7002);
        for from in ["127.0.0.1:7002", "192.0.2.1:7002", "198.51.100.9:7002"] {
            assert!(loops(from.parse().unwrap(), Some(own)), "{from}");
        }
        drop(other_echo);
        assert!(!loops("127.0.0.1:7002".parse().unwrap(), Some(own)), "let go");
    }

    #[test]
    fn each_address_gets_its_echoes_a_second_and_no_more() {
        let mut budgets = Budgets::new();
        let start = Instant::now();
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        let taken = (0..3 * ECHOES_PER_SECOND)
            .filter(|_| budgets.take(a, start))
            .count();
        assert_eq!(taken, ECHOES_PER_SECOND as usize, "a burst of one second's");
        // A tenth of a second later, a tenth of a second's more.
        let later = start + std::time::Duration::from_millis(100);
        let taken = (0..ECHOES_PER_SECOND)
            .filter(|_| budgets.take(a, later))
            .count();
        assert_eq!(taken, ECHOES_PER_SECOND as usize / 10);
        // Quiet for long, it has a burst again, never more.
        let much_later = later + std::time::Duration::from_secs(3600);
        let taken = (0..3 * ECHOES_PER_SECOND)
            .filter(|_| budgets.take(a, much_later))
            .count();
        assert_eq!(taken, ECHOES_PER_SECOND as usize);
        // Another address has its own (unless it shares the bucket).
        let others = (1..=50u8)
            .map(|n| IpAddr::from([203, 0, 113, n]))
            .filter(|&b| budgets.take(b, much_later))
            .count();
        assert!(others >= 49, "{others} of 50 other addresses were echoed");
    }

    #[test]
    fn echoes_every_chunk() {
        let mut t = StringTransport::new();
        let mut echo = Echo;
        echo.data_received(t.transport(), b"one ");
        echo.data_received(t.transport(), b"two");
        assert_eq!(t.value(), b"one two");
    }
}
