//! UDP ports receive and answer datagrams a batch at a time, on real sockets: every
//! answer reaches the peer that asked, whichever batch its question came in.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weft::{DatagramProtocol, DatagramTransport};
use weft_test_support::{eventually, spawn_reactor};

/// Echoes each datagram to its sender. The first one holds the reactor until the test
/// says so (everything the clients send meanwhile queues in the socket); for each
/// datagram it notes how many answers had left the port when it arrived.
struct HeldEcho {
    release: Option<Receiver<()>>,
    handled: u64,
    seen: Arc<Mutex<Vec<(u64, u64)>>>,
}

impl DatagramProtocol for HeldEcho {
    fn datagram_received(&mut self, t: &DatagramTransport, data: &[u8], from: SocketAddr) {
        self.seen
            .lock()
            .unwrap()
            .push((self.handled, t.info().stats.writes()));
        if let Some(release) = self.release.take() {
            release.recv().unwrap();
        }
        self.handled += 1;
        assert!(
            t.write(data, from),
            "an answer to a datagram is queued or sent"
        );
    }
}

struct Served {
    addr: SocketAddr,
    release: Sender<()>,
    seen: Arc<Mutex<Vec<(u64, u64)>>>,
}

fn serve(interface: &'static str) -> (weft_test_support::Running<SocketAddr>, Served) {
    let (release, held) = channel();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let running = spawn_reactor(move |r| {
        let protocol = HeldEcho {
            release: Some(held),
            handled: 0,
            seen: log,
        };
        let port = r
            .listen_udp(
                "udp-echo",
                &format!("udp:0:interface={interface}"),
                protocol,
            )
            .unwrap();
        port.local_addr().unwrap()
    });
    let addr = running.value;
    (
        running,
        Served {
            addr,
            release,
            seen,
        },
    )
}

/// `clients` sockets bound on `local` send `each` datagrams apiece, interleaved, while
/// the port is held; then each must get back exactly its own datagrams.
fn answers_reach_their_askers(local: &str, served: &Served, clients: usize, each: usize) {
    let sockets: Vec<UdpSocket> = (0..clients)
        .map(|_| {
            let s = UdpSocket::bind(local).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        })
        .collect();
    sockets[0].send_to(b"hold", served.addr).unwrap();
    eventually("the port holds on its first datagram", || {
        !served.seen.lock().unwrap().is_empty()
    });
    for j in 0..each {
        for (i, s) in sockets.iter().enumerate() {
            s.send_to(format!("{i}:{j}").as_bytes(), served.addr)
                .unwrap();
        }
    }
    served.release.send(()).unwrap();

    let mut buf = [0u8; 64];
    let (n, _) = sockets[0].recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hold");
    let mut got: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (i, s) in sockets.iter().enumerate() {
        for _ in 0..each {
            let (n, from) = s.recv_from(&mut buf).unwrap();
            assert_eq!(from, served.addr, "answers come from the port asked");
            got.entry(i)
                .or_default()
                .push(String::from_utf8(buf[..n].to_vec()).unwrap());
        }
    }
    for (i, answers) in got {
        let own: Vec<String> = (0..each).map(|j| format!("{i}:{j}")).collect();
        assert_eq!(answers, own, "client {i} gets its own datagrams, in order");
    }
}

#[test]
fn a_batch_of_datagrams_from_several_clients_is_answered_to_each_sender() {
    let (_running, served) = serve("127.0.0.1");
    answers_reach_their_askers("127.0.0.1:0", &served, 6, 12);
    // The datagrams queued while the port was held were taken a batch a system call,
    // and the answers to a batch left together after it: some datagram was handled
    // before the answers to those ahead of it in its batch had gone.
    let seen = served.seen.lock().unwrap();
    assert_eq!(seen.len(), 1 + 6 * 12);
    assert!(
        seen.iter().any(|&(handled, written)| written < handled),
        "every answer left before the next datagram was handled: {seen:?}"
    );
}

#[test]
fn a_batch_over_ipv6_is_answered_to_each_sender() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    }
    let (_running, served) = serve("\\:\\:1");
    answers_reach_their_askers("[::1]:0", &served, 3, 8);
}

/// Echoes each datagram to its sender, and the first one, from the test, also sends a few
/// from the port to itself: they go round for ever, so the port is always readable (as
/// with one datagram forged to come from the port's own address to an echo service).
struct SelfLoop(Arc<std::sync::atomic::AtomicU64>);

impl DatagramProtocol for SelfLoop {
    fn datagram_received(&mut self, t: &DatagramTransport, data: &[u8], from: SocketAddr) {
        if self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
            let own = t.host().socket_addr().expect("an IP port");
            for _ in 0..8 {
                t.write(data, own);
            }
        }
        t.write(data, from);
    }
}

#[test]
fn a_port_that_is_always_readable_leaves_the_reactor_to_its_other_connections() {
    let rounds = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = rounds.clone();
    let running = weft_test_support::spawn_reactor(move |r| {
        let port = r
            .listen_udp("loop", "udp:0:interface=127.0.0.1", SelfLoop(counted))
            .unwrap()
            .local_addr()
            .unwrap();
        let tcp = r
            .listen_as(
                "echo",
                "tcp:0:interface=127.0.0.1",
                weft::factory(|| weft_test_support::Echo),
            )
            .unwrap()
            .local_addr()
            .unwrap();
        (port, tcp)
    });
    let (port, tcp) = running.value;
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"round", port)
        .unwrap();
    eventually("the datagrams go round", || {
        rounds.load(std::sync::atomic::Ordering::Relaxed) > 1_000
    });
    let answered = (|| {
        let mut client = std::net::TcpStream::connect(tcp).ok()?;
        client
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        std::io::Write::write_all(&mut client, b"still there?").ok()?;
        let mut buf = [0; 12];
        std::io::Read::read_exact(&mut client, &mut buf).ok()?;
        Some(buf)
    })();
    if answered != Some(*b"still there?") {
        // The reactor is stuck in the port's loop: it would never stop to be joined.
        std::mem::forget(running);
        panic!("a TCP connection on the same reactor got no echo within 3 s");
    }
    // And it stops when asked, the loop still going round.
    let went_round = rounds.load(std::sync::atomic::Ordering::Relaxed);
    running.stop();
    assert!(
        went_round > 1_000,
        "the datagrams went round {went_round} times"
    );
}

/// Sends nothing of its own.
struct Quiet;

impl DatagramProtocol for Quiet {
    fn datagram_received(&mut self, _: &DatagramTransport, _: &[u8], _: SocketAddr) {}
}

#[test]
fn the_first_datagram_of_a_port_just_opened_goes_out() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let to = peer.local_addr().unwrap();
    // Written before the reactor ever polled the new socket: its readiness is not known
    // yet, but the socket can take the datagram.
    let running = spawn_reactor(move |r| {
        let port = r
            .open_udp("client", "udp:0:interface=127.0.0.1", Quiet)
            .unwrap();
        port.transport().write(b"first", to)
    });
    assert!(running.value, "the datagram was sent");
    let mut buf = [0; 16];
    let (n, _) = peer.recv_from(&mut buf).expect("the datagram arrives");
    assert_eq!(&buf[..n], b"first");
}

/// Datagrams the kernel drops while the port is not read (its receive queue full) are
/// counted, all of them, when the port hears of them: with the second batch received after
/// the drops (the first finds no room for the count, see `Inbox::take_dropped`).
#[test]
fn datagrams_the_kernel_dropped_for_a_full_queue_are_counted() {
    let observer = weft::testing::RecordingObserver::new();
    let obs = observer.clone();
    let (release, held) = channel();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    // A fixed port: the listener that takes the socket over below names the same one.
    let listen = format!("udp:{}:interface=127.0.0.1", weft_test_support::free_port());
    let endpoint = listen.clone();
    let _running = spawn_reactor(move |r| {
        r.set_observer(obs);
        let protocol = HeldEcho {
            release: Some(held),
            handled: 0,
            seen: log,
        };
        let port = r.listen_udp("udp-echo", &listen, protocol).unwrap();
        port.local_addr().unwrap()
    });
    let addr = _running.value;
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.send_to(b"hold", addr).unwrap();
    eventually("the port holds on its first datagram", || {
        !seen.lock().unwrap().is_empty()
    });
    // Far more than a default receive buffer holds.
    let sent = 20_000;
    for i in 0..sent {
        client
            .send_to(format!("{i:0>200}").as_bytes(), addr)
            .unwrap();
    }
    release.send(()).unwrap();
    let handled = || seen.lock().unwrap().len();
    let mut last = 0;
    eventually("the queue is drained", || {
        let now = handled();
        let still = now == last;
        last = now;
        std::thread::sleep(Duration::from_millis(100));
        still
    });
    // The next datagrams bring the kernel's count.
    client.send_to(b"after", addr).unwrap();
    eventually("a datagram after handled", || handled() == last + 1);
    client.send_to(b"after", addr).unwrap();
    eventually("the next one handled", || handled() == last + 2);
    let dropped = sent + 3 - handled();
    assert!(dropped > 0, "the queue overflowed");
    let counted = || -> usize {
        observer
            .events()
            .iter()
            .filter(|e| e.contains("ReceiveQueueFull"))
            .map(|e| {
                let at = e.find("count: ").expect("a count") + "count: ".len();
                let digits: String = e[at..].chars().take_while(char::is_ascii_digit).collect();
                digits.parse::<usize>().unwrap()
            })
            .sum()
    };
    assert_eq!(counted(), dropped, "every datagram dropped is counted");

    // Handed over to a new listener (a reload), the socket's count is not counted again.
    let (tx, rx) = channel();
    _running.handle.call_from_thread(move || {
        let r = weft::Reactor::current();
        let ports = r.listening_ports();
        let handover = r.handover(ports);
        r.listen_udp("udp-echo", &endpoint, weft_test_support::UdpEcho)
            .expect("takes the socket");
        handover.commit();
        tx.send(()).unwrap();
    });
    rx.recv().unwrap();
    // The old listener's answers still on their way, then the new one's.
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 512];
    while client.recv_from(&mut buf).is_ok() {}
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for _ in 0..3 {
        client.send_to(b"new", addr).unwrap();
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"new");
    }
    assert_eq!(
        counted(),
        dropped,
        "nothing counted twice after the handover"
    );
}

/// A UDP port's own task is listed under the port (a connection of its service), not
/// under no service at all, and said to be spawned at the line that opened the port.
#[test]
fn a_udp_ports_task_belongs_to_the_port() {
    let running = spawn_reactor(|r| {
        let protocol = HeldEcho {
            release: None,
            handled: 0,
            seen: Arc::default(),
        };
        let port = r
            .listen_udp("udp-echo", "udp:0:interface=127.0.0.1", protocol)
            .unwrap();
        port.transport().info().id
    });
    let port = running.value;
    let (tx, rx) = channel();
    running.handle.call_from_thread(move || {
        let tasks = weft::tasks::pending_tasks()
            .iter()
            .filter(|t| t.site.0.file().ends_with("udp_batch.rs"))
            .map(|t| t.figures.connection)
            .collect::<Vec<_>>();
        tx.send(tasks).unwrap();
    });
    assert_eq!(rx.recv().unwrap(), [Some(port)]);
}
